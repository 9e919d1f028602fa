"""Every conformance vector in tests/data, one test per case.

The vectors were recorded from PostHog's official Python SDK (see each file's ``_meta``); where
they and docs/protocol.md disagree, the vectors win.
"""

from __future__ import annotations

import datetime as dt
import json
from functools import cache
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import pytest

from productos.flags import (
    EvaluationContext,
    FlagResult,
    InconclusiveReason,
    Snapshot,
    evaluate,
    evaluate_all,
    evaluate_values,
    parse_definitions,
)

DATA = Path(__file__).parent / "data"

# Every vector runs through each way of evaluating a flag:
#   detail - evaluate(), with the explanation;
#   fast   - evaluate(detail=False), which must also agree with the detailed result on
#            everything but the explanation (see _check_fast);
#   all    - evaluate_values(), checked against evaluate_all() with and without detail.
MODES = ("detail", "fast", "all")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Seen(NamedTuple):
    """What a vector checks, whichever way the flag was evaluated."""

    value: Union[bool, str, None]
    variant: Optional[str]
    locally_evaluated: bool
    outcome: Any  # _outcome() of the result; only the value (None if unknown) in "all" mode

    @property
    def enabled(self) -> bool:
        return self.value is not None and bool(self.value)


def _essentials(result: FlagResult) -> Tuple[Any, ...]:
    """Everything a detail=False result keeps: all but the trace, payload, bucket, failed
    filter and description."""
    reason = result.reason
    return (
        result.key, type(result.value), result.value, result.variant, result.locally_evaluated,
        result.flag_id, result.flag_version, reason.code, reason.condition_index,
        reason.threshold, reason.inconclusive, reason.unresolved, reason.error,
    )  # fmt: skip


def _check_fast(fast: FlagResult, detailed: FlagResult) -> None:
    assert _essentials(fast) == _essentials(detailed)
    reason = fast.reason
    assert fast.payload is None and reason.trace == ()
    assert reason.bucket is None and reason.failed_filter is None
    assert reason.description


def _seen(result: FlagResult) -> Seen:
    return Seen(result.value, result.variant, result.locally_evaluated, _outcome(result))


def _evaluate(
    mode: str, snapshot: Snapshot, key: str, ctx: EvaluationContext, **options: Any
) -> Seen:
    detailed = evaluate(snapshot, key, ctx, **options)
    if mode == "detail":
        return _seen(detailed)
    if mode == "fast":
        fast = evaluate(snapshot, key, ctx, detail=False, **options)
        _check_fast(fast, detailed)
        return _seen(fast)
    values = evaluate_values(snapshot, ctx, **options)
    full = evaluate_all(snapshot, ctx, **options)
    quick = evaluate_all(snapshot, ctx, detail=False, **options)
    assert list(values) == list(full) == list(quick) == list(snapshot.flags)
    for name, result in full.items():
        assert (type(values[name]), values[name]) == (type(result.value), result.value)
        _check_fast(quick[name], result)
    assert _essentials(full[key]) == _essentials(detailed)  # sharing dependencies changes nothing
    value = values[key]
    return Seen(value, value if isinstance(value, str) else None, value is not None, value)


@cache
def _load(name: str) -> Dict[str, Any]:
    with open(DATA / name, encoding="utf-8") as handle:
        return json.load(handle)


def _outcome(result: FlagResult) -> Any:
    """The result in the vectors' vocabulary: a value, or (kind, reason) when undecided."""
    if result.value is not None:
        return result.value
    reason = result.reason
    assert reason.unresolved is not None, reason
    if reason.inconclusive is InconclusiveReason.REQUIRES_SERVER:
        return ("requires_server", reason.unresolved.value)
    assert reason.inconclusive is reason.unresolved, reason
    return ("inconclusive", reason.unresolved.value)


def _expected(case: Dict[str, Any], mode: str = "detail") -> Any:
    if case["expected"] in ("inconclusive", "requires_server"):
        return None if mode == "all" else (case["expected"], case["reason"])
    return case["expected"]


# --- hash consistency ------------------------------------------------------------------------


def _consistency_cases(name: str) -> List[Any]:
    data = _load(name)
    return [
        pytest.param(name, case["distinct_id"], case["expected"], id=case["distinct_id"])
        for case in data["cases"]
    ]


@cache
def _single_flag_snapshot(name: str) -> Tuple[Snapshot, str]:
    flag = _load(name)["flag"]
    return parse_definitions({"flags": [flag]}), flag["key"]


@pytest.mark.parametrize(
    ("name", "distinct_id", "expected"), _consistency_cases("simple_flag_consistency.json")
)
def test_simple_flag_consistency(name: str, distinct_id: str, expected: Any, mode: str) -> None:
    snapshot, key = _single_flag_snapshot(name)
    result = _evaluate(mode, snapshot, key, EvaluationContext(distinct_id))
    assert result.value is expected
    assert result.locally_evaluated


@pytest.mark.parametrize(
    ("name", "distinct_id", "expected"), _consistency_cases("multivariate_consistency.json")
)
def test_multivariate_consistency(name: str, distinct_id: str, expected: Any, mode: str) -> None:
    snapshot, key = _single_flag_snapshot(name)
    result = _evaluate(mode, snapshot, key, EvaluationContext(distinct_id))
    assert result.value == expected
    assert result.variant == (expected if isinstance(expected, str) else None)


