"""HTTP: one session per client, endpoints, gzip, status mapping, Retry-After and retries.

This is the only module that imports ``requests``: its exceptions are mapped to
``productos.errors`` here, so nothing above this layer knows which HTTP library is used.
"""

from __future__ import annotations

import datetime as _dt
import logging
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from productos import errors
from productos.version import VERSION

if TYPE_CHECKING:  # requests and backoff are imported when first needed, not with productos
    import requests

log = logging.getLogger("productos")

DEFAULT_HOST = "https://us.i.posthog.com"
HOST_ALIASES = {
    "https://app.posthog.com": DEFAULT_HOST,
    "https://us.posthog.com": DEFAULT_HOST,
    "https://eu.posthog.com": "https://eu.i.posthog.com",
}
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


def normalize_host(host: Optional[str]) -> str:
    """Return the base URL to talk to: aliases mapped, trailing slashes stripped."""
    if not host:
        return DEFAULT_HOST
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    return HOST_ALIASES.get(host.lower().replace("http://", "https://", 1), host)


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


def gzip_bytes(body: bytes) -> bytes:
    """Return body gzipped; level 6 gets most of level 9's gain in a fraction of the time."""
    if sys.version_info >= (3, 11):
        # One call releases the GIL once; compressobj's compress() + flush() does it twice.
        return zlib.compress(body, 6, 31)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # pragma: no cover - Python < 3.11
    return compressor.compress(body) + compressor.flush()


@dataclass(frozen=True)
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
        """Make one request; raise ConnectError or TimeoutError when no answer came."""
        import requests  # already loaded by the session; a dict lookup

        url = self.host + path
        try:
            raw = self._session.request(
                method, url, data=body, headers=dict(headers or {}), params=params,
                timeout=self.timeout if timeout is None else timeout, allow_redirects=False,
            )
            content = raw.content
        except requests.exceptions.Timeout as exc:
            where = self.host + path.split("?")[0]
            raise errors.TimeoutError(f"{method} {where} timed out") from exc
        except requests.exceptions.ConnectionError as exc:
            raise errors.ConnectError(
                f"{method} {self.host}{path.split('?')[0]} failed: {_short(exc)}") from exc
        except requests.exceptions.RequestException as exc:
            raise errors.TransportError(redact(f"{method} {path} failed: {_short(exc)}")) from exc
        return Response(raw.status_code, raw.headers, content)

    def post_json(self, path: str, body: bytes, *, gzip: bool,
                  timeout: Optional[float] = None) -> Response:
        """POST an already-serialised JSON body, gzipped when asked."""
        headers = {"Content-Type": "application/json"}
        if gzip:
            body = gzip_bytes(body)
            headers["Content-Encoding"] = "gzip"
        return self.request("POST", path, body=body, headers=headers, timeout=timeout)


def _short(exc: BaseException) -> str:
    text = str(exc)
    return redact(text if len(text) <= 300 else text[:300] + "…")


# --- retries --------------------------------------------------------------------------


