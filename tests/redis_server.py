"""A real redis-server for tests: started on a free port in a temporary directory, stopped after.

Use the ``redis_server`` fixture (import it into a test module). Tests skip, saying why, when
the redis-server binary (Debian's ``redis-server`` package, which ``.ci/run`` installs) or
redis-py (the ``[redis]`` extra) is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Iterator, Optional

import pytest

__all__ = ["RedisServer", "redis_server"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process without persistence; restartable on the same port."""

    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server; "
                        ".ci/run installs it)")
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.socket_path = os.path.join(directory, "redis.sock")
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        """The unix:// URL of the server's socket."""
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers PING."""
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.directory, "--save", "", "--appendonly", "no",
             "--unixsocket", self.socket_path, "--unixsocketperm", "700"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def ping(self) -> bool:
        """True when the server answers."""
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def client(self):  # type: ignore[no-untyped-def]
        """A redis-py client for inspecting what the SDK wrote."""
        redis = pytest.importorskip("redis", reason="redis-py (the [redis] extra) is missing")
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and wait for it."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:  # type: ignore[no-untyped-def]
    """A started RedisServer, stopped after the test."""
    pytest.importorskip("redis", reason="redis-py (the [redis] extra) is missing")
    server = RedisServer(str(tmp_path)).start()
    try:
        yield server
    finally:
        server.stop()
