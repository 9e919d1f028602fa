"""Process-wide hooks every client shares: drain at exit, start fresh after fork.

One ``atexit`` hook and one ``register_at_fork`` hook serve all clients through a weak
set, so creating many clients (as test suites do) neither leaks them nor grows the hook lists.
The registry holds :class:`Drainable` objects: it calls only the methods that protocol names.

Processes that multiprocessing starts with fork or forkserver end with ``os._exit()``, which
skips ``atexit``; they do run ``multiprocessing.util``'s finalizers first, so each such
process gets one that drains it.

Other process hooks (the SIGTERM drain in ``productos.signals``) attach themselves with
:func:`on_track` rather than being imported here, so this module depends on nothing above it.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
import weakref
from typing import Any, Callable, List, Mapping, Optional, Protocol

log = logging.getLogger("productos")

DEFAULT_SHUTDOWN_TIMEOUT = 5.0
# Above the default 0 used by most finalizers, below the ones that close queues (10).
MP_EXIT_PRIORITY = 5


class ShutdownBudget(Protocol):
    """The part of a client's options the exit drain reads."""

    @property
    def shutdown_timeout(self) -> Optional[float]:
        """The longest a shutdown at exit may take, in seconds."""


class Drainable(Protocol):
    """What the process hooks need from a client (``productos.Client`` is one)."""

    @property
    def disabled(self) -> bool:
        """True when the client sends nothing (no process hooks are needed for it)."""

    @property
    def options(self) -> ShutdownBudget:
        """The client's configuration (only ``shutdown_timeout`` is read)."""

    def flush(self, timeout: Optional[float] = ...) -> bool:
        """Send what is queued within timeout; True when it all settled."""

    def shutdown(self, timeout: Optional[float] = ...) -> bool:
        """Flush within timeout, then stop; True when it all settled."""

    def stats(self) -> Mapping[str, Any]:
        """The delivery counters (``queued`` and ``in_flight`` are read)."""

    def reset_after_fork(self) -> None:
        """Give a forked child its own threads, locks and buffers."""


_clients: weakref.WeakSet[Drainable] = weakref.WeakSet()
_lock = threading.Lock()
_draining = threading.local()  # set on the thread running drain(): it reports what is left
_track_hooks: List[Callable[[Drainable], None]] = []


def on_track(hook: Callable[[Drainable], None]) -> None:
    """Call hook with every client tracked from now on (once per hook; errors are logged)."""
    if hook not in _track_hooks:
        _track_hooks.append(hook)


def track(client: Drainable) -> None:
    """Include client in the exit drain and the after-fork reset, and run the track hooks."""
    with _lock:
        _clients.add(client)
    try:
        _hook_multiprocessing()
        for hook in list(_track_hooks):
            hook(client)
    except Exception:  # creating a client must not fail for want of a process hook
        log.warning("productos: could not set up the exit drain hooks", exc_info=True)


def untrack(client: Drainable) -> None:
    """Leave client out of the process hooks (it was shut down)."""
    with _lock:
        _clients.discard(client)


def live_clients() -> List[Drainable]:
    """Return the clients that are tracked now (not shut down, still referenced)."""
    with _lock:
        return list(_clients)


def reports_leftovers() -> bool:
    """True on a thread running drain(): it logs what is left, so shutdown() need not."""
    return bool(getattr(_draining, "active", False))


def exit_budget() -> float:
    """The longest shutdown_timeout of the live clients (what a full drain may take)."""
    if not _lock.acquire(timeout=1.0):  # held by the code a signal interrupted
        return DEFAULT_SHUTDOWN_TIMEOUT
    try:
        timeouts = [_shutdown_timeout(client) for client in _clients]
    finally:
        _lock.release()
    return max(timeouts, default=0.0)


def _shutdown_timeout(client: Drainable) -> float:
    value = client.options.shutdown_timeout
    return float(value) if isinstance(value, (int, float)) else DEFAULT_SHUTDOWN_TIMEOUT


