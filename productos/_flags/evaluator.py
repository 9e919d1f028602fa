"""Local flag evaluation: one decision procedure over a compiled, immutable ``Snapshot``.

:func:`evaluate` reproduces the server's result for one flag, or says precisely why it cannot
(an *inconclusive* result, which the caller resolves remotely). It does no I/O and no logging,
writes nothing itself and never raises: every outcome, an internal error included, comes back
as a ``FlagResult``. The one write a read can cause is the snapshot's own: the first read of
a flag (or of a flag it depends on) compiles it, once, under the compile lock
(:mod:`productos._flags.lazy`), and that is the only lock an evaluation can take. A reader
cannot observe it: the compiled form depends only on the document and is never replaced.

:func:`walk` decides a flag in one pass. With a :class:`~productos._flags.tracer.Tracer` it
also records the explanation; without one (``detail=False``) it returns the value-only results
the compiler built into the flag's plan, so such an evaluation allocates almost nothing.

The rules are those of PostHog's flags service as observed through its official Python SDK
(``docs/protocol.md`` §4); the conformance vectors in ``tests/data`` pin them down.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Dict, Mapping, Optional, Set, Tuple, Union

from productos._flags.dates import parse_date_value
from productos._flags.filters import CohortFilter, FilterSpec, FlagDependencyFilter, PropertyGroup
from productos._flags.hashing import HOLDOUT_HASHER, bucket_of_digest
from productos._flags.matchers import (
    ABSENT,
    CYCLE,
    PROPERTY_MATCHERS,
    Outcome,
    Undecided,
    stronger,
    unsupported,
)
from productos._flags.results import (
    RANK,
    Context,
    FlagResult,
    InconclusiveReason,
    make_result,
)
from productos._flags.results import TraceOutcome as _T
from productos._flags.snapshot import CompiledFlag, Condition, Snapshot, unknown_reason
from productos._flags.tracer import Tracer, describe

__all__ = ["STATELESS", "Evaluation", "new_evaluation", "walk"]

_UTC = _dt.timezone.utc
_EC = InconclusiveReason.EXPERIENCE_CONTINUITY
_UNSUPPORTED = InconclusiveReason.UNSUPPORTED_DEFINITION
_UNRESOLVED = InconclusiveReason.UNRESOLVED_DEPENDENCY
_MISSING = InconclusiveReason.MISSING_CONTEXT
_REQUIRES_SERVER = InconclusiveReason.REQUIRES_SERVER
_EC_TEXT = "Experience continuity is enabled: only the server can evaluate this flag."

# Group properties in implicit mode when the caller passed none (never mutated).
_NO_PROPERTIES: Mapping[str, Any] = {}


class Evaluation:
    """State of one evaluate()/evaluate_all()/evaluate_values() call (never of the snapshot).

    Created on first use: the person properties with ``distinct_id`` added (only for flags
    whose filters read it), group properties with ``$group_key``, the clock, dates parsed from
    property values, cohort outcomes, and ``decided``: the results of flags others depend on.
    ``root`` is the flag evaluated at the top level; with ``stack`` (the dependencies being
    evaluated below it) it detects cycles. All of it is dropped with the call.
    """

    # Class-level defaults: an instance sets only what differs (see new_evaluation()).
    implicit = True  # add distinct_id and $group_key to the caller's properties
    detail = False  # explain (trace, payload) or values only
    root = ""
    decided: Optional[Dict[str, FlagResult]] = None
    stack: Optional[Set[str]] = None
    _person: Optional[Mapping[str, Any]] = None
    _groups: Optional[Dict[str, Mapping[str, Any]]] = None
    _now: Optional[_dt.datetime] = None
    _dates: Optional[Dict[str, Optional[Union[_dt.datetime, _dt.date]]]] = None
    _cohorts: Optional[Dict[Tuple[str, int], Outcome]] = None
    _cohort_table: Optional[Mapping[str, Any]] = None
    snapshot: Snapshot
    ctx: Context  # an EvaluationContext, or the client's cheaper CallContext

    def now(self) -> _dt.datetime:
        """The evaluation time (aware), read once per call."""
        if self._now is None:
            now = self.ctx.now or _dt.datetime.now(_UTC)
            self._now = now if now.tzinfo is not None else now.replace(tzinfo=_UTC)
        return self._now

    def date_value(self, value: Any) -> Optional[Union[_dt.datetime, _dt.date]]:
        """A property value as a date; text is parsed once per call, however many flags read it."""
        if value.__class__ is not str:
            return parse_date_value(value, self.now)
        dates = self._dates
        if dates is None:
            dates = self._dates = {}
        if value in dates:
            return dates[value]
        parsed = dates[value] = parse_date_value(value, self.now)
        return parsed

    def cohort(self, cohort_id: str, props: Mapping[str, Any]) -> Outcome:
        """Whether ``props`` are in a cohort; decided once per call for each set of properties."""
        table = self._cohort_table
        if table is None:
            # The loaded mapping behind a lazily compiled snapshot's cohorts, read once per call.
            cohorts = self.snapshot.cohorts
            loaded = getattr(cohorts, "mapping", None)
            table = self._cohort_table = cohorts if loaded is None else loaded()
        group = table[cohort_id]
        if not group.short_circuit:  # it reads other flags or cohorts: decide it every time
            return _match_group(group, props, self)
        cache = self._cohorts
        if cache is None:
            cache = self._cohorts = {}
        # The property mappings live as long as the call, so their ids identify them here.
        key = (cohort_id, id(props))
        outcome = cache.get(key)
        if outcome is None:
            outcome = cache[key] = _match_group(group, props, self)
        return outcome

    def person(self, flag: CompiledFlag) -> Mapping[str, Any]:
        """The person properties ``flag`` sees: the caller's, plus ``distinct_id`` if it reads."""
        person = self.ctx.person_properties
        if flag.reads_distinct_id and self.implicit and "distinct_id" not in person:
            # The server knows the person's distinct_id; locally it must be supplied. Only a
            # flag that reads it pays for the copy, once per call.
            if self._person is None:
                self._person = {**person, "distinct_id": self.ctx.distinct_id}
            return self._person
        return person

    def group_properties(self, group_type: str, flag: CompiledFlag) -> Optional[Mapping[str, Any]]:
        """A passed group's properties plus ``$group_key`` (raw mode: as given, maybe None)."""
        given = self.ctx.group_properties.get(group_type)
        if not self.implicit:
            return given
        base = given or _NO_PROPERTIES
        if not flag.reads_group_key or "$group_key" in base:
            return base
        cache = self._groups
        if cache is None:
            cache = self._groups = {}
        full = cache.get(group_type)
        if full is None:
            full = cache[group_type] = {**base, "$group_key": self.ctx.groups[group_type]}
        return full

    def dependency(self, key: str) -> Optional[FlagResult]:
        """Result of a flag another flag depends on; None when that would be a cycle."""
        decided = self.decided
        if decided is None:
            decided = self.decided = {}
        result = decided.get(key)
        if result is not None:
            return result
        stack = self.stack
        if stack is None:
            stack = self.stack = set()
        if key == self.root or key in stack:
            return None
        stack.add(key)
        try:
            flag = self.snapshot.lookup(key) or self.snapshot.flags[key]
            result = walk(flag, self.ctx, self, Tracer(flag) if self.detail else None)
        finally:
            stack.discard(key)
        decided[key] = result
        return result


