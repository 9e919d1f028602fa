"""Framework-neutral pieces of the web integrations: request identity, tags, guards, flags helper.

Nothing here imports a web framework. The Django and Flask modules turn their request objects
into a :class:`RequestInfo` and let this module do the rest, so both behave the same way.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Type, Union

from productos import Client
from productos.context import identify_context, new_context, set_context_session, tag
from productos.signals import auto_install
from productos.types import JSON

log = logging.getLogger("productos")

DISTINCT_ID_HEADER = "X-POSTHOG-DISTINCT-ID"
SESSION_ID_HEADER = "X-POSTHOG-SESSION-ID"
MAX_HEADER_VALUE_LENGTH = 1000

# C0 and C1 control characters, DEL, and the Unicode line/paragraph separators: an id with
# any of them is a forged or broken header, and they would corrupt logs downstream.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# Called with every internal error a guard swallows. The test suite registers a hook that
# fails the test, so a bug is never hidden by the guard that protects the host application.
internal_error_hooks: List[Callable[[BaseException], None]] = []


class IntegrationNotAvailable(ImportError):
    """The framework an integration needs is not installed."""


def not_installed_error(module: str, extra: str, error: ImportError) -> IntegrationNotAvailable:
    """Return the error to raise when ``module`` cannot be imported for an integration."""
    return IntegrationNotAvailable(
        f"productos' {extra} integration needs {module}, which is not installed: "
        f"pip install 'productos[{extra}]'  ({error})")


# --- guards ------------------------------------------------------------------------------------


def report_internal_error(what: str, exc: BaseException) -> None:
    """Log an SDK error raised inside a host hook (and tell the test hooks)."""
    log.error("productos: internal error while %s; the request goes on without it", what,
              exc_info=exc)
    for hook in list(internal_error_hooks):
        try:
            hook(exc)
        except Exception:
            log.debug("productos: internal error hook failed", exc_info=True)


class guard:  # lower case: it reads as a function, ``with guard("doing x"):``
    """Run SDK code inside a host hook: errors are logged, never raised into the application."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Optional[Type[BaseException]], exc: Optional[BaseException],
                 traceback: Optional[TracebackType]) -> bool:
        # A bool, so type checkers know the block may end here with the error swallowed.
        if isinstance(exc, Exception):
            report_internal_error(self.what, exc)
            return True
        return False


_signal_drain_pid = 0


def ensure_signal_drain() -> None:
    """Install the SIGTERM drain once per process, from its main thread (cheap after that).

    Clients install it when created; this also covers processes forked from a parent that
    created the client (gunicorn ``--preload``), where the server reset SIGTERM since.
    """
    global _signal_drain_pid
    if threading.current_thread() is not threading.main_thread():
        return
    pid = os.getpid()
    if _signal_drain_pid == pid:
        return
    _signal_drain_pid = pid
    with guard("installing the SIGTERM drain"):
        auto_install()


# --- configuration -------------------------------------------------------------------------------


def resolve_callable(value: Any, name: str) -> Optional[Callable[..., Any]]:
    """Accept a callable or a dotted path to one (``"myapp.hooks.request_filter"``)."""
    if value is None or callable(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str) and "." in value:
        module_name, _, attr = value.rpartition(".")
        found = getattr(importlib.import_module(module_name), attr)
        if callable(found):
            return found  # type: ignore[no-any-return]
    raise TypeError(f"{name} must be a callable or a dotted path to one, not {value!r}")


@dataclass(frozen=True)
class IntegrationSettings:
    """How a web integration behaves, whatever framework configured it."""

    client: Any = None
    enabled: bool = True
    capture_exceptions: bool = True
    trust_distinct_id_header: bool = True
    request_filter: Optional[Callable[[Any], Any]] = None
    extra_properties: Optional[Callable[[Any], Optional[Mapping[str, Any]]]] = None
    distinct_id: Optional[Callable[[Any], Any]] = None
    person_properties: Optional[Callable[[Any], Optional[Mapping[str, Any]]]] = None
    groups: Optional[Callable[[Any], Optional[Mapping[str, Any]]]] = None
    # callable(tags) -> tags: the last word on the request's tags (posthog's PROPERTIES_MAP)
    properties_map: Optional[Callable[[Dict[str, Any]], Optional[Mapping[str, Any]]]] = None
    owns_client: bool = False  # built from these settings, so shut down with them

    @property
    def active(self) -> bool:
        """True when there is a client to send to and the integration is switched on."""
        return self.enabled and self.client is not None

    @property
    def has_hooks(self) -> bool:
        """True when user code runs for each request (it may need a sync context)."""
        return any(hook is not None for hook in (
            self.request_filter, self.extra_properties, self.distinct_id,
            self.person_properties, self.groups, self.properties_map))


