"""Local feature-flag evaluation: pure functions over a compiled definitions ``Snapshot``.

``evaluate(snapshot, key, ctx)`` reproduces the server's result for one flag, or says precisely why
it cannot (an *inconclusive* result, which the caller resolves remotely). It does no I/O, no
logging, takes no locks and never raises: every outcome, including an internal error, comes back
as a :class:`FlagResult` whose :class:`Reason` explains the decision condition by condition.

When only the value matters, ``evaluate(..., detail=False)`` and ``evaluate_all(...,
detail=False)`` give the same values and reason codes without the explanation or the payload
(``payload_of`` fetches it), and ``evaluate_values`` returns just the values of every flag.

The rules are those of PostHog's flags service as observed through its official Python SDK
(``docs/protocol.md`` §4); the conformance vectors in ``tests/data`` pin them down.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import math
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Set, Tuple, Union

from productos._flags.definitions import (
    EXACT_EQUALS,
    EXACT_IN,
    EXACT_TRUTHINESS,
    CohortFilter,
    CompiledFlag,
    Condition,
    DateFilter,
    ExactFilter,
    FilterSpec,
    FlagDependencyFilter,
    NumericFilter,
    PresenceFilter,
    PropertyGroup,
    RegexFilter,
    SemverFilter,
    Snapshot,
    TextFilter,
    UnknownOperatorFilter,
    ascii_lower,
    parse_date_value,
    parse_number,
    parse_semver,
    stringify,
    truthy,
)

__all__ = [
    "ConditionTrace",
    "EvaluationContext",
    "FilterTrace",
    "FlagResult",
    "InconclusiveReason",
    "Reason",
    "ReasonCode",
    "evaluate",
    "evaluate_all",
    "evaluate_values",
    "explain",
    "flag_hash",
    "payload_of",
]

_UTC = _dt.timezone.utc
_LONG_SCALE = float(0xFFFFFFFFFFFFFFF)
_isfinite = math.isfinite


class InconclusiveReason(str, Enum):
    """Why a flag has no local value. The first four are PostHog's, strongest first."""

    EXPERIENCE_CONTINUITY = "experience_continuity"
    UNSUPPORTED_DEFINITION = "unsupported_definition"
    UNRESOLVED_DEPENDENCY = "unresolved_dependency"
    MISSING_CONTEXT = "missing_context"
    REQUIRES_SERVER = "requires_server"  # e.g. a static cohort: stop and ask the server
    NOT_LOADED = "not_loaded"  # no definitions yet
    FLAG_MISSING = "flag_missing"  # no such key in the definitions


class ReasonCode(str, Enum):
    """What decided a flag's value."""

    CONDITION_MATCH = "condition_match"
    NO_CONDITION_MATCH = "no_condition_match"
    OUT_OF_ROLLOUT = "out_of_rollout_bound"
    DISABLED = "disabled"
    HOLDOUT = "holdout"
    GROUP_NOT_PASSED = "group_not_passed"
    FEATURE_ENROLLMENT = "feature_enrollment"
    EARLY_EXIT = "early_exit"
    INCONCLUSIVE = "inconclusive"
    REMOTE = "remote"
    ERROR = "error"


# When several causes apply, the strongest is reported, so every SDK names the same one.
_RANK = {
    InconclusiveReason.EXPERIENCE_CONTINUITY: 0,
    InconclusiveReason.UNSUPPORTED_DEFINITION: 1,
    InconclusiveReason.UNRESOLVED_DEPENDENCY: 2,
    InconclusiveReason.MISSING_CONTEXT: 3,
}

_EC = InconclusiveReason.EXPERIENCE_CONTINUITY
_UNSUPPORTED = InconclusiveReason.UNSUPPORTED_DEFINITION
_UNRESOLVED = InconclusiveReason.UNRESOLVED_DEPENDENCY
_MISSING = InconclusiveReason.MISSING_CONTEXT


@dataclass(frozen=True)
class EvaluationContext:
    """Who a flag is evaluated for. ``now`` (None = current UTC time) anchors relative dates."""

    distinct_id: str
    groups: Mapping[str, str] = field(default_factory=dict)
    person_properties: Mapping[str, Any] = field(default_factory=dict)
    group_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    device_id: Optional[str] = None
    now: Optional[_dt.datetime] = None


class FilterTrace(NamedTuple):
    """How one filter came out; ``outcome`` is match, no_match, inconclusive or requires_server."""

    filter: FilterSpec
    outcome: str
    inconclusive: Optional[InconclusiveReason]
    detail: str
    actual: Any  # the property value compared (None when absent or not applicable)


class ConditionTrace(NamedTuple):
    """How one condition came out, with its filters, rollout bucket and chosen variant range."""

    condition_index: int
    outcome: str  # match, no_match, out_of_rollout, inconclusive, requires_server, skipped
    filters: Tuple[FilterTrace, ...]
    group_type: Optional[str]  # the group a mixed-targeting condition switched to
    bucket: Optional[float]
    threshold: Optional[float]
    variant: Optional[str]
    variant_bucket: Optional[float]
    variant_range: Optional[Tuple[float, float]]
    inconclusive: Optional[InconclusiveReason]
    detail: str


@dataclass(frozen=True)
class Reason:
    """Why a flag has its value; ``trace`` holds every evaluated condition for :func:`explain`.

    A value-only evaluation (``detail=False``) leaves ``trace``, ``bucket`` and
    ``failed_filter`` empty and gives a fixed ``description`` for the outcome.
    """

    code: ReasonCode
    condition_index: Optional[int] = None
    description: str = ""
    bucket: Optional[float] = None
    threshold: Optional[float] = None
    failed_filter: Optional[FilterSpec] = None
    inconclusive: Optional[InconclusiveReason] = None
    error: Optional[str] = None
    trace: Tuple[ConditionTrace, ...] = ()
    # PostHog's reason for an unresolved flag (one of its four), e.g. unsupported_definition for
    # a REQUIRES_SERVER result caused by a static cohort; None when the value is known.
    unresolved: Optional[InconclusiveReason] = None


@dataclass(frozen=True)
class FlagResult:
    """A flag's value (None when unknown), variant, decoded payload and the reason for it.

    ``payload`` is None after a value-only evaluation (``detail=False``); see :func:`payload_of`.
    """

    key: str
    value: Union[bool, str, None]
    variant: Optional[str]
    payload: Any
    locally_evaluated: bool
    flag_id: Optional[int]
    flag_version: Optional[int]
    reason: Reason

    @property
    def enabled(self) -> bool:
        """True for ``True`` or a variant; False for ``False`` and for unknown values."""
        return self.value is not None and bool(self.value)

    @property
    def inconclusive(self) -> bool:
        """True when the value is unknown; ``reason.inconclusive`` says why it was not decided."""
        # Based on the value, not the reason: a result later resolved by the server keeps the
        # local reason (why it fell back) but is no longer unknown.
        return self.value is None


