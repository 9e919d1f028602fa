"""Drain queued events when the process is told to stop (SIGTERM), then let the stop happen.

Containers and process managers stop processes with SIGTERM. Python's default action for it
ends the process at once, without ``atexit`` hooks, so events still queued would be lost.

Creating a client in the main thread installs a SIGTERM handler that hands the signal on to
whatever handled it before:

* the previous action was the default (the process dies): every client is shut down within
  its ``shutdown_timeout``, one line logs what could not be delivered, and the process then
  dies by the signal as it would have;
* a handler was installed before productos (a server's, the application's): queued events are
  flushed, then that handler runs and the host carries on with its own shutdown.

Servers that install their handlers after the application is imported (uvicorn, gunicorn's
workers, hypercorn, daphne) replace this one while they run. uvicorn puts back the handler it
found and raises the signal again once its graceful shutdown is over, which lands here. A
server that put back the default action instead (it started before productos, as uvicorn's
``--workers`` processes do) raises the signal after a handler of ours already ran: that ending
is drained too (see :func:`_guard_reraise`).

SIGINT is left alone: Ctrl-C still raises ``KeyboardInterrupt``, and the exit drain runs when
the interpreter exits. ``drain_on_sigterm(False)`` (or ``PRODUCTOS_DRAIN_ON_SIGTERM=0``) turns
the automatic handler off; ``install_sigterm_handler()`` installs one explicitly.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any, Callable, Optional, Union

from productos._runtime import lifecycle as _lifecycle

log = logging.getLogger("productos")

Handler = Union[Callable[[int, Optional[FrameType]], Any], int, None]

ENV_SWITCH = "PRODUCTOS_DRAIN_ON_SIGTERM"
_OFF_VALUES = ("0", "false", "no", "off")
# Beyond the drain's own budget: a drain thread blocked on a lock the interrupted code holds
# must not hold the signal back for ever.
_MARGIN = 2.0

_auto = os.environ.get(ENV_SWITCH, "").strip().lower() not in _OFF_VALUES
_original_raise_signal: Optional[Callable[[int], None]] = None


class _DrainThenChain:
    """A signal handler: drain productos' clients, then do what the previous handler did."""

    def __init__(self, previous: Handler, timeout: Optional[float]) -> None:
        self.previous = previous
        self.timeout = timeout  # None: each client's shutdown_timeout
        self._busy = False

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        """Drain, then chain (see the module's docstring for the cases)."""
        kills = _kills(self.previous)
        if kills and self._busy:
            return  # a second signal during our drain: the first one ends the process after it
        if kills and _lifecycle.reports_leftovers():
            # This interrupted the exit drain itself (atexit, a multiprocessing finalizer):
            # let it finish, then end the process as the signal says.
            _lifecycle.after_drain(lambda: _chain(self.previous, signum, None))
            return
        if not self._busy and not _lifecycle.reports_leftovers():
            self._busy = True
            try:
                if kills:
                    _drain_bounded(self.timeout, _at_exit(signum))
                else:
                    _flush_bounded(self.timeout)
                    _guard_reraise()
            except Exception:  # the signal must reach the previous handler whatever happens
                log.exception("productos: error while draining on signal %s", signum)
            finally:
                self._busy = False
        _chain(self.previous, signum, frame)


def _at_exit(signum: int) -> str:
    try:
        return f"at exit ({signal.Signals(signum).name})"
    except ValueError:
        return f"at exit (signal {signum})"


def _kills(previous: Handler) -> bool:
    """True when handing the signal on ends the process (the default action)."""
    return previous == signal.SIG_DFL or previous is None


