"""Django integration: per-request context, view exception capture, flags in views.

Settings (all optional; keys fall back to the ``PRODUCTOS_*`` environment variables)::

    INSTALLED_APPS = [..., "productos.integrations.django.ProductosConfig"]
    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "productos.integrations.django.ProductosMiddleware",  # after auth: it reads request.user
        ...,
    ]
    PRODUCTOS = {
        "API_KEY": "phc_...",
        "HOST": "https://us.i.posthog.com",
        "PERSONAL_API_KEY": None,             # for local flag evaluation
        "OPTIONS": {"flush_interval": 1.0},   # any other productos.Client argument
        "CLIENT": None,                       # or an existing productos.Client to use as is
        "ENABLED": True,
        "CAPTURE_EXCEPTIONS": True,
        "TRUST_DISTINCT_ID_HEADER": True,     # X-POSTHOG-DISTINCT-ID names the user
        "REQUEST_FILTER": None,               # callable(request) -> bool; False: not tracked
        "EXTRA_PROPERTIES": None,             # callable(request) -> dict of extra tags
        "DISTINCT_ID": None,                  # callable(request) -> id, instead of user.pk
        "PERSON_PROPERTIES": None,            # callable(request) -> dict, for flags
        "GROUPS": None,                       # callable(request) -> {"company": "id"}, for flags
        "PROPERTIES_MAP": None,               # callable(tags) -> tags, the request's final tags
    }

posthog's ``POSTHOG_MW_*`` settings are read as the keys they mean (``POSTHOG_MW_CLIENT`` is
``CLIENT``, ``POSTHOG_MW_EXTRA_TAGS`` is ``EXTRA_PROPERTIES``...), and posthog's middleware name
``productos.integrations.django.PosthogContextMiddleware`` is this middleware. Without a CLIENT
or API_KEY, a module-level client the application configured (``productos.api_key = ...``)
is used.

Hooks may be callables or dotted paths. In a view, ``request.productos.feature_enabled("key")``
reads a flag for the request's user, and ``request.productos.capture("event")`` captures as them;
typed code writes ``request_client(request).feature_enabled("key")``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Mapping, Optional, Tuple, Union

import productos
from productos.integrations._common import (
    INERT,
    IntegrationSettings,
    RequestClient,
    RequestInfo,
    SettingsCache,
    call_hook,
    capture_request_exception,
    clean_header_value,
    client_ip,
    close_request_context,
    ensure_signal_drain,
    extra_properties,
    guard,
    header_distinct_id,
    not_installed_error,
    open_request_context,
    report_internal_error,
    settings_from_mapping,
    user_distinct_id,
    wants_request,
)
from productos.integrations._common import request_client as _bind_request_client

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
    from django.apps import AppConfig
    from django.conf import settings as django_settings
    from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
    from django.core.signals import got_request_exception, setting_changed
    from django.http import Http404
    from django.http.multipartparser import MultiPartParserError
except ImportError as _error:
    raise not_installed_error("Django", "django", _error) from _error

__all__ = ["PosthogContextMiddleware", "ProductosConfig", "ProductosMiddleware", "RequestClient",
           "get_client", "get_settings", "request_client"]

log = logging.getLogger("productos")

# Django answers these with a 4xx response: the client's mistake, not an error in the app.
CLIENT_ERRORS = (Http404, PermissionDenied, BadRequest, SuspiciousOperation,
                 MultiPartParserError)

_SKIP = "_productos_skip"  # set on requests the filter excluded


# posthog's Django settings, read as the PRODUCTOS keys they mean; the first one set wins
# (posthog's current name before its deprecated one), and a PRODUCTOS key beats them all.
POSTHOG_SETTINGS: Tuple[Tuple[str, str], ...] = (
    ("POSTHOG_MW_CLIENT", "CLIENT"),
    ("POSTHOG_MW_CAPTURE_EXCEPTIONS", "CAPTURE_EXCEPTIONS"),
    ("POSTHOG_MW_REQUEST_FILTER", "REQUEST_FILTER"),
    ("POSTHOG_MW_EXTRA_PROPERTIES", "EXTRA_PROPERTIES"),
    ("POSTHOG_MW_EXTRA_TAGS", "EXTRA_PROPERTIES"),
    ("POSTHOG_MW_CAPTURE_TRACING_HEADERS", "TRUST_DISTINCT_ID_HEADER"),
    ("POSTHOG_MW_TRUST_TRACING_HEADERS", "TRUST_DISTINCT_ID_HEADER"),
    ("POSTHOG_MW_PROPERTIES_MAP", "PROPERTIES_MAP"),
    ("POSTHOG_MW_TAG_MAP", "PROPERTIES_MAP"),
)
_WATCHED = frozenset({"PRODUCTOS", *(name for name, _ in POSTHOG_SETTINGS)})


def merged_settings(config: Mapping[str, Any], source: Any) -> Dict[str, Any]:
    """Return the PRODUCTOS keys with posthog's ``POSTHOG_MW_*`` settings in ``source`` added.

    With no CLIENT and no API_KEY anywhere, the module-level client is used when the
    application configured one (``productos.api_key = ...`` as posthog apps do).
    """
    merged = dict(config)
    for posthog_name, key in POSTHOG_SETTINGS:
        if key not in merged and hasattr(source, posthog_name):
            merged[key] = getattr(source, posthog_name)
    # No client named: the package's module-level (posthog-style) client, if configured.
    if (merged.get("CLIENT") is None and merged.get("API_KEY") is None
            and (productos.default_client is not None
                 or productos.project_api_key or productos.api_key)):
        merged["CLIENT"] = productos.setup()
    return merged


def _load_settings() -> IntegrationSettings:
    config = getattr(django_settings, "PRODUCTOS", None)
    if config is None:
        config = {}
    if not isinstance(config, Mapping):
        log.error("productos: settings.PRODUCTOS must be a dict, not %s; the integration is off",
                  type(config).__name__)
        return INERT
    return settings_from_mapping(merged_settings(config, django_settings), "PRODUCTOS")


_settings = SettingsCache(_load_settings)


def get_settings() -> IntegrationSettings:
    """Return the integration settings (the client is built on first use)."""
    return _settings.get()


def get_client() -> Any:
    """Return the productos Client the settings configured, or None if there is none."""
    settings = _settings.get()
    return settings.client if settings.active else None


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in _WATCHED:  # override_settings in tests, or a reload
        _settings.reset()


setting_changed.connect(_on_setting_changed, dispatch_uid="productos.setting_changed")


# --- reading a request ---------------------------------------------------------------------


def _request_info(request: Any) -> RequestInfo:
    meta = request.META
    try:
        url = request.build_absolute_uri()
    except Exception:  # DisallowedHost: Django answers 400 itself; keep the path
        url = request.get_full_path()
    return RequestInfo(
        url=url,
        method=request.method,
        path=request.path,
        ip=client_ip(meta.get("HTTP_X_FORWARDED_FOR"), meta.get("REMOTE_ADDR")),
        user_agent=meta.get("HTTP_USER_AGENT") or None,
        distinct_id_header=clean_header_value(meta.get("HTTP_X_POSTHOG_DISTINCT_ID")),
        session_id_header=clean_header_value(meta.get("HTTP_X_POSTHOG_SESSION_ID")),
    )


def _as_id(value: Any) -> Optional[str]:
    return None if value is None or value == "" else str(value)


def _user_id_sync(settings: IntegrationSettings, request: Any) -> Optional[str]:
    if settings.distinct_id is not None:
        return _as_id(call_hook(settings.distinct_id, request, "DISTINCT_ID"))
    try:
        return user_distinct_id(getattr(request, "user", None))
    except Exception:  # the session or user lookup failed: the view will see it too
        log.warning("productos: could not read request.user", exc_info=True)
        return None


async def _user_id_async(request: Any) -> Optional[str]:
    try:
        auser = getattr(request, "auser", None)  # Django >= 5.0
        if auser is not None:
            return user_distinct_id(await auser())
        return await sync_to_async(lambda: user_distinct_id(getattr(request, "user", None)))()
    except Exception:
        log.warning("productos: could not read the request's user", exc_info=True)
        return None


@dataclass
class _Prepared:
    info: Optional[RequestInfo]  # None: the request is not tracked
    distinct_id: Optional[str]
    helper: RequestClient


def _untracked(settings: IntegrationSettings, request: Any) -> _Prepared:
    # Flags still work in views the filter excluded, for the header's id at least.
    helper = RequestClient()
    if settings.active:
        header = clean_header_value(request.META.get("HTTP_X_POSTHOG_DISTINCT_ID"))
        helper = RequestClient(settings.client,
                               header if settings.trust_distinct_id_header else None)
    return _Prepared(None, None, helper)


def _prepare_sync(request: Any, settings: IntegrationSettings) -> _Prepared:
    if not wants_request(settings, request):
        return _untracked(settings, request)
    info = _request_info(request)
    info.extra_tags = extra_properties(settings, request)
    distinct_id = header_distinct_id(settings, info) or _user_id_sync(settings, request)
    helper = _bind_request_client(settings, request, distinct_id, info.session_id_header)
    return _Prepared(info, distinct_id, helper)


async def _prepare_async(request: Any, settings: IntegrationSettings) -> _Prepared:
    if settings.has_hooks:  # user code may touch the database: give it a sync context
        return await sync_to_async(_prepare_sync)(request, settings)
    if not settings.active:
        return _untracked(settings, request)
    info = _request_info(request)
    distinct_id = header_distinct_id(settings, info) or await _user_id_async(request)
    helper = _bind_request_client(settings, request, distinct_id, info.session_id_header)
    return _Prepared(info, distinct_id, helper)


def _apply(request: Any, settings: IntegrationSettings, prepared: _Prepared) -> Any:
    """Attach the helper to the request and open its context; return the context to close."""
    request.productos = prepared.helper
    if prepared.info is None:
        setattr(request, _SKIP, True)
        return None
    return open_request_context(settings, prepared.info, prepared.distinct_id)


# --- middleware ------------------------------------------------------------------------------


class ProductosMiddleware:
    """Opens a fresh productos context for each request and captures view exceptions.

    Works in sync (WSGI) and async (ASGI) stacks without forcing Django to switch modes.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Union[Any, Awaitable[Any]]]) -> None:
        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        """Serve the request inside its own context."""
        if self._async:
            return self.__acall__(request)
        ensure_signal_drain()
        request.productos = RequestClient()
        scope = None
        with guard("opening the request context"):
            settings = get_settings()
            scope = _apply(request, settings, _prepare_sync(request, settings))
        try:
            return self.get_response(request)
        finally:
            close_request_context(scope)

    async def __acall__(self, request: Any) -> Any:
        """Serve the request inside its own context (async stacks)."""
        ensure_signal_drain()
        request.productos = RequestClient()
        scope = None
        try:
            settings = get_settings()
            scope = _apply(request, settings, await _prepare_async(request, settings))
        except Exception as exc:
            report_internal_error("opening the request context", exc)
        try:
            return await self.get_response(request)  # type: ignore[misc,unused-ignore]
        finally:
            close_request_context(scope)

    def process_exception(self, request: Any, exception: BaseException) -> None:
        """Capture an exception a view raised; Django then answers with its 500 page."""
        if getattr(request, _SKIP, False) or isinstance(exception, CLIENT_ERRORS):
            return None
        capture_request_exception(get_settings(), exception, "django")
        return None


