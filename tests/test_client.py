"""The Client's public API: event shapes, argument handling, accounting and lifecycle."""

from __future__ import annotations

import datetime as dt
import logging
import uuid as uuid_mod
from typing import Any, Iterator, List

import pytest

import productos
from productos import errors
from productos._capture.events import MAX_EVENT_BYTES
from productos._capture.runtime import system_properties
from productos.testing import RecordingSender
from productos.version import VERSION


@pytest.fixture
def sender() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def make_client(sender: RecordingSender) -> Iterator[Any]:
    made: List[productos.Client] = []

    def make(**kwargs: Any) -> productos.Client:
        kwargs.setdefault("sender", sender)
        client = productos.Client(kwargs.pop("key", "phc_test"), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(5)


@pytest.fixture
def client(make_client: Any) -> productos.Client:
    return make_client()


def sent(client: productos.Client, sender: RecordingSender) -> List[dict]:
    assert client.flush(5)
    return sender.events


# --- event shapes (protocol §1) ------------------------------------------------------------


def test_capture_builds_the_event_the_protocol_describes(client, sender):
    returned = client.capture("order completed", distinct_id="user-1",
                              properties={"amount": 29.5}, groups={"company": "acme"})
    [event] = sent(client, sender)
    assert event["event"] == "order completed"
    assert event["distinct_id"] == "user-1"
    assert event["uuid"] == returned
    assert uuid_mod.UUID(returned).version == 7
    assert event["timestamp"].endswith("+00:00")
    props = event["properties"]
    assert props["amount"] == 29.5
    assert props["$lib"] == "productos-python"
    assert props["$lib_version"] == VERSION
    assert props["$geoip_disable"] is True
    assert props["$groups"] == {"company": "acme"}
    for key, value in system_properties().items():
        assert props[key] == value


def test_numeric_distinct_ids_become_strings(client, sender):
    client.capture("e", distinct_id=42)
    assert sent(client, sender)[0]["distinct_id"] == "42"


def test_event_without_any_distinct_id_is_personless(client, sender):
    client.capture("page viewed")
    [event] = sent(client, sender)
    assert uuid_mod.UUID(event["distinct_id"])
    assert event["properties"]["$process_person_profile"] is False


def test_caller_uuid_and_timestamp_are_kept(client, sender):
    given = "00000000-0000-4000-8000-000000000001"
    when = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert client.capture("e", distinct_id="u", uuid=given, timestamp=when) == given
    [event] = sent(client, sender)
    assert event["uuid"] == given
    assert event["timestamp"] == "2026-01-02T01:04:05+00:00"


def test_naive_timestamp_is_taken_as_utc_and_invalid_uuid_replaced(client, sender):
    client.capture("e", distinct_id="u", uuid="not-a-uuid", timestamp=dt.datetime(2026, 1, 2))
    [event] = sent(client, sender)
    assert event["timestamp"] == "2026-01-02T00:00:00+00:00"
    assert event["uuid"] != "not-a-uuid" and uuid_mod.UUID(event["uuid"])


def test_set_and_set_once_put_data_at_top_level(client, sender):
    client.set(distinct_id="u", properties={"plan": "pro"})
    client.set_once(distinct_id="u", properties={"first_seen": "today"})
    first, second = sent(client, sender)
    assert first["event"] == "$set" and first["$set"] == {"plan": "pro"}
    assert "plan" not in first["properties"]
    assert second["event"] == "$set_once" and second["$set_once"] == {"first_seen": "today"}


def test_alias_names_the_existing_and_the_new_id(client, sender):
    client.alias("anon-1", "user-1")
    [event] = sent(client, sender)
    assert event["event"] == "$create_alias"
    assert event["distinct_id"] == "anon-1"
    assert event["properties"]["distinct_id"] == "anon-1"
    assert event["properties"]["alias"] == "user-1"


def test_group_identify_uses_a_deterministic_id_without_a_caller_id(client, sender):
    client.group_identify("company", "acme", {"employees": 42})
    client.group_identify("company", "acme", {"employees": 43}, distinct_id="user-1")
    first, second = sent(client, sender)
    assert first["event"] == "$groupidentify"
    assert first["distinct_id"] == "$company_acme"
    assert first["properties"]["$group_type"] == "company"
    assert first["properties"]["$group_key"] == "acme"
    assert first["properties"]["$group_set"] == {"employees": 42}
    assert second["distinct_id"] == "user-1"


def test_group_identify_without_type_or_key_is_dropped_and_counted(client, sender):
    assert client.group_identify(None, "acme") is None
    assert client.group_identify("company", "") is None
    assert client.stats()["dropped"] == {"invalid": 2}


def test_precedence_tags_then_caller_then_super_properties(make_client, sender):
    client = make_client(super_properties={"app": "web", "shared": "super"})
    with productos.new_context():
        productos.tag("shared", "tag")
        productos.tag("only_tag", 1)
        client.capture("e", distinct_id="u", properties={"shared": "caller", "own": True})
    [event] = sent(client, sender)
    props = event["properties"]
    assert props["shared"] == "super"
    assert props["only_tag"] == 1 and props["own"] is True and props["app"] == "web"


def test_events_pick_up_the_context(client, sender):
    with productos.new_context():
        productos.identify_context("ctx-user")
        productos.set_context_session("sess-1")
        client.capture("e")
        client.set(properties={"a": 1})
    first, second = sent(client, sender)
    assert first["distinct_id"] == "ctx-user"
    assert first["properties"]["$session_id"] == "sess-1"
    assert "$process_person_profile" not in first["properties"]
    assert second["distinct_id"] == "ctx-user"


def test_geoip_can_be_enabled(make_client, sender):
    client = make_client(disable_geoip=False)
    client.capture("e", distinct_id="u")
    assert "$geoip_disable" not in sent(client, sender)[0]["properties"]


def test_json_unsafe_values_are_converted(client, sender):
    client.capture("e", distinct_id="u", properties={
        "when": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), "id": uuid_mod.UUID(int=1),
        "tags": {"a"}, "nan": float("nan"), "raw": b"bytes"})
    props = sent(client, sender)[0]["properties"]
    assert props["when"] == "2026-01-01T00:00:00+00:00"
    assert props["id"] == "00000000-0000-0000-0000-000000000001"
    assert props["tags"] == ["a"] and props["nan"] is None and props["raw"] == "bytes"


