"""parse_definitions: compile once, never raise, keep every flag's problems to itself."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Mapping, Set

import pytest

from productos._flags import compiler as compiler_module
from productos._flags.compiler import Compiler
from productos._flags.dates import RelativeDate, YearOnlyDate, parse_date_value
from productos._flags.filters import (
    CohortFilter,
    DateFilter,
    ExactFilter,
    FlagDependencyFilter,
    NumericFilter,
    RegexFilter,
    SemverFilter,
    TextFilter,
    UnknownOperatorFilter,
)
from productos._flags.payloads import Payload
from productos._flags.semver import parse_semver
from productos._flags.values import parse_number, stringify
from productos.flags import (
    CompiledFlag,
    EvaluationContext,
    InconclusiveReason,
    Snapshot,
    evaluate,
    evaluate_all,
    evaluate_values,
    parse_definitions,
)

DATA = Path(__file__).parent / "data"


def flag(key: str, *conditions: Dict[str, Any], **filters: Any) -> Dict[str, Any]:
    """A minimal active flag definition."""
    groups = list(conditions) or [{"properties": [], "rollout_percentage": 100}]
    return {
        "id": 7,
        "version": 3,
        "key": key,
        "active": True,
        "filters": {"groups": groups, **filters},
    }


def condition(*props: Dict[str, Any], rollout: Any = 100, **extra: Any) -> Dict[str, Any]:
    return {"properties": list(props), "rollout_percentage": rollout, **extra}


def only_filter(snapshot: Snapshot, key: str = "f") -> Any:
    return snapshot.flags[key].conditions[0].filters[0]


# --- the snapshot as a whole -----------------------------------------------------------------


class TestSnapshot:
    def test_empty_snapshot_is_not_loaded(self) -> None:
        empty = Snapshot.empty()
        assert not empty.loaded
        assert dict(empty.flags) == {}
        assert empty.property_matching_version == 1

    @pytest.mark.parametrize("raw", [None, [], "flags", 3, 2.5, True])
    def test_non_object_body_gives_an_empty_snapshot(self, raw: Any) -> None:
        snapshot = parse_definitions(raw)
        assert not snapshot.loaded
        assert dict(snapshot.flags) == {}

    def test_flags_keep_definition_order(self) -> None:
        snapshot = parse_definitions({"flags": [flag("b"), flag("a"), flag("c")]})
        assert list(snapshot.flags) == ["b", "a", "c"]
        assert snapshot.loaded

    def test_a_repeated_key_takes_the_later_definition(self) -> None:
        first, second = flag("x"), flag("x")
        second["id"] = 99
        snapshot = parse_definitions({"flags": [first, second]})
        assert snapshot.flags["x"].id == 99

    def test_snapshot_and_its_parts_are_read_only(self) -> None:
        snapshot = parse_definitions({"flags": [flag("a")], "group_type_mapping": {"0": "company"}})
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.loaded = False  # type: ignore[misc]
        with pytest.raises(TypeError):
            snapshot.flags["b"] = snapshot.flags["a"]  # type: ignore[index]
        with pytest.raises(TypeError):
            snapshot.group_type_mapping["1"] = "team"  # type: ignore[index]
        with pytest.raises(dataclasses.FrozenInstanceError):
            snapshot.flags["a"].active = False  # type: ignore[misc]

    def test_raw_body_is_kept_for_feature_flag_definitions(self) -> None:
        body = {"flags": [flag("a")], "group_type_mapping": {}, "cohorts": {}, "extra": 1}
        snapshot = parse_definitions(body)
        assert dict(snapshot.raw) == body
        assert snapshot.flags["a"].raw["key"] == "a"

    @pytest.mark.parametrize(
        ("given", "version"),
        [(None, 1), (1, 1), (2, 2), (2.0, 2), ("2", 1), (True, 1), (3, 1)],
    )
    def test_property_matching_version(self, given: Any, version: int) -> None:
        body: Dict[str, Any] = {"flags": []}
        if given is not None:
            body["property_matching_version"] = given
        assert parse_definitions(body).property_matching_version == version

    def test_group_type_mapping_keeps_named_types_only(self) -> None:
        mapping = {"0": "company", "1": "", "2": None, 3: "team"}
        snapshot = parse_definitions({"flags": [], "group_type_mapping": mapping})
        assert dict(snapshot.group_type_mapping) == {"0": "company", "3": "team"}

    def test_entries_that_are_not_flags_are_skipped_and_reported(self) -> None:
        snapshot = parse_definitions({"flags": [flag("a"), "junk", {"key": 5}, {"no": "key"}]})
        assert list(snapshot.flags) == ["a"]
        assert len(snapshot.problems) == 3

    def test_wrongly_typed_sections_are_reported(self) -> None:
        snapshot = parse_definitions({"flags": {"a": 1}, "cohorts": [1], "group_type_mapping": [1]})
        assert snapshot.loaded
        assert len(snapshot.problems) == 3


# --- one bad flag does not spoil the rest -----------------------------------------------------


MALFORMED: List[Any] = [
    {"filters": ["x"]},
    {"filters": {"groups": {"a": 1}}},
    {"filters": {"groups": ["x"]}},
    {"filters": {"groups": [{"properties": "x"}]}},
    {"filters": {"groups": [{"properties": ["x"]}]}},
    {"filters": {"groups": [{"rollout_percentage": "50"}]}},
    {"filters": {"multivariate": {"variants": [{"key": "a"}]}}},
    {"filters": {"multivariate": {"variants": [{"rollout_percentage": 50}]}}},
    {"filters": {"multivariate": ["a"]}},
    {"filters": {"holdout": {"id": 1, "exclusion_percentage": "lots"}}},
    {"filters": {"holdout": "yes"}},
]


@pytest.mark.parametrize("broken", MALFORMED)
def test_a_malformed_flag_is_isolated(broken: Dict[str, Any]) -> None:
    bad = {"key": "bad", "id": 1, "active": True, **broken}
    snapshot = parse_definitions({"flags": [flag("good"), bad, flag("also-good")]})
    assert list(snapshot.flags) == ["good", "bad", "also-good"]
    compiled = snapshot.flags["bad"]
    assert compiled.malformed
    assert compiled.local_reason == "unsupported_definition"
    assert compiled.local_problem and "malformed" in compiled.local_problem
    assert snapshot.flags["good"].malformed is None
    assert snapshot.flags["also-good"].evaluable_locally


def test_empty_sections_mean_absent() -> None:
    # An empty list or object where an object or list is expected is simply "nothing there".
    body = {
        "key": "f",
        "active": True,
        "filters": {"groups": {}, "multivariate": [], "holdout": []},
    }
    assert parse_definitions({"flags": [body]}).flags["f"].malformed is None


def test_an_inactive_malformed_flag_has_no_local_problem() -> None:
    snapshot = parse_definitions({"flags": [{"key": "off", "active": False, "filters": ["x"]}]})
    assert snapshot.flags["off"].local_problem is None  # it evaluates to false locally


# --- local_problem: why a flag cannot be decided locally -------------------------------------


class TestLocalProblem:
    def test_a_plain_flag_is_evaluable(self) -> None:
        compiled = parse_definitions({"flags": [flag("a")]}).flags["a"]
        assert compiled.evaluable_locally
        assert compiled.local_problem is None

    def test_experience_continuity(self) -> None:
        body = flag("a")
        body["ensure_experience_continuity"] = True
        compiled = parse_definitions({"flags": [body]}).flags["a"]
        assert compiled.local_reason == "experience_continuity"

    def test_unknown_group_type(self) -> None:
        compiled = parse_definitions({"flags": [flag("a", aggregation_group_type_index=4)]}).flags[
            "a"
        ]
        assert compiled.local_reason == "unsupported_definition"
        assert "group type index 4" in (compiled.local_problem or "")

    def test_static_cohort(self) -> None:
        body = flag("a", condition({"key": "id", "value": 98, "type": "cohort"}))
        compiled = parse_definitions({"flags": [body]}).flags["a"]
        assert compiled.local_reason == "unsupported_definition"
        assert "cohort 98" in (compiled.local_problem or "")

    def test_unknown_operator(self) -> None:
        body = flag("a", condition({"key": "k", "value": 1, "operator": "near"}))
        compiled = parse_definitions({"flags": [body]}).flags["a"]
        assert "unknown operator 'near'" in (compiled.local_problem or "")

    def test_missing_dependency(self) -> None:
        dep = {
            "key": "ghost",
            "type": "flag",
            "operator": "flag_evaluates_to",
            "value": True,
            "dependency_chain": ["ghost"],
        }
        compiled = parse_definitions({"flags": [flag("a", condition(dep))]}).flags["a"]
        assert compiled.local_reason == "unsupported_definition"

    def test_malformed_dependency_condition_is_not_a_problem(self) -> None:
        # The server treats it as a plain non-match, so local evaluation can decide it.
        dep = {"key": "a", "type": "flag", "operator": "exact", "value": True}
        compiled = parse_definitions({"flags": [flag("b", condition(dep)), flag("a")]}).flags["b"]
        assert compiled.evaluable_locally

    def test_problem_inside_a_cohort(self) -> None:
        cohorts = {
            "5": {"type": "AND", "values": [{"key": "x", "value": "\\bfoo", "operator": "regex"}]}
        }
        body = flag("a", condition({"key": "id", "value": 5, "type": "cohort"}))
        compiled = parse_definitions({"flags": [body], "cohorts": cohorts}).flags["a"]
        assert compiled.local_reason == "unsupported_definition"
        assert "cohort 5" in (compiled.local_problem or "")


# --- filters are compiled once ----------------------------------------------------------------


def test_filters_are_parsed_at_compile_time() -> None:
    props = [
        {"key": "n", "value": "42", "operator": "gt"},
        {"key": "d", "value": "2024-01-02T03:04:05Z", "operator": "is_date_before"},
        {"key": "r", "value": "-7d", "operator": "is_date_after"},
        {"key": "v", "value": "v1.2", "operator": "semver_gte"},
        {"key": "t", "value": "1.2.3", "operator": "semver_caret"},
        {"key": "e", "value": ["A", "b"], "operator": "exact"},
        {"key": "s", "value": "Foo", "operator": "icontains"},
        {"key": "x", "value": "^a+$", "operator": "regex"},
    ]
    snapshot = parse_definitions({"flags": [flag("f", condition(*props))]})
    number, date, relative, semver, caret, exact, text, regex = (
        snapshot.flags["f"].conditions[0].filters
    )
    assert isinstance(number, NumericFilter) and number.number == 42.0
    assert isinstance(date, DateFilter) and date.date == dt.datetime(
        2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc
    )
    assert isinstance(relative, DateFilter) and relative.date == RelativeDate(7, "d")
    assert isinstance(semver, SemverFilter) and semver.version == (1, 2, 0)
    assert isinstance(caret, SemverFilter) and (caret.lower, caret.upper) == ((1, 2, 3), (2, 0, 0))
    assert isinstance(exact, ExactFilter) and exact.texts == frozenset({"a", "b"})
    assert isinstance(text, TextFilter) and text.needle == "foo"
    assert isinstance(regex, RegexFilter) and regex.spec is not None
    assert regex.spec.pattern.pattern == "^a+\\Z"  # Python's $ also matches before a final \n


@pytest.mark.parametrize(
    ("pattern", "usable"),
    [
        ("^abc$", True),
        ("(?:ab)+c", True),
        ("[a-z0-9_]+", True),
        ("\\d{2,4}", True),
        ("\\bword", False),  # word boundaries
        ("(?=x)", False),  # look-ahead
        ("(?P<name>x)", False),  # named group
        ("(?i)abc", False),  # inline flags
        ("(a+)+", True),  # nested, but the first attempt matches: nothing to backtrack
        ("[[:alpha:]]", False),  # POSIX class
        ("[a&&b]", False),  # Rust set operation
        ("[]a]", False),  # empty-looking class
        ("x{", False),  # literal brace
        ("a++", False),  # possessive
        ("\\p{L}", False),  # Unicode class syntax
        ("\\x4", False),  # short hex escape
        ("[\\d-z]", False),  # shorthand range endpoint
    ],
)
def test_regex_dialect_guard(pattern: str, usable: bool) -> None:
    body = flag("f", condition({"key": "k", "value": pattern, "operator": "regex"}))
    spec = only_filter(parse_definitions({"flags": [body]}))
    assert (spec.problem is None) is usable


def test_an_invalid_regex_is_not_a_problem_but_matches_nothing() -> None:
    body = flag("f", condition({"key": "k", "value": "(unclosed", "operator": "regex"}))
    spec = only_filter(parse_definitions({"flags": [body]}))
    assert spec.problem is None and spec.spec is None and not spec.always


def test_unknown_operator_is_kept_as_an_unsupported_filter() -> None:
    body = flag("f", condition({"key": "k", "value": 1, "operator": "roughly"}))
    spec = only_filter(parse_definitions({"flags": [body]}))
    assert isinstance(spec, UnknownOperatorFilter) and spec.problem


def test_variant_table_is_cumulative() -> None:
    variants = [
        {"key": "a", "rollout_percentage": 50},
        {"key": "b", "rollout_percentage": 20},
        {"key": "c", "rollout_percentage": 30},
    ]
    compiled = parse_definitions({"flags": [flag("f", multivariate={"variants": variants})]}).flags[
        "f"
    ]
    assert [(v.key, v.start, v.end) for v in compiled.variants] == [
        ("a", 0, 0.5),
        ("b", 0.5, 0.7),
        ("c", 0.7, 1.0),
    ]


def test_variant_override_kept_only_when_it_names_a_variant() -> None:
    variants = [{"key": "a", "rollout_percentage": 100}]
    body = flag(
        "f",
        condition(variant="a"),
        condition(variant="nope"),
        multivariate={"variants": variants},
    )
    first, second = parse_definitions({"flags": [body]}).flags["f"].conditions
    assert first.variant == "a"
    assert second.variant is None and second.requested_variant == "nope"


def test_holdout_is_clamped_and_labelled() -> None:
    compiled = parse_definitions(
        {"flags": [flag("f", holdout={"id": 727, "exclusion_percentage": 150})]}
    ).flags["f"]
    assert compiled.holdout is not None
    assert compiled.holdout.everyone and compiled.holdout.value == "holdout-727"


def test_payloads_are_decoded_once() -> None:
    payloads = {"true": '{"a": [1, 2]}', "v": "300", "bad": "{nope", "nan": "NaN", "raw": {"x": 1}}
    compiled = parse_definitions({"flags": [flag("f", payloads=payloads)]}).flags["f"]
    assert compiled.payloads["true"].decoded() == {"a": [1, 2]}
    assert compiled.payloads["true"].decoded() is not compiled.payloads["true"].decoded()
    assert compiled.payloads["v"].decoded() == 300
    assert compiled.payloads["raw"].decoded() == {"x": 1}
    assert "bad" not in compiled.payloads  # invalid JSON: no payload
    assert "nan" not in compiled.payloads  # NaN is not JSON


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, {"b": 2.5}], "c": None},  # small: copied from a decoded template
        [1, "x", True],
        {f"k{i}": {"x": [i, {"y": "z"}]} for i in range(20)},  # large: decoded from JSON
    ],
)
def test_container_payloads_are_fresh_and_equal_to_json(value: Any) -> None:
    compiled = parse_definitions({"flags": [flag("f", payloads={"true": value})]}).flags["f"]
    stored = compiled.payloads["true"]
    assert stored.value is None and stored.json_text is not None
    first = stored.decoded()
    assert first == value and json.loads(stored.json_text) == first
    if isinstance(first, dict):
        first.clear()
    else:
        first.append("changed")
    again = stored.decoded()
    assert again == value and again is not first
    assert stored == Payload(None, stored.json_text)  # the cached template is not compared


def test_condition_description_and_implicit_reads() -> None:
    person = {"key": "distinct_id", "value": "u", "operator": "exact", "type": "person"}
    group = {"key": "$group_key", "value": "g", "operator": "exact", "type": "group"}
    dependency = {
        "key": "distinct_id", "value": True, "operator": "flag_evaluates_to", "type": "flag",
        "dependency_chain": ["distinct_id"],
    }  # fmt: skip
    snapshot = parse_definitions(
        {
            "flags": [
                flag("direct", condition(), condition(person)),
                flag("cohort", condition({"key": "id", "value": 2, "type": "cohort"})),
                flag("group", condition(group)),
                flag("plain", condition({"key": "plan", "value": "x"})),
                flag("distinct_id"),
                flag("dependency", condition(dependency)),
            ],
            "cohorts": {
                "1": {"type": "AND", "values": [person]},
                "2": {"type": "OR", "values": [{"key": "id", "value": 1, "type": "cohort"}]},
            },
        }
    )
    reads = {
        key: (compiled.reads_distinct_id, compiled.reads_group_key)
        for key, compiled in snapshot.flags.items()
    }
    assert reads == {
        "direct": (True, False),
        "cohort": (True, False),  # through a cohort inside a cohort
        "group": (False, True),
        "plain": (False, False),
        "distinct_id": (False, False),
        "dependency": (False, False),  # a dependency's key is a flag key, not a property
    }
    direct = snapshot.flags["direct"]
    assert [c.description for c in direct.conditions] == [
        "Matched condition 0.",
        "Matched condition 1.",
    ]


def _state(obj: Any, seen: Set[int]) -> Any:
    """Everything reachable from obj, with object identities: equal before and after = unchanged."""
    if obj is None or isinstance(obj, (str, int, float, bytes, Enum)):
        return obj
    if id(obj) in seen:
        return ("seen", id(obj))
    seen.add(id(obj))
    if isinstance(obj, Mapping):
        return ("map", id(obj), tuple((k, _state(v, seen)) for k, v in obj.items()))
    if isinstance(obj, (frozenset, set)):
        return ("set", id(obj), tuple(sorted(repr(x) for x in obj)))
    if isinstance(obj, (list, tuple)):
        return ("seq", id(obj), tuple(_state(x, seen) for x in obj))
    if hasattr(obj, "hexdigest"):  # a flag's prefixed sha1: updating it would move every bucket
        return ("hash", id(obj), obj.copy().hexdigest())
    if callable(obj) or not hasattr(obj, "__dict__"):
        return ("opaque", id(obj))
    return (type(obj).__name__, id(obj), tuple((k, _state(v, seen)) for k, v in vars(obj).items()))


def test_evaluation_writes_nothing_into_the_snapshot() -> None:
    body = json.loads((DATA / "sample_definitions.json").read_text())
    body["flags"] += [
        flag("mv", condition(rollout=60), multivariate={"variants": [
            {"key": "a", "rollout_percentage": 50}, {"key": "b", "rollout_percentage": 50}]},
            payloads={"a": '{"x": [1]}', "true": "1"},
            holdout={"id": 2, "exclusion_percentage": 20}),
        flag("dep", condition({"key": "mv", "value": True, "operator": "flag_evaluates_to",
                               "type": "flag", "dependency_chain": ["mv"]})),
        flag("enrolled", feature_enrollment=True),
        flag("dated", condition({"key": "d", "value": "-3d", "operator": "is_date_after"})),
        flag("inactive", active=False),
    ]  # fmt: skip
    snapshot = parse_definitions(body)
    assert snapshot.errors == () and len(snapshot.flags) == len(body["flags"])
    before = _state(snapshot, set())
    contexts = [
        EvaluationContext(f"user-{i}", groups={"company": "acme"},
                          person_properties={"plan": "pro", "d": "2020-01-01"},
                          group_properties={"company": {"size": i}})
        for i in range(20)
    ]  # fmt: skip
    evaluated = 0
    for ctx in contexts:
        for detail in (True, False):
            evaluated += len(evaluate_all(snapshot, ctx, detail=detail))
            for key in snapshot.flags:
                evaluate(snapshot, key, ctx, detail=detail)
        evaluated += len(evaluate_values(snapshot, ctx))
    assert evaluated == 3 * len(contexts) * len(snapshot.flags)
    assert _state(snapshot, set()) == before
    assert not hasattr(snapshot.flags["mv"], "memo")


def test_the_plan_follows_the_definition() -> None:
    compiled = parse_definitions({"flags": [flag("a")]}).flags["a"]
    assert compiled.plan.plain and compiled.plan.disabled is None
    assert "plan" not in [f.name for f in dataclasses.fields(compiled) if f.init]
    inactive = dataclasses.replace(compiled, active=False)
    assert not inactive.plan.plain and inactive.plan.disabled is not None
    snapshot = dataclasses.replace(Snapshot.empty(), loaded=True, flags={"a": inactive})
    assert evaluate(snapshot, "a", EvaluationContext("u"), detail=False).value is False
    payload = Payload(None, '{"a": 1}')
    assert [f.name for f in dataclasses.fields(payload)] == ["value", "json_text"]
    with pytest.raises(ValueError):
        Payload(None, "{not json").decoded()  # constructing it does not raise, as before


def test_a_compiler_bug_is_confined_to_its_flag_and_reported(monkeypatch: Any) -> None:
    original = Compiler._compile_filters

    def broken(self: Compiler, key: str, raw: Mapping[str, Any]) -> Dict[str, Any]:
        if key == "b":
            raise ZeroDivisionError("bug")
        return original(self, key, raw)

    monkeypatch.setattr(Compiler, "_compile_filters", broken)
    snapshot = parse_definitions({"flags": [flag("a"), flag("b"), flag("c")]})
    assert list(snapshot.flags) == ["a", "b", "c"]
    assert len(snapshot.errors) == 1 and "'b'" in snapshot.errors[0]
    assert "ZeroDivisionError" in snapshot.errors[0] and snapshot.problems == ()
    assert snapshot.flags["b"].local_reason is InconclusiveReason.UNSUPPORTED_DEFINITION
    result = evaluate(snapshot, "b", EvaluationContext("u"))
    assert result.value is None and "internal error" in result.reason.description
    assert evaluate(snapshot, "a", EvaluationContext("u")).value is True


def test_a_compiler_bug_in_a_cohort_is_confined_and_reported(monkeypatch: Any) -> None:
    original = Compiler.compile_group

    def broken(self: Compiler, raw: Any) -> Any:
        if raw == {"type": "AND", "values": [], "bug": True}:
            raise KeyError("bug")
        return original(self, raw)

    monkeypatch.setattr(Compiler, "compile_group", broken)
    cohort = {"key": "id", "value": 1, "type": "cohort"}
    snapshot = parse_definitions({
        "flags": [flag("a", condition(cohort))],
        "cohorts": {"1": {"type": "AND", "values": [], "bug": True}, "2": {}},
    })  # fmt: skip
    assert len(snapshot.errors) == 1 and snapshot.errors[0].startswith("cohort 1:")
    result = evaluate(snapshot, "a", EvaluationContext("u"))
    assert result.reason.inconclusive is InconclusiveReason.REQUIRES_SERVER


def test_a_compiler_bug_outside_flags_and_cohorts_raises(monkeypatch: Any) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(compiler_module, "_flags_on_dependency_cycles", broken)
    with pytest.raises(RuntimeError):
        parse_definitions({"flags": [flag("a")]})
    assert not parse_definitions([]).loaded  # not definitions at all: no error, nothing loaded


def test_dependency_chain_is_checked() -> None:
    def dep(**extra: Any) -> Dict[str, Any]:
        return {
            "key": "base",
            "type": "flag",
            "operator": "flag_evaluates_to",
            "value": True,
            **extra,
        }

    body = {
        "flags": [
            flag("base"),
            flag("ok", condition(dep(dependency_chain=["base"]))),
            flag("cycle", condition(dep(dependency_chain=[]))),
            flag("nochain", condition(dep())),
            flag("shape", condition(dep(value=None, dependency_chain=["base"]))),
        ]
    }
    snapshot = parse_definitions(body)
    ok = only_filter(snapshot, "ok")
    assert isinstance(ok, FlagDependencyFilter) and ok.chain == ("base",) and ok.problem is None
    assert "circular" in (only_filter(snapshot, "cycle").problem or "")
    assert only_filter(snapshot, "nochain").problem
    assert only_filter(snapshot, "shape").malformed


def test_cohort_filters_know_when_they_need_the_server() -> None:
    cohorts = {
        "1": {"type": "OR", "values": [{"key": "id", "value": 2, "type": "cohort"}]},
        "2": {"type": "AND", "values": [{"key": "id", "value": 404, "type": "cohort"}]},
        "3": {"type": "AND", "values": [{"key": "id", "value": 3, "type": "cohort"}]},
        "4": {"type": "AND", "values": [{"key": "plan", "value": "pro"}]},
    }
    body = flag(
        "f",
        condition({"key": "id", "value": 1, "type": "cohort"}),
        condition({"key": "id", "value": 3, "type": "cohort"}),
        condition({"key": "id", "value": 4, "type": "cohort", "operator": "not_in"}),
    )
    conditions = parse_definitions({"flags": [body], "cohorts": cohorts}).flags["f"].conditions
    via_missing, cyclic, plain = (c.filters[0] for c in conditions)
    assert isinstance(via_missing, CohortFilter) and "404" in (via_missing.requires_server or "")
    assert "refers to itself" in (cyclic.requires_server or "")
    assert plain.requires_server is None and plain.negate


# --- value helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("Ab", "Ab"),
        (None, "null"),
        (True, "true"),
        (3, "3"),
        (323.0, "323.0"),
        (1e-07, "1e-7"),
        (1e16, "1e+16"),
        (1e-05, "0.00001"),
        ([1, "a", None], '[1,"a",null]'),
        ({"b": 1, "a": [True]}, '{"a":[true],"b":1}'),
        (float("nan"), None),
        (dt.date(2024, 1, 1), None),
        ({1: "int key"}, None),
    ],
)
def test_stringify(value: Any, text: Any) -> None:
    assert stringify(value) == text


@pytest.mark.parametrize(
    ("value", "number"),
    [(5, 5.0), ("5", 5.0), ("+.5e+1", 5.0), ("-1.25E+2", -125.0), (" 10", None), ("1_0", None),
     ("0x10", None), ("\u0661\u0660", None), ("NaN", None), ("1e309", None), (True, None),
     ([1], None)],
)  # fmt: skip
def test_parse_number(value: Any, number: Any) -> None:
    assert parse_number(value) == number


@pytest.mark.parametrize(
    ("value", "version"),
    [("1.2.3", (1, 2, 3)), ("v1.2", (1, 2, 0)), (" 1.2.3-rc.1+b ", (1, 2, 3)),
     ("1.2.3.4", (1, 2, 3)), ("01.2.3", None), ("abc", None), ("", None), (".1", None),
     (1.5, (1, 5, 0))],
)  # fmt: skip
def test_parse_semver(value: Any, version: Any) -> None:
    assert parse_semver(value) == version


def test_relative_dates_clamp_month_ends() -> None:
    now = dt.datetime(2024, 3, 31, 12, 0, tzinfo=dt.timezone.utc)
    assert RelativeDate(2, "m").resolve(now) == dt.datetime(
        2024, 1, 29, 12, 0, tzinfo=dt.timezone.utc
    )
    leap = dt.datetime(2024, 2, 29, tzinfo=dt.timezone.utc)
    assert RelativeDate(4, "y").resolve(leap) == dt.datetime(2020, 2, 28, tzinfo=dt.timezone.utc)
    assert RelativeDate(3000, "y").resolve(now) is None
    assert RelativeDate(2, "w").resolve(now) == now - dt.timedelta(weeks=2)


def test_date_values() -> None:
    def clock() -> dt.datetime:
        return dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)

    utc = dt.timezone.utc
    assert parse_date_value("2024-01-02", clock) == dt.datetime(2024, 1, 2, tzinfo=utc)
    assert parse_date_value("2024-01-02 10:00:00 +01:00", clock) == dt.datetime(
        2024, 1, 2, 9, tzinfo=utc
    )
    assert parse_date_value("2024-01-02T10:00:00 UTC", clock) == dt.datetime(
        2024, 1, 2, 10, tzinfo=utc
    )
    assert parse_date_value("2021", clock) == dt.datetime(2021, 6, 1, tzinfo=utc)
    assert parse_date_value(dt.date(2024, 1, 2), clock) == dt.date(2024, 1, 2)
    assert parse_date_value("2024-01-02T10:00:00.5", clock) == dt.datetime(
        2024, 1, 2, 10, 0, 0, 500000, tzinfo=utc
    )
    assert parse_date_value("2024-01-02 10:00:00", clock) == dt.datetime(2024, 1, 2, 10, tzinfo=utc)
    assert parse_date_value("yesterday", clock) is None
    assert parse_date_value(5, clock) is None
    assert YearOnlyDate(2021).resolve(dt.datetime(2024, 2, 29, tzinfo=utc)) is None


def test_compiled_flag_carries_identity_fields() -> None:
    compiled: CompiledFlag = parse_definitions({"flags": [flag("a")]}).flags["a"]
    assert (compiled.key, compiled.id, compiled.version, compiled.active) == ("a", 7, 3, True)
    assert not compiled.is_group_flag
