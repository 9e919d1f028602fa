"""A durable spool: events wait in a SQLite file until the server has taken them.

Opt-in with ``Client(spool_path=...)``. Two threads share the file and never wait on each
other:

- the consumer's worker writes each batch it takes from memory to disk at once
  (``SpoolingSender.send``). That write never touches the network, so however the endpoint
  behaves (refusing, hanging, throttling) admitted events reach the disk within
  ``flush_interval`` and the memory buffer keeps draining;
- a delivery thread (``SpoolDelivery``) reads the oldest rows, sends them, and deletes what
  the server took or refused for good. An outage only slows this thread down.

After a crash, ``kill -9`` or a long outage, a new client on the same path sends what is
pending, with the same uuids and timestamps. Rows written by an earlier run are accounted
apart: this run never counted them as captured.

One process owns a spool file at a time: it holds an exclusive lock on ``<path>.lock``.
A second process (or a forked child) that points at the same file is told so in the log
and keeps its events in memory instead, so no event is ever sent twice by two owners.

If a write fails (disk full, file removed, I/O error) the batch is sent from memory, as
without a spool; the failure is logged once with its cause, and again when writes work.

The file itself (schema, rows, the ownership lock) is ``spool_store``; this module writes
batches to it and sends them from it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from productos import errors
from productos._delivery.outcome import BatchOutcome, DropReason
from productos._delivery.spool_store import Spool, SpoolBusyError, SpooledRow
from productos._runtime.records import record
from productos.consumer import Sender

log = logging.getLogger("productos")

# Reasons after which a row may be retried later; every other drop is final.
_KEEP_REASONS = frozenset({DropReason.RETRIES_EXHAUSTED, DropReason.DEADLINE_EXCEEDED,
                           DropReason.CANCELLED})


@record
class EarlierRuns:
    """What became of rows that earlier runs wrote: reported apart from this run's books."""

    recovered: int = 0
    dropped: Dict[str, int] = field(default_factory=dict)

    def drop(self, reason: DropReason, count: int) -> None:
        """Count earlier-run rows given up for reason (kept under its plain string value)."""
        if count:
            key = str(reason)
            self.dropped[key] = self.dropped.get(key, 0) + count


Account = Callable[[BatchOutcome], None]


