"""productos: product analytics and feature flags for Python, speaking PostHog's API.

Use a :class:`Client`, or configure the module-level default one::

    import productos
    productos.project_api_key = "phc_..."
    productos.capture("signed up", distinct_id="user-1")
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Mapping, Optional

from productos.client import Client
from productos.context import (
    identify_context,
    new_context,
    set_context_session,
    tag,
)
from productos.errors import ProductosError
from productos.signals import install_sigterm_handler
from productos.version import VERSION

__version__ = VERSION

__all__ = [
    "VERSION",
    "Client",
    "ProductosError",
    "__version__",
    "alias",
    "capture",
    "capture_exception",
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

# Settings of the default client; read once, when it is first needed.
project_api_key: Optional[str] = None
api_key: Optional[str] = None
host: Optional[str] = None
personal_api_key: Optional[str] = None
debug: bool = False
disabled: bool = False
send: bool = True
sync_mode: bool = False
on_error: Optional[Callable[..., Any]] = None
before_send: Optional[Callable[[dict], Optional[dict]]] = None
super_properties: Optional[Mapping[str, Any]] = None

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
            default_client = Client(
                project_api_key, api_key=api_key, host=host,
                personal_api_key=personal_api_key, debug=debug, disabled=disabled,
                send=send, sync_mode=sync_mode, on_error=on_error, before_send=before_send,
                super_properties=super_properties,
            )
        return default_client


def _default_client_if_any() -> Optional[Client]:
    """Return the default client if one was created, without creating it."""
    return default_client


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
