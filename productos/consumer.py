"""The batching consumer: a bounded buffer drained by one background thread.

The caller's side (``put``) is a length check and a ``deque.append``: no lock, no I/O.
The worker sleeps on one ``threading.Event`` that is set when a batch's worth of events is
waiting, by ``flush()`` and by ``shutdown()``; otherwise it wakes every ``flush_interval``.
Each time it wakes it sends everything that is waiting, in batches bounded by count and
bytes. The worker is the only one that takes items out, so its counters need no lock.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Callable, Deque, List, Optional, Protocol, Sequence

from productos.events import MAX_BATCH_BYTES
from productos.transport import BatchOutcome

log = logging.getLogger("productos")

# Room for the envelope around the events: api_key, sent_at and the JSON punctuation.
_ENVELOPE_BYTES = 512


class Sender(Protocol):
    """Delivers a batch of serialised events and says what became of them."""

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        """Send items; never raise."""

    def cancel(self) -> None:
        """Abandon retries that are waiting."""

    def reset_after_fork(self) -> None:
        """Drop state that must not cross a fork (sockets, events)."""


class Consumer:
    """Buffers serialised events and ships them from one background thread."""

    def __init__(self, sender: Sender, *, on_outcome: Callable[[BatchOutcome], None],
                 on_reject: Callable[[str, bytes], None],
                 flush_at: int = 100, flush_interval: float = 0.5,
                 max_queue_size: int = 10_000, max_batch_size: int = 1_000,
                 max_batch_bytes: int = MAX_BATCH_BYTES,
                 name: str = "productos-consumer") -> None:
        self._sender = sender
        self._on_outcome = on_outcome
        self._on_reject = on_reject
        self._flush_at = flush_at
        self._interval = flush_interval
        self._max_queue = max_queue_size
        self._max_batch = max_batch_size
        self._max_bytes = max_batch_bytes - _ENVELOPE_BYTES
        self._name = name
        self._init_state()

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
        self._deadline: Optional[float] = None
        self.taken = 0  # items the worker has removed from the buffer (worker-only writes)
        self.in_flight = 0

    # --- the caller's side ---------------------------------------------------------------

    def put(self, item: bytes) -> bool:
        """Queue one serialised event; return False (after reporting why) if it was refused."""
        if self._closed:
            self._on_reject("after_shutdown", item)
            return False
        buffer = self._buffer
        if len(buffer) >= self._max_queue:
            self._on_reject("queue_full", item)
            return False
        buffer.append(item)
        if self._thread is None:
            self._start()
        if len(buffer) >= self._flush_at and not self._wake.is_set():
            self._wake.set()
        return True

    @property
    def queued(self) -> int:
        """Events waiting in the buffer."""
        return len(self._buffer)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Send everything queued before this call; return True if all of it was settled in time."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                idle = not self._buffer
            else:
                idle = False
                self._flush_requested += 1
                ticket = self._flush_requested
        if idle:
            return True
        if self._thread is None or not self._thread.is_alive():
            return self._drain_here(timeout)
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._flush_done < ticket:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._settled.wait(remaining)
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
        if already and thread is None:
            return not self._buffer
        if thread is None or not thread.is_alive():
            return self._drain_here(timeout)
        self._wake.set()
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
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            with self._lock:
                ticket = self._flush_requested
                stopping = self._stopping
            try:
                self._send_waiting(self._deadline if stopping else None)
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

    def _send_waiting(self, deadline: Optional[float]) -> None:
        """Send every item present now, batch by batch; give up what a deadline cuts off."""
        remaining = len(self._buffer)
        while remaining > 0:
            if deadline is not None and time.monotonic() >= deadline:
                self._give_up_rest("shutdown_timeout")
                return
            batch = self._take_batch(remaining)
            remaining -= len(batch)
            self.in_flight = len(batch)
            try:
                outcome = self._sender.send(batch, deadline)
            except Exception as exc:  # a Sender broke its contract; account, don't die
                log.exception("productos: sender raised")
                outcome = BatchOutcome()
                outcome.drop("internal_error", batch, exc)
            self.in_flight = 0
            self._on_outcome(outcome)

    def _take_batch(self, limit: int) -> List[bytes]:
        buffer = self._buffer
        batch: List[bytes] = []
        size = 0
        while buffer and len(batch) < min(limit, self._max_batch):
            item = buffer[0]
            if batch and size + len(item) + 1 > self._max_bytes:
                break
            buffer.popleft()
            batch.append(item)
            size += len(item) + 1
        self.taken += len(batch)
        return batch

    def _give_up_rest(self, reason: str) -> None:
        items: List[bytes] = []
        while self._buffer:
            items.append(self._buffer.popleft())
        self.taken += len(items)
        if items:
            outcome = BatchOutcome()
            outcome.drop(reason, items, TimeoutError("shutdown timeout reached"))
            self._on_outcome(outcome)
