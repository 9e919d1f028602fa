"""HTTP: one session per client, endpoints, gzip, status mapping and Retry-After parsing.

This is the only module that imports ``requests``: its exceptions are mapped to
``productos.errors`` here, so nothing above this layer knows which HTTP library is used.
Retries and batching live in ``batch_sender``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import sys
import time
import zlib
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Union

from productos import errors
from productos._runtime.hosts import DEFAULT_HOST as DEFAULT_HOST  # re-exported
from productos._runtime.hosts import normalize_host
from productos._runtime.records import record
from productos.version import VERSION

if TYPE_CHECKING:  # requests and backoff are imported when first needed, not with productos
    import requests

log = logging.getLogger("productos")

BATCH_PATH = "/batch/"
FLAGS_PATH = "/flags/?v=2"
DEFINITIONS_PATH = "/flags/definitions"
LEGACY_DEFINITIONS_PATH = "/api/feature_flag/local_evaluation/"
USER_AGENT = f"productos-python/{VERSION}"

RETRYABLE_STATUSES = frozenset({408, 429})
# A Retry-After beyond this is honoured only up to it, so one confused proxy cannot park
# the consumer for hours; the batch still waits at least this long.
MAX_RETRY_AFTER = 120.0
# No word boundary in front: a key glued to other text (``token=phc_…``, ``\nphc_…``) must go too.
_KEY_PATTERN = re.compile(r"ph[cxs]_[A-Za-z0-9_\-]+")


def redact(text: str) -> str:
    """Remove anything shaped like a PostHog key from text bound for a log or an error."""
    return _KEY_PATTERN.sub("ph*_[redacted]", text)


def parse_http_date(value: Optional[str]) -> Optional[float]:
    """Return the epoch seconds of an HTTP date (``Date``, ``Retry-After``), or None."""
    if not value:
        return None
    import email.utils  # only callers that meet an HTTP date pay for this import

    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)
    return when.timestamp()


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Return the wait a Retry-After header asks for, in seconds (delta or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = parse_http_date(value)
        if when is None:
            return None
        seconds = when - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


# Events are repetitive JSON: level 1 makes a body about 10 % larger than level 6 in less
# than half the time (measured on /batch/ bodies), and compressing is most of the sender's
# CPU. The application's host pays that CPU; a few more bytes per batch cost it nothing.
GZIP_LEVEL = 1
_COMPRESS_TAKES_WBITS = sys.version_info >= (3, 11)


def gzip_bytes(body: bytes) -> bytes:
    """Return body gzipped (level 1: fast, nearly as small as higher levels for events)."""
    if _COMPRESS_TAKES_WBITS:
        # One call releases the GIL once; compressobj's compress() + flush() does it twice.
        return zlib.compress(body, GZIP_LEVEL, 31)
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # pragma: no cover - < 3.11
    return compressor.compress(body) + compressor.flush()


@record(frozen=True)
class Response:
    """What came back from one HTTP request."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """Return the decoded JSON body, or None when it is not JSON."""
        import json

        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def message(self) -> str:
        """Return a short, key-free description of the server's answer."""
        data = self.json()
        text = ""
        if isinstance(data, dict):
            for name in ("detail", "error", "message", "code"):
                if isinstance(data.get(name), str):
                    text = data[name]
                    break
        if not text:
            text = self.body[:200].decode("utf-8", "replace").strip()
        return redact(text[:200])


