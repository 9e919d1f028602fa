"""The evaluator, rule by rule (docs/protocol.md §4), with reasons and explanations."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import operator
from typing import Any, Dict, List, Optional

import pytest

from productos._flags import calls as calls_module
from productos._flags import evaluator
from productos.flags import (
    EvaluationContext,
    FlagResult,
    InconclusiveReason,
    ReasonCode,
    Snapshot,
    TraceOutcome,
    evaluate,
    evaluate_all,
    evaluate_values,
    explain,
    flag_hash,
    parse_definitions,
    payload_of,
)

UTC = dt.timezone.utc


# --- builders --------------------------------------------------------------------------------


def prop(key: str, value: Any, operator: str = "exact", **extra: Any) -> Dict[str, Any]:
    return {"key": key, "value": value, "operator": operator, "type": "person", **extra}


def cohort(cohort_id: Any, operator: Optional[str] = None) -> Dict[str, Any]:
    return {"key": "id", "value": cohort_id, "type": "cohort", "operator": operator}


def depends(key: str, value: Any, chain: Optional[List[str]] = None) -> Dict[str, Any]:
    return {
        "key": key,
        "value": value,
        "type": "flag",
        "operator": "flag_evaluates_to",
        "dependency_chain": [key] if chain is None else chain,
    }


def cond(*props: Dict[str, Any], rollout: Any = 100, **extra: Any) -> Dict[str, Any]:
    return {"properties": list(props), "rollout_percentage": rollout, **extra}


def flag(key: str, *conditions: Dict[str, Any], flag_id: int = 1, **filters: Any) -> Dict[str, Any]:
    return {
        "id": flag_id,
        "version": 4,
        "key": key,
        "active": True,
        "filters": {"groups": list(conditions) or [cond()], **filters},
    }


def snap(*flags: Dict[str, Any], **body: Any) -> Snapshot:
    return parse_definitions({"flags": list(flags), **body})


def essentials(result: FlagResult) -> Any:
    """All a detail=False result keeps of the detailed one (not the explanation or payload)."""
    reason = result.reason
    return (
        result.key, type(result.value), result.value, result.variant, result.locally_evaluated,
        result.flag_id, result.flag_version, reason.code, reason.condition_index,
        reason.threshold, reason.inconclusive, reason.unresolved, reason.error,
    )  # fmt: skip


def evaluate_every_way(
    snapshot: Snapshot, key: str, ctx: EvaluationContext, **options: Any
) -> FlagResult:
    """The detailed result, after checking that every value-only path agrees with it."""
    result = evaluate(snapshot, key, ctx, **options)
    fast = evaluate(snapshot, key, ctx, detail=False, **options)
    assert essentials(fast) == essentials(result)
    assert fast.payload is None and fast.reason.trace == () and fast.reason.description
    assert fast.reason.bucket is None and fast.reason.failed_filter is None
    if result.locally_evaluated:
        assert payload_of(snapshot, key, result.value) == result.payload
    values = evaluate_values(snapshot, ctx, **options)
    assert list(values) == list(evaluate_all(snapshot, ctx, detail=False, **options))
    if key in snapshot.flags:
        assert (type(values[key]), values[key]) == (type(result.value), result.value)
    return result


def run(snapshot: Snapshot, key: str, distinct_id: str = "user-1", **ctx: Any) -> FlagResult:
    return evaluate_every_way(snapshot, key, EvaluationContext(distinct_id, **ctx))


def find_distinct_id(key: str, predicate: Any, salt: str = "") -> str:
    """A distinct id whose bucket for ``key`` satisfies ``predicate`` (deterministic search)."""
    for i in range(10_000):
        candidate = f"user-{i}"
        if predicate(flag_hash(key, candidate, salt)):
            return candidate
    raise AssertionError("no distinct id found")  # pragma: no cover


# --- hashing ---------------------------------------------------------------------------------


class TestHash:
    def test_protocol_example(self) -> None:
        assert flag_hash("simple-flag", "distinct_id_0") == pytest.approx(0.78369637642, abs=1e-11)

    def test_salt_is_appended_to_the_bucketing_value(self) -> None:
        assert flag_hash("k", "id", "variant") == flag_hash("k", "idvariant")
        assert flag_hash("k", "id", "variant") != flag_hash("k", "id")

    def test_bucket_is_in_unit_interval(self) -> None:
        for i in range(200):
            assert 0.0 <= flag_hash("k", str(i)) <= 1.0

    def test_the_sha1_chosen_at_import_is_one_of_the_two_with_the_same_buckets(self) -> None:
        import hashlib

        from productos._flags import hashing

        assert hashing._sha1 in (hashlib.sha1, getattr(hashing, "_builtin_sha1", hashlib.sha1))
        for make in {hashlib.sha1, hashing._builtin_sha1}:
            prefix = make(b"checkout.")
            for i in range(50):
                assert hashing.bucket(prefix, f"user-{i}") == flag_hash("checkout", f"user-{i}")
        assert hashing._bucket_cost(hashing._sha1, rounds=4) > 0


class TestDigestEdges:
    """The evaluator compares digests with edges from ``digests_where`` instead of computing
    each bucket; these pin that the comparison gives the float arithmetic's answer."""

    @staticmethod
    def digest_for(bucket_index: int, low_bits: int = 0, rest: bytes = bytes(12)) -> bytes:
        return ((bucket_index << 4) | low_bits).to_bytes(8, "big") + rest

    # Each relation as the expression it stands for in the evaluator's float arithmetic.
    RELATIONS = {
        ">": operator.gt,  # outside a rollout: bucket > threshold
        ">=": operator.ge,  # a variant's start <= bucket
        "!<": lambda value, edge: not operator.lt(value, edge),  # a variant's bucket < end
        "!<=": lambda value, edge: not operator.le(value, edge),  # held out: bucket <= fraction
    }

    EDGES = (
        [i / 100 for i in range(101)]
        + [i / 1000 for i in range(0, 1001, 7)]
        + [0.0, 1e-20, 1e-12, 0.1 + 0.2, 1 / 3, 2 / 3, 0.9999999999999999, 1.0]
        + [-0.5, 1.5, 1e300, -1e300, float("inf"), float("-inf"), float("nan")]
    )

    @pytest.mark.parametrize("relation", [">", ">=", "!<", "!<="])
    def test_a_digest_is_at_or_above_the_edge_exactly_when_its_bucket_satisfies_the_relation(
        self, relation: str
    ) -> None:
        import random

        from productos._flags.hashing import LONG_SCALE, bucket_of_digest, digests_where

        rng = random.Random(relation)
        checked = 0
        for edge in self.EDGES:
            first = digests_where(relation, edge)
            # Around the edge's own bucket, plus the two ends of the range.
            scaled = edge * LONG_SCALE
            centre = 0
            if scaled == scaled and abs(scaled) != float("inf"):
                centre = min(max(int(scaled), 0), (1 << 60) - 1)
            candidates = set(range(max(centre - 300, 0), min(centre + 300, 1 << 60)))
            candidates |= {0, 1, (1 << 60) - 2, (1 << 60) - 1}
            for index in candidates:
                digest = self.digest_for(index, rng.randrange(16), rng.randbytes(12))
                want = self.RELATIONS[relation](bucket_of_digest(digest), edge)
                assert (digest >= first) == want, (relation, edge, index)
                checked += 1
        assert checked > 100_000

    def test_the_edges_that_stand_for_every_digest_and_for_none(self) -> None:
        from productos._flags.hashing import digests_where

        every, none = b"", b"\xff" * 21
        assert digests_where(">=", 0.0) == every
        assert digests_where(">", -1.0) == every
        assert digests_where(">", 1.0) == none
        assert digests_where(">", float("nan")) == none
        assert digests_where("!<", float("nan")) == every  # not (bucket < nan) always holds
        assert digests_where("!<=", float("nan")) == every
        assert digests_where("!<=", 1.0) == none
        assert self.digest_for((1 << 60) - 1, 15, b"\xff" * 12) < none

    def test_real_digests_agree_with_flag_hash_at_a_rollout_edge(self) -> None:
        from productos._flags.hashing import digests_where

        cut = digests_where(">", 0.3)
        outside = 0
        for i in range(2000):
            digest = hashlib.sha1(f"checkout.user-{i}".encode()).digest()
            assert (digest >= cut) == (flag_hash("checkout", f"user-{i}") > 0.3)
            outside += digest >= cut
        assert 1200 < outside < 1600  # about 70 % outside a 30 % rollout