_new_object = object.__new__


def new_evaluation(
    snapshot: Snapshot, ctx: Context, implicit: bool, detail: bool, root: str
) -> Evaluation:
    # Per call, so without an __init__ frame: most calls differ from the defaults in nothing
    # but the snapshot, the context and the root.
    ev: Evaluation = _new_object(Evaluation)
    ev.snapshot = snapshot
    ev.ctx = ctx
    ev.root = root
    if detail:
        ev.detail = True
    if not implicit:
        ev.implicit = False
    return ev


# Passed instead of a call's state for flags that need none (their plan says so): it has no
# snapshot or context, so a wrong plan would fail loudly rather than answer wrongly.
STATELESS: Evaluation = _new_object(Evaluation)


# --- cohorts and dependencies -----------------------------------------------------------------


def _match_cohort(spec: CohortFilter, props: Mapping[str, Any], ev: Evaluation) -> Outcome:
    if spec.missing:
        return Undecided(_UNSUPPORTED, True, spec.problem or "cohort not available locally")
    if spec.problem is not None:
        return unsupported(spec)
    if spec.requires_server is not None:
        return Undecided(_UNSUPPORTED, True, spec.requires_server)
    outcome = ev.cohort(spec.cohort_id, props)
    if outcome is True or outcome is False:
        return outcome != spec.negate
    return outcome


