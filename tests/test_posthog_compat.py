"""posthog 7.91 compatibility in-process: the constructor, per-call arguments, module level.

The end-to-end comparison against posthog itself is tests/test_migration.py; this file
checks the rules one by one, quickly, with a recording sender.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
import json
import logging
import sys
import warnings
from typing import Any, Iterator, List

import pytest

import productos
from productos._runtime import compat
from productos._runtime.options import Options
from productos.testing import RecordingSender

posthog = pytest.importorskip("posthog", reason="posthog is installed for tests only")


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def make_client(sender: RecordingSender) -> Iterator[Any]:
    made: List[productos.Client] = []

    def make(*args: Any, **kwargs: Any) -> productos.Client:
        kwargs.setdefault("sender", sender)
        client = productos.Posthog(*(args or ("phc_test",)), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(5)


def sent(client: productos.Client, sender: RecordingSender) -> List[dict]:
    assert client.flush(5)
    return sender.events


# --- the constructor --------------------------------------------------------------------------


def test_posthog_is_the_client_and_takes_posthogs_arguments_in_posthogs_order():
    assert productos.Posthog is productos.Client
    theirs = list(inspect.signature(posthog.Client.__init__).parameters)[1:]
    ours = list(inspect.signature(productos.Client).parameters)
    assert ours[:len(theirs)] == theirs
    # productos' own settings come after posthog's, so positions mean the same thing.
    assert "max_batch_size" in ours[len(theirs):]


def test_a_positional_host_is_the_host():
    client = productos.Posthog("phc_test", "http://127.0.0.1:9", send=False)
    try:
        assert client.options.host == "http://127.0.0.1:9"
    finally:
        client.shutdown(1)


def test_posthog_only_arguments_are_reported_once_at_debug(make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="productos")
    make_client(capture_mode="v1", app_host="https://app.example", is_server=False,
                metrics={"enabled": True})
    lines = [r.getMessage() for r in caplog.records if "without effect" in r.getMessage()]
    assert len(lines) == 1
    for name in ("capture_mode", "app_host", "is_server", "metrics"):
        assert name in lines[0]
    assert all(r.levelno == logging.DEBUG for r in caplog.records if "without effect"
               in r.getMessage())


def test_nothing_is_reported_when_posthog_only_arguments_keep_their_defaults(make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="productos")
    make_client(is_server=True, capture_mode=None, email_request_max_retries=2)
    assert not [r for r in caplog.records if "without effect" in r.getMessage()]


def test_every_posthog_argument_is_implemented_or_listed_as_inert():
    implemented = {"project_api_key", "host", "debug", "max_queue_size", "send", "on_error",
                   "flush_at", "flush_interval", "gzip", "max_retries", "sync_mode", "timeout",
                   "thread", "poll_interval", "personal_api_key", "disabled", "disable_geoip",
                   "historical_migration", "feature_flags_request_timeout_seconds",
                   "feature_flags_request_max_retries", "super_properties",
                   "enable_exception_autocapture", "log_captured_exceptions", "project_root",
                   "privacy_mode", "before_send", "enable_local_evaluation",
                   "flag_definition_cache_provider", "in_app_modules", "secret_key"}
    theirs = set(list(inspect.signature(posthog.Client.__init__).parameters)[1:])
    assert theirs == implemented | set(compat.INERT_OPTIONS)
    assert not implemented & set(compat.INERT_OPTIONS)


def test_inert_arguments_defaults_are_options_defaults_which_are_posthogs():
    # Written once, in Options: compat lists only the names and reads the defaults from there.
    declared = {f.name: f for f in dataclasses.fields(Options)}
    theirs = inspect.signature(posthog.Client.__init__).parameters
    assert list(compat.INERT_OPTIONS) == [n for n in declared if n in compat.INERT_OPTIONS]
    assert compat.inert_defaults(Options()) == {
        name: declared[name].default for name in compat.INERT_OPTIONS}
    for name in compat.INERT_OPTIONS:
        assert declared[name].default is not dataclasses.MISSING, name
        assert declared[name].default == theirs[name].default, name
    assert compat.inert_given(Options()) == []


def test_thread_count_is_a_floor_for_concurrent_uploads():
    assert compat.concurrency(Options(thread=8)) == 8
    assert compat.concurrency(Options(thread=1)) == Options().max_concurrent_requests
    assert compat.concurrency(Options(thread=2, max_concurrent_requests=6)) == 6


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_a_thread_count_that_cannot_work_is_a_configuration_error(bad):
    with pytest.raises(ValueError, match="thread"):
        Options(thread=bad)


def test_flag_request_retries_follow_posthog():
    assert compat.flag_request_retries(Options()) == 1  # posthog's default
    assert compat.flag_request_retries(Options(feature_flags_request_max_retries=-3)) == 0
    with pytest.raises(ValueError, match="feature_flags_request_max_retries"):
        Options(feature_flags_request_max_retries="3")  # type: ignore[arg-type]


def test_in_app_modules_must_be_a_list_of_prefixes():
    with pytest.raises(ValueError, match="in_app_modules"):
        Options(in_app_modules="myapp")  # type: ignore[arg-type]
    assert Options(in_app_modules=("myapp",)).in_app_modules == ("myapp",)


# --- per-call arguments -----------------------------------------------------------------------


@pytest.mark.parametrize("default", [True, False])
def test_per_call_disable_geoip_overrides_the_setting_on_every_event_call(make_client, sender,
                                                                          default):
    client = make_client(disable_geoip=default)
    for value in (None, not default):
        client.capture("e", distinct_id="u", disable_geoip=value)
        client.set(distinct_id="u", properties={"a": 1}, disable_geoip=value)
        client.set_once(distinct_id="u", properties={"a": 1}, disable_geoip=value)
        client.alias("u", "v", disable_geoip=value)
        client.group_identify("company", "c", {"a": 1}, disable_geoip=value)
    events = sent(client, sender)
    assert len(events) == 10
    marks = [e["properties"].get("$geoip_disable") for e in events]
    expected_first = True if default else None
    expected_then = None if default else True
    assert marks == [expected_first] * 5 + [expected_then] * 5


def test_capture_exception_takes_an_exc_info_tuple(make_client, sender):
    client = make_client()
    try:
        raise KeyError("from exc_info")
    except KeyError:
        info = sys.exc_info()
    assert client.capture_exception(info, distinct_id="u")
    (event,) = sent(client, sender)
    entry = event["properties"]["$exception_list"][0]
    assert (entry["type"], entry["value"]) == ("KeyError", "'from exc_info'")
    assert entry["stacktrace"]["frames"][-1]["function"] == (
        "test_capture_exception_takes_an_exc_info_tuple")


def test_an_empty_exc_info_captures_nothing_even_while_handling(make_client, sender, caplog):
    client = make_client()
    try:
        raise ValueError("being handled")
    except ValueError:
        assert client.capture_exception((None, None, None), distinct_id="u") is None
    assert sent(client, sender) == []
    assert client.stats()["dropped_total"] == 0  # nothing was made, nothing dropped


def test_capture_exception_timestamp_uuid_and_keyword(make_client, sender):
    client = make_client()
    given = "01900000-0000-7000-8000-0000000000aa"
    returned = client.capture_exception(
        exception=ValueError("keyword"), distinct_id="u", uuid=given,
        timestamp=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc),
        properties={"step": 2}, disable_geoip=False)
    assert returned == given
    (event,) = sent(client, sender)
    assert event["uuid"] == given and event["timestamp"].startswith("2024-05-06T07:08:09")
    assert event["properties"]["step"] == 2 and "$geoip_disable" not in event["properties"]


def test_in_app_modules_mark_their_frames_in_app(make_client, sender):
    client = make_client(in_app_modules=["json"])
    try:
        json.loads("{")
    except ValueError as exc:
        client.capture_exception(exc, distinct_id="u")
    (event,) = sent(client, sender)
    frames = event["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    json_frames = [f for f in frames if (f["module"] or "").startswith("json")]
    assert json_frames and all(f["in_app"] for f in json_frames)


def test_without_in_app_modules_the_standard_library_is_not_in_app(make_client, sender):
    client = make_client()
    try:
        json.loads("{")
    except ValueError as exc:
        client.capture_exception(exc, distinct_id="u")
    (event,) = sent(client, sender)
    frames = event["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert not any(f["in_app"] for f in frames if (f["module"] or "").startswith("json"))


@pytest.mark.parametrize("enabled", [True, False])
def test_log_captured_exceptions(make_client, sender, caplog, internal_errors, enabled):
    client = make_client(log_captured_exceptions=enabled)
    caplog.set_level(logging.ERROR, logger="productos")
    try:
        raise RuntimeError("logged")
    except RuntimeError as exc:
        client.capture_exception(exc, distinct_id="u")
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[1] is not None]
    assert len(logged) == (1 if enabled else 0)
    if enabled:
        assert str(logged[0].exc_info[1]) == "logged"
        internal_errors.clear()  # logged on purpose, not swallowed
    assert len(sent(client, sender)) == 1


def test_privacy_mode_withholds_ai_content_before_before_send(make_client, sender):
    seen = []

    def hook(event):
        seen.append(dict(event["properties"]))
        return event

    client = make_client(privacy_mode=True, before_send=hook)
    client.capture("$ai_generation", distinct_id="u",
                   properties={"$ai_input": "prompt", "$ai_output_choices": ["out"],
                               "$ai_model": "m", "$ai_input_tokens": 3})
    client.capture("not ai", distinct_id="u", properties={"$ai_input": "kept"})
    ai, other = sent(client, sender)
    assert ai["properties"]["$ai_input"] is None and ai["properties"]["$ai_output_choices"] is None
    assert ai["properties"]["$ai_model"] == "m" and ai["properties"]["$ai_input_tokens"] == 3
    assert other["properties"]["$ai_input"] == "kept"
    assert seen[0]["$ai_input"] is None  # the hook never sees the content either


def test_flush_takes_posthogs_timeout_seconds(make_client, sender):
    client = make_client()
    client.capture("e", distinct_id="u")
    assert client.flush(timeout_seconds=5) is True
    assert len(sender.events) == 1
    assert client.flush(timeout_seconds=None) is True


def test_context_tags_are_listed_as_posthog_lists_them(make_client, sender):
    client = make_client()
    with productos.new_context():
        productos.tag("area", "checkout")
        client.capture("tagged", distinct_id="u", properties={"area": "override"})
        assert productos.get_tags() == {"area": "checkout"}
    (event,) = sent(client, sender)
    assert event["properties"]["$context_tags"] == ["area"]
    assert event["properties"]["area"] == "override"


def test_scoped_and_device_id(make_client):
    from productos.context import get_context_device_id

    @productos.scoped()
    def inner() -> Any:
        productos.set_context_device_id("dev-1")
        productos.tag("in", True)
        return get_context_device_id(), productos.get_tags()

    assert inner() == ("dev-1", {"in": True})
    assert get_context_device_id() is None and productos.get_tags() == {}


# --- module level -----------------------------------------------------------------------------


def test_module_functions_take_explicit_keyword_arguments():
    for name in productos.__all__:
        value = getattr(productos, name)
        if inspect.isfunction(value) and value.__module__ == "productos":
            kinds = {p.kind for p in inspect.signature(value).parameters.values()}
            assert inspect.Parameter.VAR_KEYWORD not in kinds, name


def test_posthogs_module_functions_exist_with_posthogs_parameters():
    for name in ("capture", "set", "set_once", "alias", "group_identify", "capture_exception",
                 "feature_enabled", "get_feature_flag", "get_feature_flag_result",
                 "get_feature_flag_payload", "get_all_flags", "get_all_flags_and_payloads",
                 "evaluate_flags", "get_remote_config_payload", "feature_flag_definitions",
                 "load_feature_flags", "flush", "join", "shutdown", "setup", "new_context",
                 "scoped", "set_context_session", "set_context_device_id", "identify_context",
                 "tag", "get_tags"):
        theirs = inspect.signature(getattr(posthog, name)).parameters
        ours = inspect.signature(getattr(productos, name)).parameters
        named = [p for p, v in theirs.items() if v.kind is not inspect.Parameter.VAR_KEYWORD]
        missing = [p for p in named if p not in ours and p not in ("fresh", "client")]
        assert missing == [], (name, missing)


def test_a_typo_in_a_module_setting_warns_once(monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        productos.flush_intervall = 3  # type: ignore[attr-defined]
        productos.flush_intervall = 4  # type: ignore[attr-defined]
        productos.flush_interval = 0.5
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "flush_interval" in messages[0]
    del productos.flush_intervall  # type: ignore[attr-defined]


@pytest.mark.parametrize("setting,value", [
    ("poll_interval", 60.0), ("disable_geoip", False),
    ("feature_flags_request_timeout_seconds", 1.5), ("enable_exception_autocapture", True),
    ("feature_flags_request_max_retries", 0), ("privacy_mode", True),
    ("log_captured_exceptions", True), ("in_app_modules", ["myapp"]),
])
def test_module_settings_posthog_honours_reach_the_default_client(monkeypatch, setting, value):
    productos.shutdown()
    monkeypatch.setattr(productos, "project_api_key", "phc_module")
    monkeypatch.setattr(productos, "send", False)
    monkeypatch.setattr(productos, setting, value)
    try:
        client = productos.setup()
        assert client is productos.setup() is productos.default_client
        assert getattr(client.options, setting) == value
    finally:
        productos.shutdown()


def test_module_level_calls_go_to_the_default_client(monkeypatch, sender):
    productos.shutdown()
    monkeypatch.setattr(productos, "project_api_key", "phc_module")
    monkeypatch.setattr(productos, "sender", sender)
    try:
        assert productos.capture("m", distinct_id="u", disable_geoip=False)
        assert productos.alias("u", "v", None, None, True)
        assert productos.group_identify("company", "c", {"a": 1}, None, None, None, "u")
        productos.join()
        assert productos.flush(timeout_seconds=5)
        assert [e["event"] for e in sender.events] == ["m", "$create_alias", "$groupidentify"]
        assert "$geoip_disable" not in sender.events[0]["properties"]
        assert sender.events[1]["properties"]["$geoip_disable"] is True
        assert productos.load_feature_flags() is False  # no personal API key
        assert productos.feature_flag_definitions() is None
    finally:
        productos.shutdown()


@pytest.mark.parametrize("autocapture,capture_exceptions,captured", [
    (False, None, 0), (False, True, 1), (False, False, 0),
    (True, None, 1), (True, True, 1), (True, False, 0),
])
def test_exceptions_leaving_a_client_context_follow_posthogs_rule(make_client, sender,
                                                                  autocapture,
                                                                  capture_exceptions, captured):
    client = make_client(enable_exception_autocapture=autocapture)
    with pytest.raises(ValueError), client.new_context(capture_exceptions=capture_exceptions):
        client.identify_context("ctx-user")
        raise ValueError("left the context")
    events = [e for e in sent(client, sender) if e["event"] == "$exception"]
    assert len(events) == captured
    if captured:
        assert events[0]["distinct_id"] == "ctx-user"


def test_client_context_methods(make_client, sender):
    client = make_client()

    @client.scoped()
    def handler() -> Any:
        client.tag("t", 1)
        client.set_context_session("s-1")
        client.set_context_device_id("d-1")
        client.identify_context("u-9")
        client.capture("inside")
        return client.get_tags()

    assert handler() == {"t": 1}
    assert client.get_tags() == {}
    (event,) = sent(client, sender)
    assert event["distinct_id"] == "u-9" and event["properties"]["$session_id"] == "s-1"


@pytest.mark.parametrize("retries, expected_requests", [(0, 1), (1, 2), (3, 4)])
def test_feature_flags_request_max_retries_is_how_often_a_failing_flags_call_is_retried(
        live_server, retries, expected_requests):
    from tests.server import Respond

    # One more 502 than any client retries: every try fails, and the read is unknown.
    live_server.enqueue(*[Respond(502)] * 5, route="flags")
    client = productos.Posthog("phc_test", host=live_server.url, send=False,
                               feature_flags_request_max_retries=retries)
    try:
        assert client.get_feature_flag("beta", "u1") is None
        assert len(live_server.requests_for("/flags/")) == expected_requests
    finally:
        client.shutdown(5)


def test_a_retried_flags_call_answers_once_the_server_recovers(live_server):
    from tests.server import Respond

    live_server.enqueue(Respond(502), Respond(504), route="flags")
    live_server.flags_handler = lambda body: {"flags": {"beta": {
        "key": "beta", "enabled": True, "variant": None, "metadata": {"id": 1, "version": 1}}}}
    client = productos.Posthog("phc_test", host=live_server.url, send=False,
                               feature_flags_request_max_retries=2)
    try:
        assert client.get_feature_flag("beta", "u1") is True
        assert len(live_server.requests_for("/flags/")) == 3
    finally:
        client.shutdown(5)


@pytest.mark.parametrize("name", sorted(compat.INERT_FUNCTIONS))
def test_posthogs_tuning_functions_exist_and_only_log(name, caplog):
    import posthog

    assert callable(getattr(posthog, name))  # still posthog's API in the pinned version
    with caplog.at_level(logging.DEBUG, logger="productos"):
        assert getattr(productos, name)(True) is None
    assert f"{name}() is accepted for compatibility with posthog" in caplog.text
    assert name not in productos.__all__
