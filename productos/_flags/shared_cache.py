"""One poller for a fleet: the process holding a lease polls; the others read what it published.

``SharedFetch`` stands where the poller's ``fetch`` stands. Each poll it asks the cache for the
lease: the holder makes the (ETag-conditional) definitions request and publishes the raw body
under a version (a hash of its content); a follower reads that version, cheaply, and loads and
parses the body only when it differs from the one in force. When the cache cannot be reached,
or holds a value that does not parse, the last good definitions stay in force and (by default)
the process polls the endpoint directly until the cache answers again.

The token the poller hands back (``etag`` of the snapshot in force) is that version, so a
follower's "nothing changed" is the poller's ordinary ``NOT_MODIFIED``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from typing import Any, Callable, Optional, Protocol, runtime_checkable

from productos._flags.source import DefinitionsFetch, FetchOutcome, definitions_body_problem
from productos._runtime.records import record

__all__ = [
    "CachedDefinitions", "FlagDefinitionsCache", "SharedFetch", "content_version",
    "namespace_for",
]

log = logging.getLogger("productos")

# How long a follower with no definitions at all waits for the holder's first publication
# before it asks the endpoint itself (at most one poll interval).
FIRST_PUBLICATION_WAIT = 2.0


@record(frozen=True)
class CachedDefinitions:
    """One published definitions document: the raw JSON body, the server's ETag for it,
    when it was fetched (``time.time()``) and its version (which changes with the body)."""

    body: bytes
    etag: Optional[str]
    fetched_at: float
    version: str


@runtime_checkable
class FlagDefinitionsCache(Protocol):
    """A store shared by the processes of one project: a lease and one published document.

    Pass an object with these methods as ``Client(flag_definitions_cache=...)`` to bring your
    own store. Any method may raise: the client then treats the cache as unreachable (keeps
    its definitions, polls directly) and tries it again at the next poll. A store serves one
    project; namespace it yourself when several share it.
    """

    def acquire_lease(self, owner: str, ttl: float) -> bool:
        """Take the lease for ``owner`` (or renew it when owner holds it) for ``ttl`` seconds;
        return True when owner holds it afterwards."""
        ...

    def release_lease(self, owner: str) -> None:
        """Give the lease up if ``owner`` holds it (on shutdown)."""
        ...

    def version(self) -> Optional[str]:
        """Return the version of the published document (None when there is none); cheap."""
        ...

    def load(self) -> Optional[CachedDefinitions]:
        """Return the published document, or None."""
        ...

    def store(self, entry: CachedDefinitions, owner: str) -> None:
        """Publish ``entry`` (a store may refuse when ``owner`` no longer holds the lease)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def namespace_for(project_api_key: str) -> str:
    """The cache namespace of a project: a hash of its key, so projects never mix."""
    return hashlib.sha256(project_api_key.encode()).hexdigest()[:16]


def content_version(body: bytes) -> str:
    """The version of a definitions body: a hash of its bytes."""
    return hashlib.sha256(body).hexdigest()[:24]


def canonical_body(data: Any) -> bytes:
    """Serialise a definitions document the same way in every process."""
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


@record(frozen=True)
class _Known:
    """The definitions this process has in force: their version, HTTP ETag and body."""

    version: str
    etag: Optional[str]
    body: Optional[bytes]


