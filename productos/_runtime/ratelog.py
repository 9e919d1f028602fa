"""A warning that can repeat at a high rate: logged once at once, then summarised per interval.

A failing ``/flags`` endpoint or a caller passing a bad ``uuid=`` in a loop would otherwise write
one line per call. Each kind of warning is logged the first time, then at most once per
interval, carrying the number of times it happened in between.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict

log = logging.getLogger("productos")

_instances: weakref.WeakSet[RateLimitedLog] = weakref.WeakSet()


class RateLimitedLog:
    """Logs the first warning of each kind at once, then one line per interval with a count."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger = log) -> None:
        self._interval = interval
        self._clock = clock
        self._log = logger
        self._lock = threading.Lock()
        self._last: Dict[str, float] = {}
        self._pending: Dict[str, int] = {}
        _instances.add(self)

    def warn(self, kind: str, message: str, *args: Any) -> bool:
        """Log message (%-style args) now, or count it toward kind's next line; True if logged.

        ``kind`` names the warning in summaries ("/flags failures (timeout)").
        """
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self._interval:
                self._pending[kind] = self._pending.get(kind, 0) + 1
                return False
            self._last[kind] = now
            earlier = self._pending.pop(kind, 0)
        if earlier:
            self._log.warning(message + " (%d more %s since the last report)",
                              *args, earlier, kind)
        else:
            self._log.warning(message, *args)
        return True

    def pending(self, kind: str) -> int:
        """Return how many warnings of kind wait for the next line."""
        with self._lock:
            return self._pending.get(kind, 0)

    def flush(self) -> None:
        """Log one line for each kind with warnings not yet reported (at shutdown)."""
        with self._lock:
            pending = {kind: count for kind, count in self._pending.items() if count}
            self._pending.clear()
        for kind, count in pending.items():
            self._log.warning("productos: %d more %s since the last report", count, kind)

    def _reset_after_fork(self) -> None:
        # A thread of the parent may have held the lock at fork time; the child's copy
        # would stay locked forever.
        self._lock = threading.Lock()


def _reset_all_after_fork() -> None:
    for instance in list(_instances):
        instance._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_all_after_fork)