# --- active, rollout, conditions -------------------------------------------------------------


class TestRollout:
    def test_inactive_flag_is_false_and_says_so(self) -> None:
        body = flag("f")
        body["active"] = False
        result = run(snap(body), "f")
        assert result.value is False and result.locally_evaluated
        assert result.reason.code is ReasonCode.DISABLED

    @pytest.mark.parametrize("rollout", [100, None])
    def test_full_or_unset_rollout_includes_everyone(self, rollout: Any) -> None:
        result = run(snap(flag("f", cond(rollout=rollout))), "f")
        assert result.value is True
        assert result.reason.code is ReasonCode.CONDITION_MATCH
        assert result.reason.condition_index == 0

    def test_zero_rollout_is_out_of_rollout(self) -> None:
        result = run(snap(flag("f", cond(rollout=0))), "f")
        assert result.value is False
        assert result.reason.code is ReasonCode.OUT_OF_ROLLOUT
        assert result.reason.threshold == 0.0
        assert result.reason.bucket is not None and result.reason.bucket > 0.0

    def test_bucket_at_or_below_threshold_is_in(self) -> None:
        inside = find_distinct_id("f", lambda h: h <= 0.3)
        outside = find_distinct_id("f", lambda h: h > 0.3)
        snapshot = snap(flag("f", cond(rollout=30)))
        assert run(snapshot, "f", inside).value is True
        assert run(snapshot, "f", outside).value is False

    def test_first_matching_condition_wins(self) -> None:
        snapshot = snap(
            flag("f", cond(prop("plan", "free"), rollout=0), cond(prop("plan", "free")))
        )
        result = run(snapshot, "f", person_properties={"plan": "free"})
        assert result.value is True and result.reason.condition_index == 1
        outcomes = [c.outcome for c in result.reason.trace]
        assert outcomes == [TraceOutcome.OUT_OF_ROLLOUT, TraceOutcome.MATCH]
        assert all(type(o) is TraceOutcome for o in outcomes)  # members, not bare strings
        assert [f.outcome for f in result.reason.trace[1].filters] == [TraceOutcome.MATCH]
        assert type(result.reason.trace[1].filters[0].outcome) is TraceOutcome

    def test_no_condition_match_names_the_failed_filter(self) -> None:
        snapshot = snap(flag("f", cond(prop("plan", "pro"))))
        result = run(snapshot, "f", person_properties={"plan": "free"})
        assert result.value is False
        assert result.reason.code is ReasonCode.NO_CONDITION_MATCH
        failed = result.reason.failed_filter
        assert failed is not None and (failed.key, failed.operator, failed.value) == (
            "plan",
            "exact",
            "pro",
        )

    def test_early_exit_stops_at_the_first_out_of_rollout_condition(self) -> None:
        conditions = [cond(prop("plan", "pro"), rollout=0), cond(prop("plan", "pro"))]
        plain = snap(flag("f", *conditions))
        early = snap(flag("f", *conditions, early_exit=True))
        ctx = {"person_properties": {"plan": "pro"}}
        assert run(plain, "f", **ctx).value is True
        result = run(early, "f", **ctx)
        assert result.value is False and result.reason.code is ReasonCode.EARLY_EXIT

    def test_early_exit_ignores_conditions_whose_properties_did_not_match(self) -> None:
        snapshot = snap(
            flag(
                "f",
                cond(prop("plan", "free"), rollout=0),
                cond(prop("plan", "pro")),
                early_exit=True,
            )
        )
        assert run(snapshot, "f", person_properties={"plan": "pro"}).value is True