def _match_group(group: PropertyGroup, props: Mapping[str, Any], ev: Evaluation) -> Outcome:
    if group.problem is not None:
        return Undecided(_UNSUPPORTED, True, group.problem)
    is_and = group.is_and
    decisive: Optional[bool] = None
    undecided: Optional[Undecided] = None
    matchers = PROPERTY_MATCHERS
    for negated, node in group.entries:
        matcher = matchers.get(node.__class__)
        if matcher is not None:  # _match_filter(), inlined for the common case
            outcome = matcher(node, props.get(node.key, ABSENT), ev)  # type: ignore[union-attr]
        elif isinstance(node, PropertyGroup):
            outcome = _match_group(node, props, ev)
        else:
            outcome = _match_filter(node, props, ev)
        if outcome is True or outcome is False:
            effective = outcome != negated
            if effective != is_and:
                # AND found a non-match / OR found a match. Keep scanning only when a later
                # entry could still send the whole flag to the server.
                if group.short_circuit:
                    return effective
                decisive = effective
        elif outcome.server:
            return outcome
        else:
            undecided = stronger(undecided, outcome)
    if decisive is not None:
        return decisive
    if undecided is not None:
        return undecided
    return is_and


def _match_dependency(
    spec: FlagDependencyFilter, props: Mapping[str, Any], ev: Evaluation
) -> Outcome:
    if spec.malformed:
        return False  # the server treats a malformed dependency condition as not matching
    if spec.problem is not None:
        return unsupported(spec)
    for key in spec.chain:
        result = ev.dependency(key)
        if result is None:
            return CYCLE
        if result.value is None:
            server = result.reason.inconclusive is _REQUIRES_SERVER
            return Undecided(_UNRESOLVED, server, f"flag {key!r} could not be evaluated locally")
    assert ev.decided is not None  # filled by ev.dependency() for every key of the chain
    actual = ev.decided[spec.key].value
    expected = spec.value
    if isinstance(actual, str) and actual:
        if isinstance(expected, bool):
            return expected  # any variant counts as enabled
        return isinstance(expected, str) and actual == expected  # variants are case-sensitive
    return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected


def _match_filter(spec: Any, props: Mapping[str, Any], ev: Evaluation) -> Outcome:
    matcher = PROPERTY_MATCHERS.get(spec.__class__)
    if matcher is not None:
        return matcher(spec, props.get(spec.key, ABSENT), ev)
    if isinstance(spec, CohortFilter):
        return _match_cohort(spec, props, ev)
    if isinstance(spec, FlagDependencyFilter):
        return _match_dependency(spec, props, ev)
    return unsupported(spec)  # pragma: no cover - every compiled filter kind is handled above


# The tests of the filters that read more than one property value.
_SPECIAL_MATCHERS: Dict[type, Callable[[Any, Mapping[str, Any], Evaluation], Outcome]] = {
    CohortFilter: _match_cohort,
    FlagDependencyFilter: _match_dependency,
}


# --- the decision procedure -------------------------------------------------------------------


def _unknown(flag: CompiledFlag, unresolved: InconclusiveReason, server: bool) -> FlagResult:
    """The value-only result of a flag that cannot be decided locally."""
    if unresolved is _MISSING and not server:
        return flag.plan.missing
    reason = unknown_reason(unresolved, server)
    return make_result(flag.key, None, None, None, False, flag.id, flag.version, reason)


