"""Celery: drain queued events when a prefork pool process ends.

Celery's prefork pool ends its child processes with ``os._exit()``, which skips ``atexit``
hooks, so events captured by tasks would be lost at the end of each child. Connect this
once (for example in the module that creates your Celery app)::

    from productos.integrations.celery import setup_celery
    setup_celery(timeout=5)

Forked pool processes need nothing else: productos gives every forked child a fresh buffer,
thread and connection on its own.
"""

from __future__ import annotations

from typing import Any

from productos import drain_all
from productos.integrations._common import not_installed_error

try:
    from celery import signals as celery_signals
except ImportError as _error:  # pragma: no cover - exercised only without celery
    raise not_installed_error("Celery", "celery", _error) from _error

__all__ = ["setup_celery"]

_connected = False


def setup_celery(timeout: float = 5.0) -> None:
    """Flush productos clients when a Celery pool process or worker shuts down."""
    global _connected
    if _connected:
        return

    def on_process_shutdown(*args: Any, **kwargs: Any) -> None:
        drain_all(timeout)

    # weak=False: the receivers are closures that nothing else references.
    celery_signals.worker_process_shutdown.connect(on_process_shutdown, weak=False)
    celery_signals.worker_shutdown.connect(on_process_shutdown, weak=False)
    _connected = True
