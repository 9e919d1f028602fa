"""HTTP plumbing on ``http.server`` threads: read and decode bodies, write responses, never crash.

The handler turns each request into a :class:`~productos.devserver.messages.Request` for the
application (the routes), writes back what it returns, answers every :class:`HTTPProblem` as
PostHog-style JSON, and turns any other exception into a 500: no request can stop the server.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Protocol, Tuple
from urllib.parse import parse_qs, urlsplit

from productos.devserver.messages import HTTPProblem, Request, Response, bad_request
from productos.version import VERSION

log = logging.getLogger("productos.devserver")

_DRAIN_LIMIT = 128 * 1024 * 1024  # read and discard an oversize body up to this, to answer 413
_CHUNK = 1024 * 1024


class App(Protocol):
    """What the plumbing serves: a body size cap and a request → response function."""

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted (after decompression too)."""

    def handle(self, request: Request) -> Response:
        """Answer one request (raise HTTPProblem to refuse it)."""


class HTTPServer(ThreadingHTTPServer):
    """A threading server whose handler threads never keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    app: App


class IPv6HTTPServer(HTTPServer):
    """The same on an IPv6 address."""

    address_family = socket.AF_INET6


def make_server(host: str, port: int, app: App) -> HTTPServer:
    """Bind a server for app on host:port (port 0 picks a free one); raises OSError."""
    cls = IPv6HTTPServer if ":" in host else HTTPServer
    httpd = cls((host, port), Handler)
    httpd.app = app
    return httpd


# --- request bodies -----------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def parse_json(body: bytes) -> Any:
    """Decode a UTF-8 JSON body strictly (no NaN, no lone surrogates); HTTPProblem if bad."""
    if not body.strip():
        raise bad_request("invalid_payload", "The request body is empty.")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request("invalid_payload",
                          f"The request body is not UTF-8: {exc.reason}.") from exc
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise bad_request("invalid_payload", "The request body is nested too deeply.") from exc
    except ValueError as exc:
        raise bad_request("invalid_payload",
                          f"The request body is not valid JSON: {exc}.") from exc
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


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo gzip or deflate without ever holding more than limit bytes; HTTPProblem if bad."""
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
        raise bad_request("invalid_payload",
                          f"The {encoding} body cannot be decompressed: {exc}.") from exc
    if len(data) > limit:
        raise HTTPProblem(413, "payload_too_large",
                          f"The decompressed body exceeds {limit} bytes.")
    if not decoder.eof:
        raise bad_request("invalid_payload", f"The {encoding} body is truncated.")
    return data


# --- the handler --------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """One connection: keep-alive, JSON errors, bodies read only when a route wants them."""

    protocol_version = "HTTP/1.1"  # keep-alive, so SDK sessions reuse connections
    # Headers and body go out in two writes: with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers, about 40 ms per request on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = f"productos-devserver/{VERSION}"
    timeout = 30  # a stalled client frees its thread
    server: HTTPServer

    # A garbled request line must still get a status line back, not an HTTP/0.9 bare body.
    default_request_version = "HTTP/1.0"

    _has_body = False
    _body_read = False

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

    # -- one request ----------------------------------------------------------------------

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
            self._write(HTTPProblem(400, "invalid_request",
                                    "The request has more than one Content-Length header.",
                                    attr="Content-Length").response())
            return
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        query = parse_qs(url.query, keep_blank_values=True)
        request = Request(method, path, query, self.headers.get,
                          lambda: parse_json(self._read_body(query)))
        try:
            self._write(self.server.app.handle(request))
        except HTTPProblem as problem:
            self._write(problem.response())
        except (socket.timeout, ConnectionError):
            self.close_connection = True  # the client stalled or went away; nobody to answer
        except Exception:
            log.exception("productos devserver: error handling %s %s", method, url.path)
            self.close_connection = True
            self._write(HTTPProblem(500, "server_error",
                                    "Internal dev server error; see its log.",
                                    kind="server_error").response())

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        if response.bare:
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = response.body
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if self._has_body and not self._body_read:
            # An unread body would be parsed as the next request on this connection.
            self.close_connection = True
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _read_body(self, query: Dict[str, List[str]]) -> bytes:
        limit = self.server.app.max_body_bytes
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
                raise bad_request("invalid_request", "Content-Length is not a number.") from None
            if length > limit:
                self._drain(length)
                raise HTTPProblem(413, "payload_too_large",
                                  f"The request body ({length} bytes) exceeds {limit} bytes.")
            body = self.rfile.read(length)
            if len(body) < length:
                self.close_connection = True
                raise bad_request("invalid_request", "The request body ended early.")
        self._body_read = True
        encoding = (self.headers.get("Content-Encoding") or "").strip().lower()
        compression = (query.get("compression") or [""])[0].lower()
        if compression in ("gzip", "gzip-js") and not encoding:
            encoding = "gzip"  # posthog-js says so in the query string
        if not encoding and body[:2] == b"\x1f\x8b":
            encoding = "gzip"  # gzip magic with no header: decode rather than fail as JSON
        if encoding and encoding != "identity":
            body = decompress(body, encoding, limit)
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
                raise bad_request("invalid_request", "Malformed chunked body.") from None
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
        raise bad_request("invalid_request", "Malformed chunked body.")
