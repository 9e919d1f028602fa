"""A fleet of real worker processes (tests/fleet_worker.py) sharing flag definitions, and the
definitions endpoint the shared-cache tests serve them from."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import zlib
from typing import Any, Dict, Iterator, List, Optional

try:
    from tests.server import LoopbackServer
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from server import LoopbackServer  # type: ignore

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fleet_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flag(key: str, rollout: float = 50) -> Dict[str, Any]:
    """A flag with one condition: ``rollout`` percent of everyone."""
    return {"id": zlib.crc32(key.encode()) % 1000, "key": key, "active": True,
            "filters": {"groups": [{"properties": [], "rollout_percentage": rollout}]}}


def definitions(*flags: Dict[str, Any]) -> Dict[str, Any]:
    """A definitions document (the endpoint's body) holding ``flags``."""
    return {"flags": list(flags), "group_type_mapping": {}, "cohorts": {}}


@contextlib.contextmanager
def definitions_server(personal_api_key: str) -> Iterator[LoopbackServer]:
    """A loopback server serving flags alpha (50 %) and beta (100 %) to that personal key."""
    live = LoopbackServer(personal_api_key=personal_api_key).start()
    live.set_definitions(definitions(flag("alpha"), flag("beta", 100)))
    try:
        yield live
    finally:
        live.stop()


class Worker:
    """One worker process, queried over its pipes with bounded waits."""

    def __init__(self, settings: Dict[str, Any]) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.process = subprocess.Popen(
            [sys.executable, WORKER, json.dumps(settings)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, text=True, bufsize=1)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _line(self, timeout: float) -> Optional[str]:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        return self.process.stdout.readline().strip() or None

    def wait_ready(self, timeout: float = 30.0) -> None:
        line = self._line(timeout)
        assert line == "ready", f"worker {self.pid} did not start: {line!r}"

    def query(self, timeout: float = 10.0) -> Dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write("q\n")
        self.process.stdin.flush()
        line = self._line(timeout)
        assert line is not None, f"worker {self.pid} did not answer"
        return dict(json.loads(line))

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait(10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class Fleet:
    """Several workers with the same settings."""

    def __init__(self, count: int, settings: Dict[str, Any]) -> None:
        self.workers: List[Worker] = []
        try:
            for _ in range(count):
                self.workers.append(Worker(settings))
            for worker in self.workers:
                worker.wait_ready()
        except BaseException:
            self.stop()
            raise

    def alive(self) -> List[Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    def query(self) -> List[Dict[str, Any]]:
        return [w.query() for w in self.alive()]

    def wait(self, predicate: Any, timeout: float) -> List[Dict[str, Any]]:
        """Query until predicate(answers) holds; return the last answers."""
        deadline = time.monotonic() + timeout
        answers = self.query()
        while not predicate(answers) and time.monotonic() < deadline:
            time.sleep(0.1)
            answers = self.query()
        return answers

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
