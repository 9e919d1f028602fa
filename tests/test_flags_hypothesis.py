"""Property-based tests: odd definitions and odd properties never raise, and answers are stable.

Every test also checks that the compiler did its job (``Snapshot.errors`` is empty and every
flag of the input was compiled) and counts what it evaluated, so a compiler that crashed, or
left a flag out, fails the test instead of leaving it nothing to check.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Dict, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from productos.flags import (
    EvaluationContext,
    FlagResult,
    ReasonCode,
    Snapshot,
    evaluate,
    evaluate_all,
    evaluate_values,
    explain,
    parse_definitions,
    payload_of,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

OPERATORS = [
    "exact", "is_not", "is_set", "is_not_set", "icontains", "not_icontains", "regex",
    "not_regex", "starts_with", "not_starts_with", "ends_with", "not_ends_with", "gt", "gte",
    "lt", "lte", "is_date_before", "is_date_after", "semver_eq", "semver_neq", "semver_gt",
    "semver_gte", "semver_lt", "semver_lte", "semver_tilde", "semver_caret", "semver_wildcard",
    "flag_evaluates_to", "in", "not_in", "bogus", None,
]  # fmt: skip
KEYS = ["plan", "email", "age", "version", "signup", "distinct_id", "$group_key", "x"]
FLAG_KEYS = ["a", "b", "c", "d"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(
        ["1.2.3", "v2.0", "1.*", "-7d", "12h", "2024-01-02", "2024-01-02T03:04:05Z", "true",
         "FALSE", "^a.*$", "\\bx", "(a+)+", "[", "", "pro", "10", "1e3", "é\u0301"]
    )
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@st.composite
def dependency_filters(draw: Any) -> Dict[str, Any]:
    """Mostly well-formed flag dependencies, so chains (and loops between them) are exercised."""
    target = draw(st.sampled_from(FLAG_KEYS))
    chain = draw(st.lists(st.sampled_from(FLAG_KEYS), max_size=3))
    return {
        "key": target,
        "value": draw(st.sampled_from([True, False, "control", "test", None])),
        "operator": "flag_evaluates_to",
        "type": "flag",
        "dependency_chain": [*chain, target] if draw(st.booleans()) else chain,
    }


@st.composite
def filters(draw: Any) -> Dict[str, Any]:
    if draw(st.integers(0, 4)) == 0:
        return draw(dependency_filters())
    kind = draw(st.sampled_from(["person", "group", "cohort", "flag", None]))
    item: Dict[str, Any] = {
        "key": draw(st.sampled_from(KEYS + FLAG_KEYS) | json_values),
        "value": draw(json_values | st.sampled_from(["1", 1, 2, "a", "b", True])),
        "operator": draw(st.sampled_from(OPERATORS)),
        "type": kind,
    }
    if kind == "flag" and draw(st.booleans()):
        item["dependency_chain"] = draw(
            st.lists(st.sampled_from(FLAG_KEYS), max_size=3) | json_values
        )
    if draw(st.booleans()):
        item["negation"] = draw(st.booleans())
    return item


@st.composite
def property_groups(draw: Any, depth: int = 2) -> Any:
    if depth == 0 or draw(st.booleans()):
        entries: List[Any] = draw(st.lists(filters(), max_size=3))
    else:
        entries = draw(st.lists(property_groups(depth - 1), max_size=3))
    group = {"type": draw(st.sampled_from(["AND", "OR", "XOR"])), "values": entries}
    return draw(st.sampled_from([group, group, {}, "junk"]))


@st.composite
def conditions(draw: Any) -> Any:
    condition: Dict[str, Any] = {
        "properties": draw(st.lists(filters(), max_size=4)),
        "rollout_percentage": draw(
            st.none() | st.floats(min_value=0, max_value=100) | st.sampled_from([0, 50, 100, "50"])
        ),
    }
    if draw(st.booleans()):
        condition["variant"] = draw(st.sampled_from(["control", "test", "nope", None, 3]))
    if draw(st.booleans()):
        condition["aggregation_group_type_index"] = draw(st.sampled_from([None, 0, 1, 7, "0"]))
    return draw(st.sampled_from([condition] * 6 + ["junk"]))


@st.composite
def flag_definitions(draw: Any, key: str) -> Any:
    filters_: Dict[str, Any] = {"groups": draw(st.lists(conditions(), max_size=3))}
    if draw(st.booleans()):
        filters_["multivariate"] = {
            "variants": [
                {"key": "control", "rollout_percentage": draw(st.integers(0, 100))},
                {"key": "test", "rollout_percentage": draw(st.integers(0, 100))},
            ]
        }
    if draw(st.booleans()):
        filters_["aggregation_group_type_index"] = draw(st.sampled_from([0, 1, 5]))
    if draw(st.booleans()):
        filters_["holdout"] = {"id": 3, "exclusion_percentage": draw(st.integers(-10, 120))}
    for option in ("early_exit", "feature_enrollment"):
        if draw(st.booleans()):
            filters_[option] = draw(st.booleans())
    if draw(st.booleans()):
        filters_["bucketing_identifier"] = "device_id"
    if draw(st.booleans()):
        filters_["payloads"] = {"true": draw(json_values), "control": '{"x": 1}', "test": "{bad"}
    return {
        "id": draw(st.integers(0, 100)),
        "key": key,
        "active": draw(st.booleans() | st.none()),
        "ensure_experience_continuity": draw(st.booleans()),
        "filters": draw(st.sampled_from([filters_] * 8 + [None, ["x"]])),
    }


@st.composite
def definitions(draw: Any) -> Dict[str, Any]:
    keys = draw(st.lists(st.sampled_from(FLAG_KEYS), min_size=1, max_size=4, unique=True))
    return {
        "flags": [draw(flag_definitions(key)) for key in keys],
        "group_type_mapping": {"0": "company", "1": "team"},
        "cohorts": {str(i): draw(property_groups()) for i in range(1, 3)},
        "property_matching_version": draw(st.sampled_from([1, 2, None])),
    }


@st.composite
def contexts(draw: Any) -> EvaluationContext:
    def properties() -> Any:
        return draw(
            st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), json_values, max_size=6)
        )

    groups = draw(
        st.dictionaries(st.sampled_from(["company", "team", "other"]), st.text(max_size=6))
    )
    return EvaluationContext(
        distinct_id=draw(st.text(max_size=10)),
        groups=groups,
        person_properties=properties(),
        group_properties={name: properties() for name in groups if draw(st.booleans())},
        device_id=draw(st.none() | st.text(max_size=6)),
        now=draw(
            st.none()
            | st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2100, 1, 1))
        ),
    )


def _check(result: FlagResult) -> None:
    assert isinstance(result, FlagResult)
    assert result.reason.code is not ReasonCode.ERROR, result.reason.error
    assert result.inconclusive == (result.value is None)
    assert (result.value is None) == (result.reason.inconclusive is not None)
    assert result.locally_evaluated == (result.value is not None)
    assert isinstance(explain(result), str)


def _expected_keys(raw: Any) -> List[str]:
    """The flag keys a definitions body holds, in order (a repeated key counts once)."""
    flags = raw.get("flags") if isinstance(raw, dict) else None
    if not isinstance(flags, list):
        return []
    keys = [item.get("key") for item in flags if isinstance(item, dict)]
    return list(dict.fromkeys(key for key in keys if isinstance(key, str)))


def _compiled(raw: Any) -> Snapshot:
    """The snapshot of ``raw``, after checking that every flag of it compiled."""
    snapshot = parse_definitions(raw)
    assert isinstance(snapshot, Snapshot)
    assert snapshot.errors == ()
    assert snapshot.loaded == isinstance(raw, dict)
    assert list(snapshot.flags) == _expected_keys(raw)
    return snapshot


@SETTINGS
@given(raw=json_values)
def test_parse_never_raises_on_any_json(raw: Any) -> None:
    snapshot = _compiled(raw)
    _check(evaluate(snapshot, "a", EvaluationContext("u")))


@SETTINGS
@given(
    raw=st.dictionaries(st.sampled_from(["flags", "cohorts", "group_type_mapping"]), json_values)
)
def test_parse_never_raises_on_odd_sections(raw: Dict[str, Any]) -> None:
    snapshot = _compiled(raw)
    evaluated = 0
    for key in snapshot.flags:
        _check(evaluate(snapshot, key, EvaluationContext("u")))
        evaluated += 1
    assert evaluated == len(_expected_keys(raw))


@SETTINGS
@given(body=definitions(), ctx=contexts())
def test_random_definitions_never_raise(body: Dict[str, Any], ctx: EvaluationContext) -> None:
    snapshot = _compiled(body)
    evaluated = 0
    for key in snapshot.flags:
        _check(evaluate(snapshot, key, ctx))
        evaluated += 1
    assert evaluated == len(body["flags"]) > 0


@SETTINGS
@given(body=definitions(), ctx=contexts())
def test_evaluation_is_deterministic(body: Dict[str, Any], ctx: EvaluationContext) -> None:
    first = _compiled(body)
    second = _compiled(body)
    all_results = evaluate_all(first, ctx)
    assert list(all_results) == list(first.flags) == [flag["key"] for flag in body["flags"]]
    for key in first.flags:
        once = evaluate(first, key, ctx)
        again = evaluate(second, key, ctx)
        assert (once.value, once.payload, once.reason.code) == (
            again.value,
            again.payload,
            again.reason.code,
        )
        assert once.reason.inconclusive == again.reason.inconclusive
        # Sharing dependency results across flags does not change any answer.
        assert all_results[key].value == once.value
        assert all_results[key].reason.inconclusive == once.reason.inconclusive


def _essentials(result: FlagResult) -> Any:
    """All a detail=False result keeps of the detailed one (not the explanation or payload)."""
    reason = result.reason
    return (
        result.key, type(result.value), result.value, result.variant, result.locally_evaluated,
        result.flag_id, result.flag_version, reason.code, reason.condition_index,
        reason.threshold, reason.inconclusive, reason.unresolved, reason.error,
    )  # fmt: skip


@SETTINGS
@given(body=definitions(), ctx=contexts(), implicit=st.booleans())
def test_value_only_paths_agree_with_the_detailed_one(
    body: Dict[str, Any], ctx: EvaluationContext, implicit: bool
) -> None:
    snapshot = _compiled(body)
    assert len(snapshot.flags) == len(body["flags"]) > 0
    detailed_all = evaluate_all(snapshot, ctx, implicit_properties=implicit)
    fast_all = evaluate_all(snapshot, ctx, detail=False, implicit_properties=implicit)
    values = evaluate_values(snapshot, ctx, implicit_properties=implicit)
    assert list(values) == list(fast_all) == list(detailed_all) == list(snapshot.flags)
    for key in snapshot.flags:
        detailed = evaluate(snapshot, key, ctx, implicit_properties=implicit)
        fast = evaluate(snapshot, key, ctx, detail=False, implicit_properties=implicit)
        assert fast.value == detailed.value and type(fast.value) is type(detailed.value)
        assert _essentials(fast) == _essentials(detailed)
        assert fast.payload is None and fast.reason.trace == () and fast.reason.description
        assert _essentials(fast_all[key]) == _essentials(detailed_all[key])
        assert (type(values[key]), values[key]) == (
            type(detailed_all[key].value),
            detailed_all[key].value,
        )
        assert payload_of(snapshot, key, detailed.value) == detailed.payload