_new_object = object.__new__
_new_tuple = tuple.__new__


def _reason(
    code: ReasonCode,
    condition_index: Optional[int] = None,
    description: str = "",
    bucket: Optional[float] = None,
    threshold: Optional[float] = None,
    failed_filter: Optional[FilterSpec] = None,
    inconclusive: Optional[InconclusiveReason] = None,
    error: Optional[str] = None,
    trace: Tuple[ConditionTrace, ...] = (),
    unresolved: Optional[InconclusiveReason] = None,
) -> Reason:
    # A frozen dataclass's __init__ pays one object.__setattr__ per field; results are built on
    # the caller's hot path, so fill the instance dict in one step (no __post_init__ to skip).
    reason = _new_object(Reason)
    reason.__dict__.update(
        code=code,
        condition_index=condition_index,
        description=description,
        bucket=bucket,
        threshold=threshold,
        failed_filter=failed_filter,
        inconclusive=inconclusive,
        error=error,
        trace=trace,
        unresolved=unresolved,
    )
    return reason


def _result(
    key: str,
    value: Union[bool, str, None],
    variant: Optional[str],
    payload: Any,
    locally_evaluated: bool,
    flag_id: Optional[int],
    flag_version: Optional[int],
    reason: Reason,
) -> FlagResult:
    result = _new_object(FlagResult)  # same reasoning as _reason()
    result.__dict__.update(
        key=key,
        value=value,
        variant=variant,
        payload=payload,
        locally_evaluated=locally_evaluated,
        flag_id=flag_id,
        flag_version=flag_version,
        reason=reason,
    )
    return result


# ---------------------------------------------------------------------------------------------
# Hashing
# ---------------------------------------------------------------------------------------------

_HOLDOUT_HASHER = hashlib.sha1(b"holdout-")


_FIRST_64_BITS = struct.Struct(">Q").unpack_from  # the digest's first 8 bytes, big-endian


def flag_hash(key: str, bucketing_value: str, salt: str = "") -> float:
    """The server's bucket in [0, 1]: first 60 bits of sha1(f"{key}.{bucketing_value}{salt}")."""
    digest = hashlib.sha1(f"{key}.{bucketing_value}{salt}".encode()).digest()
    return (_FIRST_64_BITS(digest)[0] >> 4) / _LONG_SCALE


def _bucket(hasher: Any, text: str) -> float:
    # The compiled flag holds sha1 already fed with f"{key}."; copying it skips re-hashing the
    # key (measured: a little faster than a fresh sha1 over key + text, even for short keys).
    h = hasher.copy()
    h.update(text.encode())
    return (_FIRST_64_BITS(h.digest())[0] >> 4) / _LONG_SCALE


# ---------------------------------------------------------------------------------------------
# Filter outcomes
# ---------------------------------------------------------------------------------------------


class _Undecided(NamedTuple):
    """A filter or condition that could not be decided; ``server``: stop and ask the server."""

    reason: InconclusiveReason
    server: bool
    detail: str


Outcome = Union[bool, _Undecided]

_ABSENT: Any = object()
_NOT_SUPPLIED = _Undecided(_MISSING, False, "property not supplied")
_UNUSABLE_VALUE = _Undecided(_MISSING, False, "property value cannot be compared as JSON text")
_NOT_A_DATE = _Undecided(_MISSING, False, "property is not a date")
_NOT_A_VERSION = _Undecided(_MISSING, False, "property is not a version")
_REGEX_VALUE = _Undecided(_UNSUPPORTED, False, "the server's regex engine may differ on this value")
_DATE_RANGE = _Undecided(_UNSUPPORTED, False, "the relative date falls outside years 1-9999")
_CYCLE = _Undecided(_UNSUPPORTED, False, "circular flag dependency")


def _unsupported(spec: FilterSpec) -> _Undecided:
    return _Undecided(_UNSUPPORTED, False, spec.problem or "unsupported filter")


def _absent(spec: FilterSpec) -> _Undecided:
    # A filter the SDK cannot use outranks a property the caller did not pass.
    return _NOT_SUPPLIED if spec.problem is None else _unsupported(spec)


def _stronger(current: Optional[_Undecided], new: _Undecided) -> _Undecided:
    if current is None or _RANK[new.reason] < _RANK[current.reason]:
        return new
    return current


# --- property operators (value is the property, or _ABSENT) ----------------------------------


def _match_unknown(spec: FilterSpec, value: Any, ev: _Evaluation) -> Outcome:
    return _unsupported(spec)


def _match_presence(spec: PresenceFilter, value: Any, ev: _Evaluation) -> Outcome:
    if value is _ABSENT:
        return _NOT_SUPPLIED  # even is_not_set: an omitted key is not known to be unset
    return spec.want_set


def _match_exact(spec: ExactFilter, value: Any, ev: _Evaluation) -> Outcome:
    if value is _ABSENT or spec.problem is not None:
        return _absent(spec)
    text = value if value.__class__ is str else stringify(value)
    if text is None:
        return _UNUSABLE_VALUE
    mode = spec.mode
    if mode == EXACT_EQUALS:
        hit = text.lower() == spec.text
    elif mode == EXACT_IN:
        hit = text.lower() in spec.texts
    elif mode == EXACT_TRUTHINESS:
        hit = truthy(value) == spec.want_truthy
    else:  # EXACT_EMPTY_LIST
        hit = truthy(value)
    return hit != spec.negate


def _match_text(spec: TextFilter, value: Any, ev: _Evaluation) -> Outcome:
    if value is _ABSENT:
        return _absent(spec)
    text = value if value.__class__ is str else stringify(value)
    if spec.problem is not None:
        return _unsupported(spec)
    if text is None:
        return _UNUSABLE_VALUE
    text = text.lower() if text.isascii() else ascii_lower(text)  # ascii_lower, inlined
    how = spec.how
    if how == "contains":
        hit = spec.needle in text
    elif how == "prefix":
        hit = text.startswith(spec.needle)
    else:
        hit = text.endswith(spec.needle)
    return hit != spec.negate


def _match_regex(spec: RegexFilter, value: Any, ev: _Evaluation) -> Outcome:
    if value is _ABSENT:
        return _absent(spec)
    if spec.problem is not None:
        return _unsupported(spec)
    text = value if value.__class__ is str else stringify(value)
    if text is None:
        return _UNUSABLE_VALUE
    if spec.always:
        return not spec.negate
    regex = spec.spec
    if regex is None:
        return False  # an invalid pattern matches nothing, for regex and not_regex alike
    # Checks where Python's re and the server's engine are known to disagree on the value.
    if regex.end_anchor_with_repetition and text.endswith("\n"):
        return _REGEX_VALUE
    if not text.isascii():
        if any("\ud800" <= c <= "\udfff" for c in text):
            return _REGEX_VALUE
        if regex.uses_word_class and any(
            not c.isascii() and not (c.isalpha() or c.isdecimal()) for c in text
        ):
            return _REGEX_VALUE
    if regex.uses_space_class and any(c in text for c in "\x1c\x1d\x1e\x1f"):
        return _REGEX_VALUE
    # Patterns Python's re may backtrack on for long have a length limit (_flags.regex_safety).
    searcher = regex.pattern if regex.python_limit is None else regex.engine_for(text)
    if isinstance(searcher, str):
        return _Undecided(_UNSUPPORTED, False, searcher)
    try:
        hit = searcher.search(text) is not None
    except Exception:  # pragma: no cover - neither engine raises on str input
        return _REGEX_VALUE
    return hit != spec.negate


