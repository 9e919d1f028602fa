"""The batching consumer: a bounded buffer drained by a background thread through a Sender.

The caller's side (``put``) is a length check and a ``deque.append``, with no I/O; it takes
a lock only when ``max_queue_bytes`` is set (to count bytes) or the buffer is full. A full
buffer applies the overflow policy on the caller's thread: ``drop_new`` refuses the event,
``drop_old`` pops the oldest ones there, ``block`` waits up to ``block_timeout`` for room
(so does any policy when the sender stores locally: it makes room in milliseconds). As the
buffer fills, ``put`` also hands the GIL to the sender now and then (``time.sleep(0)``).

The worker sleeps on one ``threading.Event`` that is set when a batch's worth of events is
waiting, by ``flush()`` and by ``shutdown()``; otherwise it wakes every ``flush_interval``.
Each time it wakes it sends what is waiting, in batches bounded by count and bytes. When
someone waits for the drain (a flush or shutdown), short-lived helper threads send batches
beside it, up to ``max_concurrent_requests``. Items therefore leave the buffer from several
threads (the worker, its helpers, a ``drop_old`` caller), so the counters they move
together (``taken``, ``in_flight``, ``queued_bytes``) change under ``_count_lock``.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from typing import Callable, Deque, List, Literal, Optional, Protocol, Sequence, Tuple, get_args

from productos import errors
from productos._capture.events import MAX_BATCH_BYTES
from productos._delivery.outcome import BatchOutcome, DropReason

__all__ = ["OVERFLOW_POLICIES", "BatchOutcome", "Consumer", "DropReason", "OnFull", "Sender"]

log = logging.getLogger("productos")

# Marks the threads that run a consumer's sends, so callbacks on them can be told apart.
_local = threading.local()

# What a full buffer does with the next event; Options.on_full takes the same names.
OnFull = Literal["drop_new", "drop_old", "block"]
OVERFLOW_POLICIES: Tuple[OnFull, ...] = get_args(OnFull)

# The defaults of a Consumer, written once: Options (productos/_runtime/options.py) takes
# its defaults for the same settings from here, so a Client's consumer and one built
# directly behave alike. (This module must not import options; options imports it.)
DEFAULT_FLUSH_AT = 100
DEFAULT_FLUSH_INTERVAL = 0.5
DEFAULT_MAX_QUEUE_SIZE = 10_000
DEFAULT_MAX_BATCH_SIZE = 2_000
DEFAULT_ON_FULL: OnFull = "drop_new"
DEFAULT_BLOCK_TIMEOUT = 0.5
DEFAULT_MAX_CONCURRENT_REQUESTS = 4

# A drain expected to take longer than this, one batch at a time, is spread over helper
# threads (up to max_concurrent_requests); a quicker one is left to the worker alone.
FAN_OUT_AFTER_SECONDS = 0.1

# Room for the envelope around the events: api_key, sent_at and the JSON punctuation.
_ENVELOPE_BYTES = 512


class Sender(Protocol):
    """Delivers a batch of serialised events and says what became of them.

    A sender that stores locally (a spool this process owns) takes a batch in milliseconds
    whatever the network does, so the consumer treats it differently: a full buffer waits
    for it briefly instead of dropping, one writer is enough, and a flush or shutdown
    deadline never gives items up.
    """

    @property
    def stores_locally(self) -> bool:
        """True when ``send`` writes to storage this process owns instead of the network."""

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        """Send items; never raise."""

    def cancel(self) -> None:
        """Abandon retries that are waiting."""

    def reset_after_fork(self) -> None:
        """Drop state that must not cross a fork (sockets, events)."""


class Consumer:
    """Buffers serialised events and ships them from a background thread (plus drain helpers)."""

    def __init__(self, sender: Sender, *, on_outcome: Callable[[BatchOutcome], None],
                 on_reject: Callable[[DropReason, bytes], None],
                 flush_at: int = DEFAULT_FLUSH_AT,
                 flush_interval: float = DEFAULT_FLUSH_INTERVAL,
                 max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 max_batch_bytes: int = MAX_BATCH_BYTES,
                 max_queue_bytes: Optional[int] = None, on_full: OnFull = DEFAULT_ON_FULL,
                 block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
                 max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
                 name: str = "productos-consumer") -> None:
        if on_full not in OVERFLOW_POLICIES:
            raise ValueError(f"on_full must be one of {', '.join(OVERFLOW_POLICIES)}")
        self._sender = sender
        self._on_outcome = on_outcome
        self._on_reject = on_reject
        self._flush_at = flush_at
        self._interval = flush_interval
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._max_bytes = max_batch_bytes - _ENVELOPE_BYTES
        self._max_queue_bytes = max_queue_bytes
        self._pressure_at = max(flush_at, max_queue_size // 4)
        self._on_full = on_full
        self._block_timeout = block_timeout
        self._max_concurrency = max(1, max_concurrent_requests)
        self._name = name
        self._init_state()

    def _stores_locally(self) -> bool:
        # Read at each use: a spool that could not be owned (say, in a forked child) sends.
        # A sender written before the Protocol declared the attribute is one that sends.
        return bool(getattr(self._sender, "stores_locally", False))

    def _init_state(self) -> None:
        self._buffer: Deque[bytes] = collections.deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards thread start and the flush bookkeeping
        self._settled = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None
        self._flush_requested = 0
        self._flush_done = 0
        self._stopping = False
        self._closed = False
        self._exited = False  # the worker has returned; no flush ticket will be served
        self._deadline: Optional[float] = None
        self._space = threading.Condition(threading.Lock())  # signalled when items are taken
        # Held by every thread that takes items from the left, and for the counters below.
        self._count_lock = threading.Lock()
        self.queued_bytes = 0  # kept only when max_queue_bytes is set
        self.taken = 0  # items removed from the buffer by the sending side
        self.in_flight = 0
        self._last_ok = True
        # Seconds per event that sending has taken, smoothed (None until a batch was sent):
        # whether a backlog is worth spreading over several requests. Per event, because the
        # steady batches it is learnt from are smaller than a drain's.
        self._seconds_per_item: Optional[float] = None

    # --- the caller's side ---------------------------------------------------------------

    def put(self, item: bytes) -> bool:
        """Queue one serialised event; return False (after reporting why) if it was refused."""
        if self._closed:
            self._on_reject(DropReason.AFTER_SHUTDOWN, item)
            return False
        buffer = self._buffer
        if len(buffer) >= self._max_queue or (
                self._max_queue_bytes is not None and not self._fits(item)):
            if not self._make_room(item):
                return False
        elif self._max_queue_bytes is not None:
            with self._count_lock:
                self.queued_bytes += len(item)
        buffer.append(item)
        if self._thread is None:
            self._start()
        queued = len(buffer)
        if queued >= self._flush_at:
            if not self._wake.is_set():
                self._wake.set()
            if queued >= self._pressure_at and not queued & self._yield_mask(queued):
                # The sender is falling behind a caller that never blocks: hand it the GIL
                # for a moment, more often the fuller the buffer. Otherwise each of its socket
                # calls waits out the interpreter's 5 ms switch interval and the buffer
                # fills and drops; a light touch first keeps capture()'s p99 low in bursts.
                time.sleep(0)
        return True

    def _fits(self, item: bytes) -> bool:
        return self.queued_bytes + len(item) <= self._max_queue_bytes  # type: ignore[operator]

    def _full(self, item: bytes) -> bool:
        return len(self._buffer) >= self._max_queue or (
            self._max_queue_bytes is not None and not self._fits(item))

    def _make_room(self, item: bytes) -> bool:
        """Apply the overflow policy to a full buffer; return True if item may be appended."""
        if self._on_full == "block" or self._stores_locally():
            self._wait_for_room(item)
        if self._on_full == "drop_old":
            while self._full(item):
                with self._count_lock:  # every taker from the left holds it (see _take_batch)
                    if not self._buffer:  # the sender emptied it meanwhile
                        break
                    oldest = self._buffer.popleft()
                    if self._max_queue_bytes is not None:
                        self.queued_bytes -= len(oldest)
                self._on_reject(DropReason.QUEUE_FULL, oldest)
        if self._full(item):
            self._on_reject(DropReason.QUEUE_FULL, item)
            return False
        if self._max_queue_bytes is not None:
            with self._count_lock:
                self.queued_bytes += len(item)
        return True

    def _wait_for_room(self, item: bytes) -> None:
        if self._thread is None:
            self._start()
        if self.on_worker_thread():
            return  # a callback on the worker itself: waiting would wait on ourselves
        self._wake.set()  # the sender should make room now, not at the next interval
        deadline = time.monotonic() + self._block_timeout
        with self._space:
            while self._full(item):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    break
                self._space.wait(remaining)

    def _yield_mask(self, queued: int) -> int:
        """Return how often to hand over the GIL: every 128th event, 16th, or every one."""
        if queued < self._max_queue // 2:
            return 127
        return 15 if queued < self._max_queue * 3 // 4 else 0

    @property
    def queued(self) -> int:
        """Events waiting in the buffer."""
        return len(self._buffer)

    def on_worker_thread(self) -> bool:
        """True when called from the worker or one of its drain helpers (e.g. in on_error)."""
        return getattr(_local, "consumer", None) is self

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued before this call; return True if all of it was settled in time.

        Called from the worker itself (an ``on_error`` or ``on_drop`` callback), it returns
        False at once: the worker cannot wait for its own work.
        """
        if self.on_worker_thread():
            log.debug("productos: flush() from a delivery callback returns at once")
            return False
        with self._lock:
            running = self._thread is not None and not self._exited
            if running:
                self._flush_requested += 1
                ticket = self._flush_requested
        if not running:
            return True if not self._buffer else self._drain_here(timeout)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._flush_done < ticket and not self._exited:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._settled.wait(remaining)
            exited = self._exited
        if exited and self._buffer:  # the worker stopped (shutdown) before serving us
            return self._drain_here(None if deadline is None
                                    else max(0.0, deadline - time.monotonic()))
        return True

    def shutdown(self, timeout: Optional[float] = None) -> bool:
        """Stop accepting events, send what is queued within timeout, and stop the worker."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            already = self._closed
            self._closed = True
            self._deadline = deadline
            self._stopping = True
            thread = self._thread
        if self._on_full == "block" or self._stores_locally():
            with self._space:
                self._space.notify_all()  # callers waiting for room give up now
        if already and thread is None:
            return not self._buffer
        if thread is None or self._exited:
            return self._drain_here(timeout)
        self._wake.set()
        if self.on_worker_thread():
            return False  # from a callback on the worker: it stops after this round
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            # Cut back-off waits short; the worker accounts for what it could not send.
            self._sender.cancel()
            thread.join(0.5)
            return False
        return not self._buffer

    def reinit_after_fork(self) -> None:
        """Give a forked child an empty buffer and no worker: the parent's events are its own."""
        self._init_state()
        self._sender.reset_after_fork()

    # --- the worker's side ---------------------------------------------------------------

    def start(self) -> None:
        """Start the worker now rather than at the first event (e.g. to send a spool's rows)."""
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            try:
                thread.start()
            except RuntimeError:
                # Interpreter shutdown forbids new threads; shutdown() drains on its caller.
                return
            self._thread = thread

    def _run(self) -> None:
        _local.consumer = self
        try:
            self._loop()
        finally:
            # Whatever ended the loop, nobody may wait for a ticket it will never serve.
            with self._lock:
                self._exited = True
                self._flush_done = self._flush_requested
                self._settled.notify_all()

    def _loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._lock:
                ticket = self._flush_requested
                stopping = self._stopping
            try:
                # Several requests at once only when someone waits for the drain (flush,
                # shutdown) and it would be slow one batch at a time; steady traffic keeps
                # one batch in flight and memory low.
                draining = stopping or ticket != self._flush_done
                self._send_waiting(self._deadline if stopping else None, fan_out=draining)
            except Exception:  # the worker must never die, whatever a sender does
                log.exception("productos: unexpected error in the consumer thread")
            with self._lock:
                self._flush_done = ticket
                self._settled.notify_all()
            if stopping:
                return

    def _drain_here(self, timeout: Optional[float]) -> bool:
        """Send what is queued on the calling thread (no worker, or none can start)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._send_waiting(deadline)
        return not self._buffer

    def _send_waiting(self, deadline: Optional[float], fan_out: bool = True) -> None:
        """Send every item present now; with fan_out, a backlog goes out over a few requests."""
        budget = [len(self._buffer)]  # only what is present now: a busy producer can't pin us
        helpers: List[threading.Thread] = []
        # One writer is enough for a sender that stores locally.
        concurrency = 1 if self._stores_locally() else self._max_concurrency

        def spread() -> None:
            """Start helpers when the rest of the backlog would be slow to send alone; asked
            before each batch, so a drain that turns slow (retries, a slower endpoint) gets
            them as soon as it does."""
            if (helpers or not self._last_ok or budget[0] <= self._max_batch
                    or not self._slow_to_drain(budget[0])):
                return
            for index in range(min(concurrency - 1, budget[0] // self._max_batch)):
                thread = threading.Thread(target=self._helper_loop, args=(budget, deadline),
                                          name=f"{self._name}-drain-{index}", daemon=True)
                try:
                    thread.start()
                except RuntimeError:  # no new threads at interpreter shutdown: go on alone
                    break
                helpers.append(thread)

        spreading = fan_out and concurrency > 1
        self._send_loop(budget, deadline, steady=not fan_out,
                        before_batch=spread if spreading else None)
        for thread in helpers:
            thread.join()

    def _slow_to_drain(self, count: int) -> bool:
        """Whether sending count items one batch at a time would take long enough to be
        worth helper threads. Each costs a thread and a request's memory; an endpoint that
        takes batches in milliseconds drains a backlog sooner than they start."""
        per_item = self._seconds_per_item
        if per_item is None:
            return True  # nothing measured yet: spread it
        # Learnt from smaller batches, the per-event cost includes more of each request's
        # fixed cost than a drain's full batches pay: the estimate errs towards helpers.
        return count * per_item > FAN_OUT_AFTER_SECONDS

    def _helper_loop(self, budget: List[int], deadline: Optional[float]) -> None:
        _local.consumer = self
        self._send_loop(budget, deadline)

    def _send_loop(self, budget: List[int], deadline: Optional[float],
                   steady: bool = False,
                   before_batch: Optional[Callable[[], None]] = None) -> None:
        while True:
            if (deadline is not None and time.monotonic() >= deadline
                    and not self._stores_locally()):
                self._give_up_rest(DropReason.SHUTDOWN_TIMEOUT)
                return
            if steady and (self._stopping or self._flush_requested != self._flush_done):
                # Someone now waits for the drain: end this one-at-a-time round so the
                # next one can spread the backlog over several requests.
                self._wake.set()
                return
            if before_batch is not None:
                before_batch()
            batch = self._take_batch(budget)
            if not batch:
                return
            started = time.monotonic()
            try:
                outcome = self._sender.send(batch, deadline)
            except Exception as exc:  # a Sender broke its contract; account, don't die
                log.exception("productos: sender raised")
                outcome = BatchOutcome()
                outcome.drop(DropReason.INTERNAL_ERROR, batch, exc)
            with self._count_lock:
                self.in_flight -= len(batch)
            # Fan out again only once the endpoint is taking batches: no bursts at an outage.
            self._last_ok = not outcome.dropped
            per_item = (time.monotonic() - started) / len(batch)
            before = self._seconds_per_item
            self._seconds_per_item = (per_item if before is None
                                      else before + (per_item - before) / 4)
            self._on_outcome(outcome)

    def _take_batch(self, budget: List[int]) -> List[bytes]:
        """Move up to one batch (by count and bytes) from the buffer to in flight."""
        buffer = self._buffer
        with self._count_lock:
            count = min(budget[0], self._max_batch, len(buffer))
            if count <= 0:
                return []
            # One C-level copy, atomic under the GIL. Producers only append on the right and
            # every taker from the left holds _count_lock, so the pops below remove exactly
            # these items; per-item Python work here would hold the GIL against capture().
            batch = list(itertools.islice(buffer, count))
            size = sum(map(len, batch))
            if size + count > self._max_bytes and count > 1:
                count, size = _fit_bytes(batch, self._max_bytes)
                del batch[count:]
            popleft = buffer.popleft
            for _ in itertools.repeat(None, count):
                popleft()
            budget[0] -= count
            self.taken += count
            self.in_flight += count
            if self._max_queue_bytes is not None:
                self.queued_bytes -= size
        if self._on_full == "block" or self._stores_locally():
            with self._space:
                self._space.notify_all()
        return batch

    def _give_up_rest(self, reason: DropReason) -> None:
        items: List[bytes] = []
        with self._count_lock:
            while self._buffer:
                items.append(self._buffer.popleft())
            self.taken += len(items)
            self.queued_bytes = 0
        if items:
            outcome = BatchOutcome()
            outcome.drop(reason, items, errors.ShutdownTimeoutError("shutdown timeout reached"))
            self._on_outcome(outcome)


def _fit_bytes(items: Sequence[bytes], max_bytes: int) -> Tuple[int, int]:
    """Return how many leading items fit in max_bytes (a comma each, one at least), and size."""
    total = 0
    for count, item in enumerate(items):
        if count and total + count + len(item) + 1 > max_bytes:
            return count, total
        total += len(item)
    return len(items), total
