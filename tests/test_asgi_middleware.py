"""ProductosMiddleware driven through the ASGI protocol in process, with a real collector.

The server tests (test_asgi_servers.py) run it under uvicorn and hypercorn; these cover the
hooks, the filter, lifespan handling and the request-bound flag reader case by case.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Dict, List, Optional

import pytest

import productos
from productos.context import get_context_distinct_id, get_tags
from productos.integrations import asgi
from productos.integrations.asgi import (
    AsyncRequestClient,
    PosthogASGIMiddleware,
    ProductosMiddleware,
    request_flags,
    request_info,
)


def http_scope(path: str = "/p", headers: Optional[Dict[str, str]] = None,
               query: bytes = b"") -> Dict[str, Any]:
    return {"type": "http", "method": "POST", "scheme": "https", "path": path, "root_path": "",
            "query_string": query, "server": ("example.com", 443),
            "client": ("10.0.0.5", 5555),
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}


async def call(app: Any, scope: Dict[str, Any]) -> List[Dict[str, Any]]:
    sent: List[Dict[str, Any]] = []

    async def receive() -> Dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def endpoint(action: Any) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = await action(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(body).encode()})
    return app


@pytest.fixture
def client(live_server):
    made = productos.Client("phc_asgi", host=live_server.url, flush_interval=60,
                            flush_at=10_000)
    yield made
    made.shutdown(5)


def test_request_info_reads_the_scope():
    info = request_info(http_scope("/a", {"Host": "shop.test", "User-Agent": "ua",
                                          "X-Forwarded-For": "1.2.3.4, 10.0.0.1",
                                          "X-PostHog-Distinct-Id": " user\x00-1 ",
                                          "X-POSTHOG-SESSION-ID": "s-1"}, b"x=1"))
    assert (info.url, info.method, info.path, info.ip, info.user_agent) == (
        "https://shop.test/a?x=1", "POST", "/a", "1.2.3.4", "ua")
    assert info.distinct_id_header == "user-1" and info.session_id_header == "s-1"
    bare = request_info(http_scope("/b"))
    assert bare.url == "https://example.com/b" and bare.ip == "10.0.0.5"


def test_hooks_identity_properties_and_flag_reader(live_server, client):
    live_server.flags_handler = lambda body: {"flags": {"f": {
        "key": "f", "enabled": True,
        "variant": f"{body['distinct_id']}:{body['person_properties'].get('plan')}:"
                   f"{body['groups'].get('company')}"}}}
    seen: Dict[str, Any] = {}

    async def action(scope: Any) -> Any:
        seen["id"] = get_context_distinct_id()
        seen["tags"] = dict(get_tags())
        seen["flag"] = await request_flags().get_feature_flag("f")
        seen["same"] = scope[asgi.SCOPE_KEY] is request_flags()
        return client.capture("inside")

    async def person(scope: Any) -> Dict[str, Any]:  # hooks may be coroutines
        return {"plan": "pro"}

    app = ProductosMiddleware(
        endpoint(action), client=client, trust_distinct_id_header=False,
        distinct_id=lambda scope: "from-hook", person_properties=person,
        groups=lambda scope: {"company": "acme"},
        extra_properties=lambda scope: {"tenant": "t1"})
    asyncio.run(call(app, http_scope("/x", {"X-POSTHOG-DISTINCT-ID": "ignored"})))
    assert seen["id"] == "from-hook"
    assert seen["flag"] == "from-hook:pro:acme"
    assert seen["same"] is True
    assert seen["tags"]["tenant"] == "t1" and seen["tags"]["$request_path"] == "/x"
    assert request_flags().distinct_id is None  # outside the request: the inert reader
    assert client.flush(5)
    event = next(e for e in live_server.events if e["event"] == "inside")
    assert event["distinct_id"] == "from-hook"
    assert event["properties"]["tenant"] == "t1"


def test_filtered_requests_are_not_tracked(live_server, client):
    async def action(scope: Any) -> Any:
        assert get_context_distinct_id() is None
        assert request_flags().distinct_id == "hdr"  # flags still answer for the header id
        raise RuntimeError("not reported")

    async def skip(scope: Any) -> bool:
        return False

    app = ProductosMiddleware(endpoint(action), client=client, request_filter=skip)
    with pytest.raises(RuntimeError):
        asyncio.run(call(app, http_scope("/health", {"X-POSTHOG-DISTINCT-ID": "hdr"})))
    assert client.flush(5)
    assert live_server.events == []


def test_one_exception_per_error_and_the_alias(live_server, client):
    async def action(scope: Any) -> Any:
        raise ValueError("bad")

    app = PosthogASGIMiddleware(endpoint(action), client=client)
    assert PosthogASGIMiddleware is ProductosMiddleware
    for _ in range(2):
        with pytest.raises(ValueError):
            asyncio.run(call(app, http_scope("/e", {"X-POSTHOG-DISTINCT-ID": "u"})))
    assert client.flush(5)
    exceptions = [e for e in live_server.events if e["event"] == "$exception"]
    assert len(exceptions) == 2 and {e["distinct_id"] for e in exceptions} == {"u"}


def test_a_broken_hook_never_breaks_the_request(client, internal_errors):
    def broken(scope: Any) -> Any:
        raise KeyError("hook bug")

    async def action(scope: Any) -> Any:
        return get_context_distinct_id()

    app = ProductosMiddleware(endpoint(action), client=client, distinct_id=broken)
    sent = asyncio.run(call(app, http_scope("/", {})))
    assert sent[-1]["body"] == b"None"
    assert [type(e) for e in internal_errors] == [KeyError]  # logged, as a hook error
    internal_errors.clear()


def lifespan_messages(app: Any) -> List[str]:
    sent: List[str] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> Dict[str, Any]:
        return incoming.pop(0)

    async def send(message: Dict[str, Any]) -> None:
        sent.append(message["type"])

    asyncio.run(app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send))
    return sent


def test_lifespan_shutdown_drains_and_startup_installs_the_sigterm_drain(live_server, client):
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as a server that reset it
    order: List[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                order.append(f"app shutdown with {len(live_server.events)} sent")
                await send({"type": "lifespan.shutdown.complete"})
                return

    try:
        client.capture("queued", distinct_id="u")
        app = ProductosMiddleware(inner, client=client)
        assert lifespan_messages(app) == ["lifespan.startup.complete",
                                          "lifespan.shutdown.complete"]
        assert type(signal.getsignal(signal.SIGTERM)).__name__ == "_DrainThenChain"
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert order == ["app shutdown with 0 sent"]  # the drain comes after the app's own
    assert [e["event"] for e in live_server.events] == ["queued"]


def test_an_app_without_lifespan_still_gets_the_drain(live_server, client):
    async def no_lifespan(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError("Django can only handle ASGI/HTTP connections")

    client.capture("queued", distinct_id="u")
    app = ProductosMiddleware(no_lifespan, client=client)
    assert lifespan_messages(app) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert [e["event"] for e in live_server.events] == ["queued"]


def test_an_async_client_and_other_scopes(live_server):
    client = productos.AsyncClient("phc_asgi", host=live_server.url, flush_interval=60)
    got: List[Any] = []

    async def other(scope: Any, receive: Any, send: Any) -> None:
        got.append((scope["type"], get_context_distinct_id(), request_flags().distinct_id))

    try:
        app = ProductosMiddleware(other, client=client)
        asyncio.run(app({"type": "websocket", "path": "/ws", "headers": [
            (b"x-posthog-distinct-id", b"ws-user")]}, None, None))  # type: ignore[arg-type]
        asyncio.run(app({"type": "custom"}, None, None))  # type: ignore[arg-type]
    finally:
        client.sync.shutdown(5)
    assert got == [("websocket", "ws-user", "ws-user"), ("custom", None, None)]


def test_the_inert_reader_answers_none():
    reader = AsyncRequestClient()

    async def reads() -> List[Any]:
        return [await reader.feature_enabled("f"), await reader.get_feature_flag("f"),
                await reader.get_all_flags(), reader.capture("e")]

    assert asyncio.run(reads()) == [None, None, None, None]
