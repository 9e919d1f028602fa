"""The explanation of a flag evaluation, recorded while the evaluator walks the flag.

The evaluator decides; a :class:`Tracer`, when one is passed, records how each condition and
filter came out and turns the decision into the explained result (trace, rollout bucket,
payload, the filter that settled it, a description naming the cause). Without a tracer the
evaluator returns the value-only results the compiler built into the flag's plan.
"""

from __future__ import annotations

from typing import Any, List, Optional, Tuple

from productos._flags.filters import FilterSpec
from productos._flags.matchers import ABSENT, Outcome, Undecided
from productos._flags.results import (
    ConditionTrace,
    FilterTrace,
    FlagResult,
    InconclusiveReason,
    ReasonCode,
    TraceOutcome,
    make_reason,
    make_result,
)
from productos._flags.snapshot import CompiledFlag, Condition

__all__ = ["Tracer", "describe"]

_ROLLED = (TraceOutcome.MATCH, TraceOutcome.OUT_OF_ROLLOUT)  # outcomes with a rollout bucket

_new_tuple = tuple.__new__

_DESCRIBE_UNDECIDED = {
    InconclusiveReason.UNSUPPORTED_DEFINITION: (
        "Local evaluation cannot use part of this definition"
    ),
    InconclusiveReason.UNRESOLVED_DEPENDENCY: (
        "A flag this flag depends on could not be evaluated locally"
    ),
    InconclusiveReason.MISSING_CONTEXT: "The evaluation context lacks something this flag needs",
}


def describe(undecided: Undecided, spec: Optional[FilterSpec]) -> str:
    """The sentence for an undecided flag, naming the filter that left it undecided."""
    where = f" ({spec.type} {spec.key!r} {spec.operator})" if spec is not None else ""
    if undecided.server:
        return f"Only the server can evaluate this flag{where}: {undecided.detail}."
    return f"{_DESCRIBE_UNDECIDED[undecided.reason]}{where}: {undecided.detail}."


class Tracer:
    """Records one flag's evaluation, condition by condition, and builds the explained result."""

    __slots__ = ("_conditions", "_filters", "first_failed", "flag")

    def __init__(self, flag: CompiledFlag) -> None:
        self.flag = flag
        self._conditions: List[ConditionTrace] = []
        self._filters: List[FilterTrace] = []  # of the condition being evaluated
        self.first_failed: Optional[FilterSpec] = None  # the first filter that did not match

    # --- recording ---------------------------------------------------------------------------

    def filter(self, spec: FilterSpec, outcome: Outcome, value: Any) -> None:
        """One filter of the current condition came out as ``outcome`` on property ``value``."""
        actual = None if value is ABSENT else value
        item: Tuple[FilterSpec, TraceOutcome, Optional[InconclusiveReason], str, Any]
        if outcome is True:
            item = (spec, TraceOutcome.MATCH, None, "", actual)
        elif outcome is False:
            item = (spec, TraceOutcome.NO_MATCH, None, "", actual)
            if self.first_failed is None:
                self.first_failed = spec
        else:
            assert isinstance(outcome, Undecided)
            kind = (TraceOutcome.REQUIRES_SERVER if outcome.server
                    else TraceOutcome.INCONCLUSIVE)
            item = (spec, kind, outcome.reason, outcome.detail, actual)
        self._filters.append(_new_tuple(FilterTrace, item))

    def condition(
        self,
        cond: Condition,
        outcome: TraceOutcome,
        group_type: Optional[str],
        inconclusive: Optional[InconclusiveReason] = None,
        detail: str = "",
    ) -> None:
        """The current condition ended without a match (skipped, no_match, undecided)."""
        self._end(cond, outcome, group_type, None, None, None, None, inconclusive, detail)

    def out_of_rollout(self, cond: Condition, group_type: Optional[str], bucket: float) -> None:
        """The current condition matched, but ``bucket`` is past its rollout."""
        self._end(cond, TraceOutcome.OUT_OF_ROLLOUT, group_type, bucket, None, None, None, None, "")

    def matched(
        self,
        cond: Condition,
        group_type: Optional[str],
        bucket: Optional[float],
        variant: Optional[str],
        variant_bucket: Optional[float] = None,
        variant_range: Optional[Tuple[float, float]] = None,
    ) -> None:
        """The current condition matched, with this variant (and where its bucket fell)."""
        self._end(
            cond, TraceOutcome.MATCH, group_type, bucket, variant, variant_bucket,
            variant_range, None, "",
        )

    def _end(
        self,
        cond: Condition,
        outcome: TraceOutcome,
        group_type: Optional[str],
        bucket: Optional[float],
        variant: Optional[str],
        variant_bucket: Optional[float],
        variant_range: Optional[Tuple[float, float]],
        inconclusive: Optional[InconclusiveReason],
        detail: str,
    ) -> None:
        threshold = None if outcome not in _ROLLED else cond.threshold
        trace = (
            cond.index, outcome, tuple(self._filters), group_type, bucket, threshold, variant,
            variant_bucket, variant_range, inconclusive, detail,
        )  # fmt: skip
        self._conditions.append(_new_tuple(ConditionTrace, trace))
        self._filters = []

    # --- results -----------------------------------------------------------------------------

    def decided(
        self,
        result: FlagResult,
        *,
        bucket: Optional[float] = None,
        failed: Optional[FilterSpec] = None,
        description: Optional[str] = None,
    ) -> FlagResult:
        """The explained form of a value-only ``result``: with payload, bucket and trace."""
        value = result.value
        payload = None
        if value is True or result.variant is not None:
            stored = self.flag.payloads.get("true" if value is True else str(value))
            payload = stored.decoded() if stored is not None else None
        given = result.reason
        reason = make_reason(
            given.code, given.condition_index, description or given.description, bucket,
            given.threshold, failed, None, None, tuple(self._conditions),
        )  # fmt: skip
        return make_result(
            result.key, value, result.variant, payload, True, result.flag_id, result.flag_version,
            reason,
        )  # fmt: skip

    def unknown(
        self,
        unresolved: InconclusiveReason,
        server: bool,
        description: str,
        failed: Optional[FilterSpec] = None,
    ) -> FlagResult:
        """The explained result of a flag local evaluation could not decide."""
        flag = self.flag
        kind = InconclusiveReason.REQUIRES_SERVER if server else unresolved
        reason = make_reason(
            ReasonCode.INCONCLUSIVE, None, description, None, None, failed, kind, None,
            tuple(self._conditions), unresolved,
        )  # fmt: skip
        return make_result(flag.key, None, None, None, False, flag.id, flag.version, reason)