class SpoolingSender:
    """The consumer's Sender when a spool is on: writes batches to disk, never to the network.

    Delivery happens on the ``SpoolDelivery`` thread. When the spool cannot be opened or a
    write fails, batches go to the inner sender from memory instead.
    """

    def __init__(self, inner: Sender, path: str, *, max_bytes: int, max_batch_size: int,
                 max_batch_bytes: int, account: Account, concurrency: int = 1,
                 interval: float = 0.5, outage_delay: float = 1.0, outage_cap: float = 30.0,
                 background: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.path = path
        self.max_bytes = max_bytes
        self._account = account
        self._write_failing = False
        self.earlier = EarlierRuns()
        self.books = threading.Lock()  # row deletions and their counting happen as one step
        self.spool: Optional[Spool] = self._open()
        self.delivery = SpoolDelivery(
            self, max_batch_size=max_batch_size, max_batch_bytes=max_batch_bytes,
            concurrency=concurrency, interval=interval, outage_delay=outage_delay,
            outage_cap=outage_cap, background=background, clock=clock)

    def _open(self) -> Optional[Spool]:
        try:
            spool = Spool(self.path, self.max_bytes)
        except SpoolBusyError as exc:
            log.error("productos: %s; this process keeps its events in memory instead "
                      "(use one spool file per process)", exc)
            return None
        except Exception as exc:
            log.error("productos: cannot open spool %s (%s); events stay in memory",
                      self.path, exc)
            return None
        if spool.counts.earlier:
            log.info("productos: %d event(s) from an earlier run wait in the spool; "
                     "sending them", spool.counts.earlier)
        return spool

    @property
    def active(self) -> bool:
        """True while events go to disk (the file is open and owned by this process)."""
        return self.spool is not None and not self.spool.closed

    @property
    def stores_locally(self) -> bool:
        """True while batches go to disk, not the network (see consumer.Sender)."""
        return self.active

    def pending(self) -> Tuple[int, int]:
        """Rows waiting in the spool: (this run, earlier runs); last known after close."""
        spool = self.spool
        if spool is None:
            return (0, 0)
        return (spool.counts.mine, spool.counts.earlier)

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        """Write items to the spool (falling back to sending them from memory); never raise."""
        spool = self.spool
        if spool is None or spool.closed or not items:
            return self.inner.send(items, deadline)
        try:
            evicted = spool.add(items)
        except Exception as exc:
            if not self._write_failing:
                self._write_failing = True
                log.error("productos: cannot write to the spool %s (%s); sending events from "
                          "memory until writing works again", spool.path, exc)
            return self.inner.send(items, deadline)
        if self._write_failing:
            self._write_failing = False
            log.warning("productos: writing to the spool %s works again", spool.path)
        outcome = BatchOutcome()
        mine = [row.body for row in evicted if row.mine]
        if mine:
            outcome.drop(DropReason.SPOOL_FULL, mine,
                         errors.SpoolFullError("the spool reached spool_max_bytes"))
        self.earlier.drop(DropReason.SPOOL_FULL, len(evicted) - len(mine))
        self.delivery.notify_written()
        return outcome

    def cancel(self) -> None:
        """Cut the inner sender's back-off short; unsent rows stay spooled."""
        self.inner.cancel()

    def reset_after_fork(self) -> None:
        """In a forked child the parent owns the spool: try to own it, else use memory."""
        self.inner.reset_after_fork()
        self.books = threading.Lock()
        self.earlier = EarlierRuns()
        self._write_failing = False
        self.spool = self._open()
        self.delivery.reset_after_fork()

    def close(self) -> None:
        """Release the spool file (its counts stay readable)."""
        if self.spool is not None:
            self.spool.close()

    # --- used by the delivery thread ------------------------------------------------------

    def settle(self, rows: Sequence[SpooledRow], result: BatchOutcome) -> bool:
        """Delete the rows a send settled and account for them; return False if some are kept."""
        spool = self.spool
        if spool is None:
            return True
        kept: Dict[int, None] = {}
        final: Dict[int, DropReason] = {}
        first_error: Dict[DropReason, BaseException] = {}
        for reason, error, failed in result.failures:
            ids = {id(body) for body in failed}
            if reason in _KEEP_REASONS:
                kept.update(dict.fromkeys(ids))
            else:
                final.update(dict.fromkeys(ids, reason))
                first_error.setdefault(reason, error)
        done = [row for row in rows if id(row.body) not in kept]
        outcome = BatchOutcome(retries=result.retries)
        by_reason: Dict[DropReason, List[bytes]] = {}
        for row in done:
            why = final.get(id(row.body))
            if why is None:
                if row.mine:
                    outcome.delivered += 1
                else:
                    self.earlier.recovered += 1
            elif row.mine:
                by_reason.setdefault(why, []).append(row.body)
            else:
                self.earlier.drop(why, 1)
        for reason, bodies in by_reason.items():
            outcome.drop(reason, bodies, first_error[reason])
        with self.books:
            spool.delete(done)
            self._account(outcome)
        return not kept


class SpoolDelivery:
    """The thread that sends spooled rows, oldest first, and paces itself through outages."""

    def __init__(self, owner: SpoolingSender, *, max_batch_size: int, max_batch_bytes: int,
                 concurrency: int, interval: float, outage_delay: float, outage_cap: float,
                 background: bool, clock: Callable[[], float]) -> None:
        self._owner = owner
        self._background = background  # False in sync mode: callers deliver on their thread
        self._max_batch = max_batch_size
        self._max_bytes = max_batch_bytes
        self._concurrency = max(1, concurrency)
        self._interval = interval
        self._outage_delay = outage_delay
        self._outage_cap = outage_cap
        self._clock = clock
        self._init_state()

    def _init_state(self) -> None:
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None
        self._requested = 0  # flush tickets handed out
        self._served = 0     # tickets whose pass has ended
        self._stopping = False
        self._close_on_exit = False
        self._exited = False
        self._deadline: Optional[float] = None
        self._resume_at = 0.0
        self._failures = 0
        self._last_ok = True
        self.thread_ident: Optional[int] = None

    def reset_after_fork(self) -> None:
        """A forked child starts with no thread (one starts at its first write)."""
        self._init_state()

    def start(self) -> None:
        """Start the thread once (e.g. for rows an earlier run left)."""
        with self._lock:
            if (self._thread is not None or self._stopping or not self._background
                    or not self._owner.active):
                return
            thread = threading.Thread(target=self._run, name="productos-spool-delivery",
                                      daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no new threads at interpreter shutdown
                return
            self._thread = thread

    def notify_written(self) -> None:
        """Rows were written: deliver them soon (not before an outage's back-off ends)."""
        if self._thread is None:
            if self._background:
                self.start()
        elif not self._wake.is_set():
            self._wake.set()

    def on_own_thread(self) -> bool:
        """True when called from the delivery thread (or one of its helpers)."""
        return getattr(_local, "spool_delivery", None) is self

    def flush(self, timeout: Optional[float]) -> bool:
        """Try every row written so far now; True if the spool holds none of this run's after."""
        if not self._owner.active:
            return True
        if self._thread is None:
            if not any(self._owner.pending()):
                return True
            self.start()
        with self._lock:
            if self._exited or self._thread is None:
                return self._pass_here(timeout)
            self._requested += 1
            ticket = self._requested
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._served < ticket and not self._exited:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._settled.wait(remaining)
        return self._owner.pending()[0] == 0

    def shutdown(self, timeout: Optional[float]) -> bool:
        """Make a last pass within timeout and stop; what is left stays on disk."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._deadline = deadline
            thread = self._thread
        if thread is None:
            if self._owner.active:
                self._pass_here(timeout)
            return self._owner.pending()[0] == 0
        self._wake.set()
        thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            self._owner.cancel()  # cut a back-off wait short; the rows stay on disk
            thread.join(1.0)
        return self._owner.pending()[0] == 0

    def stop_soon(self) -> None:
        """Stop after the current pass and then close the spool (shutdown from a callback)."""
        with self._lock:
            self._stopping = True
            self._close_on_exit = True
        self._wake.set()

    def deliver_now(self, deadline: Optional[float]) -> None:
        """Make one pass on the caller's thread (sync mode)."""
        with self._lock:
            if self._thread is not None and not self._exited:
                self._requested += 1
                self._wake.set()
                return
        self._pass(deadline, forced=True)

    def _pass_here(self, timeout: Optional[float]) -> bool:
        self._pass(None if timeout is None else time.monotonic() + timeout, forced=True)
        return self._owner.pending()[0] == 0

    def _run(self) -> None:
        _local.spool_delivery = self
        self.thread_ident = threading.get_ident()
        try:
            while True:
                self._wake.wait(self._next_wait())
                self._wake.clear()
                with self._lock:
                    ticket = self._requested
                    stopping = self._stopping
                    deadline = self._deadline if stopping else None
                forced = stopping or ticket != self._served
                try:
                    if forced or self._clock() >= self._resume_at:
                        self._pass(deadline, forced)
                except Exception:  # the thread must never die, whatever happens
                    log.exception("productos: unexpected error in the spool delivery thread")
                with self._lock:
                    self._served = ticket
                    self._settled.notify_all()
                if stopping:
                    return
        finally:
            with self._lock:
                self._exited = True
                self._served = self._requested
                self._settled.notify_all()
            if self._close_on_exit:
                self._owner.close()

    def _next_wait(self) -> float:
        wait = self._interval
        if self._resume_at:
            wait = max(wait, self._resume_at - self._clock())
        return max(0.0, wait)

    def _pass(self, deadline: Optional[float], forced: bool) -> None:
        """Send rows until the spool is empty, an attempt fails, or the deadline passes."""
        owner = self._owner
        spool = owner.spool
        if spool is None or spool.closed:
            return
        upto = spool.last_id()  # rows written during the pass wait for the next one
        while deadline is None or self._clock() < deadline:
            width = self._concurrency if self._last_ok else 1
            batches = spool.oldest(self._max_batch, self._max_bytes, width)
            batches = [b for b in ([r for r in b if r.id <= upto] for b in batches) if b]
            if not batches:
                return
            ok = self._send_batches(batches, deadline)
            self._last_ok = ok
            if not ok:
                self._failures += 1
                if self._failures == 1:
                    log.warning("productos: the endpoint is not taking events; %d wait in the "
                                "spool and are retried until it does", sum(owner.pending()))
                delay = min(self._outage_cap, self._outage_delay * 2 ** (self._failures - 1))
                self._resume_at = self._clock() + delay
                return
            if self._failures:
                log.warning("productos: the endpoint takes events again; sending the spool")
            self._failures = 0
            self._resume_at = 0.0

    def _send_batches(self, batches: List[List[SpooledRow]], deadline: Optional[float]) -> bool:
        if len(batches) == 1:
            return self._send_one(batches[0], deadline)
        results: List[bool] = []
        helpers = []
        for batch in batches[1:]:
            thread = threading.Thread(target=lambda b=batch: results.append(
                self._send_one(b, deadline, helper=True)), name="productos-spool-send",
                daemon=True)
            try:
                thread.start()
            except RuntimeError:
                results.append(self._send_one(batch, deadline))
                continue
            helpers.append(thread)
        results.append(self._send_one(batches[0], deadline))
        for thread in helpers:
            thread.join()
        return all(results)

    def _send_one(self, rows: List[SpooledRow], deadline: Optional[float],
                  helper: bool = False) -> bool:
        if helper:
            _local.spool_delivery = self
        owner = self._owner
        try:
            result = owner.inner.send([row.body for row in rows], deadline)
        except Exception as exc:  # a Sender broke its contract: keep the rows, say why
            log.exception("productos: sender raised while delivering spooled events")
            result = BatchOutcome()
            result.drop(DropReason.RETRIES_EXHAUSTED, [row.body for row in rows], exc)
        return owner.settle(rows, result)


_local = threading.local()