def _match_numeric(spec: NumericFilter, value: Any, ev: _Evaluation) -> Outcome:
    if value is _ABSENT:
        return _absent(spec)
    target = spec.number
    if target is None:
        return _unsupported(spec)
    cls = value.__class__
    if cls is float:  # the common JSON numbers first, exactly as parse_number reads them
        number: Optional[float] = value if _isfinite(value) else None
    elif cls is int:
        try:
            number = float(value)
        except OverflowError:
            number = None
    else:
        number = parse_number(value)
    if number is None:
        return False
    op = spec.operator
    if op == "gt":
        return number > target
    if op == "gte":
        return number >= target
    if op == "lt":
        return number < target
    return number <= target


def _match_date(spec: DateFilter, value: Any, ev: _Evaluation) -> Outcome:
    if value is _ABSENT:
        if spec.problem is None and _resolve_date(spec, ev) is None:
            return _DATE_RANGE
        return _absent(spec)
    if value is None:
        return False
    if spec.problem is not None:
        return _unsupported(spec)
    when = _resolve_date(spec, ev)
    if when is None:
        return _DATE_RANGE
    seen = parse_date_value(value, ev.now)
    if seen is None:
        return _NOT_A_DATE
    if not isinstance(seen, _dt.datetime):
        return seen < when.date() if spec.before else seen > when.date()
    return seen < when if spec.before else seen > when


def _resolve_date(spec: DateFilter, ev: _Evaluation) -> Optional[_dt.datetime]:
    date = spec.date
    if date is None or isinstance(date, _dt.datetime):
        return date
    return date.resolve(ev.now())


# App versions repeat across calls; parsing is pure, so a small cache saves it on the hot path.
_semver_of_text = functools.lru_cache(maxsize=1024)(parse_semver)


def _match_semver(spec: SemverFilter, value: Any, ev: _Evaluation) -> Outcome:
    if value is _ABSENT:
        return _absent(spec)
    if value is None:
        return False
    if spec.problem is not None:
        return _unsupported(spec)
    version = _semver_of_text(value) if value.__class__ is str else parse_semver(value)
    if version is None:
        return _NOT_A_VERSION
    if spec.lower is not None and spec.upper is not None:
        return spec.lower <= version < spec.upper
    target = spec.version
    if target is None:  # pragma: no cover - a filter without a version carries a problem
        return _unsupported(spec)
    op = spec.operator
    if op == "semver_eq":
        return version == target
    if op == "semver_neq":
        return version != target
    if op == "semver_gt":
        return version > target
    if op == "semver_gte":
        return version >= target
    if op == "semver_lt":
        return version < target
    return version <= target


_PROPERTY_MATCHERS: Dict[type, Callable[[Any, Any, _Evaluation], Outcome]] = {
    ExactFilter: _match_exact,
    TextFilter: _match_text,
    RegexFilter: _match_regex,
    NumericFilter: _match_numeric,
    DateFilter: _match_date,
    SemverFilter: _match_semver,
    PresenceFilter: _match_presence,
    UnknownOperatorFilter: _match_unknown,
}


# --- cohorts and dependencies ----------------------------------------------------------------


def _match_cohort(spec: CohortFilter, props: Mapping[str, Any], ev: _Evaluation) -> Outcome:
    if spec.missing:
        return _Undecided(_UNSUPPORTED, True, spec.problem or "cohort not available locally")
    if spec.problem is not None:
        return _unsupported(spec)
    if spec.requires_server is not None:
        return _Undecided(_UNSUPPORTED, True, spec.requires_server)
    outcome = _match_group(ev.snapshot.cohorts[spec.cohort_id], props, ev)
    if outcome is True or outcome is False:
        return outcome != spec.negate
    return outcome


def _match_group(group: PropertyGroup, props: Mapping[str, Any], ev: _Evaluation) -> Outcome:
    if group.problem is not None:
        return _Undecided(_UNSUPPORTED, True, group.problem)
    is_and = group.is_and
    decisive: Optional[bool] = None
    undecided: Optional[_Undecided] = None
    matchers = _PROPERTY_MATCHERS
    for negated, node in group.entries:
        matcher = matchers.get(node.__class__)
        if matcher is not None:  # _match_spec(), inlined for the common case
            outcome = matcher(node, props.get(node.key, _ABSENT), ev)
        elif isinstance(node, PropertyGroup):
            outcome = _match_group(node, props, ev)
        else:
            outcome = _match_spec(node, props, ev)
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
            undecided = _stronger(undecided, outcome)
    if decisive is not None:
        return decisive
    if undecided is not None:
        return undecided
    return is_and


def _match_dependency(
    spec: FlagDependencyFilter, props: Mapping[str, Any], ev: _Evaluation
) -> Outcome:
    if spec.malformed:
        return False  # the server treats a malformed dependency condition as not matching
    if spec.problem is not None:
        return _unsupported(spec)
    for key in spec.chain:
        result = ev.dependency(key)
        if result is None:
            return _CYCLE
        if result.value is None:
            server = result.reason.inconclusive is InconclusiveReason.REQUIRES_SERVER
            return _Undecided(_UNRESOLVED, server, f"flag {key!r} could not be evaluated locally")
    actual = ev.memo[spec.key].value
    expected = spec.value
    if isinstance(actual, str) and actual:
        if isinstance(expected, bool):
            return expected  # any variant counts as enabled
        return isinstance(expected, str) and actual == expected  # variants are case-sensitive
    return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected


def _match_spec(spec: FilterSpec, props: Mapping[str, Any], ev: _Evaluation) -> Outcome:
    matcher = _PROPERTY_MATCHERS.get(spec.__class__)
    if matcher is not None:
        return matcher(spec, props.get(spec.key, _ABSENT), ev)
    if isinstance(spec, CohortFilter):
        return _match_cohort(spec, props, ev)
    if isinstance(spec, FlagDependencyFilter):
        return _match_dependency(spec, props, ev)
    return _unsupported(spec)  # pragma: no cover - every compiled filter kind is handled above


# ---------------------------------------------------------------------------------------------
# Flag evaluation
# ---------------------------------------------------------------------------------------------


