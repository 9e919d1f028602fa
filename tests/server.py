"""Loopback HTTP server speaking PostHog's public API, with programmable failures, for tests."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    Union,
)
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "INGEST_PATHS",
    "Behaviour",
    "Delay",
    "Drop",
    "Headers",
    "LoopbackServer",
    "RecordedRequest",
    "Respond",
    "RetryAfter",
]

logger = logging.getLogger("productos.tests.server")

INGEST_PATHS = ("/batch/", "/i/v0/e/", "/capture/", "/e/", "/track/")
FLAGS_PATHS = ("/flags/", "/flags")
DEFINITIONS_PATH = "/flags/definitions"
LEGACY_DEFINITIONS_PATHS = (
    "/api/feature_flag/local_evaluation/",
    "/api/feature_flag/local_evaluation",
)
ROUTES = ("ingest", "flags", "definitions")

_HARD_BODY_CAP = 64 * 1024 * 1024  # never read more than this from a socket
_STOP_JOIN_TIMEOUT = 5.0


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Respond:
    """Answer with `status`; `store` None means store the events iff the status is 2xx."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Union[bytes, Dict[str, Any], List[Any], None] = None
    store: Optional[bool] = None

    def stores(self) -> bool:
        """Whether the events of the request are stored before answering."""
        return (200 <= self.status < 300) if self.store is None else self.store


@dataclass(frozen=True)
class Drop:
    """Close the connection without replying (after storing the events if `store`)."""

    store: bool = False


@dataclass(frozen=True)
class Delay:
    """Wait `seconds`, then apply `then` (None: normal handling, which stores the events)."""

    seconds: float
    then: Union[Respond, Drop, Delay, None] = None


Behaviour = Union[Respond, Drop, Delay]


def RetryAfter(status: int = 429, seconds: Union[int, float, str] = 1) -> Respond:
    """A Respond carrying a `Retry-After` header (seconds, or an HTTP date string)."""
    if isinstance(seconds, float) and seconds.is_integer():
        seconds = int(seconds)
    return Respond(status, headers={"Retry-After": str(seconds)})