# --- before_send ------------------------------------------------------------------------------


def test_before_send_can_change_an_event(make_client, sender):
    def redact(event):
        event["properties"]["email"] = "***"
        return event

    client = make_client(before_send=redact)
    client.capture("e", distinct_id="u", properties={"email": "a@b.c"})
    assert sent(client, sender)[0]["properties"]["email"] == "***"


def test_before_send_returning_none_drops_and_counts_as_filtered(make_client, sender):
    client = make_client(before_send=lambda event: None)
    assert client.capture("e", distinct_id="u") is None
    assert sent(client, sender) == []
    stats = client.stats()
    assert stats["filtered"] == 1 and stats["captured"] == 1 and stats["dropped_total"] == 0


def test_before_send_that_raises_keeps_the_event(make_client, sender, caplog):
    def broken(event):
        raise RuntimeError("boom")

    client = make_client(before_send=broken)
    with caplog.at_level(logging.WARNING, logger="productos"):
        assert client.capture("e", distinct_id="u")
    assert len(sent(client, sender)) == 1
    assert "before_send raised" in caplog.text


# --- never break the host app -----------------------------------------------------------------


class ExplodingStr:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


@pytest.mark.parametrize("call", [
    lambda c: c.capture(None, distinct_id="u"),
    lambda c: c.capture("", distinct_id="u"),
    lambda c: c.capture(123, distinct_id="u"),
    lambda c: c.capture("e", distinct_id="u", properties=["not", "a", "dict"]),
    lambda c: c.capture("e", distinct_id=ExplodingStr()),
    lambda c: c.capture("e", distinct_id="u", groups="acme"),
    lambda c: c.capture("e", distinct_id="u", timestamp="not a date"),
    lambda c: c.set(properties={"a": 1}),
    lambda c: c.alias(None, "x"),
    lambda c: c.set(distinct_id="u", properties=5),
], ids=["none-name", "empty-name", "int-name", "list-props", "exploding-id", "str-groups",
        "bad-timestamp", "set-without-id", "alias-none", "set-int-props"])