class _Evaluation:
    """State of one evaluate()/evaluate_all()/evaluate_values() call.

    Everything is created on first use: the person properties with ``distinct_id`` added
    (only for flags whose filters read it), group properties with ``$group_key``, the clock,
    and the dependency memo. ``root`` is the flag being evaluated at the top level; with
    ``stack`` (the dependencies being evaluated below it) it detects cycles.
    """

    __slots__ = (
        "_groups", "_now", "_person", "ctx", "fast", "implicit", "memo", "root", "snapshot",
        "stack",
    )  # fmt: skip

    def __init__(
        self, snapshot: Snapshot, ctx: EvaluationContext, implicit: bool, fast: bool
    ) -> None:
        self.snapshot = snapshot
        self.ctx = ctx
        self.implicit = implicit
        self.fast = fast  # value-only results (no trace, no payload), see _fast_flag
        self.root: Optional[str] = None
        self.memo: Optional[Dict[str, FlagResult]] = None
        self.stack: Optional[Set[str]] = None
        self._person: Optional[Mapping[str, Any]] = None
        self._groups: Optional[Dict[str, Mapping[str, Any]]] = None
        self._now: Optional[_dt.datetime] = None

    def now(self) -> _dt.datetime:
        """The evaluation time (aware), read once per call."""
        if self._now is None:
            now = self.ctx.now or _dt.datetime.now(_UTC)
            self._now = now if now.tzinfo is not None else now.replace(tzinfo=_UTC)
        return self._now

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
        memo = self.memo
        if memo is None:
            memo = self.memo = {}
        result = memo.get(key)
        if result is not None:
            return result
        stack = self.stack
        if stack is None:
            stack = self.stack = set()
        if key == self.root or key in stack:
            return None
        stack.add(key)
        try:
            flag = self.snapshot.flags[key]
            result = _fast_flag(flag, self) if self.fast else _evaluate_flag(flag, self)
        finally:
            stack.discard(key)
        memo[key] = result
        return result


# Group properties in implicit mode when the caller passed none (never mutated).
_NO_PROPERTIES: Mapping[str, Any] = {}


def _decided(flag: CompiledFlag, value: Union[bool, str], reason: Reason) -> FlagResult:
    variant = value if isinstance(value, str) else None
    payload = None
    if value is True or variant is not None:
        stored = flag.payloads.get("true" if variant is None else variant)
        payload = stored.decoded() if stored is not None else None
    return _result(flag.key, value, variant, payload, True, flag.id, flag.version, reason)


def _unknown(
    flag: CompiledFlag,
    unresolved: InconclusiveReason,
    description: str,
    server: bool = False,
    failed: Optional[FilterSpec] = None,
    trace: Tuple[ConditionTrace, ...] = (),
) -> FlagResult:
    kind = InconclusiveReason.REQUIRES_SERVER if server else unresolved
    reason = _reason(
        ReasonCode.INCONCLUSIVE,
        None,
        description,
        None,
        None,
        failed,
        kind,
        None,
        trace,
        unresolved,
    )
    return _result(flag.key, None, None, None, False, flag.id, flag.version, reason)


_DESCRIBE_UNDECIDED = {
    _UNSUPPORTED: "Local evaluation cannot use part of this definition",
    _UNRESOLVED: "A flag this flag depends on could not be evaluated locally",
    _MISSING: "The evaluation context lacks something this flag needs",
}


def _describe(undecided: _Undecided, spec: Optional[FilterSpec]) -> str:
    where = f" ({spec.type} {spec.key!r} {spec.operator})" if spec is not None else ""
    if undecided.server:
        return f"Only the server can evaluate this flag{where}: {undecided.detail}."
    return f"{_DESCRIBE_UNDECIDED[undecided.reason]}{where}: {undecided.detail}."


def _evaluate_flag(flag: CompiledFlag, ev: _Evaluation) -> FlagResult:
    if not flag.active:
        return _decided(
            flag, False, _reason(ReasonCode.DISABLED, description="The flag is inactive.")
        )
    if flag.ensure_experience_continuity:
        text = "Experience continuity is enabled: only the server can evaluate this flag."
        return _unknown(flag, _EC, text)
    if flag.malformed is not None:
        return _unknown(flag, _UNSUPPORTED, f"The definition is malformed: {flag.malformed}.")
    ctx = ev.ctx
    if flag.aggregation_index is not None:
        group_type = flag.group_type
        if group_type is None:
            text = f"Group type index {flag.aggregation_index!r} is not in group_type_mapping."
            return _unknown(flag, _UNSUPPORTED, text)
        if group_type not in ctx.groups:
            # The server would answer false too, so there is nothing to ask it.
            text = f"This is a {group_type!r} group flag and no {group_type!r} group was passed."
            return _decided(flag, False, _reason(ReasonCode.GROUP_NOT_PASSED, description=text))
        props = ev.group_properties(group_type, flag)
        if props is None:
            text = f"No properties were passed for the {group_type!r} group."
            return _unknown(flag, _MISSING, text)
        bucketing = ctx.groups[group_type]
    elif flag.bucket_by_device:
        if not ctx.device_id:
            # Nothing is checked without a bucketing value, so a problem in the definition
            # itself is the stronger reason.
            reason = InconclusiveReason(flag.local_reason) if flag.local_reason else _MISSING
            text = "The flag buckets by device_id and no device_id was passed."
            return _unknown(flag, reason, text)
        bucketing = ctx.device_id
        props = ev.person(flag)
    else:
        bucketing = ctx.distinct_id
        props = ev.person(flag)
    if bucketing.__class__ is not str:
        bucketing = str(bucketing)
    return _match_flag(flag, props, bucketing, ev)


def _match_flag(
    flag: CompiledFlag, props: Mapping[str, Any], bucketing: str, ev: _Evaluation
) -> FlagResult:
    if flag.feature_enrollment:
        if flag.aggregation_index is not None:
            text = "Feature enrollment reads person properties, but this is a group flag."
            return _unknown(flag, _UNSUPPORTED, text)
        enrollment_key = f"$feature_enrollment/{flag.key}"
        enrolled = props.get(enrollment_key, _ABSENT)
        if enrolled is _ABSENT:
            return _unknown(flag, _MISSING, f"Person property {enrollment_key!r} was not passed.")
        value = enrolled is True or enrolled == "true"
        text = f"Early-access enrollment property {enrollment_key!r} is {enrolled!r}."
        return _decided(flag, value, _reason(ReasonCode.FEATURE_ENROLLMENT, description=text))

    holdout = flag.holdout
    if holdout is not None:
        # Held-out values never reach the release conditions.
        bucket = None if holdout.everyone else _bucket(_HOLDOUT_HASHER, bucketing)
        if bucket is None or bucket <= holdout.fraction:
            text = f"Held out by holdout {holdout.id} ({holdout.exclusion_percentage:g}% excluded)."
            reason = _reason(
                ReasonCode.HOLDOUT,
                description=text,
                bucket=bucket,
                threshold=holdout.fraction,
            )
            return _decided(flag, holdout.value, reason)

    return _match_conditions(flag, props, bucketing, ev)


