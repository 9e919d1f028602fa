"""Flag orchestration with injected fakes: local first, the server only when it must."""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, List, Optional, Sequence

import pytest

from productos._flags.arguments import evaluation_context
from productos._flags.called_events import (
    CalledEventDeduper,
    called_event_properties,
    flags_for_event,
)
from productos._flags.remote import RemoteFlags, parse_flags_response
from productos._flags.service import FlagService
from productos.errors import EventError
from productos.flags import (
    EvaluationContext,
    InconclusiveReason,
    ReasonCode,
    Snapshot,
    parse_definitions,
)

DEFINITIONS = json.loads((Path(__file__).parent / "data" / "sample_definitions.json").read_text())


class Harness:
    def __init__(self, snapshot: Snapshot, answer: Optional[RemoteFlags] = None) -> None:
        self.snapshot = snapshot
        self.answer = answer or RemoteFlags()
        self.remote_calls: List[Optional[Sequence[str]]] = []
        self.events: List[tuple] = []
        self.service = FlagService(snapshot=lambda: self.snapshot, remote=self.remote,
                                   emit_called=lambda *a: self.events.append(a),
                                   wait_ready=lambda timeout: True)

    def remote(self, ctx: EvaluationContext, keys: Optional[Sequence[str]]) -> RemoteFlags:
        self.remote_calls.append(keys)
        return self.answer


def server_says(flags: dict, **extra: Any) -> RemoteFlags:
    return parse_flags_response({"flags": flags, "requestId": "req-1", **extra})


@pytest.fixture
def loaded() -> Harness:
    return Harness(parse_definitions(DEFINITIONS))


def flags_context(distinct_id: str, **kwargs: Any) -> EvaluationContext:
    """The context a public flag call makes of these arguments (checked and converted)."""
    return evaluation_context(distinct_id, kwargs.get("groups"), kwargs.get("person_properties"),
                              kwargs.get("group_properties"), None)


def ctx(**kwargs: Any) -> EvaluationContext:
    return EvaluationContext(distinct_id=kwargs.pop("distinct_id", "user-1"), **kwargs)


def test_a_conclusive_local_answer_never_calls_the_server(loaded):
    result = loaded.service.result("simple", ctx())
    assert result.value is True and result.locally_evaluated
    assert loaded.remote_calls == []


def test_missing_property_falls_back_to_the_server_for_that_key_only(loaded):
    loaded.answer = server_says({"beta": {"key": "beta", "enabled": True, "variant": None,
                                          "metadata": {"id": 2, "version": 1,
                                                       "payload": "{\"color\": \"blue\"}"},
                                          "reason": {"code": "condition_match",
                                                     "description": "Matched condition set 1"}}})
    result = loaded.service.result("beta", ctx())
    assert loaded.remote_calls == [["beta"]]
    assert result.value is True and not result.locally_evaluated
    assert result.payload == {"color": "blue"}
    assert result.reason.code is ReasonCode.REMOTE
    assert result.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT  # why it fell back


def test_only_local_reports_unknown_with_the_reason(loaded):
    result = loaded.service.result("beta", ctx(), only_local=True)
    assert result.value is None
    assert result.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT
    assert loaded.remote_calls == []


def test_static_cohort_needs_the_server(loaded):
    loaded.answer = server_says({"static-cohort": {"key": "static-cohort", "enabled": False}})
    result = loaded.service.result("static-cohort", ctx())
    assert loaded.remote_calls == [["static-cohort"]]
    assert result.value is False


@pytest.mark.parametrize("answer, error", [
    (RemoteFlags(error="timeout"), "timeout"),
    (RemoteFlags(error="api_error_500"), "api_error_500"),
    (parse_flags_response({"flags": {}, "quotaLimited": ["feature_flags"]}), "quota_limited"),
    (parse_flags_response({"flags": {}, "errorsWhileComputingFlags": True}),
     "errors_while_computing_flags"),
    (parse_flags_response({"flags": {}}), "flag_missing"),
])
def test_a_failed_fallback_is_unknown_never_false(loaded, answer, error):
    loaded.answer = answer
    result = loaded.service.result("beta", ctx())
    assert result.value is None
    assert result.reason.code is ReasonCode.ERROR and result.reason.error == error
    props = loaded.events[0][1]
    assert props["$feature_flag_error"] == error