# posthog's name for the middleware, for settings.MIDDLEWARE lists written for posthog.
PosthogContextMiddleware = ProductosMiddleware


def request_client(request: Any) -> RequestClient:
    """Return ``request.productos`` typed: flags and events for the request's user.

    The middleware sets ``request.productos``; type checkers cannot see that attribute on
    Django's ``HttpRequest``, so typed views call this instead. Outside the middleware it
    returns a RequestClient bound to nothing, whose calls return None.
    """
    helper = getattr(request, "productos", None)
    return helper if isinstance(helper, RequestClient) else RequestClient()


def _on_got_request_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    """Capture exceptions raised outside views (other middleware); views are deduplicated."""
    exc = sys.exc_info()[1]  # the signal carries no exception; async handlers lose it here
    if exc is None or (request is not None and getattr(request, _SKIP, False)):
        return
    capture_request_exception(get_settings(), exc, "django")


# --- app config -------------------------------------------------------------------------------


class ProductosConfig(AppConfig):  # type: ignore[misc,unused-ignore]
    """Builds the client when Django starts; it is drained at exit and on SIGTERM."""

    name = "productos.integrations.django"
    label = "productos"
    verbose_name = "productos"

    def ready(self) -> None:
        """Create the client from settings.PRODUCTOS and hook exception capture in.

        The core drains the client at exit, and on SIGTERM (see productos.signals).
        """
        with guard("starting the productos integration"):
            get_settings()
            got_request_exception.connect(_on_got_request_exception,
                                          dispatch_uid="productos.got_request_exception")
        ensure_signal_drain()