def _match_conditions(
    flag: CompiledFlag, props: Mapping[str, Any], bucketing: str, ev: _Evaluation
) -> FlagResult:
    groups = ev.ctx.groups
    traces: List[ConditionTrace] = []
    undecided: Optional[_Undecided] = None  # strongest doubt among undecided conditions
    undecided_filter: Optional[FilterSpec] = None
    out_of_rollout: Optional[ConditionTrace] = None
    first_failed: Optional[FilterSpec] = None

    for cond in flag.conditions:
        cond_props, cond_bucketing, group_type = props, bucketing, None
        if cond.switches_group and cond.aggregation_index is not None:
            # Mixed targeting: this condition is about a group, not the flag's own subject.
            group_type = cond.group_type
            if group_type is None or group_type not in groups:
                detail = "group type unknown" if group_type is None else "group not passed"
                traces.append(_trace(cond, "skipped", (), group_type, None, detail))
                continue
            group_props = ev.group_properties(group_type, flag)
            if group_props is None:
                missing = _Undecided(_MISSING, False, f"no properties passed for {group_type!r}")
                traces.append(
                    _trace(cond, "inconclusive", (), group_type, _MISSING, missing.detail)
                )
                if undecided is None or _RANK[_MISSING] < _RANK[undecided.reason]:
                    undecided, undecided_filter = missing, None
                continue
            cond_props = group_props
            raw_key = groups[group_type]
            cond_bucketing = raw_key if raw_key.__class__ is str else str(raw_key)

        # Filters have no defined order, so an undecided one does not stop the loop: a later
        # definite non-match still rules the condition out.
        filter_traces: List[FilterTrace] = []
        doubt: Optional[_Undecided] = None
        doubt_filter: Optional[FilterSpec] = None
        server: Optional[_Undecided] = None
        server_filter: Optional[FilterSpec] = None
        failed = False
        for spec in cond.filters:
            matcher = _PROPERTY_MATCHERS.get(spec.__class__)
            if matcher is not None:
                actual = cond_props.get(spec.key, _ABSENT)
                outcome = matcher(spec, actual, ev)
                if actual is _ABSENT:
                    actual = None
            else:
                actual = None
                outcome = _match_spec(spec, cond_props, ev)
            if outcome is True:
                filter_traces.append(_new_tuple(FilterTrace, (spec, "match", None, "", actual)))
            elif outcome is False:
                filter_traces.append(_new_tuple(FilterTrace, (spec, "no_match", None, "", actual)))
                failed = True
                if first_failed is None:
                    first_failed = spec
                break
            else:
                kind = "requires_server" if outcome.server else "inconclusive"
                filter_traces.append(
                    _new_tuple(FilterTrace, (spec, kind, outcome.reason, outcome.detail, actual))
                )
                if outcome.server and doubt is None:
                    # Only a server requirement met before any other doubt stops the whole flag.
                    server, server_filter = outcome, spec
                if doubt is None or _RANK[outcome.reason] < _RANK[doubt.reason]:
                    doubt, doubt_filter = outcome, spec
        ftrace = tuple(filter_traces)
        if failed:
            traces.append(_trace(cond, "no_match", ftrace, group_type, None, ""))
            continue
        if server is not None:
            traces.append(
                _trace(cond, "requires_server", ftrace, group_type, server.reason, server.detail)
            )
            unresolved = server.reason
            if flag.local_reason is not None:
                stated = InconclusiveReason(flag.local_reason)
                if _RANK[stated] < _RANK[unresolved]:
                    unresolved = stated
            text = _describe(server, server_filter)
            return _unknown(flag, unresolved, text, True, server_filter, tuple(traces))
        if doubt is not None:
            traces.append(
                _trace(cond, "inconclusive", ftrace, group_type, doubt.reason, doubt.detail)
            )
            if undecided is None or _RANK[doubt.reason] < _RANK[undecided.reason]:
                undecided, undecided_filter = doubt, doubt_filter
            continue

        threshold = cond.threshold
        bucket: Optional[float] = None
        if threshold is not None and threshold < 1.0:  # a bucket never exceeds 1.0
            bucket = _bucket(flag.hasher, cond_bucketing)
            if bucket > threshold:
                trace = _new_tuple(
                    ConditionTrace,
                    (cond.index, "out_of_rollout", ftrace, group_type, bucket, threshold,
                     None, None, None, None, ""),
                )  # fmt: skip
                traces.append(trace)
                if out_of_rollout is None:
                    out_of_rollout = trace
                if flag.early_exit:
                    # Properties matched and only the rollout excluded: later conditions
                    # cannot change the outcome, unless an earlier one was undecided.
                    return _no_match(flag, traces, undecided, undecided_filter, trace, None, True)
                continue

        variant = cond.variant
        variant_bucket: Optional[float] = None
        variant_range: Optional[Tuple[float, float]] = None
        if not variant and flag.variants:
            variant_bucket = _bucket(flag.hasher, cond_bucketing + "variant")
            for candidate in flag.variants:
                if candidate.start <= variant_bucket < candidate.end:
                    variant = candidate.key
                    variant_range = (candidate.start, candidate.end)
                    break
        traces.append(
            _new_tuple(
                ConditionTrace,
                (
                    cond.index,
                    "match",
                    ftrace,
                    group_type,
                    bucket,
                    threshold,
                    variant,
                    variant_bucket,
                    variant_range,
                    None,
                    "",
                ),
            )
        )
        if variant:
            text = f"Matched condition {cond.index}, variant {variant!r}."
        else:
            text = cond.description or f"Matched condition {cond.index}."
        reason = _reason(
            ReasonCode.CONDITION_MATCH, cond.index, text, bucket, threshold, None, None, None,
            tuple(traces),
        )  # fmt: skip
        return _decided(flag, variant or True, reason)

    return _no_match(flag, traces, undecided, undecided_filter, out_of_rollout, first_failed, False)


def _trace(
    cond: Condition,
    outcome: str,
    filters: Tuple[FilterTrace, ...],
    group_type: Optional[str],
    inconclusive: Optional[InconclusiveReason],
    detail: str,
) -> ConditionTrace:
    return _new_tuple(
        ConditionTrace,
        (cond.index, outcome, filters, group_type, None, None, None, None, None, inconclusive,
         detail),
    )  # fmt: skip


def _no_match(
    flag: CompiledFlag,
    traces: List[ConditionTrace],
    undecided: Optional[_Undecided],
    undecided_filter: Optional[FilterSpec],
    out_of_rollout: Optional[ConditionTrace],
    first_failed: Optional[FilterSpec],
    early_exit: bool,
) -> FlagResult:
    trace = tuple(traces)
    if undecided is not None:
        text = _describe(undecided, undecided_filter)
        return _unknown(flag, undecided.reason, text, False, undecided_filter, trace)
    if out_of_rollout is not None:
        index = out_of_rollout.condition_index
        if early_exit:
            code = ReasonCode.EARLY_EXIT
            text = f"Condition {index} matched but is outside its rollout; early exit stops here."
        else:
            code = ReasonCode.OUT_OF_ROLLOUT
            text = f"Condition {index} matched but is outside its rollout."
        reason = _reason(
            code, index, text, out_of_rollout.bucket, out_of_rollout.threshold, None, None, None,
            trace,
        )  # fmt: skip
        return _decided(flag, False, reason)
    text = "No condition matched." if flag.conditions else "The flag has no conditions."
    reason = _reason(
        ReasonCode.NO_CONDITION_MATCH, None, text, None, None, first_failed, None, None, trace
    )
    return _decided(flag, False, reason)


