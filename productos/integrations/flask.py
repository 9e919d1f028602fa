"""Flask integration: per-request context, unhandled exception capture, flags in views.

    from productos.integrations.flask import Productos, productos_request

    app = Flask(__name__)
    app.config["PRODUCTOS_API_KEY"] = "phc_..."     # or the PRODUCTOS_API_KEY variable
    Productos(app)                                   # or Productos().init_app(app)

    @app.get("/")
    def index():
        if productos_request.feature_enabled("new-home"):
            ...

Config keys (all optional): ``PRODUCTOS_API_KEY``, ``PRODUCTOS_HOST``,
``PRODUCTOS_PERSONAL_API_KEY``, ``PRODUCTOS_OPTIONS`` (other Client arguments),
``PRODUCTOS_CLIENT`` (an existing Client), ``PRODUCTOS_ENABLED``,
``PRODUCTOS_CAPTURE_EXCEPTIONS``, ``PRODUCTOS_TRUST_DISTINCT_ID_HEADER``, and the hooks
``PRODUCTOS_REQUEST_FILTER``, ``PRODUCTOS_EXTRA_PROPERTIES``, ``PRODUCTOS_DISTINCT_ID``,
``PRODUCTOS_PERSON_PROPERTIES``, ``PRODUCTOS_GROUPS`` (callables taking the request, or
dotted paths to them), ``PRODUCTOS_PROPERTIES_MAP`` (callable taking the request's tags and
returning the tags to use). ``productos_request`` and ``get_request_client()`` are typed as
:class:`productos.integrations.RequestClient`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Dict, Mapping, Optional, cast

import productos
from productos.integrations._common import (
    DISTINCT_ID_HEADER,
    INERT,
    SESSION_ID_HEADER,
    IntegrationSettings,
    RequestClient,
    RequestInfo,
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
    request_client,
    settings_from_mapping,
    user_distinct_id,
    wants_request,
)

try:
    from flask import Flask, current_app, got_request_exception, has_request_context, request
    from werkzeug.local import LocalProxy
except ImportError as _error:
    raise not_installed_error("Flask", "flask", _error) from _error

__all__ = ["PosthogFlaskIntegration", "Productos", "RequestClient", "get_client",
           "get_request_client", "productos_request"]

log = logging.getLogger("productos")

CONFIG_PREFIX = "PRODUCTOS_"
EXTENSION = "productos"

# Per-request state lives in the WSGI environ: it is the request's own, even when a test or
# a CLI command keeps one app context open across several requests.
_SCOPE = "productos.scope"
_HELPER = "productos.request_client"
_SKIP = "productos.skip"


class Productos:
    """The Flask extension: ``Productos(app)`` or ``Productos().init_app(app)``."""

    def __init__(self, app: Optional[Flask] = None, *, client: Any = None) -> None:
        self._client = client
        self._given: Dict[str, Any] = {}  # settings given as arguments: they beat app.config
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Read ``PRODUCTOS_*`` config, build the client and register the request hooks."""
        config = {name[len(CONFIG_PREFIX):]: value for name, value in app.config.items()
                  if name.startswith(CONFIG_PREFIX)}
        if self._client is not None:
            config.setdefault("CLIENT", self._client)
        config.update(self._given)
        module_client = config.pop("MODULE_CLIENT", False)
        if module_client and config.get("CLIENT") is None and config.get("API_KEY") is None:
            config["CLIENT"] = _module_client()
        if config.pop("AUTOCAPTURE_DECIDES", False) and "CAPTURE_EXCEPTIONS" not in config:
            config["CAPTURE_EXCEPTIONS"] = _autocapture_setting(config)
        app.extensions[EXTENSION] = settings_from_mapping(config, "PRODUCTOS_* config")
        ensure_signal_drain()
        before = app.before_request_funcs.setdefault(None, [])
        if _before_request in before:  # init_app called again: new settings, same hooks
            return
        # First in line, so the app's own before_request hooks already run inside the context.
        before.insert(0, _before_request)
        app.teardown_request(_teardown_request)
        got_request_exception.connect(_on_exception, app, weak=False)

    def settings(self, app: Optional[Flask] = None) -> IntegrationSettings:
        """The settings in force for app (the current app by default)."""
        return _settings_for(app or current_app)

    @property
    def client(self) -> Any:
        """The Client of the current app, or None."""
        return get_client()


