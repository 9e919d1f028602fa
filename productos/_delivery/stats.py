"""Delivery counters and the rate-limited line that reports drops.

Counters here are written from the worker thread and from rare failure paths (a bad
argument, a full queue), never from the hot path of a successful ``capture()``; the
"captured" and "queued" figures are derived from the consumer instead of counted.
The reasons are ``outcome.DropReason`` members; they are kept as their plain string values,
so ``stats()["dropped"]`` is a dict of ``str`` keys.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Dict

log = logging.getLogger("productos")


class Stats:
    """Thread-safe counters of what happened to events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.filtered = 0
        self.rejected_before_queue = 0
        self.sent_directly = 0  # sync mode: handed to the sender on the caller's thread
        self.dropped: Dict[str, int] = {}

    def add_sent(self, count: int, retries: int) -> None:
        """Record delivered events and the retries it took."""
        with self._lock:
            self.sent += count
            self.retried += retries

    def add_dropped(self, reason: str, count: int, before_queue: bool = False) -> None:
        """Record events given up for reason."""
        key = str(reason)  # a DropReason's plain value
        with self._lock:
            self.dropped[key] = self.dropped.get(key, 0) + count
            if before_queue:
                self.rejected_before_queue += count

    def add_direct(self) -> None:
        """Record an event sent on the caller's thread (sync mode), bypassing the buffer."""
        with self._lock:
            self.sent_directly += 1

    def add_filtered(self) -> None:
        """Record an event that before_send chose to drop."""
        with self._lock:
            self.filtered += 1


class DropLog:
    """Logs the first drop of each reason at once, then one summary line per interval."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: Dict[str, float] = {}
        self._pending: Dict[str, int] = {}

    def record(self, reason: str, count: int, detail: str) -> None:
        """Note count events dropped for reason; log now or fold into the next summary."""
        now = self._clock()
        with self._lock:
            pending = self._pending.get(reason, 0) + count
            last = self._last.get(reason)
            if last is not None and now - last < self._interval:
                self._pending[reason] = pending
                return
            self._last[reason] = now
            self._pending[reason] = 0
        log.warning("productos: dropped %d event(s) (%s): %s", pending, reason, detail)

    def flush(self) -> None:
        """Log what is still pending; called at shutdown so no summary is lost."""
        with self._lock:
            pending = {r: n for r, n in self._pending.items() if n}
            self._pending.clear()
        for reason, count in pending.items():
            log.warning("productos: dropped %d more event(s) (%s)", count, reason)
