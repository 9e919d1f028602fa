"""productos: product analytics and feature flags for Python, speaking PostHog's API.

Use a :class:`Client`, or configure the module-level default one::

    import productos
    productos.project_api_key = "phc_..."
    productos.capture("signed up", distinct_id="user-1")

It also answers to posthog's API (7.91): ``import productos as posthog`` and
``from productos import Posthog`` keep posthog code working (see "Migrating from posthog").

Every name in ``__all__`` is public; every type a public call takes or returns is among
them. The module-level settings (``productos.host``, ``productos.flush_at``...) are the
fields of :class:`Options`, read when the default client is first needed.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from types import ModuleType as _ModuleType
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Mapping,
    Optional,
    Sequence,
    TypeVar,
    Union,
)

from productos import context as _context
from productos._delivery.outcome import BatchOutcome, DropReason
from productos._flags.listeners import FlagsChanged
from productos._flags.poller import SourceState, SourceStatus
from productos._flags.shared_cache import CachedDefinitions, FlagDefinitionsCache
from productos._runtime import compat as _compat
from productos._runtime.ledger import DeliveryStats
from productos._runtime.lifecycle import drain_all
from productos._runtime.options import Options
from productos._runtime.options import defaults as _option_defaults
from productos.client import Client
from productos.consumer import Sender
from productos.context import (
    ExceptionCapturer,
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
from productos.flag_hooks import FlagEvaluation, FlagHook
from productos.flags import (
    ConditionTrace,
    EvaluationContext,
    FeatureFlagEvaluations,
    FilterSpec,
    FilterTrace,
    FlagRecord,
    FlagResult,
    InconclusiveReason,
    Reason,
    ReasonCode,
    TraceOutcome,
)
from productos.signals import install_sigterm_handler
from productos.types import JSON, ExceptionArg
from productos.version import VERSION

__version__ = VERSION

# posthog's name for the client: ``from productos import Posthog`` is the one-line switch.
Posthog = Client
# posthog's name for a flag's full result (``posthog.FeatureFlagResult`` in annotations).
FeatureFlagResult = FlagResult
_F = TypeVar("_F", bound=Callable[..., Any])

__all__ = [
    "JSON",
    "VERSION",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BatchOutcome",
    "CachedDefinitions",
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
    "ExceptionArg",
    "ExceptionCapturer",
    "FeatureFlagEvaluations",
    "FeatureFlagResult",
    "FilterSpec",
    "FilterTrace",
    "FlagDefinitionsCache",
    "FlagEvaluation",
    "FlagHook",
    "FlagRecord",
    "FlagResult",
    "FlagsChanged",
    "InconclusiveReason",
    "Options",
    "Posthog",
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
    "TraceOutcome",
    "TransportError",
    "UnserializableEventError",
    "__version__",
    "alias",
    "capture",
    "capture_exception",
    "drain_all",
    "evaluate_flags",
    "feature_enabled",
    "feature_flag_definitions",
    "flush",
    "get_all_flags",
    "get_all_flags_and_payloads",
    "get_feature_flag",
    "get_feature_flag_payload",
    "get_feature_flag_result",
    "get_remote_config_payload",
    "get_tags",
    "group_identify",
    "identify_context",
    "install_sigterm_handler",
    "join",
    "load_feature_flags",
    "new_context",
    "scoped",
    "set",
    "set_context_device_id",
    "set_context_session",
    "set_once",
    "setup",
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
    from productos.async_client import AsyncClient
else:
    def __getattr__(name: str) -> Any:
        # AsyncClient imports asyncio: loaded when first asked for, not with productos.
        if name == "AsyncClient":
            from productos.async_client import AsyncClient

            return AsyncClient
        if name in _compat.INERT_FUNCTIONS:
            return _compat.inert_function(name)
        raise AttributeError(f"module 'productos' has no attribute {name!r}")

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
            settings = {name: globals()[name] for name in _SETTINGS}
            if settings["project_api_key"] and settings["api_key"]:
                settings["api_key"] = None  # posthog's rule: project_api_key wins over api_key
            default_client = Client(**settings)
        return default_client


def _default_client_if_any() -> Optional[Client]:
    """Return the default client if one was created, without creating it."""
    return default_client


# A new_context() scope opened without a client reports exceptions to the default client.
_context.set_default_capturer(_default_client_if_any)


def setup() -> Client:
    """Return the default client, creating it from the module settings (posthog's name)."""
    return _default()


def _given(**kwargs: Any) -> Dict[str, Any]:
    """Return the keyword arguments that were given (not None), for calls that pass them on."""
    return {name: value for name, value in kwargs.items() if value is not None}


# --- events -------------------------------------------------------------------------------


def capture(event: str, *, distinct_id: Any = None,
            properties: Optional[Mapping[str, Any]] = None, timestamp: Any = None,
            uuid: Any = None, groups: Optional[Mapping[str, Any]] = None, flags: Any = None,
            send_feature_flags: Any = False,
            disable_geoip: Optional[bool] = None) -> Optional[str]:
    """Capture an event with the default client (see :meth:`Client.capture`)."""
    return _default().capture(event, distinct_id=distinct_id, properties=properties,
                              timestamp=timestamp, uuid=uuid, groups=groups, flags=flags,
                              send_feature_flags=send_feature_flags,
                              **_given(disable_geoip=disable_geoip))


def set(*, distinct_id: Any = None, properties: Optional[Mapping[str, Any]] = None,
        timestamp: Any = None, uuid: Any = None,
        disable_geoip: Optional[bool] = None) -> Optional[str]:
    """Set person properties with the default client."""
    return _default().set(distinct_id=distinct_id, properties=properties, timestamp=timestamp,
                          uuid=uuid, disable_geoip=disable_geoip)


def set_once(*, distinct_id: Any = None, properties: Optional[Mapping[str, Any]] = None,
             timestamp: Any = None, uuid: Any = None,
             disable_geoip: Optional[bool] = None) -> Optional[str]:
    """Set person properties once with the default client."""
    return _default().set_once(distinct_id=distinct_id, properties=properties,
                               timestamp=timestamp, uuid=uuid, disable_geoip=disable_geoip)


def alias(previous_id: Any, distinct_id: Any, timestamp: Any = None, uuid: Any = None,
          disable_geoip: Optional[bool] = None) -> Optional[str]:
    """Alias two distinct ids with the default client."""
    return _default().alias(previous_id, distinct_id, timestamp, uuid, disable_geoip)


def group_identify(group_type: Any, group_key: Any,
                   properties: Optional[Mapping[str, Any]] = None, timestamp: Any = None,
                   uuid: Any = None, disable_geoip: Optional[bool] = None,
                   distinct_id: Any = None) -> Optional[str]:
    """Set group properties with the default client."""
    return _default().group_identify(group_type, group_key, properties, timestamp, uuid,
                                     disable_geoip, distinct_id)


def capture_exception(exception: ExceptionArg = None, *, distinct_id: Any = None,
                      properties: Optional[Mapping[str, Any]] = None,
                      groups: Optional[Mapping[str, Any]] = None, level: str = "error",
                      handled: bool = True, mechanism: str = "generic",
                      timestamp: Any = None, uuid: Any = None, flags: Any = None,
                      send_feature_flags: Any = False,
                      disable_geoip: Optional[bool] = None) -> Optional[str]:
    """Capture an exception (or exc_info tuple) with the default client."""
    return _default().capture_exception(
        exception, distinct_id=distinct_id, properties=properties, groups=groups, level=level,
        handled=handled, mechanism=mechanism, timestamp=timestamp, uuid=uuid, flags=flags,
        send_feature_flags=send_feature_flags, disable_geoip=disable_geoip)


# --- feature flags (arguments in posthog's order; those not given are not passed on) ---------


def feature_enabled(key: str, distinct_id: Any = None,
                    groups: Optional[Mapping[str, Any]] = None,
                    person_properties: Optional[Mapping[str, Any]] = None,
                    group_properties: Optional[Mapping[str, Mapping[str, Any]]] = None,
                    only_evaluate_locally: bool = False, send_feature_flag_events: bool = True,
                    disable_geoip: Optional[bool] = None,
                    device_id: Optional[str] = None) -> Optional[bool]:
    """Tell whether a flag is on, with the default client."""
    return _default().feature_enabled(  # type: ignore[no-any-return,unused-ignore]
        key, distinct_id, only_evaluate_locally=only_evaluate_locally,
        send_feature_flag_events=send_feature_flag_events,
        **_given(groups=groups, person_properties=person_properties,
                 group_properties=group_properties, disable_geoip=disable_geoip,
                 device_id=device_id))


def get_feature_flag(key: str, distinct_id: Any = None,
                     groups: Optional[Mapping[str, Any]] = None,
                     person_properties: Optional[Mapping[str, Any]] = None,
                     group_properties: Optional[Mapping[str, Mapping[str, Any]]] = None,
                     only_evaluate_locally: bool = False, send_feature_flag_events: bool = True,
                     disable_geoip: Optional[bool] = None,
                     device_id: Optional[str] = None) -> Union[bool, str, None]:
    """Return a flag's value (True/False, a variant key, or None), with the default client."""
    return _default().get_feature_flag(  # type: ignore[no-any-return,unused-ignore]
        key, distinct_id, only_evaluate_locally=only_evaluate_locally,
        send_feature_flag_events=send_feature_flag_events,
        **_given(groups=groups, person_properties=person_properties,
                 group_properties=group_properties, disable_geoip=disable_geoip,
                 device_id=device_id))


def get_feature_flag_result(key: str, distinct_id: Any = None,
                            groups: Optional[Mapping[str, Any]] = None,
                            person_properties: Optional[Mapping[str, Any]] = None,
                            group_properties: Optional[Mapping[str, Mapping[str, Any]]] = None,
                            only_evaluate_locally: bool = False,
                            send_feature_flag_events: bool = True,
                            disable_geoip: Optional[bool] = None,
                            device_id: Optional[str] = None,
                            detail: bool = True) -> Optional[FlagResult]:
    """Return a flag's full result (value, variant, payload, reason), with the default client."""
    return _default().get_feature_flag_result(  # type: ignore[no-any-return,unused-ignore]
        key, distinct_id, only_evaluate_locally=only_evaluate_locally,
        send_feature_flag_events=send_feature_flag_events, detail=detail,
        **_given(groups=groups, person_properties=person_properties,
                 group_properties=group_properties, disable_geoip=disable_geoip,
                 device_id=device_id))


def get_feature_flag_payload(key: str, distinct_id: Any = None, match_value: Any = None,
                             groups: Optional[Mapping[str, Any]] = None,
                             person_properties: Optional[Mapping[str, Any]] = None,
                             group_properties: Optional[Mapping[str, Mapping[str, Any]]] = None,
                             only_evaluate_locally: bool = False,
                             send_feature_flag_events: bool = True,
                             disable_geoip: Optional[bool] = None,
                             device_id: Optional[str] = None) -> Optional[JSON]:
    """Return the payload of a flag's value for this person, with the default client.

    ``send_feature_flag_events`` defaults to True here, as posthog's module function does.
    """
    return _default().get_feature_flag_payload(  # type: ignore[no-any-return,unused-ignore]
        key, distinct_id, only_evaluate_locally=only_evaluate_locally,
        send_feature_flag_events=send_feature_flag_events,
        **_given(match_value=match_value, groups=groups, person_properties=person_properties,
                 group_properties=group_properties, disable_geoip=disable_geoip,
                 device_id=device_id))


def get_all_flags(distinct_id: Any = None, groups: Optional[Mapping[str, Any]] = None,
                  person_properties: Optional[Mapping[str, Any]] = None,
                  group_properties: Optional[Mapping[str, Mapping[str, Any]]] = None,
                  only_evaluate_locally: bool = False, disable_geoip: Optional[bool] = None,
                  device_id: Optional[str] = None,
                  flag_keys_to_evaluate: Optional[Sequence[str]] = None
                  ) -> Optional[Dict[str, Union[bool, str]]]:
    """Return every flag's known value for this person, with the default client."""
    return _default().get_all_flags(  # type: ignore[no-any-return,unused-ignore]
        distinct_id, only_evaluate_locally=only_evaluate_locally,
        **_given(groups=groups, person_properties=person_properties,
                 group_properties=group_properties, disable_geoip=disable_geoip,
                 device_id=device_id, flag_keys_to_evaluate=flag_keys_to_evaluate))


def get_all_flags_and_payloads(distinct_id: Any = None,
                               groups: Optional[Mapping[str, Any]] = None,
                               person_properties: Optional[Mapping[str, Any]] = None,
                               group_properties: Optional[Mapping[str, Mapping[str, Any]]] = None,
                               only_evaluate_locally: bool = False,
                               disable_geoip: Optional[bool] = None,
                               device_id: Optional[str] = None,
                               flag_keys_to_evaluate: Optional[Sequence[str]] = None
                               ) -> Dict[str, Dict[str, Any]]:
    """Return ``{"featureFlags": ..., "featureFlagPayloads": ...}``, with the default client."""
    return _default().get_all_flags_and_payloads(  # type: ignore[no-any-return,unused-ignore]
        distinct_id, only_evaluate_locally=only_evaluate_locally,
        **_given(groups=groups, person_properties=person_properties,
                 group_properties=group_properties, disable_geoip=disable_geoip,
                 device_id=device_id, flag_keys_to_evaluate=flag_keys_to_evaluate))


def evaluate_flags(distinct_id: Any = None, groups: Optional[Mapping[str, Any]] = None,
                   person_properties: Optional[Mapping[str, Any]] = None,
                   group_properties: Optional[Mapping[str, Mapping[str, Any]]] = None,
                   only_evaluate_locally: bool = False, disable_geoip: Optional[bool] = None,
                   flag_keys: Optional[Sequence[str]] = None,
                   device_id: Optional[str] = None) -> FeatureFlagEvaluations:
    """Evaluate flags once and return the snapshot to branch on, with the default client."""
    return _default().evaluate_flags(
        distinct_id, only_evaluate_locally=only_evaluate_locally,
        **_given(groups=groups, person_properties=person_properties,
                 group_properties=group_properties, disable_geoip=disable_geoip,
                 flag_keys=flag_keys, device_id=device_id))


def get_remote_config_payload(key: str) -> Optional[JSON]:
    """Return a remote config flag's payload, with the default client."""
    payload: Optional[JSON] = _default().get_remote_config_payload(key)
    return payload


def feature_flag_definitions() -> Optional[Mapping[str, Any]]:
    """Return the raw flag definitions in force, with the default client."""
    return _default().feature_flag_definitions()


def load_feature_flags() -> bool:
    """Fetch flag definitions now, with the default client; return True if they loaded."""
    return _default().load_feature_flags()


# --- context (posthog's names) ------------------------------------------------------------


def set_context_device_id(device_id: str) -> None:
    """Make flag calls in the current scope use this device id when given none."""
    _context.set_context_device_id(device_id)


def get_tags() -> Dict[str, Any]:
    """Return a copy of the tags of the current scope."""
    return _context.get_tags()


def scoped(fresh: bool = False, capture_exceptions: Optional[bool] = None
           ) -> Callable[[_F], _F]:
    """Return a decorator that runs the function in a new context scope."""
    return _context.scoped(fresh, capture_exceptions)


# --- lifecycle ----------------------------------------------------------------------------


def flush(timeout: Optional[float] = 10.0, *, timeout_seconds: Optional[float] = math.nan
          ) -> bool:
    """Flush the default client, if it exists (``timeout_seconds``: posthog's name)."""
    client = default_client
    return True if client is None else client.flush(timeout, timeout_seconds=timeout_seconds)


def join() -> None:
    """Wait until the default client, if it exists, has sent what it holds."""
    client = default_client
    if client is not None:
        client.join()


def shutdown(timeout: Optional[float] = 10.0) -> bool:
    """Shut the default client down and forget it, so new settings take effect next time."""
    global default_client
    with _default_lock:
        client, default_client = default_client, None
    return True if client is None else client.shutdown(timeout)


# --- settings: an assignment to a name that is no setting is most likely a typo ------------


class _Module(_ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if (not name.startswith("_") and name not in self.__dict__
                and not isinstance(value, _ModuleType)):  # importing a submodule sets one
            _compat.unknown_setting(name, _SETTINGS)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Module