# --- variants and payloads -------------------------------------------------------------------


VARIANTS = {
    "variants": [
        {"key": "control", "rollout_percentage": 50},
        {"key": "test", "rollout_percentage": 50},
    ]
}


class TestVariants:
    def test_variant_comes_from_the_variant_bucket(self) -> None:
        snapshot = snap(flag("mv", multivariate=VARIANTS))
        low = find_distinct_id("mv", lambda h: h < 0.5, salt="variant")
        high = find_distinct_id("mv", lambda h: h >= 0.5, salt="variant")
        assert run(snapshot, "mv", low).value == "control"
        result = run(snapshot, "mv", high)
        assert result.value == "test" and result.variant == "test" and result.enabled
        match = result.reason.trace[-1]
        assert match.variant == "test" and match.variant_range == (0.5, 1.0)
        assert match.variant_bucket is not None and match.variant_bucket >= 0.5

    def test_condition_override_wins_when_it_names_a_variant(self) -> None:
        snapshot = snap(flag("mv", cond(variant="test"), multivariate=VARIANTS))
        low = find_distinct_id("mv", lambda h: h < 0.5, salt="variant")
        assert run(snapshot, "mv", low).value == "test"

    def test_unknown_override_falls_back_to_the_bucket(self) -> None:
        snapshot = snap(flag("mv", cond(variant="nope"), multivariate=VARIANTS))
        low = find_distinct_id("mv", lambda h: h < 0.5, salt="variant")
        assert run(snapshot, "mv", low).value == "control"

    def test_bucket_outside_every_range_is_true(self) -> None:
        partial = {"variants": [{"key": "a", "rollout_percentage": 10}]}
        snapshot = snap(flag("mv", multivariate=partial))
        outside = find_distinct_id("mv", lambda h: h >= 0.1, salt="variant")
        result = run(snapshot, "mv", outside)
        assert result.value is True and result.variant is None


class TestPayloads:
    PAYLOADS = {
        "true": '{"color": "blue"}',
        "test": "[1, 2]",
        "control": "not json",
        "false": '"no"',
    }

    def test_true_payload_is_decoded_json(self) -> None:
        result = run(snap(flag("f", payloads=self.PAYLOADS)), "f")
        assert result.payload == {"color": "blue"}

    def test_each_result_gets_its_own_payload_object(self) -> None:
        snapshot = snap(flag("f", payloads=self.PAYLOADS))
        first = run(snapshot, "f")
        first.payload["color"] = "red"
        assert run(snapshot, "f").payload == {"color": "blue"}

    def test_variant_payload_and_invalid_json(self) -> None:
        snapshot = snap(flag("mv", multivariate=VARIANTS, payloads=self.PAYLOADS))
        high = find_distinct_id("mv", lambda h: h >= 0.5, salt="variant")
        low = find_distinct_id("mv", lambda h: h < 0.5, salt="variant")
        assert run(snapshot, "mv", high).payload == [1, 2]
        assert run(snapshot, "mv", low).payload is None  # "not json" decodes to nothing

    def test_false_has_no_payload(self) -> None:
        result = run(snap(flag("f", cond(rollout=0), payloads=self.PAYLOADS)), "f")
        assert result.value is False and result.payload is None

    def test_non_string_payload_is_used_as_is(self) -> None:
        assert run(snap(flag("f", payloads={"true": 300})), "f").payload == 300


# --- holdouts, groups, device ids, enrollment --------------------------------------------------


class TestHoldout:
    def test_full_holdout_replaces_the_value(self) -> None:
        snapshot = snap(
            flag("f", multivariate=VARIANTS, holdout={"id": 9, "exclusion_percentage": 100},
                 payloads={"holdout-9": '"held"'})
        )  # fmt: skip
        result = run(snapshot, "f")
        assert result.value == "holdout-9" and result.payload == "held"
        assert result.reason.code is ReasonCode.HOLDOUT

    def test_holdout_hashes_the_bucketing_value_without_the_flag_key(self) -> None:
        # Not flag_hash("holdout", x), which would hash "holdout.x": the server hashes "holdout-x".
        def holdout_bucket(x: str) -> float:
            digest = hashlib.sha1(f"holdout-{x}".encode()).digest()
            return (int.from_bytes(digest[:8], "big") >> 4) / float(0xFFFFFFFFFFFFFFF)

        held = next(f"u{i}" for i in range(1000) if holdout_bucket(f"u{i}") <= 0.2)
        free = next(f"u{i}" for i in range(1000) if holdout_bucket(f"u{i}") > 0.2)
        snapshot = snap(flag("f", holdout={"id": 1, "exclusion_percentage": 20}))
        assert run(snapshot, "f", held).value == "holdout-1"
        assert run(snapshot, "f", free).value is True


