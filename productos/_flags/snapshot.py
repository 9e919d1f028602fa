"""The compiled definitions: immutable flags, conditions and the snapshot that holds them.

A :class:`CompiledFlag` also carries its :class:`FlagPlan`: what the evaluator reads on every
call, derived from the definition when the flag is built (the filter tests to run per
condition, the rollout cut, the variant table) together with every result a value-only
evaluation can return that does not depend on who is evaluated. Nothing is written to these
objects after construction, so one snapshot is safely shared by every thread.
"""

from __future__ import annotations

import functools
from dataclasses import field
from types import MappingProxyType
from typing import Any, Callable, Dict, FrozenSet, Mapping, NamedTuple, Optional, Tuple, Union

from productos._flags.filters import (
    CohortFilter,
    DateFilter,
    FilterSpec,
    FlagDependencyFilter,
    PropertyGroup,
)
from productos._flags.hashing import digests_where
from productos._flags.matchers import Matcher, matcher_for
from productos._flags.payloads import Payload
from productos._flags.results import (
    FlagResult,
    InconclusiveReason,
    Reason,
    ReasonCode,
    make_reason,
)
from productos._runtime.records import record

__all__ = [
    "EMPTY",
    "CompiledFlag",
    "Condition",
    "ConditionPlan",
    "FlagPlan",
    "Holdout",
    "Snapshot",
    "Variant",
    "unknown_reason",
]

EMPTY: Mapping[str, Any] = MappingProxyType({})


@record(frozen=True, slots=True)
class Variant:
    """One multivariate variant and its bucket range [start, end)."""

    key: str
    rollout_percentage: float
    start: float
    end: float


@record(frozen=True, slots=True)
class Holdout:
    """A holdout group: buckets at or below ``fraction`` get ``value`` (``holdout-<id>``)."""

    id: Any
    exclusion_percentage: float
    fraction: float
    everyone: bool
    value: str
    kept_from: bytes  # holdout digests below it are held out (their bucket <= fraction)


@record(frozen=True, slots=True)
class Condition:
    """One release condition, in definition order."""

    index: int
    filters: Tuple[FilterSpec, ...]
    rollout_percentage: Optional[float]
    threshold: Optional[float]  # rollout_percentage / 100; None means everyone
    variant: Optional[str]  # the override, only when it names a real variant
    requested_variant: Any  # what the definition asked for, for explanations
    switches_group: bool  # its aggregation differs from the flag's (mixed targeting)
    aggregation_index: Any
    group_type: Optional[str]  # the group type switched to, when known
    description: str = ""  # "Matched condition <index>.", for reasons


# A filter as the evaluator runs it: (property key, the test for property filters or None for
# cohort and dependency filters, the filter).
Probe = Tuple[Any, Optional[Matcher], FilterSpec]
# A variant as the evaluator picks it: the digests of its bucket range [first, past), its
# value-only result, and the variant (for explanations).
VariantSlot = Tuple[bytes, bytes, FlagResult, Variant]


class ConditionPlan(NamedTuple):
    """What the evaluator reads for one condition, with its value-only results built."""

    condition: Condition
    mixed: bool  # about a group rather than the flag's own subject (mixed targeting)
    probes: Tuple[Probe, ...]
    cut: Optional[bytes]  # below 100 %: digests at or above it are outside the rollout
    matched: FlagResult  # matched with the override variant, or True
    variants: Optional[Tuple[VariantSlot, ...]]  # the variant comes from the bucket
    outside: Optional[FlagResult]  # matched but outside the rollout (there is a cut)


@record(frozen=True, slots=True)
class FlagPlan:
    """A flag's evaluation plan; the results are those of value-only evaluations."""

    plain: bool  # active, person-bucketed by distinct_id, no special case applies, and no
    # filter reads the implicit "distinct_id" property (the caller's properties are used as given)
    stateful: bool  # reads the call's state: implicit properties, groups, dates, other flags
    conditions: Tuple[ConditionPlan, ...]
    no_match: FlagResult
    missing: FlagResult  # undecided for want of a property (the common undecided outcome)
    disabled: Optional[FlagResult]  # the results below exist when the flag can reach them
    no_group: Optional[FlagResult]
    held_out: Optional[FlagResult]
    enrolled: Optional[FlagResult]
    not_enrolled: Optional[FlagResult]


