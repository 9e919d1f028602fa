"""What a route receives and returns: the request, the response, and the problem that refuses one.

The HTTP plumbing (``http.py``) builds a :class:`Request`, hands it to the routes and writes
back the :class:`Response` (or the :class:`HTTPProblem`) it gets; routes never see a socket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

JSON = "application/json"


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

    def response(self) -> Response:
        """The JSON error response that says so."""
        return Response.json(self.status, {"type": self.kind, "code": self.code,
                                           "detail": self.detail, "attr": self.attr},
                             headers=self.headers)


def bad_request(code: str, detail: str) -> HTTPProblem:
    """A 400 validation problem."""
    return HTTPProblem(400, code, detail)


@dataclass(frozen=True)
class Request:
    """One request as the routes see it; the body is read only when a route asks for it."""

    method: str  # HEAD arrives as GET
    path: str  # without the query string and trailing slashes ("/" for the root)
    query: Dict[str, List[str]]
    header: Callable[[str], Optional[str]]  # a header's value, or None
    read_json: Callable[[], Any]  # read, decompress and decode the body (HTTPProblem if bad)

    def json(self) -> Any:
        """The decoded JSON body."""
        return self.read_json()


@dataclass(frozen=True)
class Response:
    """What to send back. ``bare`` responses (304) carry only the headers given."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    bare: bool = False

    @classmethod
    def json(cls, status: int, payload: Any,
             headers: Optional[Mapping[str, str]] = None) -> Response:
        """A compact JSON response."""
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
        try:
            data = text.encode()
        except UnicodeEncodeError:  # a lone surrogate from stored data: JSON escapes carry it
            data = json.dumps(payload, separators=(",", ":"), default=str).encode()
        return cls(status, data, headers=dict(headers or {}))
