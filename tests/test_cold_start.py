"""Cold start with many flags, and definitions bodies that must not replace the last good set.

A real Client polls the loopback server (tests/server.py) on 127.0.0.1; nothing is faked.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import productos
from productos._flags.poller import SourceState

ITERATIONS = 20  # enough rounds for the load/poll race to show up on the unfixed code
PERSON = {"plan": "pro", "email": "ada@example.com"}


def many_flags(count: int) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Return definitions with `count` flags and the values PERSON gets for each of them."""
    flags: List[Dict[str, Any]] = []
    expected: Dict[str, Any] = {}
    for i in range(count):
        key = f"flag-{i:04d}"
        kind = i % 4
        if kind == 0:  # on for pro plans
            groups = [{"properties": [{"key": "plan", "value": ["pro", "enterprise"],
                                       "operator": "exact", "type": "person"}],
                       "rollout_percentage": 100}]
            filters: Dict[str, Any] = {"groups": groups}
            expected[key] = True
        elif kind == 1:  # on for another plan only: off for PERSON
            groups = [{"properties": [{"key": "plan", "value": ["free"], "operator": "exact",
                                       "type": "person"}], "rollout_percentage": 100}]
            filters = {"groups": groups}
            expected[key] = False
        elif kind == 2:  # a single variant, so the value does not depend on the hash
            filters = {"groups": [{"properties": [{"key": "email", "value": "@example.com",
                                                   "operator": "icontains", "type": "person"}],
                                   "rollout_percentage": 100}],
                       "multivariate": {"variants": [{"key": f"v{i}", "rollout_percentage": 100}]},
                       "payloads": {f"v{i}": json.dumps({"n": i})}}
            expected[key] = f"v{i}"
        else:  # a rollout of 0: off for everyone
            filters = {"groups": [{"properties": [], "rollout_percentage": 0}]}
            expected[key] = False
        flags.append({"id": 1000 + i, "key": key, "name": key, "version": 1, "active": True,
                      "ensure_experience_continuity": False, "filters": filters})
    return {"flags": flags, "group_type_mapping": {}, "cohorts": {}}, expected


@pytest.fixture
def clients(live_server) -> Iterator[List[productos.Client]]:
    made: List[productos.Client] = []
    yield made
    for client in made:
        client.shutdown(5)


def new_client(live_server, made: List[productos.Client], **kwargs: Any) -> productos.Client:
    client = productos.Client("phc_cold", host=live_server.url,
                              personal_api_key=live_server.personal_api_key,
                              flush_interval=0.05, **kwargs)
    made.append(client)
    return client


def assert_answers(client: productos.Client, expected: Dict[str, Any], iteration: int) -> None:
    last = sorted(expected)[-1]
    value = client.get_feature_flag(last, "user-1", person_properties=PERSON,
                                    send_feature_flag_events=False)
    assert value == expected[last], f"round {iteration}: {last} gave {value!r}"
    values = client.get_all_flags("user-1", person_properties=PERSON)
    assert values is not None and len(values) == len(expected), \
        f"round {iteration}: {0 if values is None else len(values)} of {len(expected)} flags"
    assert values == expected


@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow-server"])
@pytest.mark.parametrize("count", [20, 500, 2000])
def test_load_feature_flags_true_means_every_evaluation_sees_them(live_server, clients,
                                                                  count, slow):
    definitions, expected = many_flags(count)
    live_server.set_definitions(definitions)
    if slow:
        live_server.set_delay(0.05)
    rounds = 0
    for iteration in range(ITERATIONS):
        client = new_client(live_server, clients)
        assert client.load_feature_flags() is True, f"round {iteration}"
        assert_answers(client, expected, iteration)
        client.shutdown(5)
        clients.remove(client)
        rounds += 1
    assert rounds == ITERATIONS
    # Every answer came from local definitions: the /flags endpoint was never asked.
    assert live_server.requests_for("/flags/") == []


@pytest.mark.parametrize("slow", [False, True], ids=["fast", "slow-server"])
def test_first_call_after_client_waits_for_2000_flags(live_server, clients, slow):
    definitions, expected = many_flags(2000)
    live_server.set_definitions(definitions)
    if slow:
        live_server.set_delay(0.05)
    for iteration in range(5):
        client = new_client(live_server, clients)
        assert_answers(client, expected, iteration)
        client.shutdown(5)
        clients.remove(client)
    assert live_server.requests_for("/flags/") == []


def test_a_304_for_one_fetch_does_not_report_valid_while_another_parses(live_server, clients):
    """The explicit load and the background poll interleave on a slow server, many rounds."""
    definitions, expected = many_flags(2000)
    live_server.set_definitions(definitions)
    live_server.set_delay(0.01)
    for iteration in range(ITERATIONS):
        client = new_client(live_server, clients, poll_interval=0.05)
        assert client.load_feature_flags() is True
        assert_answers(client, expected, iteration)
        status = client.flag_definitions_status()
        assert status is not None and status.state is SourceState.VALID
        client.shutdown(5)
        clients.remove(client)


# --- definitions bodies that hold no flag list --------------------------------------------


BAD_BODIES = [{}, {"flags": None}, {"flags": {}}]


@pytest.mark.parametrize("body", BAD_BODIES, ids=["empty-object", "flags-null", "flags-object"])
def test_a_body_without_a_flag_list_keeps_the_last_good_set(live_server, clients, caplog, body):
    definitions, expected = many_flags(20)
    live_server.set_definitions(definitions)
    client = new_client(live_server, clients, poll_interval=0.02)
    assert client.load_feature_flags() is True
    assert_answers(client, expected, 0)
    with caplog.at_level(logging.WARNING, logger="productos"):
        live_server.set_definitions(body)
        before = len(live_server.requests_for("/flags/definitions"))
        # Several polls of the bad body (the loop runs every 20 ms), bounded in time.
        assert live_server.wait_for_requests(before + 5, "/flags/definitions", timeout=10)
        assert client.load_feature_flags() is False
    status = client.flag_definitions_status()
    assert status is not None and status.state is SourceState.INTERRUPTED
    assert status.last_error is not None and "flags" in status.last_error
    assert_answers(client, expected, 1)
    lines = [r for r in caplog.records if "flag definitions" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and "'flags' list" in lines[0].getMessage()
    # A good body again is taken at once.
    live_server.set_definitions(definitions)
    assert client.load_feature_flags() is True
    assert client.flag_definitions_status().state is SourceState.VALID


def test_an_empty_flag_list_is_a_valid_answer(live_server, clients):
    definitions, _ = many_flags(20)
    live_server.set_definitions(definitions)
    client = new_client(live_server, clients)
    assert client.load_feature_flags() is True
    live_server.set_definitions({"flags": [], "group_type_mapping": {}, "cohorts": {}})
    assert client.load_feature_flags() is True
    assert client.get_all_flags("user-1", person_properties=PERSON,
                                only_evaluate_locally=True) == {}