def test_bad_arguments_never_raise_and_are_counted(make_client, call):
    seen = []
    client = make_client(on_error=lambda exc, batch: seen.append(exc))
    assert call(client) is None
    assert client.stats()["dropped"] == {"invalid": 1}
    assert len(seen) == 1 and isinstance(seen[0], Exception)


def test_debug_mode_raises_for_bad_arguments(make_client):
    client = make_client(debug=True)
    with pytest.raises(errors.EventError):
        client.capture(None, distinct_id="u")


def test_unserialisable_property_is_left_out_with_a_warning(client, sender, caplog):
    with caplog.at_level(logging.WARNING, logger="productos"):
        client.capture("e", distinct_id="u", properties={"ok": 1, "bad": ExplodingStr()})
    [event] = sent(client, sender)
    assert event["properties"]["ok"] == 1 and "bad" not in event["properties"]
    assert "not JSON-safe" in caplog.text


def test_oversize_event_is_dropped_and_counted(make_client, sender):
    errors_seen = []
    client = make_client(on_error=lambda exc, batch: errors_seen.append((exc, batch)))
    assert client.capture("big", distinct_id="u", properties={"x": "a" * MAX_EVENT_BYTES}) is None
    assert client.stats()["dropped"] == {"too_large": 1}
    assert isinstance(errors_seen[0][0], errors.EventTooLargeError)
    assert errors_seen[0][1][0]["event"] == "big"
    assert sent(client, sender) == []


def test_full_queue_drops_new_events_and_counts_them(make_client, sender):
    sender.delay = 0.3
    client = make_client(max_queue_size=5, flush_at=1000, flush_interval=30)
    results = [client.capture("e", distinct_id="u") for _ in range(8)]
    assert results.count(None) == 3
    assert client.stats()["dropped"] == {"queue_full": 3}
    assert client.flush(5)
    assert len(sender.events) == 5


def test_events_after_shutdown_are_refused_and_counted(client, sender):
    client.shutdown(5)
    assert client.capture("late", distinct_id="u") is None
    assert client.stats()["dropped"] == {"after_shutdown": 1}


def test_server_rejection_reaches_on_error_with_the_batch(make_client, sender):
    seen = []
    sender.fail_with = lambda items: "rejected"
    client = make_client(on_error=lambda exc, batch: seen.append((exc, batch)))
    client.capture("e", distinct_id="u")
    assert client.flush(5)
    assert client.stats()["dropped"] == {"rejected": 1}
    assert isinstance(seen[0][0], errors.APIError)
    assert seen[0][1][0]["event"] == "e"


@pytest.mark.allow_internal_errors
def test_on_error_that_raises_is_contained(make_client, sender):
    def broken(exc, batch):
        raise RuntimeError("callback bug")

    client = make_client(on_error=broken)
    assert client.capture(None) is None  # still no exception


