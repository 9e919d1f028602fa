"""Evaluating flags: one, every one, or just the values; and a flag's payload for a value.

The entry points around :func:`productos._flags.evaluator.walk`. None of them raises: a bug
comes back as an ERROR result, which the caller resolves remotely like any undecided flag.
"""

from __future__ import annotations

from typing import AbstractSet, Any, Dict, Mapping, Optional, Sequence, Set, Tuple, Union

from productos._flags.evaluator import STATELESS, new_evaluation, walk
from productos._flags.results import (
    Context,
    EvaluationContext,
    FlagResult,
    InconclusiveReason,
    ReasonCode,
    make_reason,
    make_result,
)
from productos._flags.snapshot import CompiledFlag, Snapshot
from productos._flags.tracer import Tracer

__all__ = ["error_result", "evaluate", "evaluate_all", "evaluate_values", "payload_of"]

_UNSUPPORTED = InconclusiveReason.UNSUPPORTED_DEFINITION


def _special(key: str, kind: InconclusiveReason, description: str) -> FlagResult:
    reason = make_reason(ReasonCode.INCONCLUSIVE, description=description, inconclusive=kind)
    return make_result(key, None, None, None, False, None, None, reason)


def error_result(key: str, flag: Optional[CompiledFlag], exc: BaseException) -> FlagResult:
    """The ERROR result of an evaluation that raised (a bug), resolved remotely by callers."""
    # A bug must not break the host app; the caller falls back to the server as for any
    # definition it cannot use.
    reason = make_reason(
        ReasonCode.ERROR,
        description="Local evaluation failed unexpectedly; ask the server.",
        inconclusive=_UNSUPPORTED,
        error=f"{type(exc).__name__}: {exc}",
        unresolved=_UNSUPPORTED,
    )
    flag_id = flag.id if isinstance(flag, CompiledFlag) else None
    version = flag.version if isinstance(flag, CompiledFlag) else None
    return make_result(str(key), None, None, None, False, flag_id, version, reason)


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
        flag = snapshot.lookup(key) or snapshot.flags.get(key)
        if flag is None:
            if detail:
                text = f"No flag with key {key!r} in the loaded definitions."
            else:
                text = "No flag with this key in the loaded definitions."
            return _special(key, InconclusiveReason.FLAG_MISSING, text)
        if flag.plan.stateful:
            ev = new_evaluation(snapshot, ctx, implicit_properties, detail, key)
        else:
            ev = STATELESS
        return walk(flag, ctx, ev, Tracer(flag) if detail else None)
    except Exception as exc:
        return error_result(key, flag, exc)


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
        ev = new_evaluation(snapshot, ctx, implicit_properties, detail, "")
        decided: Dict[str, FlagResult] = {}
        stack: Set[str] = set()
        ev.decided, ev.stack = decided, stack
    except Exception as exc:
        return {key: error_result(key, flag, exc) for key, flag in flags.items()}
    for key, flag in flags.items():
        result = decided.get(key)  # already evaluated as another flag's dependency
        if result is None:
            ev.root = key
            try:
                result = decided[key] = walk(flag, ctx, ev, Tracer(flag) if detail else None)
            except Exception as exc:
                stack.clear()  # an aborted evaluation must not look like a cycle later
                result = error_result(key, flag, exc)
        results[key] = result
    return results


def evaluate_values(
    snapshot: Snapshot,
    ctx: Context,
    *,
    implicit_properties: bool = True,
    known_only: bool = False,
) -> Dict[str, Union[bool, str, None]]:
    """Every flag's value in definition order (None = unknown locally); never raises.

    The values of ``evaluate_all(snapshot, ctx)``, computed the fastest way: no explanation,
    no payloads, and dependencies are evaluated once per call. ``known_only`` leaves the
    unknown ones out (as ``get_all_flags`` answers), rather than copying the dict to drop them.
    """
    values: Dict[str, Union[bool, str, None]] = {}
    try:
        if not snapshot.loaded:
            return values
        flags = snapshot.flags
    except Exception:
        return values
    try:
        order = _in_order(flags, snapshot.depended_on)
        ev = new_evaluation(snapshot, ctx, implicit_properties, False, "")
        decided: Dict[str, FlagResult] = {}
        if snapshot.depended_on:
            ev.decided, ev.stack = decided, set()
    except Exception:
        return {} if known_only else dict.fromkeys(flags)
    for key, flag, shared in order:
        if shared and key in decided:  # evaluated once, whether first as a dependency or here
            result = decided[key]
        else:
            ev.root = key
            try:
                result = walk(flag, ctx, ev, None)
            except Exception:
                if ev.stack:
                    ev.stack.clear()  # an aborted evaluation must not look like a cycle later
                if not known_only:
                    values[key] = None
                continue
            if shared:
                decided[key] = result
        value = result.value
        if value is None and known_only:
            continue
        values[key] = value
    return values


def _in_order(
    flags: Mapping[str, CompiledFlag], shared: AbstractSet[str]
) -> Sequence[Tuple[str, CompiledFlag, bool]]:
    """(key, flag, whether other flags depend on it) for every flag, in definition order."""
    walk_order = getattr(flags, "walk_order", None)
    if walk_order is not None:  # LazyFlags: built once per snapshot
        order: Sequence[Tuple[str, CompiledFlag, bool]] = walk_order(shared)
        return order
    return [(key, flag, key in shared) for key, flag in flags.items()]


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
        flag = snapshot.lookup(key) or snapshot.flags.get(key)
        if flag is None:
            return None
        stored = flag.payloads.get(name)
        return None if stored is None else stored.decoded()
    except Exception:
        return None
