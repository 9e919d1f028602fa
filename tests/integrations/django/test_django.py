"""The Django integration, through a real project and Django's own test clients.

Every test asserts the events that reached the transport (a RecordingSender, or the loopback
HTTP server for the end-to-end ones), not merely that something was called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Dict, Iterator, List

import pytest

pytest.importorskip("django")

from asgiref.sync import iscoroutinefunction
from django.contrib.auth import get_user_model
from django.test import AsyncClient, Client, override_settings

from productos.context import current_scope
from productos.integrations import django as integration
from productos.integrations._common import RequestClient

pytestmark = pytest.mark.timeout(60)

UA = "Mozilla/5.0 (productos tests)"


@pytest.fixture
def configure(recording: Any) -> Iterator[Callable[..., None]]:
    """Set settings.PRODUCTOS for one test (the recording client unless CLIENT is given)."""
    active: List[Any] = []

    def apply(**config: Any) -> None:
        if "CLIENT" not in config and "API_KEY" not in config:
            config["CLIENT"] = recording.client
        override = override_settings(PRODUCTOS=config)
        override.enable()
        active.append(override)

    yield apply
    for override in reversed(active):
        override.disable()


@pytest.fixture
def productos_on(configure: Callable[..., None]) -> None:
    configure()


@pytest.fixture
def user() -> Any:
    model = get_user_model()
    found = model.objects.filter(username="alice").first()
    return found or model.objects.create_user("alice", password="secret")


def sync_client(**kwargs: Any) -> Client:
    return Client(raise_request_exception=False, **kwargs)


def run_async(make_requests: Callable[[AsyncClient], Any], **kwargs: Any) -> Any:
    client = AsyncClient(raise_request_exception=False, **kwargs)
    return asyncio.run(make_requests(client))


def props(event: Dict[str, Any]) -> Dict[str, Any]:
    return event["properties"]


# --- request context -------------------------------------------------------------------------


def test_sync_view_events_carry_the_request_tags(productos_on: None, recording: Any) -> None:
    response = sync_client().get("/hello/?q=shoes", headers={"User-Agent": UA})
    assert response.status_code == 200
    (event,) = recording.events("hello viewed")
    p = props(event)
    assert p["$current_url"] == "http://testserver/hello/?q=shoes"
    assert p["$request_method"] == "GET"
    assert p["$request_path"] == "/hello/"
    assert p["$ip"] == "127.0.0.1"
    assert p["$user_agent"] == UA
    assert p["via"] == "sync"
    # Anonymous, no header: a personless event.
    assert "$session_id" not in p
    assert p["$process_person_profile"] is False


def test_async_view_events_carry_the_request_tags(productos_on: None, recording: Any) -> None:
    async def go(client: AsyncClient) -> Any:
        headers = {"User-Agent": UA, "X-Forwarded-For": "203.0.113.9, 10.0.0.1"}
        return await client.get("/hello-async/", headers=headers)

    assert run_async(go).status_code == 200
    (event,) = recording.events("hello viewed")
    p = props(event)
    assert p["via"] == "async"
    assert p["$current_url"] == "http://testserver/hello-async/"
    assert p["$request_path"] == "/hello-async/"
    assert p["$request_method"] == "GET"
    assert p["$ip"] == "203.0.113.9"
    assert p["$user_agent"] == UA


def test_middleware_adapts_to_the_stack_it_is_in() -> None:
    async def async_next(request: Any) -> Any:
        return None

    def sync_next(request: Any) -> Any:
        return None

    assert iscoroutinefunction(integration.ProductosMiddleware(async_next))
    assert not iscoroutinefunction(integration.ProductosMiddleware(sync_next))
    assert integration.ProductosMiddleware.sync_capable
    assert integration.ProductosMiddleware.async_capable


def test_header_identity_and_session(productos_on: None, recording: Any) -> None:
    response = sync_client().get("/hello/", headers={
        "X-POSTHOG-DISTINCT-ID": "front-end-id-1",
        "X-POSTHOG-SESSION-ID": "session-\x07abc\x00",
    })
    assert response.status_code == 200
    (event,) = recording.events("hello viewed")
    assert event["distinct_id"] == "front-end-id-1"
    assert props(event)["$session_id"] == "session-abc"
    assert "$process_person_profile" not in props(event)


def test_header_values_are_capped(productos_on: None, recording: Any) -> None:
    sync_client().get("/hello/", headers={"X-POSTHOG-DISTINCT-ID": "x" * 5000})
    (event,) = recording.events("hello viewed")
    assert event["distinct_id"] == "x" * 1000


def test_authenticated_user_sync(productos_on: None, recording: Any, user: Any) -> None:
    client = sync_client()
    client.force_login(user)
    assert client.get("/hello/").status_code == 200
    (event,) = recording.events("hello viewed")
    assert event["distinct_id"] == str(user.pk)


def test_authenticated_user_async(productos_on: None, recording: Any, user: Any) -> None:
    client = AsyncClient(raise_request_exception=False)
    client.force_login(user)
    assert asyncio.run(client.get("/hello-async/")).status_code == 200
    (event,) = recording.events("hello viewed")
    assert event["distinct_id"] == str(user.pk)


def test_header_wins_over_user_when_trusted(productos_on: None, recording: Any,
                                            user: Any) -> None:
    client = sync_client()
    client.force_login(user)
    client.get("/hello/", headers={"X-POSTHOG-DISTINCT-ID": "from-header"})
    (event,) = recording.events("hello viewed")
    assert event["distinct_id"] == "from-header"


def test_untrusted_header_is_ignored(configure: Any, recording: Any, user: Any) -> None:
    configure(TRUST_DISTINCT_ID_HEADER=False)
    anonymous = sync_client()
    anonymous.get("/hello/", headers={"X-POSTHOG-DISTINCT-ID": "spoofed"})
    logged_in = sync_client()
    logged_in.force_login(user)
    logged_in.get("/hello/", headers={"X-POSTHOG-DISTINCT-ID": "spoofed"})
    first, second = recording.events("hello viewed")
    assert first["distinct_id"] != "spoofed" and props(first)["$process_person_profile"] is False
    assert second["distinct_id"] == str(user.pk)


def test_each_request_gets_a_fresh_context(productos_on: None) -> None:
    client = sync_client()
    first = client.get("/context/", headers={"X-POSTHOG-DISTINCT-ID": "a",
                                             "X-POSTHOG-SESSION-ID": "s1"}).json()
    second = client.get("/context/").json()
    assert first["distinct_id"] == "a" and first["session_id"] == "s1"
    assert second["distinct_id"] is None and second["session_id"] is None
    assert second["tags"]["$request_path"] == "/context/"
    assert current_scope().distinct_id is None  # nothing leaks out of the request


def test_async_context_is_fresh_and_complete(productos_on: None) -> None:
    async def go(client: AsyncClient) -> Any:
        first = await client.get("/context-async/", headers={"X-POSTHOG-DISTINCT-ID": "a"})
        second = await client.get("/context-async/")
        return first.json(), second.json()

    first, second = run_async(go)
    assert first["distinct_id"] == "a"
    assert second["distinct_id"] is None
    assert second["tags"] == {
        "$current_url": "http://testserver/context-async/",
        "$request_method": "GET",
        "$request_path": "/context-async/",
        "$ip": "127.0.0.1",
    }


def test_request_filter_and_extra_properties(configure: Any, recording: Any) -> None:
    configure(REQUEST_FILTER=lambda request: not request.path.startswith("/boom"),
              EXTRA_PROPERTIES=lambda request: {"tenant": request.GET.get("tenant")})
    client = sync_client()
    client.get("/hello/?tenant=acme")
    assert client.get("/boom/").status_code == 500  # filtered: no context, no capture
    (event,) = recording.events()
    assert event["event"] == "hello viewed"
    assert props(event)["tenant"] == "acme"


def test_filtered_request_has_no_tags(configure: Any, recording: Any) -> None:
    configure(REQUEST_FILTER=lambda request: False)
    assert sync_client().get("/context/").json()["tags"] == {}


def test_hooks_may_be_dotted_paths(configure: Any) -> None:
    configure(EXTRA_PROPERTIES=f"{__name__}.tenant_from_query")
    tags = sync_client().get("/context/?tenant=acme").json()["tags"]
    assert tags["tenant"] == "acme"


def tenant_from_query(request: Any) -> Dict[str, Any]:
    return {"tenant": request.GET.get("tenant")}


def test_async_stack_runs_user_hooks_in_a_sync_context(configure: Any, recording: Any,
                                                       user: Any) -> None:
    # request.user touches the database: only allowed outside the event loop.
    configure(DISTINCT_ID=lambda request: f"user-{request.user.username}",
              EXTRA_PROPERTIES=lambda request: {"staff": request.user.is_staff})
    client = AsyncClient(raise_request_exception=False)
    client.force_login(user)
    assert asyncio.run(client.get("/hello-async/")).status_code == 200
    (event,) = recording.events("hello viewed")
    assert event["distinct_id"] == "user-alice"
    assert props(event)["staff"] is False


# --- exceptions ---------------------------------------------------------------------------


def _only_exception(recording: Any) -> Dict[str, Any]:
    events = recording.events("$exception")
    assert len(events) == 1, events
    return events[0]


def test_exception_in_a_sync_view_is_captured(productos_on: None, recording: Any) -> None:
    response = sync_client().get("/boom/", headers={"X-POSTHOG-DISTINCT-ID": "u-1"})
    assert response.status_code == 500
    event = _only_exception(recording)
    p = props(event)
    assert event["distinct_id"] == "u-1"
    assert p["$exception_level"] == "error"
    assert p["$request_path"] == "/boom/"
    assert p["$current_url"] == "http://testserver/boom/"
    (entry,) = p["$exception_list"]
    assert entry["type"] == "RuntimeError"
    assert entry["value"] == "view exploded"
    assert entry["mechanism"] == {"type": "django", "handled": False, "synthetic": False}
    frames = entry["stacktrace"]["frames"]
    assert frames[-1]["function"] == "boom"
    assert frames[-1]["context_line"].strip() == 'raise RuntimeError("view exploded")'
    assert frames[-1]["in_app"] is True
    assert frames[0]["module"].startswith("django.")  # the handler's frame, oldest first
    assert frames[0]["in_app"] is False


def test_exception_in_an_async_view_is_captured(productos_on: None, recording: Any,
                                                user: Any) -> None:
    client = AsyncClient(raise_request_exception=False)
    client.force_login(user)
    assert asyncio.run(client.get("/boom-async/")).status_code == 500
    event = _only_exception(recording)
    assert event["distinct_id"] == str(user.pk)
    (entry,) = props(event)["$exception_list"]
    assert entry["value"] == "async view exploded"
    assert entry["mechanism"]["type"] == "django"
    assert props(event)["$request_path"] == "/boom-async/"


def test_not_found_is_not_an_error(productos_on: None, recording: Any) -> None:
    client = sync_client()
    assert client.get("/missing/").status_code == 404
    assert client.get("/no-such-url/").status_code == 404
    assert recording.events("$exception") == []


def test_exception_in_a_later_middleware_is_captured(productos_on: None, recording: Any) -> None:
    response = sync_client().get("/explode-in-middleware/",
                                 headers={"X-POSTHOG-DISTINCT-ID": "u-2"})
    assert response.status_code == 500
    event = _only_exception(recording)
    assert event["distinct_id"] == "u-2"
    assert props(event)["$exception_list"][0]["value"] == "middleware exploded"


def test_capture_exceptions_can_be_switched_off(configure: Any, recording: Any) -> None:
    configure(CAPTURE_EXCEPTIONS=False)
    assert sync_client().get("/boom/").status_code == 500
    assert recording.events("$exception") == []


def test_the_test_client_still_sees_the_exception(productos_on: None, recording: Any) -> None:
    with pytest.raises(RuntimeError, match="view exploded"):
        Client().get("/boom/")
    assert len(recording.events("$exception")) == 1


# --- flags and the request helper ---------------------------------------------------------


def test_flags_helper_is_bound_to_the_request(configure: Any, fake_flags: Any,
                                              user: Any) -> None:
    configure(CLIENT=fake_flags, PERSON_PROPERTIES=lambda request: {"plan": "pro"},
              GROUPS=lambda request: {"company": "acme"})
    client = sync_client()
    client.force_login(user)
    body = client.get("/flags/").json()
    assert body == {"distinct_id": str(user.pk), "enabled": True, "variant": "variant-b",
                    "payload": {"color": "blue"}}
    method, key, distinct_id, kwargs = fake_flags.calls[0]
    assert (method, key, distinct_id) == ("feature_enabled", "beta", str(user.pk))
    assert kwargs == {"person_properties": {"plan": "pro"}, "groups": {"company": "acme"}}
    assert [c[0] for c in fake_flags.calls] == ["feature_enabled", "get_feature_flag",
                                                "get_feature_flag_payload"]


def test_flags_helper_without_identity_returns_none(configure: Any, fake_flags: Any) -> None:
    configure(CLIENT=fake_flags)
    body = sync_client().get("/flags/").json()
    assert body == {"distinct_id": None, "enabled": None, "variant": None, "payload": None}
    assert fake_flags.calls == []


def test_flags_helper_with_the_real_client(live_server: Any, configure: Any) -> None:
    live_server.flags_handler = lambda body: {
        "flags": {"beta": {"key": "beta", "enabled": True, "variant": None,
                           "metadata": {"id": 1, "version": 1, "payload": None}}},
        "errorsWhileComputingFlags": False, "requestId": "r-1"}
    configure(API_KEY="phc_flags", HOST=live_server.url, OPTIONS={"flush_interval": 0.05})
    response = sync_client().get("/flags/", headers={"X-POSTHOG-DISTINCT-ID": "u-3"})
    assert response.status_code == 200
    body = response.json()
    assert body["distinct_id"] == "u-3"
    if not hasattr(integration.get_client(), "feature_enabled"):
        pytest.skip("this Client has no flag methods yet")
    assert body["enabled"] is True
    flag_requests = [r for r in live_server.requests if r.path.startswith("/flags")]
    assert flag_requests and flag_requests[0].json["distinct_id"] == "u-3"


def test_request_capture_uses_the_request_identity(productos_on: None, recording: Any) -> None:
    sync_client().get("/signup/", headers={"X-POSTHOG-DISTINCT-ID": "u-4",
                                           "X-POSTHOG-SESSION-ID": "s-4"})
    (event,) = recording.events("signed up")
    assert event["distinct_id"] == "u-4"
    assert props(event)["plan"] == "pro"
    assert props(event)["$session_id"] == "s-4"
    assert props(event)["$request_path"] == "/signup/"


def test_helper_exists_when_the_integration_is_off(configure: Any) -> None:
    configure(ENABLED=False)
    body = sync_client().get("/flags/", headers={"X-POSTHOG-DISTINCT-ID": "u"}).json()
    assert body["enabled"] is None


# --- never break the host --------------------------------------------------------------------


@pytest.mark.allow_internal_errors
def test_misconfiguration_serves_requests_as_usual(configure: Any, caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="productos")
    configure(API_KEY="phc_x", OPTIONS={"no_such_option": 1})
    client = sync_client()
    assert client.get("/hello/").content == b"hello"
    assert client.get("/boom/").status_code == 500
    assert client.get("/flags/", headers={"X-POSTHOG-DISTINCT-ID": "u"}).json()["enabled"] is None
    assert "PRODUCTOS settings are invalid" in caplog.text


def test_settings_that_are_not_a_dict(configure: Any) -> None:
    with override_settings(PRODUCTOS=["not", "a", "dict"]):
        assert sync_client().get("/hello/").status_code == 200


@pytest.mark.allow_internal_errors
def test_failing_hooks_do_not_break_requests(configure: Any, recording: Any) -> None:
    def explode(request: Any) -> Any:
        raise ValueError("hook bug")

    configure(REQUEST_FILTER=explode, EXTRA_PROPERTIES=explode, PERSON_PROPERTIES=explode)
    assert sync_client().get("/hello/").status_code == 200
    assert len(recording.events("hello viewed")) == 1


def test_internal_error_is_contained(productos_on: None, internal_errors: List[Any],
                                     monkeypatch: Any) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("sdk bug")

    monkeypatch.setattr(integration, "_request_info", broken)
    assert sync_client().get("/hello/").content == b"hello"
    assert [str(e) for e in internal_errors] == ["sdk bug"]
    internal_errors.clear()


def test_backend_down_does_not_slow_requests(live_server: Any, configure: Any) -> None:
    live_server.set_down(True)
    configure(API_KEY="phc_down", HOST=live_server.url,
              OPTIONS={"max_retries": 1, "retry_base_delay": 0.01, "timeout": 2})
    client = sync_client()
    started = time.monotonic()
    for _ in range(5):
        assert client.get("/boom/").status_code == 500
        assert client.get("/hello/").status_code == 200
    assert time.monotonic() - started < 2.0


# --- end to end ---------------------------------------------------------------------------


def test_events_reach_a_real_server(live_server: Any, configure: Any, user: Any) -> None:
    configure(API_KEY="phc_e2e", HOST=live_server.url, OPTIONS={"flush_interval": 0.05})
    client = sync_client()
    client.force_login(user)
    session = {"X-POSTHOG-SESSION-ID": "sess-9"}
    assert client.get("/hello/", headers=session).status_code == 200
    assert client.get("/boom/", headers=session).status_code == 500
    assert live_server.wait_for_events(2, timeout=10)
    by_name = {e["event"]: e for e in live_server.events}
    hello, exc = by_name["hello viewed"], by_name["$exception"]
    for event in (hello, exc):
        assert event["distinct_id"] == str(user.pk)
        assert event["properties"]["$session_id"] == "sess-9"
        assert event["properties"]["$lib"] == "productos-python"
    assert hello["properties"]["$request_path"] == "/hello/"
    assert exc["properties"]["$request_path"] == "/boom/"
    assert exc["properties"]["$exception_list"][0]["value"] == "view exploded"


def test_app_config_builds_the_client_at_startup(live_server: Any, configure: Any) -> None:
    from django.apps import apps

    configure(API_KEY="phc_boot", HOST=live_server.url)
    apps.get_app_config("productos").ready()
    client = integration.get_client()
    assert client is not None and client.options.project_api_key == "phc_boot"
    assert integration.get_client() is client  # built once


def test_request_client_repr() -> None:
    assert "u-1" in repr(RequestClient(None, "u-1"))



def test_exception_in_a_later_middleware_is_captured_async(productos_on: None,
                                                           recording: Any) -> None:
    async def go(client: AsyncClient) -> Any:
        return await client.get("/explode-in-middleware/",
                                headers={"X-POSTHOG-DISTINCT-ID": "u-async"})

    assert run_async(go).status_code == 500
    event = _only_exception(recording)
    assert event["distinct_id"] == "u-async"
    assert props(event)["$request_path"] == "/explode-in-middleware/"
    assert props(event)["$exception_list"][0]["value"] == "middleware exploded"