def test_stats_account_for_every_event(make_client, sender):
    client = make_client()
    for i in range(10):
        client.capture("e", distinct_id=str(i))
    client.capture(None)
    assert client.flush(5)
    stats = client.stats()
    assert stats["captured"] == 11
    assert stats["sent"] == 10
    assert stats["captured"] == (stats["sent"] + stats["queued"] + stats["in_flight"]
                                 + stats["dropped_total"] + stats["filtered"])


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"flush_at": -1}, {"flush_at": 0}, {"max_queue_size": 0}, {"flush_interval": -1},
    {"max_retries": -1}, {"timeout": 0}, {"on_error": "nope"}, {"host": "ftp://x"},
    {"flush_at": True}, {"super_properties": ["a"]},
])
def test_invalid_configuration_raises_value_error_at_once(kwargs):
    with pytest.raises(ValueError):
        productos.Client("phc_test", **kwargs)


def test_blank_key_disables_the_client_with_one_log_line(caplog, monkeypatch):
    monkeypatch.delenv("PRODUCTOS_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="productos"):
        client = productos.Client("  ")
    assert client.disabled
    assert client.capture("e", distinct_id="u") is None
    assert len([r for r in caplog.records if "no project API key" in r.getMessage()]) == 1
    client.shutdown()


def test_api_key_alias_and_environment(monkeypatch):
    assert productos.Client(api_key="phc_a").options.project_api_key == "phc_a"
    monkeypatch.setenv("PRODUCTOS_API_KEY", "phc_env")
    monkeypatch.setenv("PRODUCTOS_HOST", "https://eu.posthog.com/")
    client = productos.Client()
    assert client.options.project_api_key == "phc_env"
    assert client.options.host == "https://eu.i.posthog.com"
    with pytest.raises(ValueError):
        productos.Client("phc_a", api_key="phc_b")


@pytest.mark.parametrize("given, expected", [
    (None, "https://us.i.posthog.com"),
    ("https://app.posthog.com", "https://us.i.posthog.com"),
    ("https://us.posthog.com/", "https://us.i.posthog.com"),
    ("https://eu.posthog.com", "https://eu.i.posthog.com"),
    ("http://localhost:8010/", "http://localhost:8010"),
])
def test_host_mapping(given, expected, monkeypatch):
    monkeypatch.delenv("PRODUCTOS_HOST", raising=False)
    assert productos.Client("phc_test", host=given).options.host == expected


def test_keys_never_appear_in_repr():
    client = productos.Client("phc_secret", personal_api_key="phx_secret")
    try:
        assert "secret" not in repr(client.options)
    finally:
        client.shutdown(1)  # its poller must not outlive the test (it jitters with `random`)


def test_disabled_client_does_nothing(make_client, sender):
    client = make_client(disabled=True)
    assert client.capture("e", distinct_id="u") is None
    assert client.flush(1)
    assert sender.events == [] and client.stats()["captured"] == 0


def test_send_false_accepts_and_counts_but_sends_nothing(make_client, sender):
    client = make_client(send=False)
    assert client.capture("e", distinct_id="u")
    assert sent(client, sender) == []
    assert client.stats()["dropped"] == {"send_disabled": 1}


def test_sync_mode_sends_on_the_callers_thread(make_client, sender):
    client = make_client(sync_mode=True)
    client.capture("e", distinct_id="u")
    assert len(sender.events) == 1  # before any flush
    assert client.stats()["sent"] == 1


def test_context_manager_shuts_down(sender):
    with productos.Client("phc_test", sender=sender) as client:
        client.capture("e", distinct_id="u")
    assert len(sender.events) == 1
    assert client.capture("late", distinct_id="u") is None


def test_flush_wakes_the_worker_at_once(make_client, sender):
    client = make_client(flush_interval=60, flush_at=1000)
    client.capture("e", distinct_id="u")
    # Settled within 5 s while the worker's own interval is 60 s: flush woke it.
    assert client.flush(5)
    assert len(sender.events) == 1


# --- module-level default client -----------------------------------------------------------------


def test_module_level_client_is_created_lazily_from_settings(monkeypatch, sender):
    monkeypatch.setattr(productos, "project_api_key", "phc_module")
    monkeypatch.setattr(productos, "send", False)
    productos.shutdown()
    try:
        assert productos.default_client is None
        assert productos.capture("e", distinct_id="u")
        assert productos.default_client is not None
        assert productos.default_client.options.project_api_key == "phc_module"
        assert productos.set(distinct_id="u", properties={"a": 1})
        assert productos.set_once(distinct_id="u", properties={"a": 1})
        assert productos.alias("a", "b")
        assert productos.group_identify("company", "acme", {"n": 1})
        assert productos.flush(5)
    finally:
        productos.shutdown()
    assert productos.default_client is None


def test_module_level_client_is_created_once_across_threads(monkeypatch):
    import threading

    monkeypatch.setattr(productos, "project_api_key", "phc_module")
    monkeypatch.setattr(productos, "send", False)
    productos.shutdown()
    made = []

    def worker():
        made.append(productos._default())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len({id(c) for c in made}) == 1
    finally:
        productos.shutdown()


def test_on_drop_hears_about_every_dropped_event(make_client, sender):
    dropped = []
    sender.fail_with = lambda items: "rejected"
    client = make_client(on_drop=lambda event, reason: dropped.append((event, reason)))
    client.capture(None)
    client.capture("big", distinct_id="u", properties={"x": "a" * MAX_EVENT_BYTES})
    client.capture("refused", distinct_id="u")
    assert client.flush(5)
    assert [reason for _, reason in dropped] == ["invalid", "too_large", "rejected"]
    assert dropped[2][0]["event"] == "refused"


@pytest.mark.parametrize("kwargs", [
    {"on_full": "explode"}, {"max_queue_bytes": 0}, {"max_concurrent_requests": 0},
    {"block_timeout": -1}, {"on_drop": 3},
])
def test_invalid_delivery_options_raise(kwargs):
    with pytest.raises(ValueError):
        productos.Client("phc_test", **kwargs)


def test_module_level_flags_and_exceptions(monkeypatch, tmp_path):
    from pathlib import Path

    monkeypatch.setattr(productos, "project_api_key", "phc_module")
    monkeypatch.setattr(productos, "send", False)
    productos.shutdown()
    productos._default()  # created from the settings, then given offline definitions
    client = productos.default_client
    from productos._flags.source import load_definitions_file

    data = Path(__file__).parent / "data" / "sample_definitions.json"
    client._definitions.swap(load_definitions_file(str(data)))
    try:
        assert productos.feature_enabled("simple", "u") is True
        assert productos.get_feature_flag("off", "u") is False
        assert productos.get_feature_flag_payload(
            "beta", "u", person_properties={"plan": "pro"}) == {"color": "blue"}
        assert productos.get_all_flags("u", only_evaluate_locally=True)["simple"] is True
        try:
            raise ValueError("boom")
        except ValueError:
            assert productos.capture_exception()
    finally:
        productos.shutdown()


def test_a_fork_nobody_announced_is_noticed_by_the_process_id(make_client, sender):
    client = make_client()
    client.capture("before", distinct_id="u")
    assert client.flush(5)
    client._pipeline.pid = -1  # as in a uWSGI worker: another process id, no at-fork hook ran
    stale = client._consumer._buffer
    assert client.capture("after", distinct_id="u")
    assert client._consumer._buffer is not stale
    assert client.flush(5)
    assert [e["event"] for e in sender.events][-1] == "after"


def test_a_fork_nobody_announced_draws_fresh_event_ids(make_client):
    from productos._capture import ids

    client = make_client()
    state = ids._random.getstate()
    parent = client.capture("parent", distinct_id="u")
    ids._random.setstate(state)  # a child's copy of the parent's generator
    client._pipeline.pid = -1  # ... in a process forked without at-fork hooks
    child = client.capture("child", distinct_id="u")
    assert parent is not None and child is not None
    # After the millisecond and the version digit, a uuid7 is random: the child's differs.
    assert parent[15:] != child[15:]
