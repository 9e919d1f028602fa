"""Flags end to end: a real Client, a real server on 127.0.0.1, real polling threads."""

from __future__ import annotations

import copy
import json
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

import productos
from productos.flags import ReasonCode

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from support import wait_until  # type: ignore

DATA = Path(__file__).parent / "data" / "sample_definitions.json"
DEFINITIONS = json.loads(DATA.read_text())


@pytest.fixture
def make_client(live_server):
    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    made: List[productos.Client] = []

    def make(**kwargs: Any) -> productos.Client:
        options = {"host": live_server.url, "personal_api_key": live_server.personal_api_key,
                   "flush_interval": 0.05, **kwargs}
        client = productos.Client("phc_flags", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(5)


def test_local_evaluation_with_definitions_from_the_server(make_client, live_server):
    client = make_client()
    assert client.feature_enabled("simple", "user-1") is True
    assert client.get_feature_flag("beta", "user-1", person_properties={"plan": "pro"}) is True
    assert client.get_feature_flag("off", "user-1") is False
    assert client.get_feature_flag("multi", "user-1") in ("control", "test")
    assert client.get_feature_flag("company-flag", "user-1", groups={"company": "acme"}) is True
    assert client.get_feature_flag("company-flag", "user-1") is False  # group not passed
    assert client.get_feature_flag_payload("beta", "user-1",
                                           person_properties={"plan": "pro"}) == {"color": "blue"}
    assert live_server.requests_for("/flags/") == []  # all decided locally
    definitions = live_server.requests_for("/flags/definitions")
    assert definitions[0].headers["Authorization"] == f"Bearer {live_server.personal_api_key}"
    assert client.feature_flag_definitions()["flags"][0]["key"] == "simple"


def test_remote_fallback_when_local_data_cannot_decide(make_client, live_server):
    seen = []

    def answer(body):
        seen.append(body)
        return 200, {"flags": {"static-cohort": {
            "key": "static-cohort", "enabled": True, "variant": None,
            "reason": {"code": "condition_match", "description": "in cohort"},
            "metadata": {"id": 4, "version": 1, "payload": None}}},
            "errorsWhileComputingFlags": False, "requestId": "req-9"}

    live_server.flags_handler = answer
    client = make_client()
    result = client.get_feature_flag_result("static-cohort", "user-1")
    assert result.value is True and not result.locally_evaluated
    assert result.reason.code is ReasonCode.REMOTE
    assert seen[0]["flag_keys_to_evaluate"] == ["static-cohort"]
    assert client.get_feature_flag("static-cohort", "user-1",
                                   only_evaluate_locally=True) is None


def test_remote_failure_is_unknown_not_false(make_client, live_server):
    live_server.flags_handler = lambda body: (500, {"detail": "boom"})
    client = make_client()
    assert client.feature_enabled("static-cohort", "user-1") is None
    assert client.get_feature_flag_result("static-cohort", "user-1").reason.error == \
        "api_error_500"


def test_feature_flag_called_events_reach_the_server_once(make_client, live_server):
    client = make_client()
    for _ in range(5):
        client.get_feature_flag("multi", "user-1")
    client.get_feature_flag("multi", "user-2")
    assert client.flush(5)
    called = [e for e in live_server.events if e["event"] == "$feature_flag_called"]
    assert sorted(e["distinct_id"] for e in called) == ["user-1", "user-2"]
    props = called[0]["properties"]
    assert props["$feature_flag"] == "multi" and props["locally_evaluated"] is True
    assert props["$feature/multi"] == props["$feature_flag_response"]


def test_capture_with_flags_attaches_feature_properties(make_client, live_server):
    client = make_client()
    client.capture("checkout", distinct_id="user-1", send_feature_flags=True)
    client.capture("checkout", distinct_id="user-1", flags={"beta": "test", "off": False})
    assert client.flush(5)
    first, second = [e for e in live_server.events if e["event"] == "checkout"]
    assert first["properties"]["$feature/simple"] is True
    assert "simple" in first["properties"]["$active_feature_flags"]
    assert second["properties"]["$feature/beta"] == "test"
    assert second["properties"]["$active_feature_flags"] == ["beta"]


def test_bulk_calls_make_at_most_one_remote_request(make_client, live_server):
    live_server.flags_handler = lambda body: (200, {"flags": {
        "beta": {"key": "beta", "enabled": True, "variant": None,
                 "metadata": {"payload": "{\"color\": \"red\"}"}},
        "static-cohort": {"key": "static-cohort", "enabled": False}}})
    client = make_client()
    flags = client.get_all_flags("user-1")
    assert len(live_server.requests_for("/flags/")) == 1
    assert flags["simple"] is True and flags["beta"] is True and flags["static-cohort"] is False
    both = client.get_all_flags_and_payloads("user-1")
    # As posthog returns them: the payload text the server sent, not decoded.
    assert both["featureFlagPayloads"]["beta"] == "{\"color\": \"red\"}"
    assert client.get_all_flags("user-1", only_evaluate_locally=True).get("beta") is None
    assert len(live_server.requests_for("/flags/")) == 2


def test_definitions_change_mid_run_and_the_snapshot_swaps(make_client, live_server):
    client = make_client(poll_interval=0.1)
    assert client.feature_enabled("simple", "user-1") is True
    assert live_server.wait_for_requests(3, path="/flags/definitions", timeout=10)
    changed = copy.deepcopy(DEFINITIONS)
    changed["flags"][0]["active"] = False
    live_server.set_definitions(changed)
    assert wait_until(lambda: client.feature_enabled("simple", "user-1") is False, timeout=10)
    conditional = [r for r in live_server.requests_for("/flags/definitions")
                   if r.headers.get("If-None-Match")]
    assert conditional and any(r.response_status == 304 for r in conditional)


def test_many_threads_evaluate_while_definitions_swap(make_client, live_server):
    client = make_client(poll_interval=0.02)
    client.load_feature_flags()
    errors: List[BaseException] = []
    seen: set = set()
    stop = threading.Event()

    def evaluate() -> None:
        try:
            while not stop.is_set():
                value = client.get_feature_flag("simple", "user-1",
                                                send_feature_flag_events=False)
                assert value in (True, False)
                seen.add(value)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=evaluate) for _ in range(6)]
    for thread in threads:
        thread.start()
    for i in range(20):
        changed = copy.deepcopy(DEFINITIONS)
        changed["flags"][0]["active"] = i % 2 == 0
        live_server.set_definitions(changed)
        fetched = len(live_server.requests_for("/flags/definitions"))
        # The next poll starts after the change; once the one after it starts, it is done.
        assert live_server.wait_for_requests(fetched + 2, path="/flags/definitions",
                                             timeout=10)
    stop.set()
    for thread in threads:
        thread.join(5)
    assert errors == []
    assert seen == {True, False}  # the readers really ran across swaps


