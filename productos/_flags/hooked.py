"""Runs a client's evaluation hooks around its flag service (see ``productos.flag_hooks``).

``HookedFlags`` stands in front of a ``FlagService`` (or anything with its ``result``,
``all_results`` and ``all_values``) only when hooks are configured, so a client without hooks
keeps the plain service and its flag path pays nothing. A hook that raises is logged (rate
limited) and counted; the read goes on.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Sequence, Union

from productos._flags.arguments import check_flag_key
from productos._flags.service import FlagSet, WrapperOfService
from productos._runtime.ratelog import RateLimitedLog
from productos.flag_hooks import FlagEvaluation
from productos.flags import EvaluationContext, FlagResult

log = logging.getLogger("productos")


class HookedFlags(WrapperOfService):
    """A flag service that calls hooks before and after each evaluation, and on error."""

    def __init__(self, inner: Any, hooks: Sequence[Any],
                 warnings: RateLimitedLog | None = None) -> None:
        super().__init__(inner)
        self.hooks = list(hooks)
        self.hook_errors = 0
        self._warnings = warnings or RateLimitedLog()
        self._before = _stage(self.hooks, "before_evaluation", reverse=False)
        self._after = _stage(self.hooks, "after_evaluation", reverse=True)
        self._error = _stage(self.hooks, "on_error", reverse=True)

    def result(self, key: str, ctx: EvaluationContext, **kwargs: Any) -> FlagResult:
        """Evaluate one flag (as the inner service does), with the hooks around it."""
        evaluation = FlagEvaluation(key, ctx, bool(kwargs.get("only_local", False)))
        self._run_before(evaluation)
        try:
            result: FlagResult = self.inner.result(key, ctx, **kwargs)
        except Exception as exc:
            self._run_error(evaluation, exc)
            raise
        self._run_after(evaluation, result)
        return result

    def value(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
              group_properties: Any, device_id: Any, only_local: bool,
              send_event: bool, **kwargs: Any) -> Union[bool, str, None]:
        """A flag's value (the client's get_feature_flag), through :meth:`result`."""
        key = check_flag_key(key)
        ctx: EvaluationContext = self.inner.context(distinct_id, groups, person_properties,
                                                    group_properties, device_id, send_event,
                                                    **kwargs)
        return self.result(key, ctx, only_local=only_local, send_event=send_event,
                           detail=False).value

    def all_results(self, ctx: EvaluationContext, **kwargs: Any) -> Dict[str, FlagResult]:
        """Evaluate every flag; each flag's hooks run once the pass is done."""
        results: Dict[str, FlagResult] = self._in_one_pass(
            lambda: self.inner.all_results(ctx, **kwargs), ctx, kwargs, lambda found: found)
        return results

    def evaluate_set(self, ctx: EvaluationContext, **kwargs: Any) -> FlagSet:
        """Flags evaluated together (evaluate_flags, named keys), with each flag's hooks."""
        flag_set: FlagSet = self._in_one_pass(
            lambda: self.inner.evaluate_set(ctx, **kwargs), ctx, kwargs,
            lambda found: found.results)
        return flag_set

    def _in_one_pass(self, evaluate: Callable[[], Any], ctx: EvaluationContext,
                     kwargs: Dict[str, Any], results_of: Callable[[Any], Dict[str, FlagResult]]
                     ) -> Any:
        only_local = bool(kwargs.get("only_local", False))
        try:
            found = evaluate()
        except Exception as exc:
            self._run_error(FlagEvaluation("*", ctx, only_local, True), exc)
            raise
        for key, result in results_of(found).items():
            evaluation = FlagEvaluation(key, ctx, only_local, True)
            self._run_before(evaluation)
            self._run_after(evaluation, result)
        return found

    def all_values(self, ctx: EvaluationContext, **kwargs: Any) -> Dict[str, Any]:
        """Every flag's value; through all_results, so hooks see each flag's full result."""
        known_only = kwargs.pop("known_only", False)
        return {key: result.value for key, result in self.all_results(ctx, **kwargs).items()
                if result.value is not None or not known_only}

    def _run_before(self, evaluation: FlagEvaluation) -> None:
        for call in self._before:
            try:
                call(evaluation)
            except Exception as exc:
                self._failed(call, exc)

    def _run_after(self, evaluation: FlagEvaluation, result: FlagResult) -> None:
        for call in self._after:
            try:
                call(evaluation, result)
            except Exception as exc:
                self._failed(call, exc)

    def _run_error(self, evaluation: FlagEvaluation, error: BaseException) -> None:
        for call in self._error:
            try:
                call(evaluation, error)
            except Exception as exc:
                self._failed(call, exc)

    def _failed(self, call: Callable[..., Any], exc: Exception) -> None:
        self.hook_errors += 1
        name = getattr(call, "__qualname__", repr(call))
        self._warnings.warn(f"flag hook errors ({name})",
                            "productos: flag hook %s raised %r; the flag read goes on",
                            name, exc)


def _stage(hooks: List[Any], method: str, reverse: bool) -> List[Callable[..., Any]]:
    calls = [getattr(hook, method) for hook in hooks if callable(getattr(hook, method, None))]
    return calls[::-1] if reverse else calls


def with_hooks(service: Any, hooks: Sequence[Any] | None,
               warnings: RateLimitedLog | None = None) -> Any:
    """Return service itself when there are no hooks, else service with the hooks around it."""
    if not hooks:
        return service
    return HookedFlags(service, hooks, warnings)