def walk(
    flag: CompiledFlag, ctx: Context, ev: Evaluation, tracer: Optional[Tracer]
) -> FlagResult:
    """Decide one flag; with a tracer, return the explained result, else the value-only one.

    ``ev`` may be :data:`STATELESS` for a flag whose plan says it needs no call state.
    """
    plan = flag.plan
    if plan.plain:  # the common case: none of the special cases below applies
        bucketing: Any = ctx.distinct_id
        props = ctx.person_properties
    else:
        if not flag.active:
            assert plan.disabled is not None
            return plan.disabled  # the explained result says no more than this one
        if flag.ensure_experience_continuity:
            if tracer is None:
                return _unknown(flag, _EC, False)
            return tracer.unknown(_EC, False, _EC_TEXT)
        if flag.malformed is not None:
            if tracer is None:
                return _unknown(flag, _UNSUPPORTED, False)
            text = f"The definition is malformed: {flag.malformed}."
            return tracer.unknown(_UNSUPPORTED, False, text)
        if flag.aggregation_index is not None:
            group_type = flag.group_type
            if group_type is None:
                if tracer is None:
                    return _unknown(flag, _UNSUPPORTED, False)
                text = f"Group type index {flag.aggregation_index!r} is not in group_type_mapping."
                return tracer.unknown(_UNSUPPORTED, False, text)
            if group_type not in ctx.groups:
                # The server would answer false too, so there is nothing to ask it.
                assert plan.no_group is not None
                return plan.no_group
            if flag.reads_group_key or not ev.implicit:
                group_props = ev.group_properties(group_type, flag)
            else:  # ev.group_properties() for what most group flags read, without the call
                group_props = ctx.group_properties.get(group_type) or _NO_PROPERTIES
            if group_props is None:
                if tracer is None:
                    return _unknown(flag, _MISSING, False)
                text = f"No properties were passed for the {group_type!r} group."
                return tracer.unknown(_MISSING, False, text)
            props = group_props
            bucketing = ctx.groups[group_type]
        elif flag.bucket_by_device:
            bucketing = ctx.device_id
            if not bucketing:
                # Nothing is checked without a bucketing value, so a problem in the definition
                # itself is the stronger reason.
                cause = flag.local_reason or _MISSING
                if tracer is None:
                    return _unknown(flag, cause, False)
                text = "The flag buckets by device_id and no device_id was passed."
                return tracer.unknown(cause, False, text)
            props = ev.person(flag) if flag.reads_distinct_id else ctx.person_properties
        else:
            bucketing = ctx.distinct_id
            props = ev.person(flag) if flag.reads_distinct_id else ctx.person_properties
        if flag.feature_enrollment:
            if flag.aggregation_index is not None:
                if tracer is None:
                    return _unknown(flag, _UNSUPPORTED, False)
                text = "Feature enrollment reads person properties, but this is a group flag."
                return tracer.unknown(_UNSUPPORTED, False, text)
            enrollment_key = f"$feature_enrollment/{flag.key}"
            enrolled = props.get(enrollment_key, ABSENT)
            if enrolled is ABSENT:
                if tracer is None:
                    return _unknown(flag, _MISSING, False)
                text = f"Person property {enrollment_key!r} was not passed."
                return tracer.unknown(_MISSING, False, text)
            result = plan.enrolled if enrolled is True or enrolled == "true" else plan.not_enrolled
            assert result is not None
            if tracer is None:
                return result
            text = f"Early-access enrollment property {enrollment_key!r} is {enrolled!r}."
            return tracer.decided(result, description=text)
        if bucketing.__class__ is not str:
            bucketing = str(bucketing)
        holdout = flag.holdout
        if holdout is not None:
            # Held-out values never reach the release conditions.
            if holdout.everyone:
                digest = None
            else:
                h = HOLDOUT_HASHER.copy()
                h.update(bucketing.encode())
                digest = h.digest()
            if digest is None or digest < holdout.kept_from:
                assert plan.held_out is not None
                if tracer is None:
                    return plan.held_out
                held = None if digest is None else bucket_of_digest(digest)
                return tracer.decided(plan.held_out, bucket=held)
    if bucketing.__class__ is not str:
        bucketing = str(bucketing)

    undecided: Optional[Undecided] = None  # the strongest doubt among undecided conditions
    out_of_rollout: Optional[FlagResult] = None
    # Set together with the two above (read only when they are): the filter behind the doubt,
    # and the bucket that was outside the rollout.
    undecided_spec: Optional[FilterSpec]
    out_bucket: Optional[float]
    for cond, mixed, probes, cut, matched, variants, outside in plan.conditions:
        cond_props = props
        if mixed:
            # Mixed targeting: this condition is about a group, not the flag's own subject.
            group_type = cond.group_type
            groups = ctx.groups
            if group_type is None or group_type not in groups:
                if tracer is not None:
                    detail = "group type unknown" if group_type is None else "group not passed"
                    tracer.condition(cond, _T.SKIPPED, group_type, None, detail)
                continue
            group_props = ev.group_properties(group_type, flag)
            if group_props is None:
                missing = Undecided(_MISSING, False, f"no properties passed for {group_type!r}")
                if tracer is not None:
                    tracer.condition(cond, _T.INCONCLUSIVE, group_type, _MISSING, missing.detail)
                if undecided is None or RANK[_MISSING] < RANK[undecided.reason]:
                    undecided, undecided_spec = missing, None
                continue
            cond_props = group_props
            group_key = groups[group_type]
            if group_key.__class__ is not str:
                group_key = str(group_key)

        # Filters have no defined order, so an undecided one does not stop the loop: a later
        # definite non-match still rules the condition out.
        doubt: Optional[Undecided] = None
        # Set with the first doubt (read only when there is one): only a server requirement
        # met before any other doubt stops the whole flag.
        server: Optional[Undecided]
        server_spec: FilterSpec
        doubt_spec: FilterSpec
        for key, matcher, spec in probes:
            if matcher is not None:
                value = cond_props.get(key, ABSENT)
                outcome = matcher(spec, value, ev)
            else:  # a cohort or a flag dependency
                value = ABSENT
                outcome = _SPECIAL_MATCHERS.get(spec.__class__, _match_filter)(
                    spec, cond_props, ev
                )
            if tracer is not None:
                tracer.filter(spec, outcome, value)
            if outcome is True:
                continue
            if outcome is False:
                break
            if doubt is None:
                doubt = server = outcome
                doubt_spec = server_spec = spec
                if not outcome.server:
                    server = None
            elif RANK[outcome.reason] < RANK[doubt.reason]:
                doubt, doubt_spec = outcome, spec
        else:
            if doubt is not None:
                if server is not None:
                    unresolved = server.reason
                    stated = flag.local_reason
                    if stated is not None and RANK[stated] < RANK[unresolved]:
                        unresolved = stated
                    if tracer is None:
                        return _unknown(flag, unresolved, True)
                    tracer.condition(
                        cond, _T.REQUIRES_SERVER, _switched(cond, mixed), server.reason,
                        server.detail,
                    )  # fmt: skip
                    text = describe(server, server_spec)
                    return tracer.unknown(unresolved, True, text, server_spec)
                if tracer is not None:
                    tracer.condition(
                        cond, _T.INCONCLUSIVE, _switched(cond, mixed), doubt.reason, doubt.detail
                    )
                if undecided is None or RANK[doubt.reason] < RANK[undecided.reason]:
                    undecided, undecided_spec = doubt, doubt_spec
                continue

            if cut is None and variants is None:  # everyone is in, and no bucketed variant
                if tracer is None:
                    return matched
                tracer.matched(cond, _switched(cond, mixed), None, cond.variant)
                return tracer.decided(matched)
            subject = group_key if mixed else bucketing
            # The bucket as a number only for an explanation: the plan's edges are digests.
            rolled: Optional[float] = None
            if cut is not None:
                h = flag.hasher.copy()  # the digest hashing.bucket() reads, inlined
                h.update(subject.encode())
                digest = h.digest()
                if tracer is not None:
                    rolled = bucket_of_digest(digest)
                if digest >= cut:
                    assert outside is not None  # built whenever there is a cut
                    if tracer is not None:
                        bucket_value = bucket_of_digest(digest)
                        tracer.out_of_rollout(cond, _switched(cond, mixed), bucket_value)
                    if flag.early_exit:
                        # Properties matched and only the rollout excluded: later conditions
                        # cannot change the outcome, unless an earlier one was undecided.
                        if undecided is not None:
                            break
                        return outside if tracer is None else tracer.decided(outside, bucket=rolled)
                    if out_of_rollout is None:
                        out_of_rollout, out_bucket = outside, rolled
                    continue
            if variants is None:
                if tracer is None:
                    return matched
                tracer.matched(cond, _switched(cond, mixed), rolled, cond.variant)
                return tracer.decided(matched, bucket=rolled)
            h = flag.hasher.copy()
            h.update((subject + "variant").encode())
            digest = h.digest()
            for first, past, result, variant in variants:
                if first <= digest < past:
                    if tracer is None:
                        return result
                    tracer.matched(
                        cond, _switched(cond, mixed), rolled, variant.key,
                        bucket_of_digest(digest), (variant.start, variant.end),
                    )  # fmt: skip
                    return tracer.decided(result, bucket=rolled)
            if tracer is None:
                return matched
            tracer.matched(cond, _switched(cond, mixed), rolled, None, bucket_of_digest(digest))
            return tracer.decided(matched, bucket=rolled)
        if tracer is not None:  # a filter did not match
            tracer.condition(cond, _T.NO_MATCH, _switched(cond, mixed))

    if undecided is not None:
        if tracer is None:
            return _unknown(flag, undecided.reason, False)
        text = describe(undecided, undecided_spec)
        return tracer.unknown(undecided.reason, False, text, undecided_spec)
    if out_of_rollout is not None:
        if tracer is None:
            return out_of_rollout
        return tracer.decided(out_of_rollout, bucket=out_bucket)
    if tracer is None:
        return plan.no_match
    return tracer.decided(plan.no_match, failed=tracer.first_failed)


def _switched(cond: Condition, mixed: bool) -> Optional[str]:
    """The group type a mixed-targeting condition switched to, for the explanation."""
    return cond.group_type if mixed else None