INERT = IntegrationSettings(enabled=False)

SETTING_NAMES = ("API_KEY", "HOST", "PERSONAL_API_KEY", "OPTIONS", "CLIENT", "ENABLED",
                 "CAPTURE_EXCEPTIONS", "TRUST_DISTINCT_ID_HEADER", "REQUEST_FILTER",
                 "EXTRA_PROPERTIES", "DISTINCT_ID", "PERSON_PROPERTIES", "GROUPS",
                 "PROPERTIES_MAP")


def settings_from_mapping(config: Mapping[str, Any], where: str) -> IntegrationSettings:
    """Build settings (and the client) from ``API_KEY``/``HOST``/``OPTIONS``/... keys.

    Any mistake is logged and gives inert settings: a misconfigured SDK must not stop the
    application from serving requests.
    """
    try:
        unknown = sorted(set(config) - set(SETTING_NAMES))
        if unknown:
            log.warning("productos: unknown %s setting(s) ignored: %s", where, ", ".join(unknown))
        hooks = {name.lower(): resolve_callable(config.get(name), name) for name in
                 ("REQUEST_FILTER", "EXTRA_PROPERTIES", "DISTINCT_ID", "PERSON_PROPERTIES",
                  "GROUPS", "PROPERTIES_MAP")}
        enabled = bool(config.get("ENABLED", True))
        client = config.get("CLIENT")
        owns_client = client is None and enabled
        if owns_client:  # last, so nothing after it can fail and leak a started client
            client = build_client(config)
        return IntegrationSettings(
            client=client,
            enabled=enabled,
            owns_client=owns_client,
            capture_exceptions=bool(config.get("CAPTURE_EXCEPTIONS", True)),
            trust_distinct_id_header=bool(config.get("TRUST_DISTINCT_ID_HEADER", True)),
            **hooks,
        )
    except Exception:
        log.exception("productos: the %s settings are invalid; the integration is off", where)
        return INERT


def build_client(config: Mapping[str, Any]) -> Any:
    """Create the Client the settings describe (keys fall back to PRODUCTOS_* variables)."""
    options = dict(config.get("OPTIONS") or {})
    return Client(config.get("API_KEY"), host=config.get("HOST"),
                  personal_api_key=config.get("PERSONAL_API_KEY"), **options)


