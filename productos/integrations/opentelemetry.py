"""OpenTelemetry for productos flag reads (the ``[opentelemetry]`` extra: ``opentelemetry-api``).

    from productos.integrations.opentelemetry import OpenTelemetryHook, with_trace_context

    client = productos.Client("phc_...", hooks=[OpenTelemetryHook()],
                              before_send=with_trace_context())

:class:`OpenTelemetryHook` adds a ``feature_flag.evaluation`` event to the span that is active
when a flag is read, with the semantic-convention attributes: ``feature_flag.key``,
``feature_flag.provider.name`` (``productos``), ``feature_flag.result.variant``,
``feature_flag.result.value``, ``feature_flag.result.reason`` (``targeting_match``, ``split``,
``default``, ``disabled``, ``error``...), ``feature_flag.context.id`` (the distinct id),
``feature_flag.version``, and ``error.type`` (with ``error.message``) when the read failed or
the flag does not exist. Nothing is recorded when no span is recording.

:func:`with_trace_context` makes a ``before_send`` that puts the active span's ids on every
captured event (``$trace_id``, ``$span_id``, lowercase hex), so events and traces can be joined.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Optional, Union

try:
    from opentelemetry import trace
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("productos.integrations.opentelemetry needs opentelemetry-api: "
                      "pip install 'productos[opentelemetry]'") from exc

from productos.flag_hooks import FlagEvaluation, FlagHook
from productos.flags import FlagResult, InconclusiveReason, ReasonCode

__all__ = ["EVENT_NAME", "OpenTelemetryHook", "flag_reason", "with_trace_context"]

EVENT_NAME = "feature_flag.evaluation"
PROVIDER_NAME = "productos"

Attributes = Dict[str, Union[str, bool, int, float]]

_REASONS = {
    ReasonCode.DISABLED: "disabled",
    ReasonCode.NO_CONDITION_MATCH: "default",
    ReasonCode.GROUP_NOT_PASSED: "default",
    ReasonCode.OUT_OF_ROLLOUT: "split",
    ReasonCode.EARLY_EXIT: "split",
    ReasonCode.HOLDOUT: "split",
    ReasonCode.FEATURE_ENROLLMENT: "targeting_match",
}


def flag_reason(result: FlagResult) -> str:
    """The semantic-convention reason of a result (lowercase, as OpenTelemetry spells it)."""
    if result.value is None:
        return "error"
    code = result.reason.code
    if code is ReasonCode.CONDITION_MATCH:
        threshold = result.reason.threshold
        return "split" if threshold is not None and threshold < 1.0 else "targeting_match"
    if code is ReasonCode.REMOTE:
        return "targeting_match" if result.enabled else "default"
    return _REASONS.get(code, "unknown")


def _error_type(result: FlagResult) -> Optional[str]:
    if result.value is not None:
        return None
    reason = result.reason
    if reason.inconclusive is InconclusiveReason.FLAG_MISSING or reason.error == "flag_missing":
        return "flag_not_found"
    if reason.inconclusive is InconclusiveReason.NOT_LOADED and reason.error is None:
        return "provider_not_ready"
    return reason.error or "general"


class OpenTelemetryHook(FlagHook):
    """Records each flag read as a ``feature_flag.evaluation`` event on the active span.

    ``include_value=False`` leaves ``feature_flag.result.value`` out (the variant and reason
    stay), for values that should not reach the tracing backend.
    """

    def __init__(self, *, include_value: bool = True) -> None:
        self.include_value = include_value

    def after_evaluation(self, evaluation: FlagEvaluation, result: FlagResult) -> None:
        """Add the event for a result (an unknown flag or a failed read carries error.type)."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes = self._base(evaluation)
        attributes["feature_flag.result.reason"] = flag_reason(result)
        if result.variant is not None:
            attributes["feature_flag.result.variant"] = result.variant
        if self.include_value and result.value is not None:
            attributes["feature_flag.result.value"] = result.value
        if result.flag_version is not None:
            attributes["feature_flag.version"] = str(result.flag_version)
        error = _error_type(result)
        if error is not None:
            attributes["error.type"] = error
            message = result.reason.description
            if message:
                attributes["error.message"] = message
        span.add_event(EVENT_NAME, attributes)

    def on_error(self, evaluation: FlagEvaluation, error: BaseException) -> None:
        """Add the event for a read that raised."""
        span = trace.get_current_span()
        if not span.is_recording():
            return
        attributes = self._base(evaluation)
        attributes["feature_flag.result.reason"] = "error"
        attributes["error.type"] = type(error).__qualname__
        attributes["error.message"] = str(error)
        span.add_event(EVENT_NAME, attributes)

    @staticmethod
    def _base(evaluation: FlagEvaluation) -> Attributes:
        return {
            "feature_flag.key": evaluation.key,
            "feature_flag.provider.name": PROVIDER_NAME,
            "feature_flag.context.id": evaluation.context.distinct_id,
        }


BeforeSend = Callable[[Dict[str, Any]], Optional[Mapping[str, Any]]]


def with_trace_context(before_send: Optional[BeforeSend] = None) -> BeforeSend:
    """Return a ``before_send`` that adds the active span's ``$trace_id`` and ``$span_id``.

    Given another ``before_send``, it runs that one afterwards, on the event with the ids.
    Events captured outside a valid span are left as they are.
    """

    def add_trace_context(event: Dict[str, Any]) -> Optional[Mapping[str, Any]]:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            properties = event.setdefault("properties", {})
            properties.setdefault("$trace_id", format(context.trace_id, "032x"))
            properties.setdefault("$span_id", format(context.span_id, "016x"))
        return event if before_send is None else before_send(event)

    return add_trace_context
