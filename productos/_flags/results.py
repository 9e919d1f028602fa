"""What a flag evaluation returns: the value, and the reason for it, condition by condition.

These are the public result types (re-exported by :mod:`productos.flags`), plus the two
constructors the evaluator and the compiler use to build them without the cost of a frozen
dataclass's ``__init__``.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import field
from enum import Enum
from types import MappingProxyType
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple, Union

from productos._flags.filters import FilterSpec
from productos._runtime.records import record

__all__ = [
    "RANK",
    "CallContext",
    "ConditionTrace",
    "Context",
    "EvaluationContext",
    "FilterTrace",
    "FlagResult",
    "InconclusiveReason",
    "Reason",
    "ReasonCode",
    "TraceOutcome",
    "make_reason",
    "make_result",
]


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


class TraceOutcome(str, Enum):
    """How one condition, or one filter of it, came out in an explanation trace."""

    MATCH = "match"
    NO_MATCH = "no_match"
    OUT_OF_ROLLOUT = "out_of_rollout"  # conditions only: matched, bucket past the rollout
    INCONCLUSIVE = "inconclusive"
    REQUIRES_SERVER = "requires_server"
    SKIPPED = "skipped"  # conditions only: a group the call did not name

    def __str__(self) -> str:  # the word, in explanations and f-strings, on every Python
        return self.value


# When several causes apply, the strongest is reported, so every SDK names the same one.
RANK: Dict[InconclusiveReason, int] = {
    InconclusiveReason.EXPERIENCE_CONTINUITY: 0,
    InconclusiveReason.UNSUPPORTED_DEFINITION: 1,
    InconclusiveReason.UNRESOLVED_DEPENDENCY: 2,
    InconclusiveReason.MISSING_CONTEXT: 3,
}


@record(frozen=True)
class EvaluationContext:
    """Who a flag is evaluated for. ``now`` (None = current UTC time) anchors relative dates.

    ``disable_geoip`` only matters when the server is asked: True/False is sent as the
    request's ``geoip_disable``, None sends the client's default.
    """

    distinct_id: str
    groups: Mapping[str, str] = field(default_factory=dict)
    person_properties: Mapping[str, Any] = field(default_factory=dict)
    group_properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    device_id: Optional[str] = None
    now: Optional[_dt.datetime] = None
    disable_geoip: Optional[bool] = None


_NO_MAPPING: Mapping[str, Any] = MappingProxyType({})


class CallContext:
    """The fields of an :class:`EvaluationContext`, in an object that is cheap to make.

    A frozen dataclass instance costs a dictionary (built, filled and freed on every call:
    about a fifth of a plain ``get_feature_flag``); the evaluator only reads the fields, so
    the client's hot path hands it one of these, with the arguments already checked exactly
    as ``evaluation_context()`` checks them, and makes the public type only when something
    outside the evaluator needs it (:meth:`full`). Fields left unset keep these defaults.
    """

    distinct_id: str
    groups: Mapping[str, str] = _NO_MAPPING
    person_properties: Mapping[str, Any] = _NO_MAPPING
    group_properties: Mapping[str, Mapping[str, Any]] = _NO_MAPPING
    device_id: Optional[str] = None
    now: Optional[_dt.datetime] = None
    disable_geoip: Optional[bool] = None

    def full(self) -> EvaluationContext:
        """The same context as an EvaluationContext."""
        return EvaluationContext(self.distinct_id, self.groups, self.person_properties,
                                 self.group_properties, self.device_id, self.now,
                                 self.disable_geoip)


# What the evaluator reads a context from: either kind (it only reads the fields).
Context = Union[EvaluationContext, CallContext]


class FilterTrace(NamedTuple):
    """How one filter came out: match, no_match, inconclusive or requires_server."""

    filter: FilterSpec
    outcome: TraceOutcome
    inconclusive: Optional[InconclusiveReason]
    detail: str
    actual: Any  # the property value compared (None when absent or not applicable)


class ConditionTrace(NamedTuple):
    """How one condition came out, with its filters, rollout bucket and chosen variant range."""

    condition_index: int
    outcome: TraceOutcome
    filters: Tuple[FilterTrace, ...]
    group_type: Optional[str]  # the group a mixed-targeting condition switched to
    bucket: Optional[float]
    threshold: Optional[float]
    variant: Optional[str]
    variant_bucket: Optional[float]
    variant_range: Optional[Tuple[float, float]]
    inconclusive: Optional[InconclusiveReason]
    detail: str


@record(frozen=True)
class Reason:
    """Why a flag has its value; ``trace`` holds every evaluated condition for ``explain()``.

    ``inconclusive`` is set exactly when local evaluation left the value unknown, and says why:
    one of PostHog's four reasons, or REQUIRES_SERVER (stop and ask the server), NOT_LOADED,
    FLAG_MISSING. ``unresolved`` is the same cause in PostHog's four words: equal to
    ``inconclusive`` except that a REQUIRES_SERVER result names the definition problem behind it,
    and NOT_LOADED/FLAG_MISSING have none. A result the server later decided keeps both (why
    it fell back) while its value is known: ``FlagResult.inconclusive`` is about the value.

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
    unresolved: Optional[InconclusiveReason] = None

    def __str__(self) -> str:
        """The reason in words (``print(result.reason)``); the fields stay typed."""
        return self.description or self.code.value


@record(frozen=True)
class FlagResult:
    """A flag's value (None when unknown), variant, decoded payload and the reason for it.

    ``payload`` is None after a value-only evaluation (``detail=False``); see ``payload_of()``.
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

    def get_value(self) -> Union[bool, str]:
        """The value posthog's ``FeatureFlagResult.get_value()`` gives: the variant, else
        whether the flag is enabled (False for an unknown value)."""
        return self.variant or self.enabled

    @property
    def inconclusive(self) -> bool:
        """True when the value is unknown; ``reason.inconclusive`` says why it was not decided."""
        # Based on the value, not the reason: a result later resolved by the server keeps the
        # local reason (why it fell back) but is no longer unknown.
        return self.value is None


_new_object = object.__new__


def make_reason(
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
    """A Reason, built without the frozen dataclass ``__init__`` (one setattr per field)."""
    reason: Reason = _new_object(Reason)
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


def make_result(
    key: str,
    value: Union[bool, str, None],
    variant: Optional[str],
    payload: Any,
    locally_evaluated: bool,
    flag_id: Optional[int],
    flag_version: Optional[int],
    reason: Reason,
) -> FlagResult:
    """A FlagResult, built the same quick way as :func:`make_reason`."""
    result: FlagResult = _new_object(FlagResult)
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