class SettingsCache:
    """Settings loaded once, thread-safely, and dropped (client shut down) when they change."""

    def __init__(self, load: Callable[[], IntegrationSettings]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._value: Optional[IntegrationSettings] = None

    def get(self) -> IntegrationSettings:
        """Return the current settings, loading them on first use."""
        value = self._value
        if value is not None:
            return value
        with self._lock:
            if self._value is None:
                try:
                    self._value = self._load()
                except Exception as exc:
                    report_internal_error("loading productos settings", exc)
                    self._value = INERT
            return self._value

    def reset(self, timeout: Optional[float] = 2.0) -> None:
        """Forget the settings; shut down the client if it was built from them."""
        with self._lock:
            value, self._value = self._value, None
        if value is not None and value.owns_client and value.client is not None:
            with guard("shutting down the previous client"):
                value.client.shutdown(timeout)


# --- requests ----------------------------------------------------------------------------------


def clean_header_value(value: Any) -> Optional[str]:
    """Strip control characters and surrounding space, cap at 1000 characters; None if empty."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = _CONTROL.sub("", str(value)).strip()[:MAX_HEADER_VALUE_LENGTH]
    return text or None


def client_ip(forwarded_for: Optional[str], remote_addr: Optional[str]) -> Optional[str]:
    """The client's address: the first X-Forwarded-For entry, else the peer address."""
    if forwarded_for:
        first = forwarded_for.split(",", 1)[0].strip()
        if first:
            return first
    return remote_addr or None


@dataclass
class RequestInfo:
    """What an integration read from one request, in framework-neutral form."""

    url: Optional[str] = None
    method: Optional[str] = None
    path: Optional[str] = None
    ip: Optional[str] = None
    user_agent: Optional[str] = None
    route: Optional[str] = None
    distinct_id_header: Optional[str] = None
    session_id_header: Optional[str] = None
    extra_tags: Dict[str, Any] = field(default_factory=dict)

    def tags(self) -> Dict[str, Any]:
        """The ``$`` tags this request puts on every event captured while it runs."""
        tags = {
            "$current_url": self.url,
            "$request_method": self.method,
            "$request_path": self.path,
            "$ip": self.ip,
            "$user_agent": self.user_agent,
            # The same again under the name PostHog's server-side bot detection reads.
            "$raw_user_agent": self.user_agent,
            "$request_route": self.route,
        }
        return {key: value for key, value in tags.items() if value is not None}


def call_hook(hook: Optional[Callable[[Any], Any]], request: Any, name: str) -> Any:
    """Call a user hook with the request; log and return None if it raises."""
    if hook is None:
        return None
    try:
        return hook(request)
    except Exception:
        log.exception("productos: the %s hook raised; ignoring it for this request", name)
        return None


def wants_request(settings: IntegrationSettings, request: Any) -> bool:
    """Apply the request filter: False means this request is not tracked at all."""
    if not settings.active:
        return False
    if settings.request_filter is None:
        return True
    try:
        return bool(settings.request_filter(request))
    except Exception:
        log.exception("productos: the request filter raised; tracking the request anyway")
        return True


def header_distinct_id(settings: IntegrationSettings, info: RequestInfo) -> Optional[str]:
    """The distinct id the upstream header carries, when the settings trust it."""
    return info.distinct_id_header if settings.trust_distinct_id_header else None


def open_request_context(settings: IntegrationSettings, info: RequestInfo,
                         distinct_id: Optional[str]) -> new_context:
    """Enter a fresh context tagged for this request; the caller must close it."""
    scope = new_context(fresh=True, capture_exceptions=False, client=settings.client)
    scope.__enter__()
    try:
        if distinct_id:
            identify_context(distinct_id)
        if info.session_id_header:
            set_context_session(info.session_id_header)
        tags = {**info.tags(), **{str(k): v for k, v in info.extra_tags.items()}}
        if settings.properties_map is not None:
            tags = mapped_tags(settings.properties_map, tags)
        for key, value in tags.items():
            tag(key, value)
    except BaseException:
        close_request_context(scope)
        raise
    return scope


def mapped_tags(properties_map: Callable[[Dict[str, Any]], Optional[Mapping[str, Any]]],
                tags: Dict[str, Any]) -> Dict[str, Any]:
    """Return the tags as PROPERTIES_MAP leaves them (unchanged if it fails or returns junk)."""
    with guard("running PROPERTIES_MAP"):
        mapped = properties_map(dict(tags))
        if isinstance(mapped, Mapping):
            return {str(key): value for key, value in mapped.items()}
        log.warning("productos: PROPERTIES_MAP returned %s, not a dict; the request's tags "
                    "are kept as they were", type(mapped).__name__)
    return tags


def close_request_context(scope: Optional[new_context]) -> None:
    """Leave a context opened by open_request_context (never raises)."""
    if scope is None:
        return
    try:
        scope.__exit__(None, None, None)
    except Exception:
        # A context left from another thread or task cannot be reset there; the scope
        # then simply ends with that context.
        log.debug("productos: request context closed elsewhere", exc_info=True)


def capture_request_exception(settings: IntegrationSettings, exc: BaseException,
                              mechanism: str, *, handled: bool = False,
                              distinct_id: Optional[str] = None) -> None:
    """Capture an exception raised while serving a request (never raises)."""
    if not (settings.active and settings.capture_exceptions):
        return
    with guard("capturing a request exception"):
        settings.client.capture_exception(exc, distinct_id=distinct_id, handled=handled,
                                          mechanism=mechanism)


# --- the per-request helper ----------------------------------------------------------------------


class RequestBound:
    """What a per-request helper knows: the client, the request's person, session and groups.

    The sync :class:`RequestClient` and the ASGI integration's awaitable one share it: how a
    read is bound to the request (:meth:`_bind`) and event capture.
    """

    __slots__ = ("client", "distinct_id", "groups", "person_properties", "session_id")

    def __init__(self, client: Any = None, distinct_id: Optional[str] = None,
                 session_id: Optional[str] = None,
                 person_properties: Optional[Mapping[str, Any]] = None,
                 groups: Optional[Mapping[str, Any]] = None) -> None:
        self.client = client
        self.distinct_id = distinct_id
        self.session_id = session_id
        self.person_properties = dict(person_properties or {})
        self.groups = dict(groups or {})

    def __repr__(self) -> str:
        return f"<{type(self).__name__} distinct_id={self.distinct_id!r}>"

    def capture(self, event: str, **kwargs: Any) -> Optional[str]:
        """Capture an event as this request's user; return its uuid or None."""
        if self.client is None:
            return None
        kwargs.setdefault("distinct_id", self.distinct_id)
        with guard("capturing an event from a request"):
            return self.client.capture(event, **kwargs)  # type: ignore[no-any-return]
        return None

    def _bind(self, method: str, key: Optional[str], kwargs: Dict[str, Any]) -> Optional[str]:
        """The distinct id a read is for (None: no client or no person, nothing to read), with
        the request's person properties and groups merged into ``kwargs``."""
        if self.client is None:
            return None
        distinct_id: Optional[str] = kwargs.pop("distinct_id", None) or self.distinct_id
        if not distinct_id:
            log.debug("productos: %s(%r) in a request with no distinct id", method, key)
            return None
        if self.person_properties:
            kwargs["person_properties"] = {**self.person_properties,
                                           **(kwargs.get("person_properties") or {})}
        if self.groups and kwargs.get("groups") is None:
            kwargs["groups"] = dict(self.groups)
        return distinct_id


class RequestClient(RequestBound):
    """The client as one request sees it: flags and events bound to its distinct id.

    Every method returns None rather than raising, so a view that reads a flag works the same
    when the SDK is off, misconfigured, or its backend unreachable. Typed code gets it from
    ``productos.integrations.django.request_client(request)`` or
    ``productos.integrations.flask.get_request_client()``; it is exported as
    ``productos.integrations.RequestClient``.
    """

    __slots__ = ()

    def feature_enabled(self, key: str, **kwargs: Any) -> Optional[bool]:
        """Whether flag ``key`` is on for this request's user (None when unknown)."""
        return self._flag_call("feature_enabled", key, kwargs)  # type: ignore[no-any-return]

    def get_feature_flag(self, key: str, **kwargs: Any) -> Union[bool, str, None]:
        """The value of flag ``key`` (True/False or a variant) for this request's user."""
        return self._flag_call("get_feature_flag", key, kwargs)  # type: ignore[no-any-return]

    def get_feature_flag_payload(self, key: str, **kwargs: Any) -> Optional[JSON]:
        """The payload of flag ``key`` for this request's user."""
        return self._flag_call("get_feature_flag_payload", key, kwargs)  # type: ignore[no-any-return]

    def _flag_call(self, method: str, key: str, kwargs: Dict[str, Any]) -> Any:
        distinct_id = self._bind(method, key, kwargs)
        if distinct_id is None:
            return None
        func = getattr(self.client, method, None)
        if func is None:
            log.debug("productos: this client has no %s()", method)
            return None
        with guard(f"evaluating flag {key!r}"):
            return func(key, distinct_id, **kwargs)
        return None


def request_client(settings: IntegrationSettings, request: Any,
                   distinct_id: Optional[str], session_id: Optional[str]) -> RequestClient:
    """Build the helper a view uses (an inert one when the integration is off)."""
    if not settings.active:
        return RequestClient()
    person = call_hook(settings.person_properties, request, "PERSON_PROPERTIES")
    groups = call_hook(settings.groups, request, "GROUPS")
    return RequestClient(settings.client, distinct_id, session_id,
                         person if isinstance(person, Mapping) else None,
                         groups if isinstance(groups, Mapping) else None)


def extra_properties(settings: IntegrationSettings, request: Any) -> Dict[str, Any]:
    """The user's extra tags for this request (empty if the hook is unset or fails)."""
    extra = call_hook(settings.extra_properties, request, "EXTRA_PROPERTIES")
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        log.warning("productos: EXTRA_PROPERTIES returned %s, not a mapping; ignored",
                    type(extra).__name__)
        return {}
    return dict(extra)


def user_distinct_id(user: Any) -> Optional[str]:
    """The distinct id of an authenticated user object (its primary key), else None."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    pk = getattr(user, "pk", None)
    if pk is None:
        pk = getattr(user, "id", None)
    return None if pk is None else str(pk)
