"""Change listeners: which flags were added, removed or changed when definitions were swapped.

The swap only queues the old and new snapshots (no work on the poll's path); one daemon
thread computes the difference and calls the listeners, so a slow or raising callback never
holds up or breaks a poll. A callback that raises is logged and counted.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Any, Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple

from productos._runtime.records import record

__all__ = ["FlagsChanged", "FlagsChangedListeners", "flags_changed"]

log = logging.getLogger("productos")


@record(frozen=True)
class FlagsChanged:
    """The keys of the flags added, removed and changed by one update of the definitions."""

    added: FrozenSet[str]
    removed: FrozenSet[str]
    changed: FrozenSet[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def _definitions_by_key(raw: Mapping[str, Any]) -> Dict[str, Any]:
    flags = raw.get("flags") if isinstance(raw, Mapping) else None
    if not isinstance(flags, list):
        return {}
    return {item["key"]: item for item in flags
            if isinstance(item, Mapping) and isinstance(item.get("key"), str)}


def flags_changed(old_raw: Mapping[str, Any], new_raw: Mapping[str, Any]) -> FlagsChanged:
    """Compare two definitions documents flag by flag (a cohort change changes every flag)."""
    old, new = _definitions_by_key(old_raw), _definitions_by_key(new_raw)
    cohorts_changed = (old_raw.get("cohorts") if isinstance(old_raw, Mapping) else None) != (
        new_raw.get("cohorts") if isinstance(new_raw, Mapping) else None)
    changed = {key for key in old.keys() & new.keys()
               if cohorts_changed or old[key] != new[key]}
    return FlagsChanged(frozenset(new.keys() - old.keys()), frozenset(old.keys() - new.keys()),
                        frozenset(changed))


Callback = Callable[[FlagsChanged], Any]
_STOP = object()


class FlagsChangedListeners:
    """Registered callbacks and the thread that calls them."""

    def __init__(self) -> None:
        self._callbacks: List[Callback] = []
        self.errors = 0
        self._init_thread_state()

    def _init_thread_state(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def add(self, callback: Callback) -> Callable[[], None]:
        """Register callback; return a function that removes it."""
        self._callbacks = [*self._callbacks, callback]

        def remove() -> None:
            self._callbacks = [c for c in self._callbacks if c is not callback]
        return remove

    def notify(self, old_raw: Mapping[str, Any], new_raw: Mapping[str, Any]) -> None:
        """Queue a swap (called where the snapshot is swapped; cheap when nobody listens)."""
        if not self._callbacks:
            return
        if self._pid != os.getpid():
            self._init_thread_state()  # a forked child gets its own thread
        self._queue.put((old_raw, new_raw))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    thread = threading.Thread(target=self._run, daemon=True,
                                              name="productos-flag-listeners")
                    try:
                        thread.start()
                    except RuntimeError:  # interpreter shutting down
                        return
                    self._thread = thread

    def stop(self) -> None:
        """Let the thread finish what is queued, then end."""
        if self._thread is not None and self._pid == os.getpid():
            self._queue.put(_STOP)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            old_raw, new_raw = item
            try:
                change = flags_changed(old_raw, new_raw)
            except Exception:
                log.exception("productos: could not compare flag definitions")
                continue
            if change:
                self._call(change)

    def _call(self, change: FlagsChanged) -> None:
        for callback in self._callbacks:
            try:
                callback(change)
            except Exception:
                self.errors += 1
                log.exception("productos: an on_flags_changed callback raised")


def pair(old: Any, new: Any) -> Tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The raw documents of two snapshots."""
    return getattr(old, "raw", {}) or {}, getattr(new, "raw", {}) or {}
