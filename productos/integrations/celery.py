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

import logging
import time
from typing import Any

from productos._runtime import lifecycle as _lifecycle

try:
    from celery import signals as celery_signals
except ImportError as exc:  # pragma: no cover - exercised only without celery
    raise ImportError(
        "productos.integrations.celery needs Celery: pip install 'productos[celery]'"
    ) from exc

log = logging.getLogger("productos")

_connected = False


def drain_all(timeout: float) -> None:
    """Flush every live client within one shared budget (never raises)."""
    deadline = time.monotonic() + timeout
    for client in _lifecycle._live():
        try:
            client.flush(max(0.0, deadline - time.monotonic()))
        except Exception:
            log.exception("productos: error while draining a client in a Celery worker")


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
