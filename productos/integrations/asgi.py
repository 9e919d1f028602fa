"""ASGI middleware: a context per request and exception capture, for any ASGI application.

It speaks ASGI itself, so it works the same for FastAPI, Starlette, Litestar, Quart and
Django's ASGI handler::

    from productos.integrations.asgi import ProductosMiddleware

    app = FastAPI()
    app.add_middleware(ProductosMiddleware, client=client)   # or ProductosMiddleware(app, ...)

Every event captured while a request runs carries its distinct id (the
``X-POSTHOG-DISTINCT-ID`` header, or the ``distinct_id`` hook), ``$session_id``
(``X-POSTHOG-SESSION-ID``), ``$current_url``, ``$request_method``, ``$request_path``, ``$ip``
and ``$user_agent``. An exception that leaves the application is captured once, then
re-raised; error responses the framework produced itself (a 404, an ``HTTPException``) are
not exceptions here and capture nothing. Django turns view errors into 500 responses inside
its handler: add ``productos.integrations.django.ProductosMiddleware`` for those.

At lifespan startup the SIGTERM drain is installed (after the server installed its own
handlers, which it then chains to); at lifespan shutdown the client is flushed (shut down,
when the middleware created it). Hooks (``request_filter``, ``extra_properties``,
``distinct_id``, ``person_properties``, ``groups``) take the ASGI scope and may be
coroutines. :func:`request_flags` gives awaitable flag reads bound to the current request.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from typing import Any, Awaitable, Callable, Dict, List, Mapping, MutableMapping, Optional

import productos
from productos.async_client import AsyncClient
from productos.integrations._common import (
    DISTINCT_ID_HEADER,
    SESSION_ID_HEADER,
    IntegrationSettings,
    RequestBound,
    RequestInfo,
    capture_request_exception,
    clean_header_value,
    client_ip,
    close_request_context,
    ensure_signal_drain,
    guard,
    header_distinct_id,
    open_request_context,
    report_internal_error,
)
from productos.signals import auto_install

__all__ = ["AsyncRequestClient", "PosthogASGIMiddleware", "ProductosMiddleware",
           "productos_flags", "request_flags"]

log = logging.getLogger("productos")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Hook = Callable[[Scope], Any]

SCOPE_KEY = "productos.request_client"
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


class AsyncRequestClient(RequestBound):
    """The client as one request sees it: awaitable flag reads bound to its distinct id.

    Reads answer None (never raise) when the SDK is off, the request has no distinct id,
    or the backend is unreachable.
    """

    __slots__ = ()

    async def feature_enabled(self, key: str, **kwargs: Any) -> Optional[bool]:
        """Whether flag ``key`` is on for this request's user (None when unknown)."""
        value = await self._read("get_feature_flag", key, kwargs)
        return None if value is None else bool(value)

    async def get_feature_flag(self, key: str, **kwargs: Any) -> Any:
        """The value of flag ``key`` (True/False or a variant) for this request's user."""
        return await self._read("get_feature_flag", key, kwargs)

    async def get_feature_flag_payload(self, key: str, **kwargs: Any) -> Any:
        """The payload of flag ``key`` for this request's user."""
        return await self._read("get_feature_flag_payload", key, kwargs)

    async def get_feature_flag_result(self, key: str, **kwargs: Any) -> Any:
        """The full result (value, payload, reason) of flag ``key`` for this request's user."""
        return await self._read("get_feature_flag_result", key, kwargs)

    async def get_all_flags(self, **kwargs: Any) -> Any:
        """Every flag's known value for this request's user."""
        return await self._read("get_all_flags", None, kwargs)

    async def _read(self, method: str, key: Optional[str], kwargs: Dict[str, Any]) -> Any:
        distinct_id = self._bind(method, key, kwargs)
        if distinct_id is None:
            return None
        with guard(f"reading flag {key!r}"):
            read = getattr(self.client, method)
            if key is None:
                return await read(distinct_id, **kwargs)
            return await read(key, distinct_id, **kwargs)
        return None


_INERT = AsyncRequestClient()
_current: contextvars.ContextVar[AsyncRequestClient] = contextvars.ContextVar(
    "productos_asgi_request", default=_INERT)


def request_flags() -> AsyncRequestClient:
    """Return the flag reader of the request being served (an inert one outside requests)."""
    return _current.get()


