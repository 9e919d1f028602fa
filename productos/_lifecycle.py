"""Process-wide hooks every client shares: drain at exit, start fresh after fork.

One ``atexit`` hook and one ``register_at_fork`` hook serve all clients through a weak
set, so creating many clients (as test suites do) neither leaks them nor grows the hook lists.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Any

log = logging.getLogger("productos")

_clients: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def track(client: Any) -> None:
    """Include client in the exit drain and the after-fork reset."""
    with _lock:
        _clients.add(client)


def untrack(client: Any) -> None:
    """Leave client out of the process hooks (it was shut down)."""
    with _lock:
        _clients.discard(client)


def _live() -> list:
    with _lock:
        return list(_clients)


def _drain_at_exit() -> None:
    for client in _live():
        try:
            client._shutdown_at_exit()
        except Exception:  # exit must go on whatever one client does
            log.exception("productos: error while draining a client at exit")


def _reset_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # the parent may have held it at the moment of fork
    for client in list(_clients):
        try:
            client._reset_after_fork()
        except Exception:
            log.exception("productos: error while resetting a client after fork")


atexit.register(_drain_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