def test_nothing_loaded_goes_to_the_server():
    harness = Harness(Snapshot.empty(), server_says({"simple": {"key": "simple",
                                                                "enabled": True}}))
    assert harness.service.result("simple", ctx()).value is True
    assert harness.remote_calls == [["simple"]]


def test_bulk_evaluation_makes_at_most_one_remote_request(loaded):
    loaded.answer = server_says({
        "beta": {"key": "beta", "enabled": False},
        "static-cohort": {"key": "static-cohort", "enabled": True},
        "simple": {"key": "simple", "enabled": False},  # local answers win where conclusive
    })
    results = loaded.service.all_results(ctx())
    assert len(loaded.remote_calls) == 1 and loaded.remote_calls[0] is None
    assert results["simple"].value is True and results["simple"].locally_evaluated
    assert results["beta"].value is False and not results["beta"].locally_evaluated
    assert results["static-cohort"].value is True
    assert results["off"].value is False
    assert results["multi"].value in ("control", "test")


def test_bulk_evaluation_local_only_makes_no_request(loaded):
    results = loaded.service.all_results(ctx(), only_local=True)
    assert loaded.remote_calls == []
    assert results["beta"].value is None


def test_feature_flag_called_properties_and_deduplication(loaded):
    loaded.service.result("multi", ctx())
    loaded.service.result("multi", ctx())  # same person, flag, value: no second event
    loaded.service.result("multi", ctx(distinct_id="user-2"))
    assert len(loaded.events) == 2
    distinct_id, props, groups = loaded.events[0]
    value = props["$feature_flag_response"]
    assert distinct_id == "user-1" and groups == {}
    assert props["$feature_flag"] == "multi"
    assert props["$feature/multi"] == value
    assert props["locally_evaluated"] is True
    assert props["$feature_flag_id"] == 3 and props["$feature_flag_version"] == 1
    assert props["$feature_flag_payload"] == {"x": 0 if value == "control" else 1}
    # As posthog sends it: a reason only when the server gave one (see the remote tests).
    assert "$feature_flag_reason" not in props
    assert "$feature_flag_error" not in props


def test_no_event_when_not_asked(loaded):
    loaded.service.result("simple", ctx(), send_event=False)
    assert loaded.events == []


def test_deduplication_memory_is_bounded():
    harness = Harness(parse_definitions(DEFINITIONS))
    harness.service.deduper = CalledEventDeduper(max_size=100)
    for i in range(1_000):
        harness.service.result("simple", ctx(distinct_id=f"user-{i}"))
        assert len(harness.service.deduper) <= 100
    assert len(harness.service.deduper) >= 50  # the most recent half at least
    harness.service.result("simple", ctx(distinct_id="user-0"))  # evicted long ago: sent again
    harness.service.result("simple", ctx(distinct_id="user-999"))  # recent: no second event
    assert len(harness.events) == 1_001


def test_a_key_read_again_is_remembered_across_generations():
    deduper = CalledEventDeduper(max_size=4)
    assert deduper.first_time("hot") and deduper.first_time("a")  # generation full: rotated
    assert not deduper.first_time("hot")  # found in the previous one, moved to the current
    assert deduper.first_time("b")  # the current one is full again: rotated
    assert deduper.first_time("c") and deduper.first_time("d")  # ... and again
    assert not deduper.first_time("c")
    assert deduper.first_time("a")  # two generations ago: forgotten, sent again


def test_flags_for_event_lists_active_flags_sorted(loaded):
    results = loaded.service.all_results(ctx(), only_local=True)
    props, active = flags_for_event({key: r.value for key, r in results.items()})
    assert props["$feature/simple"] is True and props["$feature/off"] is False
    assert "$feature/beta" not in props  # unknown values are left out
    assert active == sorted(active) and "simple" in active and "off" not in active


def test_called_event_for_a_remote_result_names_the_request(loaded):
    loaded.answer = server_says({"beta": {"key": "beta", "enabled": True}})
    result = loaded.service.result("beta", ctx())
    props = called_event_properties(result, "req-1")
    assert props["$feature_flag_request_id"] == "req-1"
    assert props["locally_evaluated"] is False


def test_internal_error_text_never_becomes_the_event_error():
    from dataclasses import replace

    from productos._flags.called_events import called_event_error
    from productos.flags import evaluate

    result = evaluate(parse_definitions(DEFINITIONS), "simple", ctx())
    broken = replace(result, value=None,
                     reason=replace(result.reason, code=ReasonCode.ERROR,
                                    error="TypeError: something internal"))
    assert called_event_error(broken) == "unknown_error"