@record(frozen=True, eq=False, slots=True)  # identity equality: cheap, hashable
class CompiledFlag:
    """A flag ready for evaluation. ``local_problem`` says why it cannot be decided locally."""

    key: str
    id: Optional[int]
    version: Optional[int]
    active: bool
    ensure_experience_continuity: bool
    bucket_by_device: bool
    aggregation_index: Any
    group_type: Optional[str]
    feature_enrollment: bool
    early_exit: bool
    holdout: Optional[Holdout]
    conditions: Tuple[Condition, ...]
    variants: Tuple[Variant, ...]
    payloads: Mapping[str, Payload]
    malformed: Optional[str]  # the definition could not be compiled at all
    local_reason: Optional[InconclusiveReason]  # the reason the definition alone implies
    local_problem: Optional[str]  # human sentence for local_reason
    raw: Mapping[str, Any]
    hasher: Any = field(repr=False)  # sha1 already fed f"{key}." (copied per bucket, never mutated)
    # Whether a filter of the flag (or of a cohort it uses) reads the implicit property
    # "distinct_id" / "$group_key": only then does the evaluator add it to the caller's dict.
    reads_distinct_id: bool = True
    reads_group_key: bool = True
    # Derived from the fields above whenever an instance is made (dataclasses.replace too).
    plan: FlagPlan = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "plan", _plan(self))

    @property
    def is_group_flag(self) -> bool:
        """True when the flag aggregates by a group type instead of by person."""
        return self.aggregation_index is not None

    @property
    def evaluable_locally(self) -> bool:
        """True when nothing in the definition forces a server round-trip."""
        return self.local_reason is None


