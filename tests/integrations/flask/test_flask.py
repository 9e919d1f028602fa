"""The Flask integration, through real apps and Flask's test client.

Every test asserts the events that reached the transport (a RecordingSender, or the loopback
HTTP server for the end-to-end one).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional

import pytest

pytest.importorskip("flask")

from flask import Flask, abort, jsonify

from productos.context import current_scope, get_context_distinct_id, get_tags
from productos.integrations.flask import (
    Productos,
    get_client,
    get_request_client,
    productos_request,
)

pytestmark = pytest.mark.timeout(60)

UA = "Mozilla/5.0 (productos tests)"


def make_app(config: Optional[Dict[str, Any]] = None, *, client: Any = None,
             factory: bool = False) -> Flask:
    """A small app with the routes the tests need; Productos set up directly or by factory."""
    app = Flask(__name__)
    app.config.update(config or {})
    seen: Dict[str, Any] = {}

    @app.before_request
    def remember_identity() -> None:  # registered first, yet runs inside the context
        seen["before_request_distinct_id"] = get_context_distinct_id()

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> Any:
        active = get_client()
        if active is not None:
            active.capture("item viewed", properties={"item": item_id})
        return jsonify(item=item_id)

    @app.get("/context")
    def context() -> Any:
        return jsonify(distinct_id=get_context_distinct_id(), tags=dict(get_tags()),
                       before=seen.get("before_request_distinct_id"))

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("flask view exploded")

    @app.get("/abort/<int:code>")
    def aborting(code: int) -> Any:
        abort(code)

    @app.get("/handled")
    def handled() -> Any:
        raise KeyError("dealt with by the app")

    @app.errorhandler(KeyError)
    def key_error(exc: KeyError) -> Any:
        return jsonify(error="handled"), 409

    @app.get("/flags")
    def flags() -> Any:
        return jsonify(distinct_id=productos_request.distinct_id,
                       enabled=productos_request.feature_enabled("beta"),
                       variant=productos_request.get_feature_flag("experiment"),
                       payload=productos_request.get_feature_flag_payload("beta"))

    @app.post("/signup")
    def signup() -> Any:
        productos_request.capture("signed up", properties={"plan": "pro"})
        return "ok"

    if factory:
        ext = Productos(client=client)
        ext.init_app(app)
    else:
        Productos(app, client=client)
    return app


@pytest.fixture
def app(recording: Any) -> Flask:
    return make_app(client=recording.client)


def props(event: Dict[str, Any]) -> Dict[str, Any]:
    return event["properties"]


# --- request context -------------------------------------------------------------------------


def test_request_tags_include_the_route(app: Flask, recording: Any) -> None:
    response = app.test_client().get("/items/42?ref=mail", headers={"User-Agent": UA})
    assert response.json == {"item": 42}
    (event,) = recording.events("item viewed")
    p = props(event)
    assert p["$current_url"] == "http://localhost/items/42?ref=mail"
    assert p["$request_method"] == "GET"
    assert p["$request_path"] == "/items/42"
    assert p["$request_route"] == "/items/<int:item_id>"
    assert p["$ip"] == "127.0.0.1"
    assert p["$user_agent"] == UA
    assert p["item"] == 42
    assert p["$process_person_profile"] is False


def test_header_identity_and_session(app: Flask, recording: Any) -> None:
    app.test_client().get("/items/1", headers={"X-POSTHOG-DISTINCT-ID": " user-7\t\x7f",
                                               "X-POSTHOG-SESSION-ID": "s\x1b-7",
                                               "X-Forwarded-For": "198.51.100.4"})
    (event,) = recording.events("item viewed")
    assert event["distinct_id"] == "user-7"
    assert props(event)["$session_id"] == "s-7"
    assert props(event)["$ip"] == "198.51.100.4"


def test_context_is_fresh_per_request_and_closed_after(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/context", headers={"X-POSTHOG-DISTINCT-ID": "a"}).json
    second = client.get("/context").json
    assert first["distinct_id"] == "a" and first["before"] == "a"
    assert second["distinct_id"] is None
    assert second["tags"] == {"$current_url": "http://localhost/context",
                              "$request_method": "GET", "$request_path": "/context",
                              "$ip": "127.0.0.1", "$user_agent": second["tags"]["$user_agent"],
                              "$raw_user_agent": second["tags"]["$user_agent"],
                              "$request_route": "/context"}
    assert current_scope().distinct_id is None and not current_scope().tags


def test_factory_pattern_and_config_hooks(recording: Any) -> None:
    app = make_app({
        "PRODUCTOS_EXTRA_PROPERTIES": lambda request: {"tenant": request.args.get("tenant")},
        "PRODUCTOS_DISTINCT_ID": lambda request: request.headers.get("X-User"),
        "PRODUCTOS_TRUST_DISTINCT_ID_HEADER": False,
    }, client=recording.client, factory=True)
    app.test_client().get("/items/3?tenant=acme", headers={"X-User": "u-3",
                                                           "X-POSTHOG-DISTINCT-ID": "spoof"})
    (event,) = recording.events("item viewed")
    assert event["distinct_id"] == "u-3"
    assert props(event)["tenant"] == "acme"


def test_init_app_twice_registers_the_hooks_once(recording: Any) -> None:
    app = make_app(client=recording.client)
    Productos(client=recording.client).init_app(app)
    app.test_client().get("/boom", headers={"X-POSTHOG-DISTINCT-ID": "u-twice"})
    (event,) = recording.events("$exception")
    assert event["distinct_id"] == "u-twice"
    assert current_scope().distinct_id is None


def test_request_filter(recording: Any) -> None:
    app = make_app({"PRODUCTOS_REQUEST_FILTER": lambda request: request.path != "/boom"},
                   client=recording.client)
    client = app.test_client()
    assert client.get("/boom").status_code == 500
    client.get("/items/5")
    assert recording.events("$exception") == []
    assert len(recording.events("item viewed")) == 1


def test_async_view_sees_the_context(recording: Any) -> None:
    pytest.importorskip("asgiref")
    app = make_app(client=recording.client)

    @app.get("/async")
    async def async_view() -> Any:
        return jsonify(distinct_id=get_context_distinct_id(),
                       route=get_tags().get("$request_route"))

    body = app.test_client().get("/async", headers={"X-POSTHOG-DISTINCT-ID": "u-a"}).json
    assert body == {"distinct_id": "u-a", "route": "/async"}


# --- exceptions ----------------------------------------------------------------------------


def test_unhandled_exception_is_captured(app: Flask, recording: Any) -> None:
    response = app.test_client().get("/boom", headers={"X-POSTHOG-DISTINCT-ID": "u-9"})
    assert response.status_code == 500
    (event,) = recording.events("$exception")
    assert event["distinct_id"] == "u-9"
    p = props(event)
    assert p["$request_route"] == "/boom"
    assert p["$exception_level"] == "error"
    (entry,) = p["$exception_list"]
    assert (entry["type"], entry["value"]) == ("RuntimeError", "flask view exploded")
    assert entry["mechanism"] == {"type": "flask", "handled": False, "synthetic": False}
    frame = entry["stacktrace"]["frames"][-1]
    assert frame["function"] == "boom"
    assert frame["in_app"] is True
    assert frame["context_line"].strip() == 'raise RuntimeError("flask view exploded")'


def test_propagating_exception_is_captured_once(recording: Any) -> None:
    app = make_app(client=recording.client)
    app.testing = True  # Flask re-raises into the test
    with pytest.raises(RuntimeError):
        app.test_client().get("/boom")
    assert len(recording.events("$exception")) == 1


def test_handled_http_errors_are_not_captured(app: Flask, recording: Any) -> None:
    client = app.test_client()
    assert client.get("/abort/404").status_code == 404
    assert client.get("/abort/403").status_code == 403
    assert client.get("/abort/500").status_code == 500  # an HTTPException the app chose
    assert client.get("/no-such-page").status_code == 404
    assert client.get("/handled").status_code == 409
    assert recording.events("$exception") == []


def test_capture_exceptions_off(recording: Any) -> None:
    app = make_app({"PRODUCTOS_CAPTURE_EXCEPTIONS": False}, client=recording.client)
    assert app.test_client().get("/boom").status_code == 500
    assert recording.events("$exception") == []


# --- flags helper ---------------------------------------------------------------------------


def test_flags_helper_is_bound_to_the_request(fake_flags: Any) -> None:
    app = make_app({"PRODUCTOS_PERSON_PROPERTIES": lambda request: {"plan": "pro"}},
                   client=fake_flags)
    body = app.test_client().get("/flags", headers={"X-POSTHOG-DISTINCT-ID": "u-f"}).json
    assert body == {"distinct_id": "u-f", "enabled": True, "variant": "variant-b",
                    "payload": {"color": "blue"}}
    assert fake_flags.calls[0] == ("feature_enabled", "beta", "u-f",
                                   {"person_properties": {"plan": "pro"}})


def test_flags_helper_outside_a_request_is_inert() -> None:
    helper = get_request_client()
    assert helper.feature_enabled("beta") is None
    assert productos_request.get_feature_flag("beta") is None


def test_request_capture_uses_the_request_identity(app: Flask, recording: Any) -> None:
    app.test_client().post("/signup", headers={"X-POSTHOG-DISTINCT-ID": "u-s"})
    (event,) = recording.events("signed up")
    assert event["distinct_id"] == "u-s"
    assert props(event)["$request_route"] == "/signup"


# --- never break the host ---------------------------------------------------------------------


@pytest.mark.allow_internal_errors
def test_misconfiguration_serves_requests_as_usual(caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="productos")
    app = make_app({"PRODUCTOS_API_KEY": "phc_x", "PRODUCTOS_OPTIONS": {"flush_at": -1}})
    client = app.test_client()
    assert client.get("/items/1").json == {"item": 1}
    assert client.get("/boom").status_code == 500
    assert client.get("/flags", headers={"X-POSTHOG-DISTINCT-ID": "u"}).json["enabled"] is None
    assert "settings are invalid" in caplog.text


@pytest.mark.allow_internal_errors
def test_failing_hooks_do_not_break_requests(recording: Any) -> None:
    def explode(request: Any) -> Any:
        raise ValueError("hook bug")

    app = make_app({"PRODUCTOS_REQUEST_FILTER": explode, "PRODUCTOS_EXTRA_PROPERTIES": explode,
                    "PRODUCTOS_DISTINCT_ID": explode}, client=recording.client)
    assert app.test_client().get("/items/8").status_code == 200
    assert len(recording.events("item viewed")) == 1


def test_disabled_integration_is_inert(recording: Any) -> None:
    app = make_app({"PRODUCTOS_ENABLED": False}, client=recording.client)
    client = app.test_client()
    assert client.get("/boom").status_code == 500
    assert client.get("/context", headers={"X-POSTHOG-DISTINCT-ID": "a"}).json["tags"] == {}
    assert recording.events() == []


def test_backend_down_does_not_slow_requests(live_server: Any) -> None:
    live_server.set_down(True)
    app = make_app({"PRODUCTOS_API_KEY": "phc_down", "PRODUCTOS_HOST": live_server.url,
                    "PRODUCTOS_OPTIONS": {"max_retries": 1, "retry_base_delay": 0.01}})
    client = app.test_client()
    started = time.monotonic()
    try:
        for _ in range(5):
            assert client.get("/boom").status_code == 500
            assert client.get("/items/1").status_code == 200
        assert time.monotonic() - started < 2.0
    finally:
        with app.app_context():
            get_client().shutdown(2)


# --- end to end -----------------------------------------------------------------------------


def test_events_reach_a_real_server(live_server: Any) -> None:
    app = make_app({"PRODUCTOS_API_KEY": "phc_e2e", "PRODUCTOS_HOST": live_server.url,
                    "PRODUCTOS_OPTIONS": {"flush_interval": 0.05}})
    client = app.test_client()
    headers = {"X-POSTHOG-DISTINCT-ID": "u-e2e", "X-POSTHOG-SESSION-ID": "s-e2e"}
    try:
        assert client.get("/items/11", headers=headers).status_code == 200
        assert client.get("/boom", headers=headers).status_code == 500
        assert live_server.wait_for_events(2, timeout=10)
    finally:
        with app.app_context():
            get_client().shutdown(2)
    by_name = {e["event"]: e for e in live_server.events}
    viewed, exc = by_name["item viewed"], by_name["$exception"]
    for event in (viewed, exc):
        assert event["distinct_id"] == "u-e2e"
        assert event["properties"]["$session_id"] == "s-e2e"
        assert event["properties"]["$lib"] == "productos-python"
    assert viewed["properties"]["$request_route"] == "/items/<int:item_id>"
    assert exc["properties"]["$request_route"] == "/boom"
    assert exc["properties"]["$exception_list"][0]["mechanism"]["type"] == "flask"
