"""The dev server: PostHog's public HTTP API on ``http.server`` threads, events in SQLite.

Every request is parsed and validated completely before anything is written, then stored in one
transaction, so a bad request changes nothing. Handler errors become JSON error responses; no
request can stop the server.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import json
import logging
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import parse_qs, urlsplit

from productos.devserver.evaluation import (
    FlagDefinitions,
    flags_response,
    server_evaluate,
    summarise_flags,
)
from productos.devserver.page import PAGE_HTML
from productos.devserver.store import EventStore
from productos.flags import EvaluationContext
from productos.version import VERSION

__all__ = ["MAX_BODY_BYTES", "DevServer"]

log = logging.getLogger("productos.devserver")

MAX_BODY_BYTES = 20 * 1024 * 1024  # PostHog's request cap (protocol §1)
_DRAIN_LIMIT = 128 * 1024 * 1024  # read and discard an oversize body up to this, to answer 413
_CHUNK = 1024 * 1024
_MAX_API_LIMIT = 1000

INGEST_PATHS = frozenset({"/batch", "/i/v0/e", "/capture", "/e", "/track"})
FLAGS_PATHS = frozenset({"/flags"})
DEFINITIONS_PATHS = frozenset({"/flags/definitions", "/api/feature_flag/local_evaluation"})
_GET_ROUTES = frozenset(
    {"/", "/index.html", "/api/events", "/api/stats", "/api/flags", "/api/person", "/_health"}
)


class HTTPProblem(Exception):
    """A request the server refuses: status, PostHog-style error type and code, and a sentence."""

    def __init__(self, status: int, code: str, detail: str, kind: str = "validation_error",
                 headers: Optional[Mapping[str, str]] = None,
                 attr: Optional[str] = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.kind = kind
        self.headers = dict(headers or {})
        self.attr = attr


def _bad(code: str, detail: str) -> HTTPProblem:
    return HTTPProblem(400, code, detail)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        raise _bad("invalid_payload", "The request body is empty.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad("invalid_payload", f"The request body is not UTF-8: {exc.reason}.") from exc
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise _bad("invalid_payload", "The request body is nested too deeply.") from exc
    except ValueError as exc:
        raise _bad("invalid_payload", f"The request body is not valid JSON: {exc}.") from exc
    # UTF-8 cannot carry a surrogate, so only a \uD800-\uDFFF escape can bring one in.
    if _SURROGATE_ESCAPE.search(text):
        found = _lone_surrogate_at(payload)
        if found is not None:
            where, what = found
            raise HTTPProblem(400, "invalid_string",
                              f"The {what} at {where} holds a lone UTF-16 surrogate (an "
                              f"unpaired \\uD800-\\uDFFF escape), which is not valid "
                              f"Unicode.", attr=where)
    return payload


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _path_step(path: str, key: str) -> str:
    if key.isidentifier() or key.lstrip("$").isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!a}]"


def _lone_surrogate_at(payload: Any) -> Optional[Tuple[str, str]]:
    """Return the path of the first string holding a lone surrogate and "key" or "string"."""
    stack: List[Tuple[str, Any]] = [("", payload)]
    while stack:  # bounded by the number of values in the body
        path, value = stack.pop()
        if isinstance(value, str):
            if not _is_valid_unicode(value):
                return path or "$", "string"
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if not _is_valid_unicode(key):
                    return _path_step(path, key), "key"
                stack.append((_path_step(path, key), item))
        elif isinstance(value, list):
            for index in range(len(value) - 1, -1, -1):
                stack.append((f"{path}[{index}]", value[index]))
    return None


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    wbits = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS,
             "deflate": zlib.MAX_WBITS}.get(encoding)
    if wbits is None:
        raise HTTPProblem(415, "unsupported_encoding",
                          f"Content-Encoding {encoding!r} is not supported; use gzip.")
    decoder = zlib.decompressobj(wbits)
    try:
        # max_length bounds memory: a small bomb cannot expand past the body cap.
        data = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise _bad("invalid_payload",
                   f"The {encoding} body cannot be decompressed: {exc}.") from exc
    if len(data) > limit:
        raise HTTPProblem(413, "payload_too_large",
                          f"The decompressed body exceeds {limit} bytes.")
    if not decoder.eof:
        raise _bad("invalid_payload", f"The {encoding} body is truncated.")
    return data


# ---------------------------------------------------------------------------------------------
# Event validation
# ---------------------------------------------------------------------------------------------


def _text_id(value: Any) -> Optional[str]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _normalise_event(raw: Any, position: int, now: _dt.datetime) -> Dict[str, Any]:
    where = f"Event #{position}"
    if not isinstance(raw, Mapping):
        raise _bad("invalid_event", f"{where} is not a JSON object.")
    name = raw.get("event")
    if not isinstance(name, str) or not name:
        raise _bad("invalid_event", f"{where} has no event name.")
    where = f"Event #{position} ({name!r})"
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, Mapping):
        raise _bad("invalid_event", f"{where}: properties must be an object.")
    raw_id = raw.get("distinct_id")
    if raw_id is None:
        raw_id = properties.get("distinct_id", properties.get("$distinct_id"))
    distinct_id = _text_id(raw_id)
    if distinct_id is None:
        raise _bad("invalid_event", f"{where} has no distinct_id (a non-empty string).")
    raw_uuid = raw.get("uuid")
    if raw_uuid is None:
        event_uuid = str(uuid.uuid4())  # nothing to de-duplicate on, as in PostHog
    else:
        try:
            event_uuid = str(uuid.UUID(raw_uuid)) if isinstance(raw_uuid, str) else ""
        except ValueError:
            event_uuid = ""
        if not event_uuid:
            raise _bad("invalid_event", f"{where} has an invalid uuid {raw_uuid!r}.")
    timestamp = raw.get("timestamp")
    if timestamp is None:
        offset = raw.get("offset")
        moment = now
        if isinstance(offset, (int, float)) and not isinstance(offset, bool):
            moment = now - _dt.timedelta(milliseconds=offset)
        timestamp = moment.isoformat()
    elif not isinstance(timestamp, str) or not timestamp:
        raise _bad("invalid_event", f"{where}: timestamp must be an ISO-8601 string.")
    event: Dict[str, Any] = {
        "uuid": event_uuid,
        "event": name,
        "distinct_id": distinct_id,
        "timestamp": timestamp,
        "properties": dict(properties),
    }
    for key in ("$set", "$set_once"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise _bad("invalid_event", f"{where}: {key} must be an object.")
        event[key] = dict(value)
    return event


def _events_of(payload: Any) -> Tuple[List[Any], Any]:
    """The events of an ingestion body and its request-level token."""
    if isinstance(payload, list):
        return payload, None
    if not isinstance(payload, Mapping):
        raise _bad("invalid_payload", "The body must be an event, a list of events or a batch.")
    token = payload.get("api_key", payload.get("token"))
    if "batch" in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise _bad("invalid_payload", "'batch' must be a list of events.")
        return batch, token
    if "data" in payload and "event" not in payload:
        data = payload["data"]
        return (data if isinstance(data, list) else [data]), token
    return [payload], token


def _event_token(raw: Any) -> Any:
    if not isinstance(raw, Mapping):
        return None
    token = raw.get("api_key", raw.get("token"))
    if token is None and isinstance(raw.get("properties"), Mapping):
        token = raw["properties"].get("token")
    return token


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    devserver: DevServer


class _IPv6HTTPServer(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so SDK sessions reuse connections
    server_version = f"productos-devserver/{VERSION}"
    timeout = 30  # a stalled client frees its thread
    server: _HTTPServer

    # A garbled request line must still get a status line back, not an HTTP/0.9 bare body.
    default_request_version = "HTTP/1.0"

    # -- plumbing -------------------------------------------------------------------------

    def send_error(self, code: int, message: Optional[str] = None,
                   explain: Optional[str] = None) -> None:
        """Answer http.server's own protocol errors (bad request line, 414, 501) as JSON."""
        try:
            short, long = self.responses[code]
        except KeyError:
            short, long = "Error", ""
        self.close_connection = True
        self.log_error("code %d, message %s", code, message)
        body = json.dumps({"type": "invalid_request", "code": short.lower().replace(" ", "_"),
                           "detail": message or explain or long, "attr": None}).encode()
        self.send_response(code, message)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)

    def log_error(self, format: str, *args: Any) -> None:
        """Protocol errors go to the log at info level."""
        log.info("%s - %s", self.address_string(), format % args)

    def log_message(self, format: str, *args: Any) -> None:
        """Route the access log to logging instead of stderr."""
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: Optional[Mapping[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self._has_body and not self._body_read:
            # An unread body would be parsed as the next request on this connection.
            self.close_connection = True
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, payload: Any,
              headers: Optional[Mapping[str, str]] = None) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        try:
            data = body.encode()
        except UnicodeEncodeError:  # a lone surrogate from stored data: JSON escapes carry it
            data = json.dumps(payload, separators=(",", ":"), default=str).encode()
        self._send(status, data, headers=headers)

    def _problem(self, problem: HTTPProblem) -> None:
        self._json(problem.status, {"type": problem.kind, "code": problem.code,
                                    "detail": problem.detail, "attr": problem.attr},
                   headers=problem.headers)

    def _dispatch(self, method: str) -> None:
        self._body_read = False
        length = (self.headers.get("Content-Length") or "0").strip()
        self._has_body = length not in ("", "0") or "chunked" in (
            self.headers.get("Transfer-Encoding") or "").lower()
        if len(self.headers.get_all("Content-Length") or ()) > 1:
            # Two lengths leave the body's end (and so the next request) ambiguous, the root of
            # request smuggling: refuse and close, as RFC 9112 §6.3 asks.
            self._has_body = True
            self.close_connection = True
            self._problem(HTTPProblem(400, "invalid_request",
                                      "The request has more than one Content-Length header.",
                                      attr="Content-Length"))
            return
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            self._route(method, path, query)
        except HTTPProblem as problem:
            self._problem(problem)
        except (socket.timeout, ConnectionError):
            self.close_connection = True  # the client stalled or went away; nobody to answer
        except Exception:
            log.exception("productos devserver: error handling %s %s", method, url.path)
            self.close_connection = True
            self._problem(HTTPProblem(500, "server_error",
                                      "Internal dev server error; see its log.",
                                      kind="server_error"))

    def do_GET(self) -> None:
        """Serve a GET request."""
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        """Serve a HEAD request (as GET, without the body)."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve a POST request."""
        self._dispatch("POST")

    def do_OPTIONS(self) -> None:
        """Answer CORS pre-flight requests for the browser-facing endpoints."""
        self._dispatch("OPTIONS")

    def do_PUT(self) -> None:
        """Refuse PUT."""
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        """Refuse DELETE."""
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        """Refuse PATCH."""
        self._dispatch("PATCH")

    # -- routing --------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: Dict[str, List[str]]) -> None:
        dev = self.server.devserver
        cors = path in INGEST_PATHS or path in FLAGS_PATHS
        if method == "OPTIONS" and cors:
            self._send(204, b"", headers=_CORS)
            return
        if path in INGEST_PATHS or path in FLAGS_PATHS:
            if method != "POST":
                raise HTTPProblem(405, "method_not_allowed", f"{path} only accepts POST.",
                                  headers={"Allow": "POST, OPTIONS"})
            body = self._read_body(query)
            if path in FLAGS_PATHS:
                self._json(200, dev.handle_flags(_parse_json(body), query), headers=_CORS)
            else:
                self._json(200, dev.handle_ingest(_parse_json(body)), headers=_CORS)
            return
        if path in DEFINITIONS_PATHS or path in _GET_ROUTES:
            if method != "GET":
                raise HTTPProblem(405, "method_not_allowed", f"{path} only accepts GET.",
                                  headers={"Allow": "GET, HEAD"})
            if path in DEFINITIONS_PATHS:
                self._definitions(query)
            elif path in ("/", "/index.html"):
                self._send(200, PAGE_HTML.encode(), "text/html; charset=utf-8")
            else:
                self._json(200, dev.handle_api(path, query))
            return
        raise HTTPProblem(404, "not_found", f"No endpoint at {path}.", kind="invalid_request")

    def _read_body(self, query: Dict[str, List[str]]) -> bytes:
        limit = self.server.devserver.max_body_bytes
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self._read_chunked(limit)
        else:
            length_header = self.headers.get("Content-Length")
            if length_header is None:
                raise HTTPProblem(411, "length_required", "Send a Content-Length header.")
            try:
                length = int(length_header)
                if length < 0:
                    raise ValueError
            except ValueError:
                raise _bad("invalid_request", "Content-Length is not a number.") from None
            if length > limit:
                self._drain(length)
                raise HTTPProblem(413, "payload_too_large",
                                  f"The request body ({length} bytes) exceeds {limit} bytes.")
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True
                raise _bad("invalid_request", "The request body ended early.")
        self._body_read = True
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        compression = (query.get("compression") or [""])[0].lower()
        if compression in ("gzip", "gzip-js") and not encoding:
            encoding = "gzip"  # posthog-js says so in the query string
        if not encoding and body[:2] == b"\x1f\x8b":
            encoding = "gzip"  # gzip magic with no header: decode rather than fail as JSON
        if encoding and encoding != "identity":
            body = _decompress(body, encoding, limit)
        return body

    def _drain(self, length: int) -> None:
        # Reading the rest lets the client see the 413 instead of a reset connection.
        if length > _DRAIN_LIMIT:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:  # bounded by length / _CHUNK reads
            chunk = self.rfile.read(min(_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
        self._body_read = remaining == 0
        self.close_connection = True

    def _read_chunked(self, limit: int) -> bytes:
        parts: List[bytes] = []
        size = 0
        for _ in range(limit + 2):  # at most one chunk per byte, plus the terminator
            line = self.rfile.readline(1024)
            try:
                chunk_size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise _bad("invalid_request", "Malformed chunked body.") from None
            if chunk_size == 0:
                for _ in range(100):  # trailers end with an empty line
                    if self.rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        break
                return b"".join(parts)
            size += chunk_size
            if size > limit:
                self.close_connection = True
                raise HTTPProblem(413, "payload_too_large",
                                  f"The request body exceeds {limit} bytes.")
            parts.append(self.rfile.read(chunk_size))
            self.rfile.readline(8)
        self.close_connection = True  # pragma: no cover - unreachable for a finite limit
        raise _bad("invalid_request", "Malformed chunked body.")

    def _definitions(self, query: Dict[str, List[str]]) -> None:
        dev = self.server.devserver
        dev.check_personal_key(self.headers.get("Authorization"), query)
        state = dev.definitions.current()
        if _etag_matches(self.headers.get("If-None-Match"), state.etag):
            self.send_response(304)
            self.send_header("ETag", state.etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self._send(200, state.body, headers={"ETag": state.etag})


_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Requested-With",
    "Access-Control-Max-Age": "600",
}


def _etag_matches(header: Optional[str], etag: str) -> bool:
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate in ("*", etag):
            return True
    return False


def _first(query: Mapping[str, List[str]], name: str) -> Optional[str]:
    values = query.get(name)
    return values[0] if values else None


def _int_param(query: Mapping[str, List[str]], name: str, default: Optional[int],
               low: int, high: int) -> Optional[int]:
    text = _first(query, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _bad("invalid_parameter", f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise _bad("invalid_parameter", f"{name} must be between {low} and {high}.")
    return value


# ---------------------------------------------------------------------------------------------
# The server object
# ---------------------------------------------------------------------------------------------


class DevServer:
    """A local PostHog-compatible server: ingestion, flags, definitions, a viewer page."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8010,
        db_path: Optional[str] = None,
        flags_path: Optional[str] = None,
        definitions: Optional[Mapping[str, Any]] = None,
        project_api_key: Optional[str] = None,
        personal_api_key: Optional[str] = "phx_dev",
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if flags_path is not None and definitions is not None:
            raise ValueError("give flags_path or definitions, not both")
        self.host = host
        self.port = port
        self.project_api_key = project_api_key or None
        self.personal_api_key = personal_api_key or None
        self.max_body_bytes = max_body_bytes
        self.definitions = FlagDefinitions(definitions, flags_path)
        self._tempdir: Optional[str] = None
        if db_path is None:
            # A real file rather than :memory: so WAL works and export/tail can read it.
            self._tempdir = tempfile.mkdtemp(prefix="productos-devserver-")
            db_path = f"{self._tempdir}/events.sqlite3"
        self.db_path = db_path
        try:
            self.store = EventStore(db_path)
        except BaseException:
            self._remove_tempdir()
            raise
        self._httpd: Optional[_HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._stopped = False
        self._serving = False
        self.started_at: Optional[float] = None

    # -- lifecycle ------------------------------------------------------------------------

    def _bind(self) -> _HTTPServer:
        with self._lifecycle:
            if self._stopped:
                raise RuntimeError("this DevServer was stopped; create a new one")
            if self._httpd is None:
                cls = _IPv6HTTPServer if ":" in self.host else _HTTPServer
                httpd = cls((self.host, self.port), _Handler)
                httpd.devserver = self
                self.port = httpd.server_address[1]
                self._httpd = httpd
                self.started_at = time.time()
            return self._httpd

    def start(self) -> DevServer:
        """Bind (port 0 picks a free port) and serve on daemon threads; returns self."""
        httpd = self._bind()
        with self._lifecycle:
            if self._thread is None:
                self._serving = True
                self._thread = threading.Thread(
                    target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                    name="productos-devserver", daemon=True)
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C (or ``stop()`` from another thread), then clean up."""
        httpd = self._bind()
        self._serving = True
        try:
            httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, close the database and remove a temporary one (idempotent)."""
        with self._lifecycle:
            if self._stopped:
                return
            self._stopped = True
            httpd, thread = self._httpd, self._thread
        if httpd is not None:
            if thread is not None or self._serving:
                # shutdown() waits for a serve_forever loop, so only call it when one ran.
                httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self.store.close()
        self._remove_tempdir()

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8010``."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def set_definitions(self, definitions: Mapping[str, Any]) -> None:
        """Replace the flag definitions (ValueError when malformed); the ETag changes."""
        self.definitions.set(definitions)

    # -- request handling (called from handler threads) ----------------------------------

    def _check_token(self, tokens: Sequence[Any]) -> None:
        expected = self.project_api_key
        if expected is None:
            return
        if not tokens or any(t is None or t == "" for t in tokens):
            raise HTTPProblem(401, "missing_api_key",
                              "No project API key: send it as 'api_key' or 'token'.",
                              kind="authentication_error")
        for token in tokens:
            if not isinstance(token, str) or not hmac.compare_digest(token, expected):
                raise HTTPProblem(401, "invalid_api_key",
                                  "Project API key invalid. Check the project API key (phc_...).",
                                  kind="authentication_error")

    def handle_ingest(self, payload: Any) -> Dict[str, Any]:
        """Validate and store an ingestion body; returns the response body."""
        raw_events, token = _events_of(payload)
        tokens = [token] if token is not None else [_event_token(raw) for raw in raw_events]
        self._check_token(tokens or [None])
        now = _dt.datetime.now(_dt.timezone.utc)
        events = [_normalise_event(raw, i, now) for i, raw in enumerate(raw_events)]
        result = self.store.ingest(events)
        return {"status": 1, "received": len(events), "stored": result.stored,
                "duplicates": result.duplicates}

    def check_personal_key(self, authorization: Optional[str],
                           query: Mapping[str, List[str]]) -> None:
        """Raise 401 unless the Bearer key (and a given project token) are right."""
        expected = self.personal_api_key
        if expected is not None:
            scheme, _, key = (authorization or "").partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise HTTPProblem(401, "authentication_failed",
                                  "Send the personal API key as 'Authorization: Bearer phx_...'.",
                                  kind="authentication_error")
            if not hmac.compare_digest(key.strip(), expected):
                raise HTTPProblem(401, "authentication_failed",
                                  "Personal API key invalid. Check the personal API key.",
                                  kind="authentication_error")
        token = _first(query, "token")
        if token and self.project_api_key is not None and not hmac.compare_digest(
                token, self.project_api_key):
            raise HTTPProblem(401, "invalid_api_key",
                              "Project API key invalid. Check the project API key (phc_...).",
                              kind="authentication_error")

    def evaluation_context(self, distinct_id: str, *, groups: Mapping[str, str],
                           person_properties: Mapping[str, Any],
                           group_properties: Mapping[str, Mapping[str, Any]],
                           device_id: Optional[str] = None) -> EvaluationContext:
        """Build a context with stored person and group properties under the given ones."""
        person = {**self.store.person_properties(distinct_id), **person_properties}
        merged_groups = {
            gtype: {**self.store.group_properties(gtype, gkey),
                    **(group_properties.get(gtype) or {})}
            for gtype, gkey in groups.items()
        }
        return EvaluationContext(distinct_id=distinct_id, groups=dict(groups),
                                 person_properties=person, group_properties=merged_groups,
                                 device_id=device_id)

    def handle_flags(self, payload: Any, query: Mapping[str, List[str]]) -> Dict[str, Any]:
        """Evaluate flags for a ``/flags`` body; returns the v2 (or v1) response body."""
        if not isinstance(payload, Mapping):
            raise _bad("invalid_payload", "The /flags body must be a JSON object.")
        self._check_token([payload.get("api_key", payload.get("token"))])
        distinct_id = _text_id(payload.get("distinct_id"))
        if distinct_id is None:
            raise _bad("invalid_payload", "distinct_id is required (a non-empty string).")
        groups = payload.get("groups") or {}
        if not isinstance(groups, Mapping):
            raise _bad("invalid_payload", "groups must be an object of type -> key.")
        person_properties = payload.get("person_properties") or {}
        if not isinstance(person_properties, Mapping):
            raise _bad("invalid_payload", "person_properties must be an object.")
        group_properties = payload.get("group_properties") or {}
        if not isinstance(group_properties, Mapping) or not all(
                isinstance(v, Mapping) for v in group_properties.values()):
            raise _bad("invalid_payload", "group_properties must be an object of objects.")
        device_id = _text_id(payload.get("device_id"))
        keys = payload.get("flag_keys_to_evaluate")
        if keys is not None and (not isinstance(keys, list)
                                 or not all(isinstance(k, str) for k in keys)):
            raise _bad("invalid_payload", "flag_keys_to_evaluate must be a list of flag keys.")
        version = _int_param(query, "v", 1, 0, 100) or 1
        ctx = self.evaluation_context(
            distinct_id, groups={str(k): str(v) for k, v in groups.items()},
            person_properties=person_properties, group_properties=group_properties,
            device_id=device_id)
        results = server_evaluate(self.definitions.current(), ctx, keys)
        return flags_response(results, version)

    def handle_api(self, path: str, query: Mapping[str, List[str]]) -> Dict[str, Any]:
        """The viewer's JSON API."""
        if path == "/api/events":
            limit = _int_param(query, "limit", 100, 1, _MAX_API_LIMIT)
            after = _int_param(query, "after", None, 0, 2**62)
            events = self.store.events(limit=limit or 100, event=_first(query, "event") or None,
                                       distinct_id=_first(query, "distinct_id") or None,
                                       after=after)
            return {"events": events, "last_seq": self.store.last_seq()}
        if path == "/api/stats":
            state = self.definitions.current()
            return {
                **self.store.summary(),
                "by_event": self.store.counts_by_event(),
                "flags": len(state.document.get("flags", [])),
                "definitions_etag": state.etag,
                "db_path": self.db_path,
                "started_at": self.started_at,
                "uptime_seconds": None if self.started_at is None
                else round(time.time() - self.started_at, 3),
                "version": VERSION,
            }
        if path == "/api/flags":
            return self._api_flags(query)
        if path == "/api/person":
            distinct_id = _first(query, "distinct_id")
            if not distinct_id:
                raise _bad("invalid_parameter", "distinct_id is required.")
            person = self.store.person(distinct_id)
            if person is None:
                raise HTTPProblem(404, "not_found", f"No person with distinct_id {distinct_id!r}.",
                                  kind="invalid_request")
            return person
        return {"status": "ok", "version": VERSION}  # /_health

    def _api_flags(self, query: Mapping[str, List[str]]) -> Dict[str, Any]:
        state = self.definitions.current()
        flags = summarise_flags(state)
        distinct_id = _first(query, "distinct_id")
        if distinct_id:
            ctx = self.evaluation_context(distinct_id, groups={}, person_properties={},
                                          group_properties={})
            results = server_evaluate(state, ctx)
            for summary in flags:
                result = results.get(summary["key"])
                if result is not None:
                    summary["value"] = result.value
                    summary["reason"] = result.reason.description
        return {
            "flags": flags,
            "etag": state.etag,
            "source": state.source,
            "reload_error": self.definitions.reload_error,
            "problems": list(state.snapshot.problems),
            "group_type_mapping": dict(state.document.get("group_type_mapping") or {}),
            "cohorts": sorted(str(k) for k in (state.document.get("cohorts") or {})),
        }

