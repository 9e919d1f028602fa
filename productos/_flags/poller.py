"""Keeps flag definitions fresh: a background loop that fetches, parses and swaps a snapshot.

The poller knows nothing of HTTP (it calls an injected ``fetch``) nor of parsing details
(it calls an injected ``parse``). Readers get the current snapshot with one attribute read:
a new snapshot is built completely, then swapped in with one assignment, so no reader ever
sees half an update and none takes a lock.

Polls never overlap (the background loop and ``load_feature_flags()`` take turns), and the
ETag sent with a request is that of the snapshot in force: a ``304`` therefore only ever
confirms definitions that are already in place, never ones another poll is still parsing.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from typing import Any, Callable, Generic, Mapping, Optional, TypeVar

from productos._flags.source import DefinitionsFetch, FetchOutcome
from productos._runtime.records import record

log = logging.getLogger("productos")

S = TypeVar("S")


class SourceState(str, enum.Enum):
    """Where the definitions stand."""

    INITIALIZING = "initializing"  # no answer yet
    VALID = "valid"                # the last fetch succeeded (or said nothing changed)
    INTERRUPTED = "interrupted"    # the last fetch failed; the previous snapshot is kept
    OFF = "off"                    # a key was refused or the quota is used up: no definitions


@record(frozen=True)
class SourceStatus:
    """The state of the definitions source and the last error, if any."""

    state: SourceState
    last_error: Optional[str] = None
    since: float = 0.0  # time.monotonic() of the last state change
    # Where this process gets its definitions: "holder" (it polls for a shared cache),
    # "follower" (it reads the shared cache), "direct" (it polls alone), "file" or "given".
    source: Optional[str] = None
    age: Optional[float] = None  # seconds since the definitions in force were fetched
    polls: int = 0  # definitions requests made by this process
    cache: Optional[str] = None  # the shared cache's health: "ok", or what is wrong


class SnapshotHolder(Generic[S]):
    """Holds the current snapshot; reading it is one attribute access, swapping one assignment."""

    def __init__(self, initial: S) -> None:
        self.current = initial
        # Called with (old, new) after each swap that replaces the snapshot (change listeners).
        self.on_swap: Optional[Callable[[S, S], None]] = None

    def get(self) -> S:
        """Return the snapshot in force."""
        return self.current

    def swap(self, snapshot: S) -> None:
        """Replace the snapshot in one step."""
        old, self.current = self.current, snapshot
        on_swap = self.on_swap
        if on_swap is not None and old is not snapshot:
            on_swap(old, snapshot)


class Poller(Generic[S]):
    """Fetches definitions now and every ``interval`` seconds (with jitter) on its own thread.

    ``fetch(etag)`` makes one request, conditional on ``etag`` when it is not None.
    """

    def __init__(self, fetch: Callable[[Optional[str]], DefinitionsFetch],
                 parse: Callable[[Mapping[str, Any]], S], holder: SnapshotHolder[S],
                 empty: S, *, interval: float = 30.0, jitter: float = 0.1,
                 name: str = "productos-poller",
                 pace: Optional[Callable[[float], float]] = None) -> None:
        self._fetch = fetch
        self._parse = parse
        self._holder = holder
        self._empty = empty
        self._interval = interval
        self._jitter = jitter
        self._name = name
        self._pace = pace  # the next wait, from the interval (a shared cache's followers)
        # The ETag and the snapshot it describes, set together once that snapshot is in force.
        self._etag: Optional[str] = None
        self._applied: Optional[S] = None
        self._init_state()

    def _init_state(self) -> None:
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._start_lock = threading.Lock()
        self._poll_lock = threading.Lock()  # one poll at a time; new after fork
        self._polls_done = 0
        self._thread: Optional[threading.Thread] = None
        self.status = SourceStatus(SourceState.INITIALIZING, since=time.monotonic())

    # --- control ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background loop once; later calls do nothing."""
        with self._start_lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            try:
                self._thread.start()
            except RuntimeError:  # interpreter shutting down
                self._thread = None

    @property
    def fetcher(self) -> Any:
        """The fetch this poller calls (a shared cache's or a file watch's status lives there)."""
        return self._fetch

    @property
    def needs_start(self) -> bool:
        """True when no loop runs yet and none was stopped (e.g. in a forked child)."""
        return self._thread is None and not self._stop.is_set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the loop; an in-flight fetch finishes on its own."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        close = getattr(self._fetch, "close", None)  # a shared cache gives its lease up
        if close is not None:
            close()

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to timeout for the first fetch to finish; return True if it has."""
        return self._ready.wait(timeout) if timeout > 0 else self._ready.is_set()

    def reset_after_fork(self) -> None:
        """Give a forked child its own loop (started again on first use)."""
        was_running = self._thread is not None and not self._stop.is_set()
        reset = getattr(self._fetch, "reset_after_fork", None)
        if reset is not None:
            reset()
        self._init_state()
        if was_running:
            self._ready.set()  # the child inherited the parent's snapshot
            self.status = SourceStatus(SourceState.VALID, since=time.monotonic())

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            interval = self._interval if self._pace is None else self._pace(self._interval)
            spread = interval * self._jitter
            if self._stop.wait(interval + random.uniform(-spread, spread)):
                return

    def poll_once(self) -> SourceStatus:
        """Fetch once, apply the answer, and return the new status (never raises).

        A call made while another poll runs waits for it, then fetches again itself, except
        when that poll was the first load and it succeeded: then the definitions this call
        was to load are in place, and another request would only add a round trip.
        """
        first_load = self.status.state is SourceState.INITIALIZING
        seen = self._polls_done
        with self._poll_lock:
            if first_load and self._polls_done != seen \
                    and self.status.state is SourceState.VALID:
                return self.status
            try:
                self._poll()
            except Exception as exc:  # the poller must survive anything a fetch or parse does
                log.exception("productos: unexpected error while loading flag definitions")
                self._set(SourceState.INTERRUPTED, f"internal error: {exc!r}")
            finally:
                # Only now: the outcome of this poll (a parsed snapshot included) is in place.
                self._polls_done += 1
                self._ready.set()
            return self.status

    def _poll(self) -> None:
        etag = self._etag_in_force()
        result = self._fetch(etag)
        if result.outcome is FetchOutcome.NOT_MODIFIED and self._etag_in_force() != etag:
            # The snapshot that ETag described was replaced meanwhile: ask for the full body.
            result = self._fetch(None)
        self._apply(result)

    def _etag_in_force(self) -> Optional[str]:
        if self._etag is not None and self._holder.get() is self._applied:
            return self._etag
        return None

    def _apply(self, result: DefinitionsFetch) -> None:
        outcome = result.outcome
        if outcome is FetchOutcome.OK and result.data is not None:
            snapshot = self._parse(result.data)
            self._holder.swap(snapshot)
            self._applied, self._etag = snapshot, result.etag
            self._set(SourceState.VALID, None)
        elif outcome is FetchOutcome.NOT_MODIFIED and result.etag is not None \
                and result.etag == self._etag_in_force():
            self._set(SourceState.VALID, None)
        elif outcome in (FetchOutcome.UNAUTHORIZED, FetchOutcome.QUOTA_LIMITED):
            self._holder.swap(self._empty)
            self._applied, self._etag = None, None
            message = ("the personal API key was refused: check personal_api_key (a phx_ "
                       "personal key or phs_ project secret key with feature flag access)"
                       if outcome is FetchOutcome.UNAUTHORIZED
                       else "the feature flag quota is used up")
            if self.status.state is not SourceState.OFF:
                log.error("productos: flag definitions unavailable: %s; flags will not be "
                          "evaluated locally", message)
            self._set(SourceState.OFF, message)
        else:
            if result.error:
                message = str(result.error)
            elif outcome is FetchOutcome.NOT_MODIFIED:
                message = "not modified, but no definitions are in place"
            else:
                message = "unknown error"
            if self.status.state is not SourceState.INTERRUPTED:
                # Once per interruption, not once per poll.
                log.warning("productos: could not load flag definitions (%s); keeping the "
                            "last good ones", message)
            self._set(SourceState.INTERRUPTED, message)

    def _set(self, state: SourceState, error: Optional[str]) -> None:
        if self.status.state is not state or self.status.last_error != error:
            self.status = SourceStatus(state, error, time.monotonic())