class SharedFetch:
    """The poller's ``fetch`` when definitions may be shared (``cache`` None: always direct).

    ``role`` is "holder", "follower" or "direct"; ``requests`` counts the definitions
    requests this process made; ``cache_health`` is "ok", or why the cache is not used.
    """

    def __init__(self, fetch: Callable[[Optional[str]], DefinitionsFetch],
                 cache: Optional[FlagDefinitionsCache], *, interval: float,
                 direct_fallback: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self._fetch = fetch
        self._cache = cache
        self._interval = interval
        self._ttl = 2 * interval  # a dead holder is replaced within two intervals
        self._direct_fallback = direct_fallback
        self._clock = clock
        self._owner = secrets.token_hex(16)
        self._known: Optional[_Known] = None
        self.role = "direct" if cache is None else "starting"
        self.requests = 0
        self.fetched_at: Optional[float] = None
        self.cache_health: Optional[str] = None if cache is None else "ok"

    # --- the poller's hooks ----------------------------------------------------------------

    def __call__(self, token: Optional[str]) -> DefinitionsFetch:
        """Make one poll: lead, follow, or (degraded) fetch directly."""
        known = self._known if token is not None and self._known is not None \
            and self._known.version == token else None
        cache = self._cache
        if cache is None:
            return self._direct(known)
        try:
            leads = cache.acquire_lease(self._owner, self._ttl)
        except Exception as exc:
            return self._degraded(exc, known)
        if leads:
            return self._lead(cache, known)
        return self._follow(cache, known)

    def pace(self, interval: float) -> float:
        """Seconds to the next poll: followers look twice an interval (a version read is
        cheap), so a change reaches them within about 1.5 intervals of reaching the server."""
        return interval / 2 if self.role == "follower" else interval

    def close(self) -> None:
        """Give the lease up and close the cache (never raises)."""
        cache = self._cache
        if cache is None:
            return
        try:
            cache.release_lease(self._owner)
        except Exception as exc:
            log.debug("productos: could not release the flag definitions lease: %r", exc)
        try:
            cache.close()
        except Exception as exc:
            log.debug("productos: could not close the flag definitions cache: %r", exc)

    def reset_after_fork(self) -> None:
        """A forked child is another contender: the parent's lease is not its own."""
        self._owner = secrets.token_hex(16)
        self.requests = 0
        if self._cache is not None:
            self.role = "starting"
            reset = getattr(self._cache, "reset_after_fork", None)
            if reset is not None:
                reset()

    # --- roles ------------------------------------------------------------------------------

    def _lead(self, cache: FlagDefinitionsCache, known: Optional[_Known]) -> DefinitionsFetch:
        self.role = "holder"
        result = self._direct(known, publishing=True)
        mine = self._known
        if result.outcome in (FetchOutcome.OK, FetchOutcome.NOT_MODIFIED) and mine is not None \
                and mine.body is not None and self.fetched_at is not None:
            try:
                # A 304 re-publishes only when the cache lost or garbled the document.
                if result.outcome is FetchOutcome.OK or cache.version() != mine.version:
                    cache.store(CachedDefinitions(mine.body, mine.etag, self.fetched_at,
                                                  mine.version), self._owner)
                self._healthy()
            except Exception as exc:
                self._unhealthy(exc)
        return result

    def _follow(self, cache: FlagDefinitionsCache, known: Optional[_Known]) -> DefinitionsFetch:
        self.role = "follower"
        try:
            version = cache.version()
            if version is None and known is None:
                version = self._wait_for_publication(cache)
            if version is None:
                self._healthy()
                if known is not None:  # the holder has not published yet: keep ours
                    return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=known.version)
                return self._direct(None)
            if known is not None and version == known.version:
                self._healthy()
                return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=known.version)
            entry = cache.load()
        except Exception as exc:
            return self._degraded(exc, known)
        self._healthy()
        if entry is None:
            return (DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=known.version)
                    if known is not None else self._direct(None))
        try:
            data = json.loads(entry.body)
            problem = definitions_body_problem(data)
        except (TypeError, ValueError) as exc:
            problem = f"not JSON ({exc.__class__.__name__})"
        if problem is not None:
            if self.cache_health == "ok":
                log.warning("productos: the cached flag definitions (version %s) are unusable "
                            "(%s); ignoring them and keeping the last good ones",
                            entry.version, problem)
            self.cache_health = f"corrupt value ignored: {problem}"
            if known is not None:
                return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=known.version)
            return self._direct(None)
        self._known = _Known(entry.version, entry.etag, entry.body)
        self.fetched_at = entry.fetched_at
        return DefinitionsFetch(FetchOutcome.OK, data=data, etag=entry.version)

    def _wait_for_publication(self, cache: FlagDefinitionsCache) -> Optional[str]:
        deadline = time.monotonic() + min(self._interval, FIRST_PUBLICATION_WAIT)
        while time.monotonic() < deadline:
            time.sleep(0.05)
            version = cache.version()
            if version is not None:
                return version
        return None

    def _degraded(self, exc: BaseException, known: Optional[_Known]) -> DefinitionsFetch:
        self._unhealthy(exc)
        if self._direct_fallback:
            self.role = "direct"
            return self._direct(known)
        if known is not None:
            return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=known.version)
        return DefinitionsFetch(FetchOutcome.ERROR, error=RuntimeError(
            "the flag definitions cache is unreachable and direct polling is off"))

    def _direct(self, known: Optional[_Known], publishing: bool = False) -> DefinitionsFetch:
        self.requests += 1
        result = self._fetch(None if known is None else known.etag)
        if result.outcome is FetchOutcome.OK and result.data is not None:
            self.fetched_at = self._clock()
            if self._cache is None:
                # Nothing is shared: the server's ETag is the version.
                version = result.etag or f"direct-{self.requests}"
                self._known = _Known(version, result.etag, None)
            else:
                body = canonical_body(result.data)
                self._known = _Known(content_version(body), result.etag, body)
            return DefinitionsFetch(FetchOutcome.OK, data=result.data,
                                    etag=self._known.version)
        if result.outcome is FetchOutcome.NOT_MODIFIED and known is not None:
            self.fetched_at = self._clock()
            return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=known.version)
        return result

    # --- health -----------------------------------------------------------------------------

    def _healthy(self) -> None:
        if self.cache_health is not None and self.cache_health.startswith("unreachable"):
            log.info("productos: the flag definitions cache is reachable again")
        self.cache_health = "ok"

    def _unhealthy(self, exc: BaseException) -> None:
        if self.cache_health is None or not self.cache_health.startswith("unreachable"):
            # Once per outage, not once per poll.
            log.warning("productos: the flag definitions cache is unreachable (%s); keeping "
                        "the definitions in force%s", type(exc).__name__,
                        " and polling directly" if self._direct_fallback else "")
        self.cache_health = f"unreachable: {type(exc).__name__}"