class ProductosMiddleware:
    """Pure ASGI middleware: request context, exception capture, lifespan drain.

    ``client``: a :class:`productos.Client` or :class:`productos.AsyncClient`; None uses the
    module's default client (``productos.project_api_key`` or ``PRODUCTOS_API_KEY``).
    ``capture_tracing_headers`` / ``trust_tracing_headers`` are posthog's names for
    ``trust_distinct_id_header``.
    """

    def __init__(self, app: ASGIApp, client: Any = None, capture_exceptions: bool = True,
                 request_filter: Optional[Hook] = None,
                 extra_properties: Optional[Hook] = None,
                 trust_tracing_headers: Optional[bool] = None, *,
                 capture_tracing_headers: Optional[bool] = None,
                 trust_distinct_id_header: bool = True, enabled: bool = True,
                 distinct_id: Optional[Hook] = None, person_properties: Optional[Hook] = None,
                 groups: Optional[Hook] = None,
                 shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT) -> None:
        self.app = app
        trust = trust_distinct_id_header
        for alias in (trust_tracing_headers, capture_tracing_headers):
            if alias is not None:
                trust = bool(alias)
        self._given = client
        self._config: Dict[str, Any] = dict(
            enabled=enabled, capture_exceptions=capture_exceptions,
            trust_distinct_id_header=trust, request_filter=request_filter,
            extra_properties=extra_properties, distinct_id=distinct_id,
            person_properties=person_properties, groups=groups)
        self._settings: Optional[IntegrationSettings] = None
        self._async: Optional[AsyncClient] = None
        self.shutdown_timeout = shutdown_timeout

    # --- configuration ----------------------------------------------------------------------

    @property
    def settings(self) -> IntegrationSettings:
        """The settings in force (the client is resolved on first use)."""
        settings = self._settings
        if settings is None:
            settings = self._settings = self._resolve()
        return settings

    def _resolve(self) -> IntegrationSettings:
        given = self._given
        try:
            if given is None and self._config["enabled"]:
                given = productos.setup()  # posthog's middleware also uses the global one
            if isinstance(given, AsyncClient):
                self._async, sync = given, given.sync
            elif given is not None:
                self._async, sync = AsyncClient.wrapping(given), given
            else:
                sync = None
            return IntegrationSettings(client=sync, **self._config)
        except Exception as exc:
            report_internal_error("setting up the ASGI middleware", exc)
            return IntegrationSettings(enabled=False)

    # --- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind == "http" or kind == "websocket":
            await self._request(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _request(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self.settings
        if not settings.active:
            await self.app(scope, receive, send)
            return
        ensure_signal_drain()  # when the server runs no lifespan; cheap after the first time
        context = None
        helper = _INERT
        try:
            info = request_info(scope)
            if await _wants(settings, scope):
                info.extra_tags = await _mapping_hook(settings.extra_properties, scope,
                                                      "extra_properties")
                distinct_id = header_distinct_id(settings, info) or await _id_hook(
                    settings.distinct_id, scope)
                helper = AsyncRequestClient(
                    self._async, distinct_id, info.session_id_header,
                    await _mapping_hook(settings.person_properties, scope, "person_properties"),
                    await _mapping_hook(settings.groups, scope, "groups"))
                context = open_request_context(settings, info, distinct_id)
            else:  # not tracked; flags still answer for the header's id
                helper = AsyncRequestClient(self._async, header_distinct_id(settings, info))
        except Exception as exc:
            report_internal_error("opening the request context", exc)
        token = _current.set(helper)
        scope[SCOPE_KEY] = helper
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            if context is not None:  # a filtered-out request is not tracked at all
                capture_request_exception(settings, exc, "asgi")
            raise
        finally:
            _current.reset(token)
            close_request_context(context)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        answered = False
        seen: List[Message] = []

        async def on_receive() -> Message:
            message = await receive()
            if message.get("type") == "lifespan.startup":
                seen.append(message)
                with guard("installing the SIGTERM drain at startup"):
                    # The server installed its own handlers by now; ours runs first, then
                    # hands the signal on (gunicorn --preload workers get it here too).
                    auto_install()
            return message

        async def on_send(message: Message) -> None:
            nonlocal answered
            answered = True
            if message.get("type") == "lifespan.shutdown.complete":
                await self.drain()
            await send(message)

        try:
            await self.app(scope, on_receive, on_send)
        except Exception:
            if answered:
                raise
            # The app speaks no lifespan (Django's handler raises for it): speak it for the
            # app, so the drain at shutdown still happens.
            await self._own_lifespan(receive, send, started=bool(seen))

    async def _own_lifespan(self, receive: Receive, send: Send, started: bool) -> None:
        while True:
            if started:  # the app took the startup message before it gave up
                message: Message = {"type": "lifespan.startup"}
                started = False
            else:
                message = await receive()
            kind = message.get("type")
            if kind == "lifespan.startup":
                with guard("installing the SIGTERM drain at startup"):
                    auto_install()
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await self.drain()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def drain(self) -> bool:
        """Send what the client queued (shut it down if this middleware created it)."""
        if (self._settings is None and self._given is None
                and productos.default_client is None):  # nothing made, so nothing queued
            return True
        if not self.settings.active:  # resolves the client when no request came before
            return True
        client = self._async
        if client is None or client.disabled:
            return True
        try:
            if self._given is None:
                return await client.shutdown(self.shutdown_timeout)
            return await client.flush(self.shutdown_timeout)
        except Exception as exc:
            report_internal_error("draining the client at lifespan shutdown", exc)
            return False


PosthogASGIMiddleware = ProductosMiddleware


# --- the request, read from the ASGI scope --------------------------------------------------------


def _headers(scope: Scope) -> Dict[str, str]:
    found: Dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[key] = f"{found[key]},{text}" if key in found else text
    return found


def request_info(scope: Scope) -> RequestInfo:
    """Read what events are tagged with from an ASGI http (or websocket) scope."""
    headers = _headers(scope)
    scheme = scope.get("scheme") or "http"
    host = headers.get("host")
    if not host:
        server = scope.get("server")
        if server:
            host_name, port = server[0], server[1]
            default = (scheme in ("http", "ws") and port == 80) or (
                scheme in ("https", "wss") and port == 443)
            host = host_name if default or port is None else f"{host_name}:{port}"
    path = scope.get("root_path", "") + scope.get("path", "")
    query = scope.get("query_string") or b""
    url = f"{scheme}://{host}{path}" if host else path
    if query:
        url = f"{url}?{query.decode('latin-1')}"
    peer = scope.get("client")
    return RequestInfo(
        url=url,
        method=scope.get("method") or ("WEBSOCKET" if scope.get("type") == "websocket" else None),
        path=path or None,
        ip=client_ip(headers.get("x-forwarded-for"), peer[0] if peer else None),
        user_agent=headers.get("user-agent") or None,
        distinct_id_header=clean_header_value(headers.get(DISTINCT_ID_HEADER.lower())),
        session_id_header=clean_header_value(headers.get(SESSION_ID_HEADER.lower())),
    )


async def _call(hook: Optional[Hook], scope: Scope, name: str) -> Any:
    if hook is None:
        return None
    try:
        value = hook(scope)
        if inspect.isawaitable(value):
            value = await value
        return value
    except Exception:
        log.exception("productos: the %s hook raised; ignoring it for this request", name)
        return None


async def _wants(settings: IntegrationSettings, scope: Scope) -> bool:
    if settings.request_filter is None:
        return True
    try:
        value = settings.request_filter(scope)
        if inspect.isawaitable(value):
            value = await value
        return bool(value)
    except Exception:
        log.exception("productos: the request filter raised; tracking the request anyway")
        return True


async def _id_hook(hook: Optional[Hook], scope: Scope) -> Optional[str]:
    value = await _call(hook, scope, "distinct_id")
    return None if value is None or value == "" else str(value)


async def _mapping_hook(hook: Optional[Hook], scope: Scope, name: str) -> Dict[str, Any]:
    value = await _call(hook, scope, name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        log.warning("productos: the %s hook returned %s, not a mapping; ignored", name,
                    type(value).__name__)
        return {}
    return dict(value)


async def productos_flags() -> AsyncRequestClient:
    """FastAPI dependency: ``flags: AsyncRequestClient = Depends(productos_flags)``.

    The request's reader is found through the request context, so this needs no import of
    FastAPI here (an async dependency runs in the request's own task).
    """
    return _current.get()
