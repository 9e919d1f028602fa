"""productos: product analytics and feature flags for Python, speaking PostHog's API.

Use a :class:`Client`, or configure the module-level default one::

    import productos
    productos.project_api_key = "phc_..."
    productos.capture("signed up", distinct_id="user-1")

Every name in ``__all__`` is public; every type a public call takes or returns is among
them. The module-level settings (``productos.host``, ``productos.flush_at``...) are the
fields of :class:`Options`, read when the default client is first needed.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any, Optional

from productos import context as _context
from productos._delivery.outcome import BatchOutcome, DropReason
from productos._flags.poller import SourceState, SourceStatus
from productos._runtime.ledger import DeliveryStats
from productos._runtime.lifecycle import drain_all
from productos._runtime.options import Options
from productos._runtime.options import defaults as _option_defaults
from productos.client import Client
from productos.consumer import Sender
from productos.context import (
    identify_context,
    new_context,
    set_context_session,
    tag,
)
from productos.errors import (
    APIError,
    AuthenticationError,
    ClientShutdownError,
    ConfigurationError,
    ConnectError,
    EventError,
    EventTooLargeError,
    ProductosError,
    QueueFullError,
    RateLimitedError,
    RequestTimeoutError,
    ShutdownTimeoutError,
    SpoolFullError,
    TransportError,
    UnserializableEventError,
)
from productos.flags import (
    ConditionTrace,
    EvaluationContext,
    FilterSpec,
    FilterTrace,
    FlagResult,
    InconclusiveReason,
    Reason,
    ReasonCode,
)
from productos.signals import install_sigterm_handler
from productos.version import VERSION

__version__ = VERSION

__all__ = [
    "VERSION",
    "APIError",
    "AuthenticationError",
    "BatchOutcome",
    "Client",
    "ClientShutdownError",
    "ConditionTrace",
    "ConfigurationError",
    "ConnectError",
    "DeliveryStats",
    "DropReason",
    "EvaluationContext",
    "EventError",
    "EventTooLargeError",
    "FilterSpec",
    "FilterTrace",
    "FlagResult",
    "InconclusiveReason",
    "Options",
    "ProductosError",
    "QueueFullError",
    "RateLimitedError",
    "Reason",
    "ReasonCode",
    "RequestTimeoutError",
    "Sender",
    "ShutdownTimeoutError",
    "SourceState",
    "SourceStatus",
    "SpoolFullError",
    "TransportError",
    "UnserializableEventError",
    "__version__",
    "alias",
    "capture",
    "capture_exception",
    "drain_all",
    "feature_enabled",
    "flush",
    "get_all_flags",
    "get_feature_flag",
    "get_feature_flag_payload",
    "group_identify",
    "identify_context",
    "install_sigterm_handler",
    "new_context",
    "set",
    "set_context_session",
    "set_once",
    "shutdown",
    "tag",
]

# Settings of the default client, one per Options field, with its default; read once, when
# the client is first needed. Assigning ``productos.<name>`` before that configures it.
_SETTINGS = _option_defaults()
globals().update(_SETTINGS)

if TYPE_CHECKING:
    # The settings above are made from Options at run time; type checkers see them here.
    def __getattr__(name: str) -> Any: ...

default_client: Optional[Client] = None
_default_lock = threading.Lock()


def _new_default_lock() -> None:
    # A thread of the parent may have held it at fork time; the child would wait forever.
    global _default_lock
    _default_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_default_lock)


def _default() -> Client:
    """Return the default client, creating it from the module settings on first use."""
    global default_client
    client = default_client
    if client is not None:
        return client
    with _default_lock:
        if default_client is None:
            settings = globals()
            default_client = Client(**{name: settings[name] for name in _SETTINGS})
        return default_client


def _default_client_if_any() -> Optional[Client]:
    """Return the default client if one was created, without creating it."""
    return default_client


# A new_context() scope opened without a client reports exceptions to the default client.
_context.set_default_capturer(_default_client_if_any)


def capture(event: str, **kwargs: Any) -> Optional[str]:
    """Capture an event with the default client."""
    return _default().capture(event, **kwargs)


def set(**kwargs: Any) -> Optional[str]:
    """Set person properties with the default client."""
    return _default().set(**kwargs)


def set_once(**kwargs: Any) -> Optional[str]:
    """Set person properties once with the default client."""
    return _default().set_once(**kwargs)


def alias(previous_id: Any, distinct_id: Any, **kwargs: Any) -> Optional[str]:
    """Alias two distinct ids with the default client."""
    return _default().alias(previous_id, distinct_id, **kwargs)


def group_identify(group_type: Any, group_key: Any, properties: Any = None,
                   **kwargs: Any) -> Optional[str]:
    """Set group properties with the default client."""
    return _default().group_identify(group_type, group_key, properties, **kwargs)


def capture_exception(exc: Optional[BaseException] = None, **kwargs: Any) -> Optional[str]:
    """Capture an exception with the default client."""
    return _default().capture_exception(exc, **kwargs)


def feature_enabled(key: str, distinct_id: Any = None, **kwargs: Any) -> Optional[bool]:
    """Tell whether a flag is on, with the default client."""
    return _default().feature_enabled(key, distinct_id, **kwargs)


def get_feature_flag(key: str, distinct_id: Any = None, **kwargs: Any) -> Any:
    """Return a flag's value, with the default client."""
    return _default().get_feature_flag(key, distinct_id, **kwargs)


def get_feature_flag_payload(key: str, distinct_id: Any = None, **kwargs: Any) -> Any:
    """Return a flag's payload, with the default client."""
    return _default().get_feature_flag_payload(key, distinct_id, **kwargs)


def get_all_flags(distinct_id: Any = None, **kwargs: Any) -> Any:
    """Return every flag's value, with the default client."""
    return _default().get_all_flags(distinct_id, **kwargs)


def flush(timeout: Optional[float] = 10.0) -> bool:
    """Flush the default client, if it exists."""
    client = default_client
    return True if client is None else client.flush(timeout)


def shutdown(timeout: Optional[float] = 10.0) -> bool:
    """Shut the default client down and forget it, so new settings take effect next time."""
    global default_client
    with _default_lock:
        client, default_client = default_client, None
    return True if client is None else client.shutdown(timeout)