class TestGroups:
    MAPPING = {"0": "company", "1": "team"}

    def group_flag(self, *conditions: Dict[str, Any], **filters: Any) -> Snapshot:
        body = flag("g", *conditions, aggregation_group_type_index=0, **filters)
        return snap(body, group_type_mapping=self.MAPPING)

    def test_group_not_passed_is_false(self) -> None:
        result = run(self.group_flag(), "g")
        assert result.value is False and result.reason.code is ReasonCode.GROUP_NOT_PASSED

    def test_unknown_group_type_is_unsupported(self) -> None:
        body = flag("g", aggregation_group_type_index=5)
        result = run(snap(body, group_type_mapping=self.MAPPING), "g", groups={"company": "acme"})
        assert result.reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION

    def test_group_properties_and_group_key_bucketing(self) -> None:
        snapshot = self.group_flag(cond(prop("plan", "enterprise"), rollout=50))
        inside = find_distinct_id("g", lambda h: h <= 0.5)
        outside = find_distinct_id("g", lambda h: h > 0.5)
        props = {"company": {"plan": "enterprise"}}
        assert run(
            snapshot, "g", "anyone", groups={"company": inside}, group_properties=props
        ).value
        result = run(snapshot, "g", "anyone", groups={"company": outside}, group_properties=props)
        assert result.value is False

    def test_group_key_is_available_as_a_property(self) -> None:
        snapshot = self.group_flag(cond(prop("$group_key", "acme")))
        assert run(snapshot, "g", groups={"company": "acme"}).value is True
        assert run(snapshot, "g", groups={"company": "other"}).value is False

    def test_mixed_targeting_switches_subject_per_condition(self) -> None:
        body = flag(
            "m",
            cond(prop("plan", "enterprise"), aggregation_group_type_index=0),
            cond(prop("email", "a@b.c"), aggregation_group_type_index=None),
        )
        snapshot = snap(body, group_type_mapping=self.MAPPING)
        by_group = run(snapshot, "m", groups={"company": "acme"},
                       group_properties={"company": {"plan": "enterprise"}},
                       person_properties={"email": "x"})  # fmt: skip
        assert by_group.value is True and by_group.reason.condition_index == 0
        assert by_group.reason.trace[0].group_type == "company"
        by_person = run(snapshot, "m", person_properties={"email": "a@b.c"})
        assert by_person.value is True and by_person.reason.condition_index == 1
        assert by_person.reason.trace[0].outcome is TraceOutcome.SKIPPED


class TestDeviceBucketing:
    def device_flag(self, rollout: int = 50) -> Snapshot:
        return snap(flag("d", cond(rollout=rollout), bucketing_identifier="device_id"))

    def test_same_device_same_answer_for_every_user(self) -> None:
        snapshot = self.device_flag()
        values = {run(snapshot, "d", f"user-{i}", device_id="device-7").value for i in range(20)}
        assert len(values) == 1

    def test_device_id_is_the_bucketing_value(self) -> None:
        inside = find_distinct_id("d", lambda h: h <= 0.5)
        assert run(self.device_flag(), "d", "whoever", device_id=inside).value is True

    def test_missing_device_id_is_missing_context(self) -> None:
        result = run(self.device_flag(), "d")
        assert result.value is None
        assert result.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT


class TestFeatureEnrollment:
    snapshot = snap(flag("beta", cond(rollout=0), feature_enrollment=True))

    @pytest.mark.parametrize(
        ("enrolled", "value"), [(True, True), ("true", True), (False, False), (1, False)]
    )
    def test_enrollment_property_decides(self, enrolled: Any, value: bool) -> None:
        props = {"$feature_enrollment/beta": enrolled}
        result = run(self.snapshot, "beta", person_properties=props)
        assert result.value is value and result.reason.code is ReasonCode.FEATURE_ENROLLMENT

    def test_absent_enrollment_is_missing_context(self) -> None:
        result = run(self.snapshot, "beta")
        assert result.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT


# --- property operators through the evaluator -------------------------------------------------


class TestOperators:
    def one(self, filter_: Dict[str, Any], props: Dict[str, Any], **body: Any) -> FlagResult:
        return run(snap(flag("f", cond(filter_)), **body), "f", person_properties=props)

    def test_distinct_id_is_a_person_property(self) -> None:
        assert self.one(prop("distinct_id", "user-1"), {}).value is True

    def test_implicit_properties_can_be_turned_off(self) -> None:
        snapshot = snap(flag("f", cond(prop("distinct_id", "user-1"))))
        ctx = EvaluationContext("user-1")
        result = evaluate(snapshot, "f", ctx, implicit_properties=False)
        assert result.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT

    def test_matching_version_changes_boolean_looking_filters(self) -> None:
        filter_ = prop("flag", ["true", "false"])
        assert self.one(filter_, {"flag": "pro"}).value is True  # v1: truthiness
        assert self.one(filter_, {"flag": "pro"}, property_matching_version=2).value is False

    def test_relative_dates_use_the_context_clock(self) -> None:
        snapshot = snap(flag("f", cond(prop("signup", "-7d", "is_date_after"))))
        ctx = {"person_properties": {"signup": "2024-05-28T00:00:00Z"}}
        early = run(snapshot, "f", now=dt.datetime(2024, 6, 1, tzinfo=UTC), **ctx)
        late = run(snapshot, "f", now=dt.datetime(2024, 6, 30, tzinfo=UTC), **ctx)
        assert (early.value, late.value) == (True, False)

    def test_naive_now_is_utc(self) -> None:
        snapshot = snap(flag("f", cond(prop("signup", "-1h", "is_date_before"))))
        result = run(snapshot, "f", now=dt.datetime(2024, 6, 1, 12),
                     person_properties={"signup": "2024-06-01T10:59:00+00:00"})  # fmt: skip
        assert result.value is True

    def test_date_objects_are_accepted(self) -> None:
        filter_ = prop("d", "2024-01-10", "is_date_before")
        assert self.one(filter_, {"d": dt.date(2024, 1, 9)}).value is True
        assert self.one(filter_, {"d": dt.datetime(2024, 1, 11, tzinfo=UTC)}).value is False

    def test_regex_the_server_might_read_differently_is_inconclusive(self) -> None:
        result = self.one(prop("p", "\\bword", "regex"), {"p": "a word"})
        assert result.reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION
        assert "regex" in result.reason.description

    def test_semver_family(self) -> None:
        assert self.one(prop("v", "1.2.*", "semver_wildcard"), {"v": "v1.2.9"}).value is True
        assert self.one(prop("v", "~1.2.3", "semver_tilde"), {"v": "1.2.4"}).reason.inconclusive
        assert self.one(prop("v", "1.2.3", "semver_tilde"), {"v": "1.2.9"}).value is True
        assert self.one(prop("v", "0.2.3", "semver_caret"), {"v": "0.3.0"}).value is False


# --- inconclusive precedence -----------------------------------------------------------------