# ---------------------------------------------------------------------------------------------
# Value-only evaluation (detail=False, evaluate_values)
# ---------------------------------------------------------------------------------------------
#
# The same decisions as _evaluate_flag, without the explanation: no trace, no payload, no
# formatted text. Every result it can return is constant for a given flag and outcome (the
# rollout bucket, which varies per caller, is left out), so each is built once and kept in the
# flag's memo: a value-only evaluation allocates nothing beyond its _Evaluation. Results differ
# from the detailed ones only in trace=(), payload=None, bucket=None, failed_filter=None and, for
# inconclusive and enrollment outcomes, a fixed description.

_OFF = "disabled"
_NO_GROUP = "group not passed"
_HELD_OUT = "holdout"
_NO_MATCH = "no match"
_ENROLLED = "enrolled"
_NOT_ENROLLED = "not enrolled"

_UNKNOWN_TEXT = {
    _EC: "Experience continuity is enabled: only the server can evaluate this flag.",
    _UNSUPPORTED: "Local evaluation cannot use part of this definition.",
    _UNRESOLVED: "A flag this flag depends on could not be evaluated locally.",
    _MISSING: "The evaluation context lacks something this flag needs.",
}
_SERVER_TEXT = "Only the server can evaluate this flag."
_BY_VALUE = {reason.value: reason for reason in InconclusiveReason}


def _known(flag: CompiledFlag, value: Union[bool, str], reason: Reason) -> FlagResult:
    variant = value if isinstance(value, str) else None
    return _result(flag.key, value, variant, None, True, flag.id, flag.version, reason)


def _fast_unknown(flag: CompiledFlag, unresolved: InconclusiveReason, server: bool) -> FlagResult:
    memo = flag.memo
    key = (unresolved, server)
    result = memo.get(key)
    if result is None:
        text = _SERVER_TEXT if server else _UNKNOWN_TEXT[unresolved]
        result = memo[key] = _unknown(flag, unresolved, text, server)
    return result


def _fast_constant(flag: CompiledFlag, key: str) -> FlagResult:
    """The flag's result for an outcome that depends on nothing but the definition."""
    result = flag.memo.get(key)
    if result is None:
        if key == _OFF:
            reason = _reason(ReasonCode.DISABLED, description="The flag is inactive.")
            result = _known(flag, False, reason)
        elif key == _NO_GROUP:
            text = (
                f"This is a {flag.group_type!r} group flag and no {flag.group_type!r} group "
                "was passed."
            )
            result = _known(flag, False, _reason(ReasonCode.GROUP_NOT_PASSED, description=text))
        elif key == _HELD_OUT:
            holdout = flag.holdout
            assert holdout is not None
            text = f"Held out by holdout {holdout.id} ({holdout.exclusion_percentage:g}% excluded)."
            reason = _reason(ReasonCode.HOLDOUT, description=text, threshold=holdout.fraction)
            result = _known(flag, holdout.value, reason)
        elif key == _NO_MATCH:
            text = "No condition matched." if flag.conditions else "The flag has no conditions."
            result = _known(flag, False, _reason(ReasonCode.NO_CONDITION_MATCH, description=text))
        else:
            enrolled = key == _ENROLLED
            prefix = "Enrolled" if enrolled else "Not enrolled"
            text = f"{prefix} through early-access property '$feature_enrollment/{flag.key}'."
            reason = _reason(ReasonCode.FEATURE_ENROLLMENT, description=text)
            result = _known(flag, enrolled, reason)
        flag.memo[key] = result
    return result


def _fast_match(flag: CompiledFlag, cond: Condition, value: Union[bool, str]) -> FlagResult:
    if value is True:
        text = cond.description or f"Matched condition {cond.index}."
    else:
        text = f"Matched condition {cond.index}, variant {value!r}."
    reason = _reason(ReasonCode.CONDITION_MATCH, cond.index, text, None, cond.threshold)
    return _known(flag, value, reason)


def _fast_out_of_rollout(flag: CompiledFlag, cond: Condition) -> FlagResult:
    index = cond.index
    if flag.early_exit:
        code = ReasonCode.EARLY_EXIT
        text = f"Condition {index} matched but is outside its rollout; early exit stops here."
    else:
        code = ReasonCode.OUT_OF_ROLLOUT
        text = f"Condition {index} matched but is outside its rollout."
    return _known(flag, False, _reason(code, index, text, None, cond.threshold))


_PLAN = "plan"

# Per condition, what _fast_flag needs, with every result it can lead to built in advance:
# (condition, switches to a group (mixed targeting)?, its filters as (property key, matcher or
# None for cohorts and dependencies, filter), its threshold when below 100 % (else None), the
# result when it matches without a variant bucket, the variant table as (start, end, result)
# when the variant comes from the bucket (else None), the result when outside its rollout).
_CondPlan = Tuple[
    Condition,
    bool,
    Tuple[Tuple[Any, Any, FilterSpec], ...],
    Optional[float],
    FlagResult,
    Optional[Tuple[Tuple[float, float, FlagResult], ...]],
    FlagResult,
]


def _fast_plan(flag: CompiledFlag) -> Tuple[bool, Tuple[_CondPlan, ...]]:
    """What _fast_flag reads on every call, prepared once per flag and kept in its memo."""
    plain = (
        flag.active
        and not flag.ensure_experience_continuity
        and flag.malformed is None
        and flag.aggregation_index is None
        and not flag.bucket_by_device
        and not flag.feature_enrollment
        and flag.holdout is None
    )  # an active person flag bucketed by distinct_id: no special case applies
    conditions: List[_CondPlan] = []
    for cond in flag.conditions:
        probes = tuple(
            (spec.key, _PROPERTY_MATCHERS.get(spec.__class__), spec) for spec in cond.filters
        )
        threshold = cond.threshold
        table = None
        if not cond.variant and flag.variants:
            table = tuple(
                (v.start, v.end, _fast_match(flag, cond, v.key or True)) for v in flag.variants
            )
        conditions.append(
            (
                cond,
                cond.switches_group and cond.aggregation_index is not None,
                probes,
                threshold if threshold is not None and threshold < 1.0 else None,
                _fast_match(flag, cond, cond.variant or True),
                table,
                _fast_out_of_rollout(flag, cond),
            )
        )
    plan = (bool(plain), tuple(conditions))
    flag.memo[_PLAN] = plan
    return plan


