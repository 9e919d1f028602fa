"""Definitions: the requester's exact requests, and the poller's handling of each answer."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
import requests
import responses

from productos import errors
from productos._delivery.transport import Transport
from productos._flags.poller import Poller, SnapshotHolder, SourceState
from productos._flags.remote import RemoteFlagsRequester, parse_flags_response
from productos._flags.service import payload_for
from productos._flags.source import (
    DefinitionsFetch,
    DefinitionsRequester,
    FetchOutcome,
    load_definitions_file,
)
from productos.flags import Snapshot, parse_definitions

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from support import wait_until  # type: ignore

HOST = "https://flags.example.test"
DATA = Path(__file__).parent / "data" / "sample_definitions.json"
DEFINITIONS = json.loads(DATA.read_text())


# --- the requester (exact requests, with `responses`) ---------------------------------


@responses.activate
def test_definitions_request_shape_and_etag():
    responses.get(f"{HOST}/flags/definitions", json=DEFINITIONS, headers={"ETag": '"v1"'})
    responses.get(f"{HOST}/flags/definitions", status=304)
    requester = DefinitionsRequester(Transport(HOST), "phc_project", "phx_personal")
    first = requester.fetch()
    second = requester.fetch(first.etag)  # the caller, not the requester, keeps the ETag
    assert first.outcome is FetchOutcome.OK and first.data == DEFINITIONS and first.etag == '"v1"'
    assert second.outcome is FetchOutcome.NOT_MODIFIED and second.etag == '"v1"'
    call1, call2 = responses.calls
    assert call1.request.headers["Authorization"] == "Bearer phx_personal"
    assert "If-None-Match" not in call1.request.headers
    assert call2.request.headers["If-None-Match"] == '"v1"'
    assert "token=phc_project" in call1.request.url and "send_cohorts" in call1.request.url


@responses.activate
def test_definitions_fall_back_to_the_legacy_path_on_404():
    responses.get(f"{HOST}/flags/definitions", status=404)
    responses.get(f"{HOST}/api/feature_flag/local_evaluation/", json=DEFINITIONS)
    requester = DefinitionsRequester(Transport(HOST), "phc_project", "phx_personal")
    assert requester.fetch().outcome is FetchOutcome.OK
    assert requester.fetch().outcome is FetchOutcome.OK
    paths = [c.request.path_url.split("?")[0] for c in responses.calls]
    assert paths == ["/flags/definitions", "/api/feature_flag/local_evaluation/",
                     "/api/feature_flag/local_evaluation/"]  # remembered


@pytest.mark.parametrize("status, outcome", [
    (401, FetchOutcome.UNAUTHORIZED), (403, FetchOutcome.UNAUTHORIZED),
    (402, FetchOutcome.QUOTA_LIMITED), (500, FetchOutcome.ERROR),
])
@responses.activate
def test_definitions_statuses_are_classified(status, outcome):
    responses.get(f"{HOST}/flags/definitions", status=status, json={"detail": "no"})
    fetch = DefinitionsRequester(Transport(HOST), "phc_project", "phx_secret_key").fetch()
    assert fetch.outcome is outcome
    assert "phx_secret_key" not in str(fetch.error)


@pytest.mark.parametrize("body", [{}, {"flags": None}, {"flags": {}}, [1], "text"])
@responses.activate
def test_a_200_without_a_flag_list_is_an_error(body):
    responses.get(f"{HOST}/flags/definitions", json=body, headers={"ETag": '"bad"'})
    fetch = DefinitionsRequester(Transport(HOST), "phc_project", "phx_personal").fetch()
    assert fetch.outcome is FetchOutcome.ERROR and fetch.data is None and fetch.etag is None
    assert "'flags' list" in str(fetch.error) or "not a JSON object" in str(fetch.error)


@responses.activate
def test_an_empty_flag_list_is_ok():
    responses.get(f"{HOST}/flags/definitions", json={"flags": []})
    assert DefinitionsRequester(Transport(HOST), "phc_project", "phx_personal").fetch().outcome \
        is FetchOutcome.OK


@responses.activate
def test_a_304_to_an_unconditional_request_is_an_error():
    responses.get(f"{HOST}/flags/definitions", status=304)
    fetch = DefinitionsRequester(Transport(HOST), "phc_project", "phx_personal").fetch()
    assert fetch.outcome is FetchOutcome.ERROR


@responses.activate
def test_definitions_network_failure_is_an_error_outcome():
    responses.get(f"{HOST}/flags/definitions",
                  body=requests.exceptions.ConnectionError("refused"))
    fetch = DefinitionsRequester(Transport(HOST), "phc_project", "phx_personal").fetch()
    assert fetch.outcome is FetchOutcome.ERROR and isinstance(fetch.error, errors.ConnectError)


@responses.activate
def test_remote_flags_request_shape():
    responses.post(f"{HOST}/flags/?v=2", json={"flags": {}, "requestId": "r"})
    requester = RemoteFlagsRequester(Transport(HOST), "phc_project", timeout=3)
    requester.evaluate("user-1", groups={"company": "acme"},
                       person_properties={"plan": "pro"},
                       group_properties={"company": {"size": 5}, "unused": {"a": 1}},
                       device_id="dev-1", keys=["beta"])
    [call] = responses.calls
    body = json.loads(call.request.body)
    assert body["api_key"] == "phc_project" and body["distinct_id"] == "user-1"
    assert body["groups"] == {"company": "acme"}
    assert body["person_properties"] == {"plan": "pro"}
    assert body["group_properties"] == {"company": {"$group_key": "acme", "size": 5}}
    assert body["device_id"] == "dev-1" and body["flag_keys_to_evaluate"] == ["beta"]
    assert body["geoip_disable"] is True
    assert "Authorization" not in call.request.headers


@responses.activate
def test_remote_flags_retry_once_on_502_and_timeouts():

    responses.post(f"{HOST}/flags/?v=2", status=502)
    responses.post(f"{HOST}/flags/?v=2", json={"flags": {"a": {"key": "a", "enabled": True}}})
    requester = RemoteFlagsRequester(Transport(HOST), "phc_project")
    answer = requester.evaluate("u", groups={}, person_properties={}, group_properties={})
    assert answer.flags["a"]["enabled"] is True and len(responses.calls) == 2
    responses.reset()
    responses.post(f"{HOST}/flags/?v=2", body=requests.exceptions.ReadTimeout("slow"))
    answer = requester.evaluate("u", groups={}, person_properties={}, group_properties={})
    assert answer.error == "timeout" and len(responses.calls) == 2
    responses.reset()
    responses.post(f"{HOST}/flags/?v=2", status=500)
    answer = requester.evaluate("u", groups={}, person_properties={}, group_properties={})
    assert answer.error == "api_error_500" and len(responses.calls) == 1


def test_v1_and_v2_responses_normalise_alike():
    v1 = parse_flags_response({"featureFlags": {"a": True, "b": "test", "c": False},
                               "featureFlagPayloads": {"b": "{\"x\": 1}"}})
    assert v1.flags["a"]["enabled"] is True
    assert v1.flags["b"]["variant"] == "test" and v1.flags["b"]["metadata"]["payload"]
    assert v1.flags["c"]["enabled"] is False
    assert parse_flags_response("nonsense").error == "api_error_invalid_body"


# --- the poller (fake fetch) ---------------------------------


class ScriptedFetch:
    def __init__(self, *answers: DefinitionsFetch) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.etags: list = []  # the ETag each call was conditional on

    def __call__(self, etag=None) -> DefinitionsFetch:
        self.calls += 1
        self.etags.append(etag)
        answer = (self.answers.pop(0) if self.answers
                  else DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=etag))
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_poller(fetch):
    holder = SnapshotHolder(Snapshot.empty())
    return Poller(fetch, parse_definitions, holder, Snapshot.empty(), interval=30), holder


def test_ok_swaps_in_a_new_snapshot_and_304_keeps_it():
    fetch = ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'))
    poller, holder = make_poller(fetch)
    assert poller.poll_once().state is SourceState.VALID
    first = holder.get()
    assert first.loaded and "beta" in first.flags
    assert poller.poll_once().state is SourceState.VALID
    assert holder.get() is first
    assert fetch.etags == [None, '"v1"']


def test_the_etag_is_sent_only_while_its_snapshot_is_in_force():
    fetch = ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'),
                          DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'))
    poller, holder = make_poller(fetch)
    poller.poll_once()
    holder.swap(parse_definitions({"flags": []}))  # e.g. set_flag_definitions()
    assert poller.poll_once().state is SourceState.VALID
    assert fetch.etags == [None, None]  # a 304 could not have brought the server's set back
    assert "beta" in holder.get().flags


def test_a_304_after_the_snapshot_changed_mid_request_refetches_in_full():
    holder = SnapshotHolder(Snapshot.empty())
    calls = []

    def fetch(etag):
        calls.append(etag)
        if len(calls) == 1:
            return DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"')
        if len(calls) == 2:
            holder.swap(Snapshot.empty())  # replaced while the request was in flight
            return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=etag)
        return DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"')

    poller = Poller(fetch, parse_definitions, holder, Snapshot.empty(), interval=30)
    poller.poll_once()
    assert poller.poll_once().state is SourceState.VALID
    assert calls == [None, '"v1"', None] and holder.get().loaded


def expect_swallowed(internal_errors, *texts):
    """Check that exactly these errors were logged and contained, then forget them."""
    assert [str(exc) for exc in internal_errors] == list(texts)
    internal_errors.clear()


def test_a_failed_parse_remembers_no_etag(internal_errors):
    fetch = ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'),
                          DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'))
    parsed = []

    def parse(data):
        parsed.append(data)
        if len(parsed) == 1:
            raise RuntimeError("a bug in the parser")
        return parse_definitions(data)

    holder = SnapshotHolder(Snapshot.empty())
    poller = Poller(fetch, parse, holder, Snapshot.empty(), interval=30)
    assert poller.poll_once().state is SourceState.INTERRUPTED
    assert poller.poll_once().state is SourceState.VALID and holder.get().loaded
    assert fetch.etags == [None, None]  # never a 304 for a body that was never applied
    expect_swallowed(internal_errors, "a bug in the parser")


class SlowFirstParse:
    """A parser whose first call blocks until released (and then fails, if told to)."""

    def __init__(self, fail_first: bool = False) -> None:
        self.parsing = threading.Event()
        self.release = threading.Event()
        self.fail_first = fail_first

    def __call__(self, data):
        if not self.parsing.is_set():
            self.parsing.set()
            assert self.release.wait(5)
            if self.fail_first:
                raise RuntimeError("a bug in the parser")
        return parse_definitions(data)


def _queue_a_poll_behind_a_slow_parse(fetch, parse):
    """Start the loop, queue a poll_once behind its blocked parse, release, return both."""
    holder = SnapshotHolder(Snapshot.empty())
    poller = Poller(fetch, parse, holder, Snapshot.empty(), interval=30)
    poller.start()
    assert parse.parsing.wait(5)
    answers = []
    second = threading.Thread(target=lambda: answers.append(poller.poll_once()))
    second.start()
    second.join(0.2)
    assert second.is_alive() and fetch.calls == 1  # waiting for the first poll, not fetching
    assert not poller.wait_ready(0)  # nothing is ready while the body is being parsed
    parse.release.set()
    second.join(5)
    assert not second.is_alive()
    poller.stop()
    return answers[0], holder


def test_polls_never_overlap_and_a_first_load_is_shared():
    """The background poll parses slowly; a concurrent poll_once waits, then uses its result."""
    fetch = ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'))
    status, holder = _queue_a_poll_behind_a_slow_parse(fetch, SlowFirstParse())
    assert status.state is SourceState.VALID and holder.get().loaded
    assert fetch.etags == [None]  # no second round trip for the same first load


def test_a_poll_queued_behind_a_failed_first_load_fetches_itself(internal_errors):
    fetch = ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'),
                          DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'))
    status, holder = _queue_a_poll_behind_a_slow_parse(fetch, SlowFirstParse(fail_first=True))
    assert status.state is SourceState.VALID and holder.get().loaded
    assert fetch.etags == [None, None]  # its own, full request: the failed body left no ETag
    expect_swallowed(internal_errors, "a bug in the parser")


def test_after_the_first_load_a_queued_poll_fetches_again():
    fetch = ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'),
                          DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v2"'))
    holder = SnapshotHolder(Snapshot.empty())
    parse = SlowFirstParse()
    poller = Poller(fetch, parse, holder, Snapshot.empty(), interval=30)
    parse.parsing.set()  # the first load is quick and done before the race below
    parse.release.set()
    assert poller.poll_once().state is SourceState.VALID
    parse.parsing.clear()
    parse.release.clear()
    status = _queue_a_poll_behind_a_slow_parse_on(poller, fetch, parse)
    assert status.state is SourceState.VALID
    assert fetch.etags == [None, '"v1"', '"v2"']  # the queued poll asked the server again


def _queue_a_poll_behind_a_slow_parse_on(poller, fetch, parse):
    answers = []
    first = threading.Thread(target=poller.poll_once)
    first.start()
    assert parse.parsing.wait(5)
    second = threading.Thread(target=lambda: answers.append(poller.poll_once()))
    second.start()
    second.join(0.2)
    assert second.is_alive() and fetch.calls == 2
    parse.release.set()
    first.join(5)
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    return answers[0]


def test_an_interruption_is_logged_once_not_per_poll(caplog):
    error = errors.APIError(200, "the definitions body has no 'flags' list")
    fetch = ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS, etag='"v1"'),
                          *[DefinitionsFetch(FetchOutcome.ERROR, error=error)] * 5)
    poller, holder = make_poller(fetch)
    poller.poll_once()
    good = holder.get()
    with caplog.at_level(logging.WARNING, logger="productos"):
        statuses = [poller.poll_once() for _ in range(5)]
    assert all(s.state is SourceState.INTERRUPTED for s in statuses)
    assert statuses[-1].last_error == "HTTP 200: the definitions body has no 'flags' list"
    assert holder.get() is good
    assert len([r for r in caplog.records if "flag definitions" in r.getMessage()]) == 1


def test_401_clears_definitions_with_one_clear_log_line(caplog):
    error = errors.AuthenticationError(401, "bad key")
    poller, holder = make_poller(ScriptedFetch(
        DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS),
        DefinitionsFetch(FetchOutcome.UNAUTHORIZED, error=error),
        DefinitionsFetch(FetchOutcome.UNAUTHORIZED, error=error)))
    poller.poll_once()
    with caplog.at_level(logging.ERROR, logger="productos"):
        poller.poll_once()
        status = poller.poll_once()
    assert status.state is SourceState.OFF and not holder.get().loaded
    lines = [r for r in caplog.records if "personal_api_key" in r.getMessage()]
    assert len(lines) == 1


def test_402_clears_definitions():
    poller, holder = make_poller(ScriptedFetch(DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS),
                                               DefinitionsFetch(FetchOutcome.QUOTA_LIMITED)))
    poller.poll_once()
    assert poller.poll_once().state is SourceState.OFF and not holder.get().loaded


def test_other_failures_keep_the_last_good_snapshot(internal_errors):
    poller, holder = make_poller(ScriptedFetch(
        DefinitionsFetch(FetchOutcome.OK, data=DEFINITIONS),
        DefinitionsFetch(FetchOutcome.ERROR, error=errors.ConnectError("down")),
        RuntimeError("a bug in a fetcher")))
    poller.poll_once()
    good = holder.get()
    assert poller.poll_once().state is SourceState.INTERRUPTED
    assert poller.poll_once().state is SourceState.INTERRUPTED  # survived the exception
    assert holder.get() is good
    expect_swallowed(internal_errors, "a bug in a fetcher")


def test_wait_ready_returns_after_the_first_attempt_even_if_it_failed():
    gate = threading.Event()

    def slow_fetch(etag=None) -> DefinitionsFetch:
        gate.wait(5)
        return DefinitionsFetch(FetchOutcome.ERROR, error=errors.RequestTimeoutError("slow"))

    poller, _ = make_poller(slow_fetch)
    poller.start()
    assert poller.wait_ready(0.05) is False  # bounded: the caller does not wait 10 s
    gate.set()
    assert poller.wait_ready(5) is True
    poller.stop()


def test_the_loop_polls_until_stopped():
    fetch = ScriptedFetch()
    holder = SnapshotHolder(Snapshot.empty())
    poller = Poller(fetch, parse_definitions, holder, Snapshot.empty(), interval=0.01,
                    jitter=0.5)
    poller.start()
    poller.start()  # idempotent
    assert wait_until(lambda: fetch.calls >= 5, timeout=5)
    poller.stop()
    # stop() joined the loop's thread: no poll can follow, so the count is final.
    assert poller._thread is not None and not poller._thread.is_alive()


# --- offline definitions file ---------------------------------


def test_definitions_file_loads_and_bad_files_are_configuration_errors(tmp_path):
    snapshot = load_definitions_file(str(DATA))
    assert snapshot.loaded and payload_for(snapshot, "beta", True) == {"color": "blue"}
    assert payload_for(snapshot, "multi", "test") == {"x": 1}
    assert payload_for(snapshot, "multi", False) is None
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError):
        load_definitions_file(str(bad))
    with pytest.raises(ValueError):
        load_definitions_file(str(tmp_path / "missing.json"))
    wrong = tmp_path / "wrong.json"
    wrong.write_text("[1, 2]")
    with pytest.raises(ValueError):
        load_definitions_file(str(wrong))