def test_wrong_personal_key_clears_definitions_and_falls_back(make_client, live_server, caplog):
    live_server.flags_handler = lambda body: (200, {"flags": {
        "simple": {"key": "simple", "enabled": True}}})
    client = make_client(personal_api_key="phx_wrong")
    assert client.get_feature_flag("simple", "user-1") is True  # answered by the server
    assert client.flag_definitions_status().state.value == "off"
    assert "phx_wrong" not in caplog.text


def test_offline_definitions_file_never_touches_the_network(tmp_path):
    client = productos.Client("phc_offline", host="http://127.0.0.1:9",
                              flag_definitions_file=str(DATA), send=False)
    try:
        assert client.get_feature_flag("beta", "u", person_properties={"plan": "pro"}) is True
        assert client.get_feature_flag("static-cohort", "u") is None  # no server to ask
        assert client.load_feature_flags() is True
    finally:
        client.shutdown(1)
    with pytest.raises(ValueError):
        productos.Client("phc_offline", flag_definitions_file=str(tmp_path / "missing.json"))


def test_first_call_waits_only_a_bounded_time_for_definitions(live_server):
    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    live_server.set_delay(2.0)
    client = productos.Client("phc_flags", host=live_server.url,
                              personal_api_key=live_server.personal_api_key,
                              flags_first_load_timeout=0.2,
                              feature_flags_request_timeout_seconds=0.3)
    try:
        started = time.monotonic()
        value = client.get_feature_flag("simple", "user-1", only_evaluate_locally=True)
        assert time.monotonic() - started < 1.5
        assert value is None  # not loaded yet: unknown, not False
    finally:
        live_server.set_delay(0)
        client.shutdown(5)


def test_flag_calls_never_raise_for_bad_arguments(make_client):
    client = make_client()
    assert client.get_feature_flag(None, "u") is None
    assert client.get_feature_flag("simple", None) is None  # no id anywhere
    assert client.get_feature_flag("simple", "u", person_properties=[1, 2]) is None
    assert client.get_all_flags("u", groups="acme") is None
    with productos.new_context():
        productos.identify_context("from-context")
        assert client.feature_enabled("simple") is True