def _fast_flag(flag: CompiledFlag, ev: _Evaluation) -> FlagResult:
    """_evaluate_flag without the explanation (see above); the same values and reason codes."""
    plan = flag.memo.get(_PLAN)
    if plan is None:
        plan = _fast_plan(flag)
    ctx = ev.ctx
    if plan[0]:
        bucketing = ctx.distinct_id
        if bucketing.__class__ is not str:
            bucketing = str(bucketing)
        props = ctx.person_properties
        if flag.reads_distinct_id:
            props = ev.person(flag)
    else:
        if not flag.active:
            return _fast_constant(flag, _OFF)
        if flag.ensure_experience_continuity:
            return _fast_unknown(flag, _EC, False)
        if flag.malformed is not None:
            return _fast_unknown(flag, _UNSUPPORTED, False)
        if flag.aggregation_index is not None:
            group_type = flag.group_type
            if group_type is None:
                return _fast_unknown(flag, _UNSUPPORTED, False)
            groups = ctx.groups
            if group_type not in groups:
                return _fast_constant(flag, _NO_GROUP)
            props = ev.group_properties(group_type, flag)
            if props is None:
                return _fast_unknown(flag, _MISSING, False)
            bucketing = groups[group_type]
        elif flag.bucket_by_device:
            bucketing = ctx.device_id
            if not bucketing:
                reason = _BY_VALUE[flag.local_reason] if flag.local_reason else _MISSING
                return _fast_unknown(flag, reason, False)
            props = ev.person(flag)
        else:
            bucketing = ctx.distinct_id
            props = ev.person(flag)
        if flag.feature_enrollment:
            if flag.aggregation_index is not None:
                return _fast_unknown(flag, _UNSUPPORTED, False)
            enrolled = props.get(f"$feature_enrollment/{flag.key}", _ABSENT)
            if enrolled is _ABSENT:
                return _fast_unknown(flag, _MISSING, False)
            return _fast_constant(
                flag, _ENROLLED if enrolled is True or enrolled == "true" else _NOT_ENROLLED
            )
        if bucketing.__class__ is not str:
            bucketing = str(bucketing)
        holdout = flag.holdout
        if holdout is not None and (
            holdout.everyone or _bucket(_HOLDOUT_HASHER, bucketing) <= holdout.fraction
        ):
            return _fast_constant(flag, _HELD_OUT)

    undecided: Optional[_Undecided] = None  # strongest doubt among undecided conditions
    out_of_rollout: Optional[FlagResult] = None
    for cond, mixed, probes, threshold, matched, table, outside in plan[1]:
        cond_props, cond_bucketing = props, bucketing
        if mixed:
            # Mixed targeting: this condition is about a group, not the flag's own subject.
            group_type = cond.group_type
            groups = ctx.groups
            if group_type is None or group_type not in groups:
                continue
            group_props = ev.group_properties(group_type, flag)
            if group_props is None:
                if undecided is None or _RANK[_MISSING] < _RANK[undecided.reason]:
                    undecided = _NOT_SUPPLIED
                continue
            cond_props = group_props
            raw_key = groups[group_type]
            cond_bucketing = raw_key if raw_key.__class__ is str else str(raw_key)

        doubt: Optional[_Undecided] = None
        server: Optional[_Undecided] = None
        for key, matcher, spec in probes:
            if matcher is not None:
                outcome = matcher(spec, cond_props.get(key, _ABSENT), ev)
            else:
                outcome = _match_spec(spec, cond_props, ev)
            if outcome is True:
                continue
            if outcome is False:
                break
            if outcome.server and doubt is None:
                server = outcome
            if doubt is None or _RANK[outcome.reason] < _RANK[doubt.reason]:
                doubt = outcome
        else:
            if server is not None:
                unresolved = server.reason
                if flag.local_reason is not None:
                    stated = _BY_VALUE[flag.local_reason]
                    if _RANK[stated] < _RANK[unresolved]:
                        unresolved = stated
                return _fast_unknown(flag, unresolved, True)
            if doubt is not None:
                if undecided is None or _RANK[doubt.reason] < _RANK[undecided.reason]:
                    undecided = doubt
                continue
            if threshold is not None:
                h = flag.hasher.copy()  # _bucket(), inlined
                h.update(cond_bucketing.encode())
                if (_FIRST_64_BITS(h.digest())[0] >> 4) / _LONG_SCALE > threshold:
                    if flag.early_exit:
                        if undecided is not None:
                            return _fast_unknown(flag, undecided.reason, False)
                        return outside
                    if out_of_rollout is None:
                        out_of_rollout = outside
                    continue
            if table is not None:
                h = flag.hasher.copy()
                h.update((cond_bucketing + "variant").encode())
                variant_bucket = (_FIRST_64_BITS(h.digest())[0] >> 4) / _LONG_SCALE
                for start, end, result in table:
                    if start <= variant_bucket < end:
                        return result
            return matched

    if undecided is not None:
        return _fast_unknown(flag, undecided.reason, False)
    if out_of_rollout is not None:
        return out_of_rollout
    return _fast_constant(flag, _NO_MATCH)


# ---------------------------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------------------------


def _special(key: str, kind: InconclusiveReason, description: str) -> FlagResult:
    reason = _reason(ReasonCode.INCONCLUSIVE, description=description, inconclusive=kind)
    return _result(key, None, None, None, False, None, None, reason)


def _error(key: str, flag: Optional[CompiledFlag], exc: BaseException) -> FlagResult:
    # A bug must not break the host app; the caller falls back to the server as for any
    # definition it cannot use.
    reason = _reason(
        ReasonCode.ERROR,
        description="Local evaluation failed unexpectedly; ask the server.",
        inconclusive=_UNSUPPORTED,
        error=f"{type(exc).__name__}: {exc}",
        unresolved=_UNSUPPORTED,
    )
    flag_id = flag.id if isinstance(flag, CompiledFlag) else None
    version = flag.version if isinstance(flag, CompiledFlag) else None
    return _result(str(key), None, None, None, False, flag_id, version, reason)


def evaluate(
    snapshot: Snapshot,
    key: str,
    ctx: EvaluationContext,
    *,
    detail: bool = True,
    implicit_properties: bool = True,
) -> FlagResult:
    """Evaluate one flag locally; never raises.

    ``detail=False`` returns the same value, variant and reason (code, condition index,
    inconclusive and unresolved reasons, threshold, error) without the explanation: no trace,
    no payload (see :func:`payload_of`), no bucket or failed filter, and a fixed description.
    It is several times faster; use it when only the value matters.

    ``implicit_properties=False`` uses person and group properties exactly as given, without
    adding ``distinct_id`` and ``$group_key`` (for replaying inputs recorded after that step).
    """
    flag: Optional[CompiledFlag] = None
    try:
        if not snapshot.loaded:
            return _special(
                key, InconclusiveReason.NOT_LOADED, "Flag definitions are not loaded yet."
            )
        flag = snapshot.flags.get(key)
        if flag is None:
            if detail:
                text = f"No flag with key {key!r} in the loaded definitions."
            else:
                text = "No flag with this key in the loaded definitions."
            return _special(key, InconclusiveReason.FLAG_MISSING, text)
        ev = _Evaluation(snapshot, ctx, implicit_properties, not detail)
        ev.root = key
        if detail:
            return _evaluate_flag(flag, ev)
        return _fast_flag(flag, ev)
    except Exception as exc:
        return _error(key, flag, exc)