def test_value_only_path_agrees_with_the_detailed_one(loaded):
    for key in DEFINITIONS_KEYS:
        fast = loaded.service.result(key, ctx(), only_local=True, send_event=False,
                                     detail=False)
        full = loaded.service.result(key, ctx(), only_local=True, send_event=False)
        assert fast.value == full.value and fast.reason.code == full.reason.code


def test_all_values_fills_unknowns_with_one_remote_request(loaded):
    loaded.answer = server_says({"beta": {"key": "beta", "enabled": True},
                                 "static-cohort": {"key": "static-cohort", "enabled": False}})
    values = loaded.service.all_values(ctx())
    assert len(loaded.remote_calls) == 1
    assert values["simple"] is True and values["beta"] is True
    assert values["static-cohort"] is False and values["off"] is False
    assert loaded.service.all_values(ctx(), only_local=True)["beta"] is None
    assert len(loaded.remote_calls) == 1


def test_value_only_events_still_carry_the_payload(loaded):
    loaded.service.result("multi", ctx(), detail=False)
    props = loaded.events[0][1]
    assert props["$feature_flag_payload"] in ({"x": 0}, {"x": 1})


DEFINITIONS_KEYS = [flag["key"] for flag in DEFINITIONS["flags"]]


# --- the bulk read behind get_all_flags() -----------------------------------------------------

ARGUMENT_SHAPES = [
    pytest.param({}, id="no-properties"),
    pytest.param({"person_properties": {"plan": "pro", "email": "a@b.c"}}, id="person"),
    pytest.param({"groups": {"company": "acme"},
                  "group_properties": {"company": {"size": 10}}}, id="groups"),
    # Shapes the cheap context refuses: they take the checked EvaluationContext instead.
    pytest.param({"groups": {"company": 42}}, id="group-key-not-a-string"),
    pytest.param({"person_properties": types.MappingProxyType({"plan": "pro"})},
                 id="person-properties-not-a-dict"),
    pytest.param({"group_properties": {"company": types.MappingProxyType({"size": 1})},
                  "groups": {"company": "acme"}}, id="group-properties-not-dicts"),
]


@pytest.mark.parametrize("kwargs", ARGUMENT_SHAPES)
def test_the_bulk_read_answers_as_all_values_known_only(loaded, kwargs):
    expected = loaded.service.all_values(
        flags_context("user-1", **kwargs), only_local=True, known_only=True)
    got = loaded.service.values("user-1", kwargs.get("groups"), kwargs.get("person_properties"),
                                kwargs.get("group_properties"), None, True)
    assert got == expected
    assert got and None not in got.values()
    assert loaded.remote_calls == []


def test_the_bulk_read_asks_the_server_once_for_what_local_data_cannot_decide(loaded):
    loaded.answer = server_says({"beta": {"key": "beta", "enabled": True},
                                 "static-cohort": {"key": "static-cohort", "enabled": False}})
    values = loaded.service.values("user-1", None, None, None, None, False)
    assert loaded.remote_calls == [None]
    assert values["beta"] is True and values["static-cohort"] is False
    assert values["simple"] is True


def test_the_bulk_read_before_any_definitions_goes_to_the_server():
    harness = Harness(Snapshot.empty(), server_says({"simple": {"key": "simple",
                                                                 "enabled": True}}))
    assert harness.service.values("user-1", None, None, None, None, False) == {"simple": True}
    assert harness.remote_calls == [None]
    assert harness.service.values("user-1", None, None, None, None, True) == {}
    assert len(harness.remote_calls) == 1


def test_the_bulk_read_rejects_bad_arguments_as_the_context_does(loaded):
    with pytest.raises(EventError):
        loaded.service.values("", None, None, None, None, True)
    with pytest.raises(EventError):
        loaded.service.values("user-1", None, ["not", "a", "mapping"], None, None, True)


def test_the_flag_called_event_carries_the_callers_groups(loaded):
    groups = {"company": "acme"}
    loaded.service.result("simple", ctx(groups=groups))
    (distinct_id, properties, sent_groups), = loaded.events
    assert distinct_id == "user-1" and properties["$feature_flag"] == "simple"
    assert sent_groups == {"company": "acme"}