class TestInconclusive:
    def test_missing_property_is_missing_context(self) -> None:
        result = run(snap(flag("f", cond(prop("plan", "pro")))), "f")
        assert result.value is None and result.inconclusive and not result.enabled
        assert result.reason.code is ReasonCode.INCONCLUSIVE
        assert result.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT
        assert result.reason.failed_filter is not None and result.reason.failed_filter.key == "plan"
        assert not result.locally_evaluated

    def test_later_definite_non_match_rules_the_condition_out(self) -> None:
        snapshot = snap(flag("f", cond(prop("missing", "x"), prop("plan", "pro"))))
        assert run(snapshot, "f", person_properties={"plan": "free"}).value is False

    def test_a_later_condition_can_still_match(self) -> None:
        snapshot = snap(flag("f", cond(prop("missing", "x")), cond(prop("plan", "pro"))))
        assert run(snapshot, "f", person_properties={"plan": "pro"}).value is True

    def test_unsupported_outranks_missing(self) -> None:
        snapshot = snap(flag("f", cond(prop("a", 1)), cond(prop("b", "x", "near"))))
        result = run(snapshot, "f")
        assert result.reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION

    def test_experience_continuity_outranks_everything(self) -> None:
        body = flag("f", cond(prop("b", "x", "near")))
        body["ensure_experience_continuity"] = True
        assert run(snap(body), "f").reason.inconclusive is InconclusiveReason.EXPERIENCE_CONTINUITY

    def test_a_result_resolved_elsewhere_is_no_longer_inconclusive(self) -> None:
        local = run(snap(flag("f", cond(prop("plan", "pro")))), "f")
        assert local.inconclusive
        remote = dataclasses.replace(
            local, value=True, reason=dataclasses.replace(local.reason, code=ReasonCode.REMOTE)
        )
        assert not remote.inconclusive and remote.enabled
        assert (
            remote.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT
        )  # why it went remote

    def test_not_loaded_and_flag_missing(self) -> None:
        assert run(Snapshot.empty(), "f").reason.inconclusive is InconclusiveReason.NOT_LOADED
        missing = run(snap(flag("f")), "other")
        assert missing.reason.inconclusive is InconclusiveReason.FLAG_MISSING
        assert missing.value is None and missing.flag_id is None

    def test_malformed_definition_is_unsupported_but_others_work(self) -> None:
        bad = {"key": "bad", "active": True, "filters": {"groups": ["nonsense"]}}
        snapshot = snap(bad, flag("good"))
        assert run(snapshot, "bad").reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION
        assert run(snapshot, "good").value is True


# --- cohorts ---------------------------------------------------------------------------------


class TestCohorts:
    COHORTS = {
        "1": {
            "type": "OR",
            "values": [
                {"type": "AND", "values": [prop("plan", "pro"), prop("country", "US")]},
                {"type": "AND", "values": [prop("banned", True, negation=True), prop("vip", True)]},
            ],
        },
        "2": {"type": "AND", "values": [cohort(1), prop("age", 18, "gte")]},
    }

    def snapshot(self, *filters: Dict[str, Any]) -> Snapshot:
        return snap(flag("f", cond(*filters)), cohorts=self.COHORTS)

    @pytest.mark.parametrize(
        ("props", "value"),
        [
            ({"plan": "pro", "country": "US"}, True),
            ({"plan": "pro", "country": "FR", "banned": False, "vip": True}, True),
            ({"plan": "pro", "country": "FR", "banned": True, "vip": True}, False),
            ({"plan": "free", "country": "US", "banned": False, "vip": False}, False),
        ],
    )
    def test_nested_and_or_with_negation(self, props: Dict[str, Any], value: bool) -> None:
        assert run(self.snapshot(cohort(1)), "f", person_properties=props).value is value

    def test_cohort_inside_cohort_and_not_in(self) -> None:
        props = {"plan": "pro", "country": "US", "age": 30}
        assert run(self.snapshot(cohort(2)), "f", person_properties=props).value is True
        assert run(self.snapshot(cohort(2, "not_in")), "f", person_properties=props).value is False

    def test_undecidable_member_is_inconclusive(self) -> None:
        result = run(self.snapshot(cohort(1)), "f", person_properties={"plan": "pro"})
        assert result.reason.inconclusive is InconclusiveReason.MISSING_CONTEXT

    def test_static_cohort_requires_the_server_and_stops_evaluation(self) -> None:
        snapshot = snap(flag("f", cond(cohort(404)), cond()), cohorts=self.COHORTS)
        result = run(snapshot, "f")
        assert result.value is None
        assert result.reason.inconclusive is InconclusiveReason.REQUIRES_SERVER
        assert result.reason.unresolved is InconclusiveReason.UNSUPPORTED_DEFINITION
        assert [c.outcome for c in result.reason.trace] == [TraceOutcome.REQUIRES_SERVER]
        assert type(result.reason.trace[0].outcome) is TraceOutcome

    def test_static_cohort_after_a_doubt_only_makes_the_condition_inconclusive(self) -> None:
        snapshot = snap(flag("f", cond(prop("x", 1), cohort(404)), cond()), cohorts=self.COHORTS)
        assert run(snapshot, "f").value is True


# --- flag dependencies ------------------------------------------------------------------------