def drain_all(timeout: Optional[float] = DEFAULT_SHUTDOWN_TIMEOUT) -> bool:
    """Send what every live client has queued, within one shared timeout; never raises.

    The clients stay usable (this flushes; it does not shut down). Returns True when every
    client settled in time; ``timeout=None`` waits as long as that takes. For a process about
    to end without running exit hooks (a Celery prefork child), or a signal handler that hands
    on to the host's own shutdown.
    """
    if timeout is not None and not (isinstance(timeout, (int, float))
                                    and not isinstance(timeout, bool) and timeout >= 0):
        log.warning("productos: drain_all(timeout=%r) needs seconds >= 0 or None; using %s",
                    timeout, DEFAULT_SHUTDOWN_TIMEOUT)
        timeout = DEFAULT_SHUTDOWN_TIMEOUT
    deadline = None if timeout is None else time.monotonic() + timeout
    settled = True
    for client in live_clients():
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            settled = client.flush(left) and settled
        except Exception:  # one client's trouble must not keep the others from sending
            log.exception("productos: error while flushing a client")
            settled = False
    return settled


def after_drain(action: Callable[[], Any]) -> None:
    """Run action when the drain running on this thread ends (a signal that interrupted it)."""
    pending = getattr(_draining, "pending", None)
    if pending is None:
        pending = _draining.pending = []
    pending.append(action)


def drain(timeout: Optional[float] = None, when: str = "at exit") -> int:
    """Shut every live client down, then log in one line how many events were not delivered.

    Each client has its own ``shutdown_timeout``, or what is left of ``timeout`` when given.
    Returns the number of events left undelivered (not counting those kept in a spool).
    """
    if reports_leftovers():  # re-entered from a signal handler on this thread
        return 0
    deadline = None if timeout is None else time.monotonic() + timeout
    left = 0
    _draining.active = True
    try:
        for client in live_clients():
            budget = (_shutdown_timeout(client) if deadline is None
                      else max(0.0, deadline - time.monotonic()))
            try:
                client.shutdown(budget)
                stats = client.stats()
                left += int(stats.get("queued", 0)) + int(stats.get("in_flight", 0))
            except Exception:  # exit must go on whatever one client does
                log.exception("productos: error while draining a client %s", when)
    finally:
        _draining.active = False
    if left:
        log.warning("productos: %d event(s) not delivered %s: the drain ran out of time",
                    left, when)
    pending, _draining.pending = getattr(_draining, "pending", None) or [], []
    for action in pending:
        action()
    return left


def _drain_at_exit() -> None:
    drain(None, "at exit")


# --- multiprocessing ------------------------------------------------------------------------


class _Anchor:
    """What multiprocessing's after-fork registry holds on to (it keeps weak references)."""


_MP_ANCHOR = _Anchor()
_mp_hooked = False
_mp_finalizer: Any = None
_mp_finalizer_pid = 0


def _hook_multiprocessing() -> None:
    """Arrange a drain in multiprocessing's children, if multiprocessing is in use at all."""
    global _mp_hooked
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    if not _mp_hooked:
        _mp_hooked = True
        # A new process clears the finalizers it inherited, then runs these callbacks.
        mp_util.register_after_fork(_MP_ANCHOR, _add_mp_finalizer)
    mp_process = sys.modules.get("multiprocessing.process")
    if mp_process is not None and mp_process.parent_process() is not None:
        _add_mp_finalizer(_MP_ANCHOR)  # a client created inside a running child process


def _add_mp_finalizer(anchor: Any) -> None:
    global _mp_finalizer, _mp_finalizer_pid
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is None:
        return
    pid = os.getpid()
    if _mp_finalizer is not None and _mp_finalizer_pid == pid and _mp_finalizer.still_active():
        return
    _mp_finalizer = mp_util.Finalize(None, _drain_at_exit, exitpriority=MP_EXIT_PRIORITY)
    _mp_finalizer_pid = pid


# --- fork -------------------------------------------------------------------------------------


def _reset_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it at the moment of fork
    for client in list(_clients):
        try:
            client.reset_after_fork()
        except Exception:
            log.exception("productos: error while resetting a client after fork")
    if _clients:
        _hook_multiprocessing()


atexit.register(_drain_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