def _chain(previous: Handler, signum: int, frame: Optional[FrameType]) -> None:
    """Do what would have happened without us."""
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or set outside Python): restore the default and deliver the signal again
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _run_bounded(work: Callable[[], Any], budget: float, what: str) -> None:
    """Run work on a helper thread and wait at most budget plus a margin.

    A signal handler runs between two bytecodes of the main thread, which may hold a lock
    the drain needs; waiting on a helper keeps that from hanging the process.
    """
    done = threading.Event()

    def run() -> None:
        try:
            work()
        except Exception:
            log.exception("productos: error while %s", what)
        finally:
            done.set()

    helper = threading.Thread(target=run, name="productos-signal-drain", daemon=True)
    helper.start()
    if not done.wait(budget + _MARGIN):
        log.warning("productos: gave up %s after %.1f s", what, budget + _MARGIN)


def _drain_bounded(timeout: Optional[float], when: str) -> None:
    budget = _lifecycle.exit_budget() if timeout is None else timeout
    _run_bounded(lambda: _lifecycle.drain(timeout, when), budget, "draining before exit")


def _flush_bounded(timeout: Optional[float]) -> None:
    budget = _lifecycle.exit_budget() if timeout is None else timeout
    _run_bounded(lambda: _lifecycle.drain_all(budget), budget, "flushing on a signal")


def _guard_reraise() -> None:
    """Drain right before a server raises SIGTERM again with the default action in place.

    uvicorn (and gunicorn's uvicorn workers) handle SIGTERM by shutting down gracefully, then
    put back the handlers they found and call ``signal.raise_signal()``. When they found the
    default action, the process dies there without exit hooks, and events captured by the
    requests that finished during the graceful shutdown would be lost. This runs only after
    one of our handlers saw the signal, so the process is already on its way out.
    """
    global _original_raise_signal
    if _original_raise_signal is not None:
        return
    original: Callable[[int], None] = signal.raise_signal
    _original_raise_signal = original

    def raise_signal(signalnum: int) -> None:
        if (signalnum == signal.SIGTERM and signal.getsignal(signalnum) == signal.SIG_DFL
                and threading.current_thread() is threading.main_thread()):
            try:
                _drain_bounded(None, _at_exit(signalnum))
            except Exception:
                log.exception("productos: error while draining before the signal")
        original(signalnum)

    raise_signal.__doc__ = original.__doc__
    raise_signal.__wrapped__ = original  # type: ignore[attr-defined]
    signal.raise_signal = raise_signal


def _install(signum: int, timeout: Optional[float]) -> bool:
    current = signal.getsignal(signum)
    if isinstance(current, _DrainThenChain):
        if timeout is not None:
            current.timeout = timeout
        return True
    try:
        signal.signal(signum, _DrainThenChain(current, timeout))
    except (ValueError, OSError, RuntimeError) as exc:  # not the main interpreter, say
        log.debug("productos: could not install a handler for signal %s: %s", signum, exc)
        return False
    return True


def install_sigterm_handler(timeout: float = 5.0, signum: int = signal.SIGTERM) -> bool:
    """Drain every client within timeout on SIGTERM, then chain; return False if not possible."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("productos: install_sigterm_handler() must be called from the main thread")
        return False
    return _install(signum, timeout)


def auto_install() -> bool:
    """Install the SIGTERM drain where allowed (see the module docstring); True if in place."""
    if not _auto or os.name != "posix":
        return False
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, _DrainThenChain):
        return True
    if current == signal.SIG_IGN or current is None:  # the host chose that; leave it
        return False
    return _install(signal.SIGTERM, None)


def _install_for(client: _lifecycle.Drainable) -> None:
    """Install the SIGTERM drain when a client that sends events is created."""
    if not client.disabled:
        auto_install()


_lifecycle.on_track(_install_for)


def drain_on_sigterm(enabled: bool = True) -> None:
    """Turn the SIGTERM drain that clients install when created on (default) or off.

    Off also takes out the handler productos installed, when it is still the one in place.
    """
    global _auto
    _auto = bool(enabled)
    if enabled:
        auto_install()
        return
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, _DrainThenChain):
        previous = signal.SIG_DFL if current.previous is None else current.previous
        signal.signal(signal.SIGTERM, previous)