class TestDependencies:
    def test_chain_and_variant_expectations(self) -> None:
        snapshot = snap(
            flag("leaf", cond(prop("email", "a@b.c"), variant="blue"), multivariate={
                "variants": [{"key": "blue", "rollout_percentage": 100}]}),
            flag("mid", cond(depends("leaf", "blue"))),
            flag("top", cond(depends("mid", True, ["leaf", "mid"]))),
        )  # fmt: skip
        assert run(snapshot, "top", person_properties={"email": "a@b.c"}).value is True
        assert run(snapshot, "top", person_properties={"email": "x@y.z"}).value is False

    def test_expecting_false(self) -> None:
        snapshot = snap(flag("off", cond(rollout=0)), flag("f", cond(depends("off", False))))
        assert run(snapshot, "f").value is True

    def test_undecided_dependency_is_unresolved_dependency(self) -> None:
        snapshot = snap(
            flag("base", cond(prop("email", "x"))), flag("f", cond(depends("base", True)))
        )
        result = run(snapshot, "f")
        assert result.reason.inconclusive is InconclusiveReason.UNRESOLVED_DEPENDENCY

    def test_empty_chain_is_a_cycle(self) -> None:
        snapshot = snap(
            flag("a", cond(depends("b", True, []))), flag("b", cond(depends("a", True, [])))
        )
        assert run(snapshot, "a").reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION

    def test_cycle_hidden_in_chains_is_malformed_for_every_flag_on_it(self) -> None:
        snapshot = snap(
            flag("a", cond(depends("b", True))),
            flag("b", cond(depends("a", True))),
            flag("c", cond(depends("a", True, ["b", "a"]))),
        )
        assert snapshot.flags["a"].malformed == "circular flag dependency"
        assert snapshot.flags["c"].malformed is None
        results = evaluate_all(snapshot, EvaluationContext("u"))
        for key, result in results.items():
            assert run(snapshot, key, "u").reason == result.reason  # same from any entry point
        assert results["a"].reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION
        assert results["c"].reason.inconclusive is InconclusiveReason.UNRESOLVED_DEPENDENCY

    def test_dependency_needing_the_server_sends_the_flag_to_the_server(self) -> None:
        snapshot = snap(flag("base", cond(cohort(404))), flag("f", cond(depends("base", True))))
        result = run(snapshot, "f")
        assert result.reason.inconclusive is InconclusiveReason.REQUIRES_SERVER
        assert result.reason.unresolved is InconclusiveReason.UNRESOLVED_DEPENDENCY

    def test_malformed_dependency_is_a_plain_non_match(self) -> None:
        snapshot = snap(flag("base"), flag("f", cond(depends("base", None)), cond(prop("p", 1))))
        assert run(snapshot, "f", person_properties={"p": 1}).value is True


# --- evaluate_all, determinism, never raising --------------------------------------------------


class TestEvaluateAll:
    def test_every_flag_in_definition_order(self) -> None:
        snapshot = snap(flag("b"), flag("a", cond(rollout=0)), flag("c", cond(depends("b", True))))
        results = evaluate_all(snapshot, EvaluationContext("u"))
        assert list(results) == ["b", "a", "c"]
        assert [r.value for r in results.values()] == [True, False, True]
        for key, result in results.items():
            assert run(snapshot, key, "u") == result

    def test_nothing_loaded_gives_nothing(self) -> None:
        assert evaluate_all(Snapshot.empty(), EvaluationContext("u")) == {}


class TestNeverRaises:
    @pytest.mark.parametrize("ctx", [None, "user", EvaluationContext("u", person_properties=5)])  # type: ignore[arg-type]
    def test_bad_context_is_an_error_result(self, ctx: Any) -> None:
        snapshot = snap(flag("f", cond(prop("plan", "x"))))
        result = evaluate(snapshot, "f", ctx)
        assert result.value is None and result.reason.code is ReasonCode.ERROR
        assert result.reason.error and result.inconclusive
        all_results = evaluate_all(snapshot, ctx)
        assert all_results["f"].reason.code is ReasonCode.ERROR

    def test_property_values_of_any_type(self) -> None:
        filters = [
            prop("v", "x", op)
            for op in ("exact", "icontains", "regex", "gt", "is_date_before", "semver_gt")
        ]
        snapshot = snap(*(flag(f"f{i}", cond(f)) for i, f in enumerate(filters)))
        for value in (object(), b"bytes", {1: 2}, float("nan"), dt.time(1, 2), [object()]):
            for key in snapshot.flags:
                result = run(snapshot, key, person_properties={"v": value})
                assert result.reason.code is not ReasonCode.ERROR, (key, value)

    def test_evaluation_is_deterministic(self) -> None:
        snapshot = snap(flag("mv", cond(rollout=70), multivariate=VARIANTS))
        first = [run(snapshot, "mv", f"u{i}").value for i in range(100)]
        second = [run(snapshot, "mv", f"u{i}").value for i in range(100)]
        assert first == second


# --- value-only evaluation, payload_of, evaluate_values, implicit properties -------------------