def evaluate_all(
    snapshot: Snapshot,
    ctx: EvaluationContext,
    *,
    detail: bool = True,
    implicit_properties: bool = True,
) -> Dict[str, FlagResult]:
    """Evaluate every flag in definition order, sharing dependency results; never raises.

    ``detail`` is as for :func:`evaluate`.
    """
    results: Dict[str, FlagResult] = {}
    try:
        if not snapshot.loaded:
            return results
        flags = snapshot.flags
    except Exception:
        return results
    try:
        ev = _Evaluation(snapshot, ctx, implicit_properties, not detail)
        memo: Dict[str, FlagResult] = {}
        stack: Set[str] = set()
        ev.memo, ev.stack = memo, stack
    except Exception as exc:
        return {key: _error(key, flag, exc) for key, flag in flags.items()}
    run = _evaluate_flag if detail else _fast_flag
    for key, flag in flags.items():
        result = memo.get(key)  # already evaluated as another flag's dependency
        if result is None:
            ev.root = key
            try:
                result = memo[key] = run(flag, ev)
            except Exception as exc:
                stack.clear()  # an aborted evaluation must not look like a cycle later
                result = _error(key, flag, exc)
        results[key] = result
    return results


def evaluate_values(
    snapshot: Snapshot, ctx: EvaluationContext, *, implicit_properties: bool = True
) -> Dict[str, Union[bool, str, None]]:
    """Every flag's value in definition order (None = unknown locally); never raises.

    The values of ``evaluate_all(snapshot, ctx)``, computed the fastest way: no results,
    reasons or payloads are built, and dependencies are evaluated once per call.
    """
    values: Dict[str, Union[bool, str, None]] = {}
    try:
        if not snapshot.loaded:
            return values
        flags = snapshot.flags
    except Exception:
        return values
    try:
        ev = _Evaluation(snapshot, ctx, implicit_properties, True)
        memo: Dict[str, FlagResult] = {}
        stack: Set[str] = set()
        ev.memo, ev.stack = memo, stack
    except Exception:
        return dict.fromkeys(flags)
    for key, flag in flags.items():
        result = memo.get(key)
        if result is None:
            ev.root = key
            try:
                result = memo[key] = _fast_flag(flag, ev)
            except Exception:
                stack.clear()
                values[key] = None
                continue
        values[key] = result.value
    return values


def payload_of(snapshot: Snapshot, key: str, value: Any) -> Any:
    """The decoded payload flag ``key`` has for ``value`` (True or a variant key), else None.

    What ``evaluate`` puts in ``FlagResult.payload``; a fresh object for dicts and lists.
    Never raises.
    """
    try:
        if value is True:
            name = "true"
        elif isinstance(value, str):
            name = value
        else:
            return None
        flag = snapshot.flags.get(key)
        if flag is None:
            return None
        stored = flag.payloads.get(name)
        return None if stored is None else stored.decoded()
    except Exception:
        return None


# ---------------------------------------------------------------------------------------------
# explain()
# ---------------------------------------------------------------------------------------------

_MARKS = {"match": "PASS", "no_match": "FAIL", "inconclusive": " ?? ", "requires_server": "SRVR"}


def _show(value: Any) -> str:
    if value is True or value is False or value is None:
        return json.dumps(value)
    if isinstance(value, str):
        return repr(value)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _filter_text(spec: FilterSpec) -> str:
    return f"{spec.type} {spec.key!r} {spec.operator} {_show(spec.value)}"


def explain(result: FlagResult) -> str:
    """Multi-line, human-readable account of how a result was reached."""
    reason = result.reason
    lines = []
    ident = ""
    if result.flag_id is not None:
        ident = f" (id {result.flag_id}" + (
            f", version {result.flag_version})" if result.flag_version is not None else ")"
        )
    shown = "unknown" if result.value is None else _show(result.value)
    lines.append(f"Flag {result.key!r}{ident}: {shown}")
    lines.append(f"  reason: {reason.code.value}: {reason.description}")
    if reason.inconclusive is not None:
        extra = ""
        if reason.unresolved is not None and reason.unresolved != reason.inconclusive:
            extra = f" ({reason.unresolved.value})"
        lines.append(f"  inconclusive: {reason.inconclusive.value}{extra}")
    if reason.error:
        lines.append(f"  error: {reason.error}")
    if reason.failed_filter is not None:
        lines.append(f"  filter: {_filter_text(reason.failed_filter)}")
    if reason.bucket is not None and reason.threshold is not None:
        relation = "<=" if reason.bucket <= reason.threshold else ">"
        lines.append(f"  bucket: {reason.bucket:.6f} {relation} {reason.threshold:.6f}")
    if result.payload is not None:
        lines.append(f"  payload: {_show(result.payload)}")
    if reason.code is ReasonCode.REMOTE:
        where = "remotely"
    else:
        where = "locally" if result.locally_evaluated else "not decided locally"
    lines.append(f"  evaluated: {where}")
    if reason.trace:
        lines.append("  conditions:")
    for cond in reason.trace:
        head = f"    #{cond.condition_index} {cond.outcome}"
        if cond.group_type is not None:
            head += f" [group {cond.group_type!r}]"
        if cond.detail:
            head += f": {cond.detail}"
        lines.append(head)
        for item in cond.filters:
            line = f"      [{_MARKS.get(item.outcome, item.outcome)}] {_filter_text(item.filter)}"
            if item.actual is not None:
                line += f"  (value {_show(item.actual)})"
            if item.detail:
                line += f" - {item.detail}"
            lines.append(line)
        if cond.bucket is not None and cond.threshold is not None:
            relation = "<=" if cond.bucket <= cond.threshold else ">"
            lines.append(
                f"      rollout: bucket {cond.bucket:.6f} {relation} threshold "
                f"{cond.threshold:.6f} ({cond.threshold * 100:g}%)"
            )
        elif cond.outcome == "match":
            lines.append("      rollout: everyone")
        if cond.variant is not None:
            if cond.variant_range is not None and cond.variant_bucket is not None:
                low, high = cond.variant_range
                lines.append(
                    f"      variant: {cond.variant!r} (variant bucket {cond.variant_bucket:.6f} "
                    f"in [{low:.6f}, {high:.6f}))"
                )
            else:
                lines.append(f"      variant: {cond.variant!r} (condition override)")
        elif cond.variant_bucket is not None:
            lines.append(
                f"      variant: none (variant bucket {cond.variant_bucket:.6f} outside all ranges)"
            )
    return "\n".join(lines)