@record(frozen=True, eq=False)  # identity equality: "same snapshot" means the same object
class Snapshot:
    """Immutable compiled definitions; swap the whole object to update.

    ``problems`` lists what was wrong with the definitions (entries skipped, sections of the
    wrong type); ``errors`` lists internal errors of the compiler, each confined to the flag or
    cohort it names (which then goes to the server). A correct compiler leaves it empty.

    ``flags`` may compile each flag on first read (see :mod:`productos._flags.lazy`); nothing
    a reader can observe changes. ``lookup(key)`` returns a flag only if it is compiled already
    (None otherwise), without compiling: the evaluator's hot path, which falls back to
    ``flags.get``.
    """

    flags: Mapping[str, CompiledFlag]
    group_type_mapping: Mapping[str, str]
    cohorts: Mapping[str, PropertyGroup]
    property_matching_version: int
    raw: Mapping[str, Any]
    loaded: bool = True
    problems: Tuple[str, ...] = ()
    # Errors found before any flag compiled (cohorts); see the errors property.
    early_errors: Tuple[str, ...] = ()
    # Flags other flags depend on: an evaluation of every flag keeps their results to share.
    depended_on: FrozenSet[str] = frozenset()
    lookup: Callable[[str], Optional[CompiledFlag]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        flags = self.flags
        object.__setattr__(self, "lookup", getattr(flags, "lookup", None) or flags.get)

    @property
    def errors(self) -> Tuple[str, ...]:
        """Internal compiler errors (cohorts first); reading it compiles every flag."""
        lazy_errors = getattr(self.flags, "errors", None)
        return self.early_errors + (tuple(lazy_errors()) if lazy_errors is not None else ())

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot for 'no definitions loaded yet'."""
        return cls(
            flags=EMPTY,
            group_type_mapping=EMPTY,
            cohorts=EMPTY,
            property_matching_version=1,
            raw=EMPTY,
            loaded=False,
        )


# --- the plan --------------------------------------------------------------------------------
#
# A value-only result differs from the explained one only in trace=(), payload=None,
# bucket=None, failed_filter=None and, for inconclusive and enrollment outcomes, a fixed
# description, so it depends on nothing but the definition and the outcome.

_UNKNOWN_TEXT = {
    InconclusiveReason.EXPERIENCE_CONTINUITY: (
        "Experience continuity is enabled: only the server can evaluate this flag."
    ),
    InconclusiveReason.UNSUPPORTED_DEFINITION: (
        "Local evaluation cannot use part of this definition."
    ),
    InconclusiveReason.UNRESOLVED_DEPENDENCY: (
        "A flag this flag depends on could not be evaluated locally."
    ),
    InconclusiveReason.MISSING_CONTEXT: "The evaluation context lacks something this flag needs.",
}
_SERVER_TEXT = "Only the server can evaluate this flag."

_UNKNOWN_REASONS: Dict[Tuple[InconclusiveReason, bool], Reason] = {
    (unresolved, server): make_reason(
        ReasonCode.INCONCLUSIVE,
        description=_SERVER_TEXT if server else text,
        inconclusive=InconclusiveReason.REQUIRES_SERVER if server else unresolved,
        unresolved=unresolved,
    )
    for unresolved, text in _UNKNOWN_TEXT.items()
    for server in (False, True)
}


def unknown_reason(unresolved: InconclusiveReason, server: bool) -> Reason:
    """The value-only reason for an undecided flag (shared: it names no flag)."""
    return _UNKNOWN_REASONS[unresolved, server]


# Reasons name no flag, so equal ones are shared between flags (and snapshots); bounded, as
# thresholds and variant names vary without limit.
@functools.lru_cache(maxsize=4096, typed=True)
def _shared_reason(
    code: ReasonCode, index: Optional[int], text: str, threshold: Optional[float]
) -> Reason:
    return make_reason(code, index, text, None, threshold)


# Filters whose test reads the call's state (the clock, the cohorts, other flags' results).
_STATEFUL_FILTERS = (DateFilter, CohortFilter, FlagDependencyFilter)


def _known(flag: CompiledFlag, value: Union[bool, str], reason: Reason) -> FlagResult:
    variant = value if value.__class__ is str else None
    # The dataclass __init__, unlike make_result(), leaves the fields in the object itself: a
    # result kept for every outcome of every flag then takes a third of the memory, is one
    # object for the garbage collector instead of two, and reads faster.
    return FlagResult(flag.key, value, variant, None, True, flag.id, flag.version, reason)


def _matched(flag: CompiledFlag, cond: Condition, value: Union[bool, str]) -> FlagResult:
    if value is True:
        text = cond.description or f"Matched condition {cond.index}."
    else:
        text = f"Matched condition {cond.index}, variant {value!r}."
    reason = _shared_reason(ReasonCode.CONDITION_MATCH, cond.index, text, cond.threshold)
    return _known(flag, value, reason)


def _outside(flag: CompiledFlag, cond: Condition) -> FlagResult:
    index = cond.index
    if flag.early_exit:
        code = ReasonCode.EARLY_EXIT
        text = f"Condition {index} matched but is outside its rollout; early exit stops here."
    else:
        code = ReasonCode.OUT_OF_ROLLOUT
        text = f"Condition {index} matched but is outside its rollout."
    return _known(flag, False, _shared_reason(code, index, text, cond.threshold))


def _condition_plan(flag: CompiledFlag, cond: Condition) -> ConditionPlan:
    probes = tuple([(spec.key, matcher_for(spec), spec) for spec in cond.filters])
    threshold = cond.threshold
    cut = digests_where(">", threshold) if threshold is not None and threshold < 1.0 else None
    variants = None
    if not cond.variant and flag.variants:
        variants = tuple([
            (digests_where(">=", v.start), digests_where("!<", v.end),
             _matched(flag, cond, v.key or True), v)
            for v in flag.variants
        ])  # fmt: skip
    return ConditionPlan(
        cond,
        cond.switches_group and cond.aggregation_index is not None,
        probes,
        cut,
        _matched(flag, cond, cond.variant or True),
        variants,
        None if cut is None else _outside(flag, cond),
    )


def _plan(flag: CompiledFlag) -> FlagPlan:
    holdout = flag.holdout
    group_type = flag.group_type
    text = "No condition matched." if flag.conditions else "The flag has no conditions."
    no_match = _known(flag, False, _shared_reason(ReasonCode.NO_CONDITION_MATCH, None, text, None))
    missing = FlagResult(
        flag.key, None, None, None, False, flag.id, flag.version,
        unknown_reason(InconclusiveReason.MISSING_CONTEXT, False),
    )  # fmt: skip
    if not flag.active:  # the walk stops at the first check
        reason = _shared_reason(ReasonCode.DISABLED, None, "The flag is inactive.", None)
        disabled = _known(flag, False, reason)
        return FlagPlan(False, False, (), no_match, missing, disabled, None, None, None, None)
    no_group = held_out = enrolled = not_enrolled = None
    if flag.aggregation_index is not None:
        text = f"This is a {group_type!r} group flag and no {group_type!r} group was passed."
        reason = _shared_reason(ReasonCode.GROUP_NOT_PASSED, None, text, None)
        no_group = _known(flag, False, reason)
    if holdout is not None:
        text = f"Held out by holdout {holdout.id} ({holdout.exclusion_percentage:g}% excluded)."
        reason = _shared_reason(ReasonCode.HOLDOUT, None, text, holdout.fraction)
        held_out = _known(flag, holdout.value, reason)
    if flag.feature_enrollment:
        where = f"early-access property '$feature_enrollment/{flag.key}'."
        code = ReasonCode.FEATURE_ENROLLMENT
        enrolled = _known(flag, True, _shared_reason(code, None, f"Enrolled through {where}", None))
        text = f"Not enrolled through {where}"
        not_enrolled = _known(flag, False, _shared_reason(code, None, text, None))
    plain = (
        not flag.reads_distinct_id  # else the walk adds it to the person's properties first
        and not flag.ensure_experience_continuity
        and flag.malformed is None
        and flag.aggregation_index is None
        and not flag.bucket_by_device
        and not flag.feature_enrollment
        and holdout is None
    )
    stateful = flag.reads_distinct_id or flag.aggregation_index is not None
    conditions = []
    if not flag.ensure_experience_continuity:  # else the walk stops before the conditions
        for cond in flag.conditions:
            plan = _condition_plan(flag, cond)
            conditions.append(plan)
            stateful = stateful or plan.mixed or any(
                isinstance(spec, _STATEFUL_FILTERS) for spec in cond.filters
            )
    return FlagPlan(
        plain, stateful, tuple(conditions), no_match, missing, None, no_group, held_out,
        enrolled, not_enrolled,
    )  # fmt: skip