class TestValueOnly:
    PAYLOADS = {"control": '{"steps": 3}', "test": '{"steps": 1}'}

    def test_keeps_the_decision_but_not_the_explanation(self) -> None:
        snapshot = snap(flag("mv", cond(rollout=50), multivariate=VARIANTS, payloads=self.PAYLOADS))
        user = find_distinct_id("mv", lambda h: h <= 0.5)
        ctx = EvaluationContext(user)
        detailed = evaluate(snapshot, "mv", ctx)
        fast = evaluate(snapshot, "mv", ctx, detail=False)
        assert fast.value == detailed.value and fast.variant == detailed.value
        assert detailed.payload is not None and fast.payload is None
        assert payload_of(snapshot, "mv", fast.value) == detailed.payload
        reason = fast.reason
        assert (reason.code, reason.condition_index, reason.threshold) == (
            ReasonCode.CONDITION_MATCH, 0, 0.5,
        )  # fmt: skip
        assert reason.trace == () and reason.bucket is None
        assert detailed.reason.bucket is not None and detailed.reason.trace
        assert reason.description == f"Matched condition 0, variant {fast.value!r}."

    def test_descriptions_do_not_depend_on_the_caller(self) -> None:
        snapshot = snap(flag("f", cond(prop("plan", "pro"), prop("email", "x", "icontains"))))
        one = evaluate(snapshot, "f", EvaluationContext("a"), detail=False)
        other = evaluate(
            snapshot, "f", EvaluationContext("b", person_properties={"plan": "pro"}), detail=False
        )
        assert one.reason.inconclusive is other.reason.inconclusive is _MISSING
        assert one.reason.description == other.reason.description
        missing = evaluate(snapshot, "nope", EvaluationContext("a"), detail=False)
        assert missing.reason.inconclusive is InconclusiveReason.FLAG_MISSING
        assert "nope" not in missing.reason.description
        assert "nope" in evaluate(snapshot, "nope", EvaluationContext("a")).reason.description

    def test_results_are_shared_but_right_for_each_caller(self) -> None:
        snapshot = snap(flag("f", cond(prop("plan", "pro"))))
        ctx_pro = EvaluationContext("a", person_properties={"plan": "pro"})
        ctx_free = EvaluationContext("a", person_properties={"plan": "free"})
        first = evaluate(snapshot, "f", ctx_pro, detail=False)
        assert evaluate(snapshot, "f", ctx_free, detail=False).value is False
        assert evaluate(snapshot, "f", ctx_pro, detail=False) == first
        assert first.value is True

    def test_a_server_requirement_keeps_a_stronger_definition_problem(self) -> None:
        snapshot = snap(
            flag("base", cond(cohort(404))),
            flag("f", cond(depends("base", True)), cond(prop("b", "x", "near"))),
        )
        result = run(snapshot, "f")
        assert result.reason.inconclusive is InconclusiveReason.REQUIRES_SERVER
        assert result.reason.unresolved is InconclusiveReason.UNSUPPORTED_DEFINITION

    def test_mixed_group_without_properties_in_raw_mode(self) -> None:
        body = flag(
            "m",
            cond(prop("plan", "pro"), aggregation_group_type_index=0),
            cond(prop("email", "a@b.c")),
        )
        snapshot = snap(body, group_type_mapping={"0": "company"})
        ctx = EvaluationContext("u", groups={"company": "acme"}, person_properties={"email": "x"})
        raw = evaluate_every_way(snapshot, "m", ctx, implicit_properties=False)
        assert raw.reason.inconclusive is _MISSING and raw.reason.failed_filter is None
        implicit = evaluate_every_way(snapshot, "m", ctx)  # the group has $group_key, not plan
        assert implicit.reason.inconclusive is _MISSING
        assert implicit.reason.failed_filter is not None
        assert implicit.reason.failed_filter.key == "plan"

    @pytest.mark.parametrize(
        "conditions",
        [
            [cond(prop("a", 1), prop("b", "x", "near"))],  # within a condition
            [cond(prop("b", "x", "near")), cond(prop("a", 1))],  # across conditions
            [cond(prop("a", 1)), cond(prop("b", "x", "near"))],
        ],
    )
    def test_the_strongest_doubt_wins(self, conditions: List[Dict[str, Any]]) -> None:
        result = run(snap(flag("f", *conditions)), "f")
        assert result.reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION

    def test_mixed_targeting_variant_uses_the_group_key(self) -> None:
        body = flag("mv", cond(aggregation_group_type_index=0), multivariate=VARIANTS, payloads={})
        snapshot = snap(body, group_type_mapping={"0": "company"})
        for i in range(20):
            result = run(snapshot, "mv", "person", groups={"company": f"co-{i}"})
            bucket = flag_hash("mv", f"co-{i}", "variant")
            assert result.value == ("control" if bucket < 0.5 else "test")

    def test_holdout(self) -> None:
        snapshot = snap(flag("f", holdout={"id": 1, "exclusion_percentage": 50}))
        values = {run(snapshot, "f", f"u{i}").value for i in range(20)}
        assert values == {True, "holdout-1"}

    def test_early_exit_and_out_of_rollout(self) -> None:
        body = flag("f", cond(rollout=0), cond(prop("plan", "pro")), early_exit=True)
        result = run(snap(body), "f", person_properties={"plan": "pro"})
        assert result.reason.code is ReasonCode.EARLY_EXIT and result.reason.condition_index == 0
        body = flag("f", cond(prop("x", 1)), cond(rollout=0), early_exit=True)
        assert run(snap(body), "f").reason.inconclusive is _MISSING
        body = flag("f", cond(rollout=0), cond(rollout=0))
        result = run(snap(body), "f")
        assert result.reason.code is ReasonCode.OUT_OF_ROLLOUT
        assert result.reason.condition_index == 0


class TestPayloadOf:
    PAYLOADS = {"true": '{"a": [1, {"b": 2}]}', "test": '"t"', "false": '"never"'}

    def test_payload_for_true_or_a_variant(self) -> None:
        snapshot = snap(flag("f", payloads=self.PAYLOADS))
        assert payload_of(snapshot, "f", True) == {"a": [1, {"b": 2}]}
        assert payload_of(snapshot, "f", "test") == "t"
        for value in (False, None, 1, "other"):
            assert payload_of(snapshot, "f", value) is None, value
        assert payload_of(snapshot, "nope", True) is None
        assert payload_of(Snapshot.empty(), "f", True) is None

    def test_each_call_gets_its_own_object(self) -> None:
        snapshot = snap(flag("f", payloads=self.PAYLOADS))
        first = payload_of(snapshot, "f", True)
        first["a"][1]["b"] = 3
        assert payload_of(snapshot, "f", True) == {"a": [1, {"b": 2}]}


