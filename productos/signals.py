"""An opt-in SIGTERM handler that drains queued events before the process goes away.

Containers and process managers stop processes with SIGTERM. Python's default action for
it ends the process at once, without ``atexit`` hooks, so events still queued would be
lost. ``install_sigterm_handler()`` flushes every live client within a budget and then hands
the signal to whatever handled it before (or to the default action), so the host's own
shutdown logic still runs.

Servers that turn SIGTERM into a normal interpreter exit (gunicorn's workers, for one) need
nothing more: productos drains at exit on its own.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any, Callable, Optional, Union

from productos import _lifecycle

log = logging.getLogger("productos")

Handler = Union[Callable[[int, Optional[FrameType]], Any], int, None]


def install_sigterm_handler(timeout: float = 5.0, signum: int = signal.SIGTERM) -> bool:
    """Drain every client within timeout on SIGTERM, then chain; return False if not possible."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("productos: install_sigterm_handler() must be called from the main thread")
        return False
    previous: Handler = signal.getsignal(signum)

    def drain_then_chain(received: int, frame: Optional[FrameType]) -> None:
        deadline = time.monotonic() + timeout
        for client in _lifecycle._live():
            try:
                client.flush(max(0.0, deadline - time.monotonic()))
            except Exception:  # the signal must still reach the previous handler
                log.exception("productos: error while draining on signal %s", received)
        _chain(previous, received, frame)

    signal.signal(signum, drain_then_chain)
    return True


def _chain(previous: Handler, signum: int, frame: Optional[FrameType]) -> None:
    """Do what would have happened without us."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or unknown): restore the default and deliver the signal again
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