# --------------------------------------------------------------------------- records


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping (the last value wins for repeats)."""

    def __init__(self, items: Union[Mapping[str, str], List[Tuple[str, str]], None] = None):
        """Build from a mapping or (name, value) pairs."""
        self._data: Dict[str, Tuple[str, str]] = {}
        pairs = items.items() if isinstance(items, Mapping) else (items or [])
        for name, value in pairs:
            self._data[name.lower()] = (name, value)

    def __getitem__(self, name: str) -> str:
        """Value of header `name`, any case."""
        return self._data[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        """Whether header `name` is present, any case."""
        return isinstance(name, str) and name.lower() in self._data

    def __iter__(self) -> Iterator[str]:
        """Header names as received."""
        return (original for original, _ in self._data.values())

    def __len__(self) -> int:
        """Number of distinct headers."""
        return len(self._data)

    def __repr__(self) -> str:
        """Debug representation."""
        return f"Headers({dict(self.items())!r})"


@dataclass
class RecordedRequest:
    """One request as the server saw it; `response_status` is None when the socket was dropped."""

    method: str
    path: str
    query: Dict[str, str]
    headers: Headers
    raw_body: bytes
    body: bytes
    json: Any
    response_status: Optional[int] = None
    dropped: bool = False
    received_at: float = 0.0  # time.monotonic() when the request was fully read


class _BadRequest(Exception):
    """A request the server answers with an error status instead of handling it."""

    def __init__(self, status: int, detail: str, code: str = "invalid_payload"):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code

    def body(self) -> Dict[str, Any]:
        """PostHog-like error body."""
        return {"type": "validation_error", "code": self.code, "detail": self.detail}


class _DropConnection(Exception):
    """Raised inside a handler to close the socket without replying."""


# --------------------------------------------------------------------------- server


class LoopbackServer:
    """PostHog-compatible HTTP server on 127.0.0.1 that records requests and injects failures."""

    def __init__(self, personal_api_key: str = "phx_test") -> None:
        """Create a stopped server; call start() or use it as a context manager."""
        self.personal_api_key = personal_api_key
        self.definitions: Dict[str, Any] = {"flags": [], "group_type_mapping": {}, "cohorts": {}}
        self.definitions_status: Optional[int] = None
        self.legacy_only = False
        self.flags_handler: Optional[Callable[[Dict[str, Any]], Tuple[int, Dict[str, Any]]]] = None
        self.max_body_bytes: Optional[int] = None
        self.validate_events = True

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._requests: List[RecordedRequest] = []
        self._events: List[Dict[str, Any]] = []
        self._batches: List[List[Dict[str, Any]]] = []
        self._queues: Dict[str, Deque[Behaviour]] = {r: deque() for r in ROUTES}
        self._delay = 0.0
        self._down = False
        self._rates: Optional[Dict[str, float]] = None
        self._rng = random.Random(0)
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle

    def start(self) -> LoopbackServer:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = _STOP_JOIN_TIMEOUT) -> None:
        """Stop serving, close open connections and join the threads (bounded by `timeout`)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections(deadline)
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd = None
        self._thread = None

    def __enter__(self) -> LoopbackServer:
        """Start the server."""
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server."""
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:54321 (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    # -- recorded data

    @property
    def requests(self) -> List[RecordedRequest]:
        """Copy of every request received, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, path: str) -> List[RecordedRequest]:
        """Recorded requests whose path equals `path`."""
        return [r for r in self.requests if r.path == path]

    @property
    def events(self) -> List[Dict[str, Any]]:
        """Copy of the stored events, in arrival order."""
        with self._lock:
            return list(self._events)

    @property
    def accepted_batches(self) -> List[List[Dict[str, Any]]]:
        """The events of each stored ingestion request, one list per request."""
        with self._lock:
            return [list(b) for b in self._batches]

    def uuids(self) -> List[Any]:
        """The `uuid` of every stored event (None where missing)."""
        return [e.get("uuid") for e in self.events]

    def wait_for_events(self, n: int, timeout: float = 5.0) -> bool:
        """Block until at least `n` events are stored; False on timeout or stop."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._events) >= n or self._stopping.is_set(), timeout)
            return len(self._events) >= n

    def wait_for_requests(self, n: int, path: Optional[str] = None, timeout: float = 5.0) -> bool:
        """Block until at least `n` requests (to `path`, if given) are recorded."""

        def count() -> int:
            return sum(1 for r in self._requests if path is None or r.path == path)

        with self._cond:
            self._cond.wait_for(lambda: count() >= n or self._stopping.is_set(), timeout)
            return count() >= n

    def clear(self) -> None:
        """Forget recorded requests, events and batches (behaviours and settings stay)."""
        with self._lock:
            self._requests.clear()
            self._events.clear()
            self._batches.clear()

    # -- programmable behaviour

    def enqueue(self, *behaviours: Behaviour, route: str = "ingest") -> None:
        """Apply one-shot behaviours, in order, to the next requests of `route`."""
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        for b in behaviours:
            if not isinstance(b, (Respond, Drop, Delay)):
                raise TypeError(f"not a behaviour: {b!r}")
        with self._lock:
            self._queues[route].extend(behaviours)

    def pending(self, route: str = "ingest") -> int:
        """Number of enqueued behaviours not yet consumed."""
        with self._lock:
            return len(self._queues[route])

    def fail_rate(
        self,
        p503: float = 0.0,
        p429: float = 0.0,
        retry_after: Union[int, float] = 0,
        p_store_then_503: float = 0.0,
        seed: int = 0,
        p_drop: float = 0.0,
    ) -> None:
        """Fail ingestion requests at random (seeded); all zeros turns it off."""
        total = p503 + p429 + p_store_then_503 + p_drop
        if min(p503, p429, p_store_then_503, p_drop) < 0 or total > 1.0 + 1e-9:
            raise ValueError("probabilities must be >= 0 and sum to <= 1")
        with self._lock:
            self._rng = random.Random(seed)
            self._rates = (
                None
                if total == 0
                else {
                    "p503": p503,
                    "p429": p429,
                    "p_store_then_503": p_store_then_503,
                    "p_drop": p_drop,
                    "retry_after": float(retry_after),
                }
            )

    def set_delay(self, seconds: float) -> None:
        """Delay every response (all routes) by `seconds`; 0 turns it off."""
        with self._lock:
            self._delay = max(0.0, float(seconds))

    def set_down(self, down: bool) -> None:
        """While down, every request has its connection dropped without a reply."""
        with self._lock:
            self._down = bool(down)

    def set_definitions(self, definitions: Dict[str, Any]) -> None:
        """Replace the served flag definitions (the ETag follows the JSON)."""
        with self._lock:
            self.definitions = definitions

    @property
    def etag(self) -> str:
        """The ETag the definitions endpoints currently serve."""
        return self._definitions_payload()[1]

    # -- internals used by the handler

    def _definitions_payload(self) -> Tuple[bytes, str]:
        with self._lock:
            data = json.dumps(self.definitions, sort_keys=True, separators=(",", ":")).encode()
        return data, '"' + hashlib.sha1(data).hexdigest()[:20] + '"'

    def _record(self, rec: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()

    def _store(
        self, rec: RecordedRequest, events: List[Dict[str, Any]], status: Optional[int]
    ) -> None:
        with self._cond:
            rec.response_status = status
            self._events.extend(events)
            self._batches.append(list(events))
            self._cond.notify_all()

    def _next_behaviour(self, route: str) -> Optional[Behaviour]:
        with self._lock:
            queue = self._queues[route]
            if queue:
                return queue.popleft()
            if route != "ingest" or self._rates is None:
                return None
            rates, r = self._rates, self._rng.random()
        if r < rates["p503"]:
            return Respond(503)
        r -= rates["p503"]
        if r < rates["p429"]:
            return RetryAfter(429, rates["retry_after"]) if rates["retry_after"] else Respond(429)
        r -= rates["p429"]
        if r < rates["p_store_then_503"]:
            return Respond(503, store=True)
        r -= rates["p_store_then_503"]
        if r < rates["p_drop"]:
            return Drop()
        return None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer bound to 127.0.0.1:0 that tracks its connections."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False
    request_queue_size = 128

    def __init__(self, owner: LoopbackServer) -> None:
        self.owner = owner
        self._conns: Dict[threading.Thread, socket.socket] = {}
        self._conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        """Bind without the reverse-DNS lookup HTTPServer.server_bind does."""
        socketserver.TCPServer.server_bind(self)
        self.server_name = "127.0.0.1"
        self.server_port = self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve each connection in a tracked daemon thread."""
        t = threading.Thread(
            target=self._serve_connection, args=(request, client_address), daemon=True
        )
        with self._conns_lock:
            self._conns[t] = request
        t.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conns_lock:
                self._conns.pop(threading.current_thread(), None)

    def close_connections(self, deadline: float) -> None:
        """Shut down open (keep-alive) connections and join their threads."""
        with self._conns_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t, _ in conns:
            t.join(max(0.0, deadline - time.monotonic()))

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log handler crashes instead of printing them."""
        if isinstance(sys.exc_info()[1], OSError):  # the client reset or died mid-request
            logger.debug("loopback server: connection error from %s", client_address,
                         exc_info=True)
            return
        # A bug in this server: the test that hit it fails (tests/conftest.py watches the log).
        logger.exception("loopback server: error while handling %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Request handler; all state lives on the owning LoopbackServer."""

    protocol_version = "HTTP/1.1"
    server_version = "productos-loopback/1"
    disable_nagle_algorithm = True
    timeout = 30  # idle keep-alive connections are closed after this
    server: _HTTPServer

    # -- plumbing

    def log_message(self, format: str, *args: Any) -> None:
        """Route access logs to the debug logger."""
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("loopback server: %s", format % args)

    def do_GET(self) -> None:
        """Dispatch GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Dispatch POST."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Dispatch PUT."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Dispatch PATCH."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Dispatch DELETE."""
        self._dispatch()

    def do_OPTIONS(self) -> None:
        """Dispatch OPTIONS."""
        self._dispatch()

    def _dispatch(self) -> None:
        owner = self.server.owner
        rec: Optional[RecordedRequest] = None
        try:
            rec = self._read_request()
            owner._record(rec)
            with owner._lock:
                down, delay = owner._down, owner._delay
            if down:
                raise _DropConnection
            owner._sleep(delay)
            route = self._route(rec)
            if route is None:
                self._send_json(rec, 404, {"type": "not_found", "detail": "Not found"})
                return
            name, methods = route
            if rec.method not in methods:
                detail = f"Method {rec.method} not allowed"
                self._send_json(rec, 405, {"detail": detail}, {"Allow": ", ".join(methods)})
                return
            getattr(self, f"_handle_{name}")(rec)
        except _DropConnection:
            self._drop(rec)
        except _BadRequest as exc:
            if rec is None:
                self._send_raw(None, exc.status, json.dumps(exc.body()).encode(), close=True)
            else:
                self._send_json(rec, exc.status, exc.body())
        except OSError as exc:  # client went away, socket shut down by stop(), timeouts
            logger.debug("loopback server: connection error on %s: %s", self.path, exc)
            self.close_connection = True
        except Exception:
            logger.exception("loopback server: unexpected error on %s", self.path)
            self.close_connection = True
            try:
                self._send_json(rec, 500, {"type": "server_error", "detail": "internal error"})
            except Exception:
                pass

    def _route(self, rec: RecordedRequest) -> Optional[Tuple[str, Tuple[str, ...]]]:
        if rec.path in INGEST_PATHS:
            return "ingest", ("POST",)
        if rec.path in FLAGS_PATHS:
            return "flags", ("POST",)
        if rec.path == DEFINITIONS_PATH or rec.path.rstrip("/") == DEFINITIONS_PATH:
            return "definitions", ("GET",)
        if rec.path in LEGACY_DEFINITIONS_PATHS:
            return "legacy_definitions", ("GET",)
        return None

    def _read_request(self) -> RecordedRequest:
        """Read the body and build the record; raise _BadRequest for unframeable requests."""
        raw = self._read_body()
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        headers = Headers(list(self.headers.items()))
        rec = RecordedRequest(
            method=self.command,
            path=split.path,
            query=query,
            headers=headers,
            raw_body=raw,
            body=raw,
            json=None,
            received_at=time.monotonic(),
        )
        encoding = headers.get("Content-Encoding", "").strip().lower()
        if not encoding and query.get("compression", "").lower() in ("gzip", "gzip-js"):
            encoding = "gzip"
        if raw and encoding in ("gzip", "x-gzip"):
            try:
                rec.body = gzip.decompress(raw)
            except (OSError, EOFError, zlib.error) as exc:
                self._bad_body = _BadRequest(400, f"invalid gzip body: {exc}")
                return rec
        elif encoding not in ("", "identity", "gzip", "x-gzip"):
            self._bad_body = _BadRequest(400, f"unsupported Content-Encoding: {encoding}")
            return rec
        if rec.body:
            try:
                rec.json = json.loads(rec.body)
            except ValueError:
                rec.json = None
        return rec

    def _read_body(self) -> bytes:
        self._bad_body: Optional[_BadRequest] = None
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
        except ValueError:
            raise _BadRequest(400, "invalid Content-Length") from None
        if length < 0:
            raise _BadRequest(400, "invalid Content-Length")
        if length > _HARD_BODY_CAP:
            raise _BadRequest(413, "body too large", code="payload_too_large")
        data = self.rfile.read(length)
        if len(data) != length:
            raise ConnectionError("client closed the connection mid-body")
        return data

    def _read_chunked(self) -> bytes:
        chunks: List[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(400, "invalid chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > _HARD_BODY_CAP:
                raise _BadRequest(413, "body too large", code="payload_too_large")
            chunk = self.rfile.read(size)
            if len(chunk) != size:
                raise ConnectionError("client closed the connection mid-chunk")
            chunks.append(chunk)
            self.rfile.readline(8)

    # -- responses

    def _send_json(
        self,
        rec: Optional[RecordedRequest],
        status: int,
        payload: Any,
        headers: Optional[Mapping[str, str]] = None,
    ) -> None:
        merged = {"Content-Type": "application/json"}
        merged.update(headers or {})
        self._send_raw(rec, status, json.dumps(payload).encode(), merged)

    def _send_raw(
        self,
        rec: Optional[RecordedRequest],
        status: int,
        body: bytes,
        headers: Optional[Mapping[str, str]] = None,
        close: bool = False,
    ) -> None:
        if rec is not None and rec.response_status is None:
            with self.server.owner._lock:
                rec.response_status = status
        no_body = status == 304 or 100 <= status < 200 or status == 204 or self.command == "HEAD"
        self.send_response(status)
        for name, value in (headers or {}).items():
            if name.lower() in ("content-length", "transfer-encoding"):
                continue
            if name.lower() == "connection" and value.lower() == "close":
                close = True
            self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not no_body and body:
            self.wfile.write(body)

    def _respond(self, rec: RecordedRequest, resp: Respond) -> None:
        body = resp.body
        headers = dict(resp.headers)
        if body is None:
            if 200 <= resp.status < 300:
                body = {"status": 1}
            else:
                body = {"type": "error", "detail": _phrase(resp.status)}
        if isinstance(body, (dict, list)):
            headers.setdefault("Content-Type", "application/json")
            data = json.dumps(body).encode()
        else:
            data = bytes(body)
        self._send_raw(rec, resp.status, data, headers)

    def _drop(self, rec: Optional[RecordedRequest]) -> None:
        """Close the socket without replying (RST where the platform allows)."""
        if rec is not None:
            with self.server.owner._lock:
                rec.dropped = True
                rec.response_status = None
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass

    def _resolve(self, behaviour: Optional[Behaviour]) -> Optional[Union[Respond, Drop]]:
        """Follow Delay chains (sleeping), returning the final Respond/Drop or None."""
        while isinstance(behaviour, Delay):
            self.server.owner._sleep(behaviour.seconds)
            behaviour = behaviour.then
        return behaviour

    # -- ingestion

    def _handle_ingest(self, rec: RecordedRequest) -> None:
        owner = self.server.owner
        behaviour = self._resolve(owner._next_behaviour("ingest"))
        if isinstance(behaviour, Drop):
            if behaviour.store:
                try:
                    owner._store(rec, self._parse_ingest(rec), None)
                except _BadRequest:
                    pass
            raise _DropConnection
        if isinstance(behaviour, Respond) and not behaviour.stores():
            self._respond(rec, behaviour)
            return
        events = self._parse_ingest(rec)  # raises _BadRequest -> 400/401/413
        resp = behaviour if isinstance(behaviour, Respond) else Respond(200)
        owner._store(rec, events, resp.status)
        self._respond(rec, resp)

    def _parse_ingest(self, rec: RecordedRequest) -> List[Dict[str, Any]]:
        owner = self.server.owner
        if self._bad_body is not None:
            raise self._bad_body
        limit = owner.max_body_bytes
        if limit is not None and max(len(rec.raw_body), len(rec.body)) > limit:
            raise _BadRequest(413, f"body exceeds {limit} bytes", code="payload_too_large")
        if not rec.body:
            raise _BadRequest(400, "empty body")
        if rec.json is None:
            raise _BadRequest(400, "body is not valid JSON")
        data = rec.json
        if isinstance(data, list):
            events, top = data, {}
        elif isinstance(data, dict) and "batch" in data:
            events, top = data["batch"], data
        elif isinstance(data, dict):
            events, top = [data], {}
        else:
            raise _BadRequest(400, "body must be an event, a list or {'batch': [...]}")
        if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
            raise _BadRequest(400, "batch must be a list of objects")
        if not events:
            raise _BadRequest(400, "empty batch", code="empty_batch")
        if not _find_token(top, events, rec.query):
            raise _BadRequest(
                401, "API key not provided (api_key or token)", code="missing_api_key"
            )
        if owner.validate_events:
            for i, e in enumerate(events):
                if not isinstance(e.get("event"), str) or not e["event"]:
                    raise _BadRequest(400, f"event {i}: missing event name")
                if e.get("distinct_id") in (None, ""):
                    raise _BadRequest(400, f"event {i}: missing distinct_id")
                if "properties" in e and not isinstance(e["properties"], dict):
                    raise _BadRequest(400, f"event {i}: properties must be an object")
        return events

    # -- flags

    def _handle_flags(self, rec: RecordedRequest) -> None:
        owner = self.server.owner
        behaviour = self._resolve(owner._next_behaviour("flags"))
        if isinstance(behaviour, Drop):
            raise _DropConnection
        if isinstance(behaviour, Respond):
            self._respond(rec, behaviour)
            return
        if self._bad_body is not None:
            raise self._bad_body
        if not isinstance(rec.json, dict):
            raise _BadRequest(400, "body must be a JSON object")
        if not (rec.json.get("api_key") or rec.json.get("token")):
            raise _BadRequest(401, "API key not provided", code="missing_api_key")
        handler = owner.flags_handler
        if handler is None:
            status, payload = (
                200,
                {
                    "flags": {},
                    "errorsWhileComputingFlags": False,
                    "requestId": "test",
                },
            )
        else:
            result = handler(rec.json)
            status, payload = (200, result) if isinstance(result, dict) else result
        self._send_json(rec, status, payload)

    # -- definitions

    def _handle_definitions(self, rec: RecordedRequest) -> None:
        if self.server.owner.legacy_only:
            self._send_json(rec, 404, {"type": "not_found", "detail": "Not found"})
            return
        self._serve_definitions(rec)

    def _handle_legacy_definitions(self, rec: RecordedRequest) -> None:
        self._serve_definitions(rec)

    def _serve_definitions(self, rec: RecordedRequest) -> None:
        owner = self.server.owner
        behaviour = self._resolve(owner._next_behaviour("definitions"))
        if isinstance(behaviour, Drop):
            raise _DropConnection
        if isinstance(behaviour, Respond):
            self._respond(rec, behaviour)
            return
        auth = rec.headers.get("Authorization", "")
        if auth != f"Bearer {owner.personal_api_key}":
            self._send_json(
                rec,
                401,
                {
                    "type": "authentication_error",
                    "code": "authentication_failed",
                    "detail": "Incorrect authentication credentials.",
                },
            )
            return
        override = owner.definitions_status
        if override is not None and override != 200:
            self._send_json(rec, override, {"type": "error", "detail": _phrase(override)})
            return
        data, etag = owner._definitions_payload()
        if _etag_matches(rec.headers.get("If-None-Match", ""), etag):
            self._send_raw(rec, 304, b"", {"ETag": etag})
            return
        self._send_raw(rec, 200, data, {"Content-Type": "application/json", "ETag": etag})


# --------------------------------------------------------------------------- helpers


def _find_token(top: Dict[str, Any], events: List[Dict[str, Any]], query: Dict[str, str]) -> bool:
    """Whether a project token is present at the top level, in every event, or in the query."""
    if top.get("api_key") or top.get("token") or query.get("token") or query.get("api_key"):
        return True

    def has(e: Dict[str, Any]) -> bool:
        props = e.get("properties")
        return bool(
            e.get("api_key") or e.get("token") or (isinstance(props, dict) and props.get("token"))
        )

    return all(has(e) for e in events)


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison of an If-None-Match header against `etag`."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.strip('"')
    for candidate in if_none_match.split(","):
        c = candidate.strip()
        if c.startswith("W/"):
            c = c[2:]
        if c.strip('"') == wanted:
            return True
    return False


def _phrase(status: int) -> str:
    """Reason phrase for a status code."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
