"""``explain()``: a human-readable account of how a flag result was reached."""

from __future__ import annotations

import json
from typing import Any

from productos._flags.filters import FilterSpec
from productos._flags.results import FlagResult, ReasonCode, TraceOutcome

__all__ = ["explain"]

_MARKS = {TraceOutcome.MATCH: "PASS", TraceOutcome.NO_MATCH: "FAIL",
          TraceOutcome.INCONCLUSIVE: " ?? ", TraceOutcome.REQUIRES_SERVER: "SRVR"}


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
        head = f"    #{cond.condition_index} {cond.outcome.value}"
        if cond.group_type is not None:
            head += f" [group {cond.group_type!r}]"
        if cond.detail:
            head += f": {cond.detail}"
        lines.append(head)
        for item in cond.filters:
            mark = _MARKS.get(item.outcome, item.outcome.value)
            line = f"      [{mark}] {_filter_text(item.filter)}"
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
        elif cond.outcome is TraceOutcome.MATCH:
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