class PosthogFlaskIntegration(Productos):
    """posthog's Flask extension, by its name and arguments: :class:`Productos` underneath.

    ``capture_tracing_headers`` (or the deprecated ``trust_tracing_headers``) is
    ``TRUST_DISTINCT_ID_HEADER``; without ``client`` (nor ``PRODUCTOS_CLIENT``/``_API_KEY``
    config), the module-level client is used when the application configured one, as posthog
    uses its global client. With ``capture_exceptions=None`` the client's
    ``enable_exception_autocapture`` decides whether unhandled exceptions are captured.
    """

    def __init__(self, app: Optional[Flask] = None, *, client: Any = None,
                 capture_exceptions: Optional[bool] = None,
                 request_filter: Optional[Callable[[Any], bool]] = None,
                 extra_properties: Optional[Callable[[Any], Mapping[str, Any]]] = None,
                 trust_tracing_headers: Optional[bool] = None,
                 capture_tracing_headers: Optional[bool] = None) -> None:
        headers = (capture_tracing_headers if capture_tracing_headers is not None
                   else trust_tracing_headers)
        given = {"CAPTURE_EXCEPTIONS": capture_exceptions, "REQUEST_FILTER": request_filter,
                 "EXTRA_PROPERTIES": extra_properties, "TRUST_DISTINCT_ID_HEADER": headers}
        super().__init__(None, client=client)
        self._given = {key: value for key, value in given.items() if value is not None}
        self._given["MODULE_CLIENT"] = True
        # posthog: without capture_exceptions, the client's enable_exception_autocapture decides.
        self._given["AUTOCAPTURE_DECIDES"] = capture_exceptions is None
        if app is not None:
            self.init_app(app)


def _autocapture_setting(config: Mapping[str, Any]) -> bool:
    """The enable_exception_autocapture of the client the config names or will build."""
    client = config.get("CLIENT")
    if client is not None:
        return bool(getattr(getattr(client, "options", None), "enable_exception_autocapture",
                            False))
    options = config.get("OPTIONS") or {}
    return bool(options.get("enable_exception_autocapture", False))


def _module_client() -> Any:
    """Return the module-level client if the application configured one (else None)."""
    if productos.default_client is not None or productos.project_api_key or productos.api_key:
        return productos.setup()
    return None


def _settings_for(app: Any) -> IntegrationSettings:
    try:
        settings = app.extensions.get(EXTENSION)
    except Exception:
        return INERT
    return settings if isinstance(settings, IntegrationSettings) else INERT


def get_client(app: Optional[Flask] = None) -> Any:
    """Return the Client configured for app (the current app by default), or None."""
    settings = _settings_for(app or current_app)
    return settings.client if settings.active else None


def get_request_client() -> RequestClient:
    """Return the helper bound to the current request (an inert one outside requests)."""
    if not has_request_context():
        return RequestClient()
    helper = request.environ.get(_HELPER)
    return helper if isinstance(helper, RequestClient) else RequestClient()


#: ``productos_request.feature_enabled("key")`` inside a request, like Django's request.productos.
#: Typed as the RequestClient it stands for (it is a proxy to the current request's).
productos_request: RequestClient = cast(RequestClient, LocalProxy(get_request_client))


# --- hooks ------------------------------------------------------------------------------------


def _request_info() -> RequestInfo:
    headers = request.headers
    try:
        url: Optional[str] = request.url
    except Exception:
        url = request.path
    rule = request.url_rule
    return RequestInfo(
        url=url,
        method=request.method,
        path=request.path,
        ip=client_ip(headers.get("X-Forwarded-For"), request.remote_addr),
        user_agent=headers.get("User-Agent") or None,
        route=rule.rule if rule is not None else None,
        distinct_id_header=clean_header_value(headers.get(DISTINCT_ID_HEADER)),
        session_id_header=clean_header_value(headers.get(SESSION_ID_HEADER)),
    )


def _user_id(settings: IntegrationSettings, req: Any) -> Optional[str]:
    if settings.distinct_id is not None:
        value = call_hook(settings.distinct_id, req, "DISTINCT_ID")
        return None if value is None or value == "" else str(value)
    if "flask_login" in sys.modules:  # used only if the app already uses it
        try:
            from flask_login import current_user

            return user_distinct_id(current_user)
        except Exception:
            log.debug("productos: could not read flask_login.current_user", exc_info=True)
    return None


def _before_request() -> None:
    ensure_signal_drain()
    environ = request.environ
    environ[_HELPER] = RequestClient()
    with guard("opening the request context"):
        settings = _settings_for(current_app)
        req = request._get_current_object()  # type: ignore[attr-defined]
        if not wants_request(settings, req):
            environ[_SKIP] = True
            if settings.active:  # flags still work, for the header's id at least
                header = clean_header_value(request.headers.get(DISTINCT_ID_HEADER))
                environ[_HELPER] = RequestClient(
                    settings.client, header if settings.trust_distinct_id_header else None)
            return
        info = _request_info()
        info.extra_tags = extra_properties(settings, req)
        distinct_id = header_distinct_id(settings, info) or _user_id(settings, req)
        environ[_HELPER] = request_client(settings, req, distinct_id, info.session_id_header)
        environ[_SCOPE] = open_request_context(settings, info, distinct_id)


def _teardown_request(exc: Optional[BaseException] = None) -> None:
    close_request_context(request.environ.pop(_SCOPE, None))


def _on_exception(sender: Any, exception: BaseException, **extra: Any) -> None:
    """Flask signals this only for errors no error handler dealt with (not 404s, not aborts)."""
    if has_request_context() and request.environ.get(_SKIP):
        return
    capture_request_exception(_settings_for(sender), exception, "flask")