def error_for(response: Response) -> errors.APIError:
    """Map a non-200 answer to the matching productos error."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    status = response.status
    kind = errors.APIError
    if status == 429:
        kind = errors.RateLimitedError
    elif status in (401, 403):
        kind = errors.AuthenticationError
    return kind(status, response.message(), retry_after)


class Transport:
    """Makes HTTP requests to one host through one pooled session."""

    def __init__(self, host: Optional[str] = None, timeout: float = 15.0,
                 pool_size: int = 8) -> None:
        self.host = normalize_host(host)
        self.timeout = timeout
        self._pool_size = pool_size
        self._session = self._new_session()
        self._post_urls: Dict[str, str] = {}  # path -> the URL requests would prepare for it

    def _new_session(self) -> requests.Session:
        import requests
        from requests.adapters import HTTPAdapter
        from requests.utils import get_environ_proxies

        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self._pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        # Proxy settings are read from the environment once, here, instead of on every
        # request (with a netrc lookup) as trust_env would; netrc credentials never apply.
        session.proxies.update(get_environ_proxies(self.host))
        session.trust_env = False
        return session

    def reset_after_fork(self) -> None:
        """Give a forked child its own connections: sockets must never be shared across a fork."""
        self._session = self._new_session()

    def close(self) -> None:
        """Close pooled connections."""
        try:
            self._session.close()
        except Exception:  # closing is best effort
            log.debug("productos: error closing HTTP session", exc_info=True)

    def request(self, method: str, path: str, *, body: Optional[bytes] = None,
                headers: Optional[Mapping[str, str]] = None,
                params: Optional[Mapping[str, Any]] = None,
                timeout: Optional[float] = None) -> Response:
        """Make one request; raise ConnectError or RequestTimeoutError when no answer came."""
        import requests  # already loaded by the session; a dict lookup

        url = self.host + path
        try:
            raw = self._session.request(
                method, url, data=body, headers=dict(headers or {}), params=params,
                timeout=self.timeout if timeout is None else timeout, allow_redirects=False,
            )
            content = raw.content
        except requests.exceptions.RequestException as exc:
            raise _mapped(method, self.host, path, exc) from exc
        return Response(raw.status_code, raw.headers, content)

    def post_json(self, path: str, body: bytes, *, gzip: bool,
                  timeout: Optional[float] = None) -> Response:
        """POST an already-serialised JSON body, gzipped when asked.

        The hot path (every batch, every remote flag call) skips the session's per-request
        merging of settings, cookies and hooks, none of which productos uses: the request
        is built from the session's headers and sent by its adapter, which keeps the same
        pool, proxies and TLS settings. That halves the Python work of a request, which
        would otherwise hold the GIL against the application's threads.
        """
        import requests
        from requests.structures import CaseInsensitiveDict

        if gzip:
            body = gzip_bytes(body)
        session = self._session
        headers: CaseInsensitiveDict[Union[str, bytes]] = CaseInsensitiveDict(session.headers)
        headers["Content-Type"] = "application/json"
        if gzip:
            headers["Content-Encoding"] = "gzip"
        headers["Content-Length"] = str(len(body))
        prepared = requests.PreparedRequest()
        prepared.method = "POST"
        prepared.url = self._post_url(path)
        prepared.headers = headers
        prepared.body = body
        try:
            raw = session.get_adapter(prepared.url).send(
                prepared, timeout=self.timeout if timeout is None else timeout,
                proxies=session.proxies, verify=session.verify, cert=session.cert)
            content = raw.content
        except requests.exceptions.RequestException as exc:
            raise _mapped("POST", self.host, path, exc) from exc
        return Response(raw.status_code, raw.headers, content)

    def _post_url(self, path: str) -> str:
        url = self._post_urls.get(path)
        if url is None:
            import requests

            prepared = requests.PreparedRequest()
            prepared.prepare_url(self.host + path, None)
            url = self._post_urls[path] = str(prepared.url)
        return url


def _mapped(method: str, host: str, path: str, exc: BaseException) -> errors.TransportError:
    """Return the productos error for a requests exception (the one place they are mapped)."""
    import requests

    where = host + path.split("?")[0]
    if isinstance(exc, requests.exceptions.Timeout):
        return errors.RequestTimeoutError(f"{method} {where} timed out")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return errors.ConnectError(f"{method} {where} failed: {_short(exc)}")
    return errors.TransportError(redact(f"{method} {path} failed: {_short(exc)}"))


def _short(exc: BaseException) -> str:
    text = str(exc)
    return redact(text if len(text) <= 300 else text[:300] + "…")
