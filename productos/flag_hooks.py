"""Evaluation hooks: code of yours that runs around every flag read of a client.

    class Timing(productos.FlagHook):
        def before_evaluation(self, evaluation):
            evaluation.data["started"] = time.perf_counter()

        def after_evaluation(self, evaluation, result):
            metrics.timing(evaluation.key, time.perf_counter() - evaluation.data["started"])

    client = productos.Client("phc_...", hooks=[Timing()])

A hook is any object with one or more of the three methods below (subclassing
:class:`FlagHook` gives no-op defaults for the others). For every flag read (``feature_enabled``,
``get_feature_flag``, ``get_feature_flag_result``, ``get_feature_flag_payload``,
``get_all_flags*``, ``capture(send_feature_flags=True)``), local or remote:

* ``before_evaluation(evaluation)`` runs first, hooks in the order given;
* ``after_evaluation(evaluation, result)`` runs with the :class:`~productos.FlagResult`, hooks in
  reverse order (the first hook given wraps the others). A failed remote evaluation is a result
  too: its ``reason.code`` is ``ReasonCode.ERROR``; an unknown flag has ``value`` None;
* ``on_error(evaluation, error)`` runs instead of ``after_evaluation`` when the evaluation
  raised (the read itself then returns None, as usual), also in reverse order.

The ``get_all_flags*`` calls evaluate every flag in one pass: each flag's ``before`` and
``after`` run back to back once that pass is done, with ``evaluation.bulk`` True; a bulk read
that fails calls ``on_error`` once, with the key ``"*"``.

A hook that raises never breaks the read: the exception is logged (rate limited), counted
(:func:`hook_error_count`) and the other hooks still run. Hooks run on the calling thread and
should be quick. With no hooks configured the flag path is unchanged: they cost nothing.

Hooks are plain synchronous calls, so the same objects serve an ``AsyncClient``: its flag
reads run them on the thread that evaluates (keep them free of blocking I/O, or hand the work
to a queue).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Protocol, runtime_checkable

from productos.flags import EvaluationContext, FlagResult

__all__ = ["FlagEvaluation", "FlagHook", "FlagHookProtocol", "hook_error_count"]


class FlagEvaluation:
    """One flag read, as hooks see it; ``data`` carries what a hook keeps from before to after.

    ``data`` is shared by the hooks of this read: use keys of your own (a hook's class name).
    """

    __slots__ = ("bulk", "context", "data", "key", "only_local")

    def __init__(self, key: str, context: EvaluationContext, only_local: bool = False,
                 bulk: bool = False) -> None:
        self.key = key
        self.context = context
        self.only_local = only_local
        self.bulk = bulk
        self.data: Dict[str, Any] = {}

    @property
    def distinct_id(self) -> str:
        """The distinct id the flag is evaluated for."""
        return self.context.distinct_id

    def __repr__(self) -> str:
        return (f"FlagEvaluation(key={self.key!r}, distinct_id={self.context.distinct_id!r}, "
                f"bulk={self.bulk})")


@runtime_checkable
class FlagHookProtocol(Protocol):
    """The full shape of a hook (a hook may leave out any of these methods)."""

    def before_evaluation(self, evaluation: FlagEvaluation) -> None:
        """Called before the flag is evaluated."""

    def after_evaluation(self, evaluation: FlagEvaluation, result: FlagResult) -> None:
        """Called with the result of the evaluation."""

    def on_error(self, evaluation: FlagEvaluation, error: BaseException) -> None:
        """Called when the evaluation raised, instead of after_evaluation."""


class FlagHook:
    """A base class for hooks: every method does nothing; override the ones you need."""

    def before_evaluation(self, evaluation: FlagEvaluation) -> None:
        """Called before the flag is evaluated."""

    def after_evaluation(self, evaluation: FlagEvaluation, result: FlagResult) -> None:
        """Called with the result of the evaluation."""

    def on_error(self, evaluation: FlagEvaluation, error: BaseException) -> None:
        """Called when the evaluation raised, instead of after_evaluation."""


def hook_error_count(client: Any) -> int:
    """Return how many times a hook of client raised (0 for a client without hooks)."""
    flags: Optional[Any] = getattr(client, "_flags", None)
    return int(getattr(flags, "hook_errors", 0) or 0)