def test_consistency_counts_match_meta(mode: str) -> None:
    for name in ("simple_flag_consistency.json", "multivariate_consistency.json"):
        data = _load(name)
        snapshot, key = _single_flag_snapshot(name)
        enabled = sum(
            _evaluate(mode, snapshot, key, EvaluationContext(c["distinct_id"])).enabled
            for c in data["cases"]
        )
        assert enabled == data["_meta"]["count_true_or_variant"]


# --- property operators ----------------------------------------------------------------------


def _operator_cases() -> List[Any]:
    params = []
    for index, case in enumerate(_load("property_operator_cases.json")["cases"]):
        operator = case["property"].get("operator") or "exact"
        params.append(pytest.param(case, id=f"{index:04d}-{operator}"))
    return params


def _one_filter_snapshot(prop: Dict[str, Any], matching_version: Any) -> Snapshot:
    # A single condition holding only this filter, at 100 %: the flag's outcome is the filter's.
    flag = {
        "id": 1,
        "key": "operator-flag",
        "active": True,
        "filters": {"groups": [{"properties": [prop], "rollout_percentage": 100}]},
    }
    return parse_definitions({"flags": [flag], "property_matching_version": matching_version})


@pytest.mark.parametrize("case", _operator_cases())
def test_property_operator(case: Dict[str, Any], mode: str) -> None:
    snapshot = _one_filter_snapshot(case["property"], case["property_matching_version"])
    now = dt.datetime.fromisoformat(case["now_utc"]) if case.get("now_utc") else None
    ctx = EvaluationContext("someone", person_properties=case["property_values"], now=now)
    # The recorded inputs are the properties match_property saw: replay them unchanged.
    result = _evaluate(mode, snapshot, "operator-flag", ctx, implicit_properties=False)
    assert result.outcome == _expected(case, mode), case["test"]


def _matching_version_rows() -> List[Any]:
    rows = _load("property_operator_cases.json")["exact_matching_version_rows"]["rows"]
    params = []
    for index, row in enumerate(rows):
        for version in (1, 2):
            params.append(pytest.param(row, version, id=f"row{index:02d}-v{version}"))
    return params


@pytest.mark.parametrize(("row", "version"), _matching_version_rows())
def test_exact_matching_version_row(row: Dict[str, Any], version: int, mode: str) -> None:
    expected = row["exact_v2"] if version == 2 else row["exact_v1"]
    for operator, want in (("exact", expected), ("is_not", not expected)):
        prop = {"key": "k", "value": row["filter_value"], "operator": operator}
        snapshot = _one_filter_snapshot(prop, version)
        ctx = EvaluationContext("someone", person_properties={"k": row["property_value"]})
        assert _evaluate(mode, snapshot, "operator-flag", ctx).value is want, operator


# --- whole-flag local evaluation -------------------------------------------------------------


def _local_cases() -> List[Any]:
    params = []
    for test_name, test in _load("local_evaluation_cases.json")["tests"].items():
        short = test_name.split("::")[-1]
        for index, case in enumerate(test["cases"]):
            params.append(pytest.param(test_name, case, id=f"{short}-{index}"))
    return params


def _case_snapshot(test_name: str, case: Dict[str, Any]) -> Snapshot:
    definitions = _load("local_evaluation_cases.json")["tests"][test_name]["definitions"]
    body = json.loads(json.dumps(definitions[case["definitions_index"]]))
    extra = case.get("flag_definition_not_in_snapshot")
    if extra is not None:
        # The reference test evaluated a flag object directly; our API looks flags up by key.
        body["flags"].append(extra)
    return parse_definitions(body)


def _case_context(case: Dict[str, Any]) -> EvaluationContext:
    return EvaluationContext(
        case["distinct_id"],
        groups=case["groups"],
        person_properties=case["person_properties"],
        group_properties=case["group_properties"],
        device_id=case["device_id"],
        now=dt.datetime.fromisoformat(case["evaluated_at_utc"]),
    )


@pytest.mark.parametrize(("test_name", "case"), _local_cases())
def test_local_evaluation(test_name: str, case: Dict[str, Any], mode: str) -> None:
    snapshot = _case_snapshot(test_name, case)
    # Inputs were recorded after the SDK added distinct_id / $group_key: replay them as-is.
    ctx = _case_context(case)
    result = _evaluate(mode, snapshot, case["flag_key"], ctx, implicit_properties=False)
    assert result.outcome == _expected(case, mode)
    assert result.locally_evaluated is (result.value is not None)


def test_local_evaluation_public_path_agrees(mode: str) -> None:
    """The default path (which adds distinct_id / $group_key itself) gives the same results.

    One vector is the exception by construction: it passes a group with no properties at all,
    which the reference SDK's public API never does (it always adds ``$group_key``). Through
    our public path that group has properties, so the flag is evaluated instead of inconclusive.
    """
    differing = []
    for test_name, test in _load("local_evaluation_cases.json")["tests"].items():
        for case in test["cases"]:
            snapshot = _case_snapshot(test_name, case)
            result = _evaluate(mode, snapshot, case["flag_key"], _case_context(case))
            if result.outcome != _expected(case, mode):
                differing.append((test_name, case["flag_key"]))
    assert differing == [
        (
            "TestLocalEvaluation::test_group_flag_is_inconclusive_when_group_properties_missing",
            "group-flag-no-props",
        )
    ]
