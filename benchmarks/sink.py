"""A local stand-in for PostHog's ingestion endpoint, for benchmarks only.

Run it as a subprocess: ``python benchmarks/sink.py [--port 0] [--max-seconds 1800]``.
It binds 127.0.0.1 only, prints ``PORT <n>`` on its first stdout line and then serves:

* ``POST /batch/`` (gzip or plain JSON): counts the events of each ``api_key`` and answers
  ``200 {"status":1}`` at once, on HTTP/1.1 keep-alive connections;
* ``GET /_sink/stats``: the counters as JSON (events per api_key, requests per path, bytes);
* anything else: counted under its path and answered ``404``, so a benchmark can tell
  when an SDK calls endpoints other than ``/batch/``.

It stops by itself: when its standard input reaches end of file (the parent closed the
pipe or died), after ``--max-seconds``, or on ``POST /_sink/stop``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict

_OK = b'{"status":1}'
_MAX_BODY = 64 * 1024 * 1024


class Counters:
    """What the sink received, guarded by one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: Dict[str, int] = {}
        self.batches: Dict[str, int] = {}
        self.paths: Dict[str, int] = {}
        self.bytes_in = 0
        self.bad = 0
        self.started = time.time()

    def snapshot(self) -> Dict[str, Any]:
        with self.lock:
            return {
                "events": dict(self.events),
                "batches": dict(self.batches),
                "paths": dict(self.paths),
                "bytes_in": self.bytes_in,
                "bad": self.bad,
                "uptime_s": round(time.time() - self.started, 3),
            }


COUNTERS = Counters()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "productos-bench-sink"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, reason: str = "OK") -> None:
        # One write for status line, headers and body: no Nagle/delayed-ACK stalls.
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("ascii")
        self.wfile.write(head + body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            total = 0
            while total <= _MAX_BODY:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                total += size
                self.rfile.readline()
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length else b""

    def _count_path(self) -> str:
        path = self.path.split("?", 1)[0]
        with COUNTERS.lock:
            COUNTERS.paths[f"{self.command} {path}"] = (
                COUNTERS.paths.get(f"{self.command} {path}", 0) + 1)
        return path

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/_sink/stats":
            self._reply(200, json.dumps(COUNTERS.snapshot()).encode())
            return
        self._count_path()
        self._reply(404, b'{"detail":"not found"}', "Not Found")

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
        except Exception:
            self.close_connection = True
            self._reply(400, b'{"detail":"unreadable body"}', "Bad Request")
            return
        path = self.path.split("?", 1)[0]
        if path == "/_sink/stop":
            self._reply(200, _OK)
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return
        path = self._count_path()
        if path != "/batch/":
            self._reply(404, b'{"detail":"not found"}', "Not Found")
            return
        try:
            body = raw
            if self.headers.get("Content-Encoding", "").lower() == "gzip" or raw[:2] == b"\x1f\x8b":
                body = zlib.decompress(raw, 47)
            data = json.loads(body)
            batch = data["batch"]
            key = str(data.get("api_key") or batch[0].get("api_key") or "?")
            count = len(batch)
        except Exception:
            with COUNTERS.lock:
                COUNTERS.bad += 1
            self._reply(400, b'{"detail":"bad batch"}', "Bad Request")
            return
        with COUNTERS.lock:
            COUNTERS.events[key] = COUNTERS.events.get(key, 0) + count
            COUNTERS.batches[key] = COUNTERS.batches.get(key, 0) + 1
            COUNTERS.bytes_in += len(raw)
        self._reply(200, _OK)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def _watch_stdin(server: Server) -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except Exception:
        pass
    server.shutdown()


def _watch_clock(server: Server, seconds: float) -> None:
    time.sleep(seconds)
    server.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument("--no-stdin-watch", action="store_true",
                        help="do not stop when stdin closes (for running it by hand)")
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    if not args.no_stdin_watch:
        threading.Thread(target=_watch_stdin, args=(server,), daemon=True).start()
    threading.Thread(target=_watch_clock, args=(server, args.max_seconds), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