class TestEvaluateValues:
    def test_values_in_definition_order_with_none_for_unknown(self) -> None:
        snapshot = snap(
            flag("b"), flag("a", cond(rollout=0)), flag("c", cond(prop("plan", "pro"))),
            flag("d", cond(depends("b", True)), multivariate=VARIANTS),
        )  # fmt: skip
        values = evaluate_values(snapshot, EvaluationContext("u"))
        assert list(values) == ["b", "a", "c", "d"]
        assert values["b"] is True and values["a"] is False and values["c"] is None
        assert values["d"] in ("control", "test")
        results = evaluate_all(snapshot, EvaluationContext("u"))
        assert values == {key: result.value for key, result in results.items()}

    def test_nothing_loaded_and_bad_contexts(self) -> None:
        assert evaluate_values(Snapshot.empty(), EvaluationContext("u")) == {}
        snapshot = snap(flag("f", cond(prop("plan", "x"))), flag("g"))
        assert evaluate_values(snapshot, None) == {"f": None, "g": None}  # type: ignore[arg-type]
        fast = evaluate_all(snapshot, None, detail=False)  # type: ignore[arg-type]
        assert fast["f"].reason.code is ReasonCode.ERROR

    def test_dependencies_are_evaluated_once_per_call(self, monkeypatch: Any) -> None:
        snapshot = snap(
            flag("top", cond(depends("mid", True, ["base", "mid"]))),
            flag("mid", cond(depends("base", True))),
            flag("base"),
            flag("other", cond(depends("base", True))),
        )
        calls: List[str] = []
        original = evaluator.walk

        def counting(compiled: Any, ctx: Any, ev: Any, tracer: Any) -> FlagResult:
            calls.append(compiled.key)
            return original(compiled, ctx, ev, tracer)

        monkeypatch.setattr(evaluator, "walk", counting)  # dependencies
        monkeypatch.setattr(calls_module, "walk", counting)  # flags evaluated directly
        values = evaluate_values(snapshot, EvaluationContext("u"))
        assert values == {"top": True, "mid": True, "base": True, "other": True}
        assert sorted(calls) == ["base", "mid", "other", "top"]
        assert list(evaluate_all(snapshot, EvaluationContext("u"), detail=False)) == list(values)


class TestImplicitProperties:
    def test_distinct_id_fills_in_only_when_absent(self) -> None:
        snapshot = snap(flag("f", cond(prop("distinct_id", "user-1"))))
        assert run(snapshot, "f").value is True
        props = {"plan": "pro"}
        assert run(snapshot, "f", person_properties=props).value is True
        assert props == {"plan": "pro"}  # the caller's dict is never changed
        assert run(snapshot, "f", person_properties={"distinct_id": "other"}).value is False
        assert run(snapshot, "f", "someone-else").value is False

    def test_distinct_id_read_through_a_cohort_or_by_a_dependency(self) -> None:
        cohorts = {"1": {"type": "AND", "values": [prop("distinct_id", "user-1")]}}
        snapshot = snap(
            flag("c", cond(cohort(1))), flag("d", cond(depends("c", True))), cohorts=cohorts
        )
        assert snapshot.flags["c"].reads_distinct_id
        assert not snapshot.flags["d"].reads_distinct_id
        assert run(snapshot, "c").value is True and run(snapshot, "d").value is True
        assert run(snapshot, "d", "user-2").value is False
        assert evaluate_values(snapshot, EvaluationContext("user-1")) == {"c": True, "d": True}

    def test_group_key_fills_in_only_when_absent(self) -> None:
        body = flag("g", cond(prop("$group_key", "acme")), aggregation_group_type_index=0)
        snapshot = snap(body, group_type_mapping={"0": "company"})
        company = {"company": "acme"}
        assert run(snapshot, "g", groups=company).value is True
        given = {"company": {"$group_key": "other"}}
        assert run(snapshot, "g", groups=company, group_properties=given).value is False
        assert given == {"company": {"$group_key": "other"}}
        ctx = EvaluationContext("u", groups=company, group_properties={"company": {}})
        result = evaluate_every_way(snapshot, "g", ctx, implicit_properties=False)
        assert result.reason.inconclusive is _MISSING

    def test_flags_that_do_not_read_them_see_the_callers_properties(self) -> None:
        snapshot = snap(
            flag("plain", cond(prop("plan", "pro"))),
            flag("who", cond(prop("distinct_id", "u"))),
            flag("unset", cond(prop("distinct_id", "", "is_not_set"))),
        )
        ctx = EvaluationContext("u", person_properties={"plan": "pro"})
        assert evaluate_values(snapshot, ctx) == {"plain": True, "who": True, "unset": False}
        for key in snapshot.flags:
            evaluate_every_way(snapshot, key, ctx)


_MISSING = InconclusiveReason.MISSING_CONTEXT


# --- explain ---------------------------------------------------------------------------------


class TestExplain:
    def test_match_shows_filters_rollout_and_variant(self) -> None:
        snapshot = snap(
            flag("mv", cond(prop("plan", "pro"), rollout=100), multivariate=VARIANTS,
                 payloads={"control": '{"a": 1}', "test": '{"a": 1}'})
        )  # fmt: skip
        text = explain(run(snapshot, "mv", person_properties={"plan": "PRO"}))
        lines = text.splitlines()
        assert lines[0].startswith("Flag 'mv' (id 1, version 4): '")
        assert "reason: condition_match: Matched condition 0, variant" in text
        assert "[PASS] person 'plan' exact 'pro'  (value 'PRO')" in text
        assert "rollout: everyone" in text
        assert "variant bucket" in text and "in [" in text
        assert 'payload: {"a": 1}' in text
        assert "evaluated: locally" in text

    def test_out_of_rollout_shows_bucket_against_threshold(self) -> None:
        text = explain(run(snap(flag("f", cond(rollout=0))), "f"))
        assert "out_of_rollout_bound" in text
        assert "> threshold 0.000000 (0%)" in text

    def test_inconclusive_names_reason_and_filter(self) -> None:
        snapshot = snap(flag("f", cond(prop("plan", "pro"), prop("country", "US"))))
        text = explain(run(snapshot, "f", person_properties={"plan": "pro"}))
        assert "Flag 'f' (id 1, version 4): unknown" in text
        assert "inconclusive: missing_context" in text
        assert "filter: person 'country' exact 'US'" in text
        assert "[ ?? ] person 'country' exact 'US' - property not supplied" in text
        assert "evaluated: not decided locally" in text

    def test_requires_server_shows_both_reasons(self) -> None:
        text = explain(run(snap(flag("f", cond(cohort(404)))), "f"))
        assert "inconclusive: requires_server (unsupported_definition)" in text
        assert "[SRVR] cohort 'id' exact 404" in text

    def test_special_results_explain_themselves(self) -> None:
        assert "not loaded" in explain(run(Snapshot.empty(), "f"))
        assert "No flag with key 'f'" in explain(run(snap(), "f"))