def equal_jitter(value: float) -> float:
    """Return a wait between half of value and value: spread out, yet never near zero."""
    import backoff  # imported at the first retry: it pulls in asyncio

    return value / 2 + backoff.full_jitter(value / 2)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times and how long to wait between attempts for transient failures."""

    max_retries: int = 5
    base: float = 1.0
    cap: float = 30.0
    jitter: Callable[[float], float] = equal_jitter

    def delays(self) -> Iterator[float]:
        """Yield the wait before each retry: exponential, jittered, capped."""
        import backoff

        waits = backoff.expo(base=2, factor=self.base, max_value=self.cap)
        next(waits)  # backoff's generators are primed with one empty step
        for _ in range(self.max_retries):
            yield min(self.cap, self.jitter(next(waits)))


def is_retryable(error: BaseException) -> bool:
    """Tell whether an attempt that failed this way is worth making again."""
    if isinstance(error, errors.APIError):
        return error.status in RETRYABLE_STATUSES or error.status >= 500
    return isinstance(error, errors.TransportError)


# --- sending batches ------------------------------------------------------------------


@dataclass
class BatchOutcome:
    """What became of the events in one batch handed to a sender."""

    delivered: int = 0
    retries: int = 0
    dropped: Dict[str, int] = field(default_factory=dict)
    failures: List[tuple] = field(default_factory=list)  # (reason, error, items) for on_error

    def drop(self, reason: str, items: Sequence[bytes], error: BaseException) -> None:
        """Record that items were given up for reason."""
        self.dropped[reason] = self.dropped.get(reason, 0) + len(items)
        self.failures.append((reason, error, list(items)))

    def merge(self, other: BatchOutcome) -> None:
        """Fold another outcome into this one."""
        self.delivered += other.delivered
        self.retries += other.retries
        for reason, count in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.failures.extend(other.failures)


class BatchSender:
    """Sends serialised events to ``/batch/`` with retries, splitting on 413."""

    def __init__(self, transport: Transport, api_key: str, *, gzip: bool = True,
                 historical_migration: bool = False,
                 retry: RetryPolicy = RetryPolicy(),
                 wait: Optional[Callable[[float], bool]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.transport = transport
        self.gzip = gzip
        self.retry = retry
        self._clock = clock
        self._cancel = threading.Event()
        # ``wait(seconds) -> cancelled``; an Event makes back-off sleeps interruptible.
        self._wait = wait or self._cancel.wait
        import json

        migration = "true" if historical_migration else "false"
        self._head = (
            f'{{"api_key":{json.dumps(api_key)},"historical_migration":{migration},"batch":['
        ).encode()

    def cancel(self) -> None:
        """Cut any back-off wait short: pending retries give up at once."""
        self._cancel.set()

    def reset_after_fork(self) -> None:
        """Start the child with a clear cancel flag and its own connections."""
        self._cancel = threading.Event()
        self.transport.reset_after_fork()

    def body(self, items: Sequence[bytes]) -> bytes:
        """Return the /batch/ request body for already-serialised events."""
        sent_at = _dt.datetime.now(_dt.timezone.utc).isoformat()
        return b"".join((self._head, b",".join(items), b'],"sent_at":"',
                         sent_at.encode(), b'"}'))

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        """Deliver items, retrying transient failures until the policy or the deadline ends."""
        outcome = BatchOutcome()
        if not items:
            return outcome
        delays = self.retry.delays()
        while True:
            try:
                response = self.transport.post_json(BATCH_PATH, self.body(items), gzip=self.gzip)
                if response.status == 200:
                    outcome.delivered += len(items)
                    return outcome
                error: errors.TransportError = error_for(response)
            except errors.TransportError as exc:
                error = exc
            if isinstance(error, errors.APIError) and error.status == 413:
                return self._split(items, deadline, outcome, error)
            if not is_retryable(error):
                outcome.drop("rejected", items, error)
                return outcome
            delay = next(delays, None)
            if delay is None:
                outcome.drop("retries_exhausted", items, error)
                return outcome
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
            if deadline is not None and self._clock() + delay > deadline:
                outcome.drop("deadline_exceeded", items, error)
                return outcome
            log.debug("productos: batch of %d failed (%s); retrying in %.1fs",
                      len(items), error, delay)
            if self._wait(delay) or self._cancel.is_set():
                outcome.drop("cancelled", items, error)
                return outcome
            outcome.retries += 1

    def _split(self, items: Sequence[bytes], deadline: Optional[float],
               outcome: BatchOutcome, error: BaseException) -> BatchOutcome:
        if len(items) == 1:
            outcome.drop("too_large", items, error)
            return outcome
        middle = len(items) // 2
        outcome.merge(self.send(items[:middle], deadline))
        outcome.merge(self.send(items[middle:], deadline))
        return outcome
