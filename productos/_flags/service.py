"""Flag orchestration: local evaluation first, the server when local data cannot decide.

The only place that combines the evaluator, the remote ``/flags`` call and the
``$feature_flag_called`` events. Its collaborators are injected callables, so the
fallback rules are tested without a client, threads or HTTP.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import replace
from typing import Any, Callable, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

from productos import flags
from productos._flags.remote import RemoteFlags, decode_payload
from productos._flags.snapshot import Snapshot
from productos.flags import EvaluationContext, FlagResult, InconclusiveReason, Reason, ReasonCode

log = logging.getLogger("productos")

RemoteCall = Callable[[EvaluationContext, Optional[Sequence[str]]], RemoteFlags]
EmitCalled = Callable[[str, Dict[str, Any], Mapping[str, str]], None]


class CalledEventDeduper:
    """Remembers which (person, flag, value, groups) already produced an event, boundedly."""

    def __init__(self, max_size: int = 50_000) -> None:
        self._max = max_size
        self._seen: collections.OrderedDict[Hashable, None] = collections.OrderedDict()
        self._lock = threading.Lock()  # held for one dict operation, never across work

    def first_time(self, key: Hashable) -> bool:
        """Return True the first time key is seen (recently); the oldest entries are evicted."""
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._max:
                self._seen.popitem(last=False)
            return True

    def reset(self) -> None:
        """Forget everything (after fork, the child's events are its own)."""
        self._seen = collections.OrderedDict()
        self._lock = threading.Lock()


class FlagService:
    """Answers flag questions for the client."""

    def __init__(self, *, snapshot: Callable[[], Snapshot], remote: Optional[RemoteCall],
                 emit_called: EmitCalled, wait_ready: Callable[[float], bool],
                 first_load_timeout: float = 1.0, dedupe_size: int = 50_000) -> None:
        self._snapshot = snapshot
        self._remote = remote
        self._emit_called = emit_called
        self._wait_ready = wait_ready
        self._first_load_timeout = first_load_timeout
        self._waited = False
        self.deduper = CalledEventDeduper(dedupe_size)

    def _current(self) -> Snapshot:
        snap = self._snapshot()
        if not snap.loaded and not self._waited:
            # Only the first call(s) wait, and only up to the configured budget.
            self._wait_ready(self._first_load_timeout)
            self._waited = True
            snap = self._snapshot()
        return snap

    def result(self, key: str, ctx: EvaluationContext, *, only_local: bool = False,
               send_event: bool = True, detail: bool = True) -> FlagResult:
        """Evaluate one flag, falling back to the server when local data cannot decide.

        ``detail=False`` skips the explanation trace and the payload: the value, variant and
        reason code are the same, for callers that only want the value.
        """
        snap = self._snapshot()
        if not snap.loaded and not self._waited:
            snap = self._current()
        local = flags.evaluate(snap, key, ctx, detail=detail)
        if local.value is None and not only_local and self._remote is not None:
            answer = self._remote(ctx, [key])
            result = remote_result(key, answer, local)
            if send_event:
                self._maybe_emit(result, ctx, answer.request_id)
            return result
        if send_event:
            self._maybe_emit(local, ctx, None)
        return local

    def all_results(self, ctx: EvaluationContext, *,
                    only_local: bool = False) -> Dict[str, FlagResult]:
        """Evaluate every flag; at most one remote request fills what local data could not."""
        snap = self._current()
        results = flags.evaluate_all(snap, ctx)
        needs_server = not snap.loaded or any(r.inconclusive for r in results.values())
        if needs_server and not only_local and self._remote is not None:
            answer = self._remote(ctx, None)
            keys = set(answer.flags) | {k for k, r in results.items() if r.inconclusive}
            for key in keys:
                local = results.get(key)
                if local is None or local.inconclusive:
                    results[key] = remote_result(key, answer, local)
        return results

    def all_values(self, ctx: EvaluationContext, *,
                   only_local: bool = False) -> Dict[str, Any]:
        """Return every flag's value (None = unknown) the fastest way; one remote call at most."""
        snap = self._current()
        values = flags.evaluate_values(snap, ctx)
        unknown = [key for key, value in values.items() if value is None]
        if (unknown or not snap.loaded) and not only_local and self._remote is not None:
            answer = self._remote(ctx, None)
            for key in set(answer.flags).union(unknown):
                if values.get(key) is None:
                    values[key] = remote_result(key, answer, None).value
        return values

    def _maybe_emit(self, result: FlagResult, ctx: EvaluationContext,
                    request_id: Optional[str]) -> None:
        groups = ctx.groups
        dedupe_key = (ctx.distinct_id, result.key, result.value,
                      tuple(sorted(groups.items())) if groups else ())
        if not self.deduper.first_time(dedupe_key):
            return
        try:
            payload = None
            if result.payload is None and result.locally_evaluated and result.value:
                # A value-only evaluation skipped the payload; the event wants it.
                payload = flags.payload_of(self._snapshot(), result.key, result.value)
            self._emit_called(ctx.distinct_id,
                              called_event_properties(result, request_id, payload),
                              dict(groups))
        except Exception:  # an event must never turn a flag read into an error
            log.exception("productos: could not queue $feature_flag_called")


def payload_for(snapshot: Snapshot, key: str, value: Any) -> Any:
    """Return the decoded payload a flag has locally for value (True or a variant key), if any.

    For ``get_feature_flag_payload(match_value=...)``: a value other than True is looked up
    by its text, and None or False has no payload.
    """
    if value is None or value is False:
        return None
    return flags.payload_of(snapshot, key, True if value is True else str(value))


def remote_result(key: str, answer: RemoteFlags, local: Optional[FlagResult]) -> FlagResult:
    """Turn the server's answer for one key into a FlagResult; unknown stays None, never False."""
    base = local or FlagResult(
        key=key, value=None, variant=None, payload=None, locally_evaluated=False,
        flag_id=None, flag_version=None,
        reason=Reason(code=ReasonCode.INCONCLUSIVE,
                      description="no local definitions",
                      inconclusive=InconclusiveReason.NOT_LOADED))
    error = _remote_error(key, answer)
    if error is not None:
        why = base.reason.inconclusive.value if base.reason.inconclusive else "not local"
        return replace(base, value=None, variant=None, payload=None, locally_evaluated=False,
                       reason=replace(base.reason, code=ReasonCode.ERROR, error=error,
                                      description=f"local evaluation inconclusive ({why}); "
                                                  f"remote evaluation failed: {error}"))
    entry = answer.flags[key]
    enabled = bool(entry.get("enabled"))
    variant = entry.get("variant") if isinstance(entry.get("variant"), str) else None
    value: Any = variant if (enabled and variant) else enabled
    raw_metadata, raw_reason = entry.get("metadata"), entry.get("reason")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, Mapping) else {}
    server_reason: Mapping[str, Any] = raw_reason if isinstance(raw_reason, Mapping) else {}
    description = server_reason.get("description") or server_reason.get("code") or "remote"
    return replace(
        base, value=value, variant=variant if enabled else None,
        payload=decode_payload(metadata.get("payload")) if enabled else None,
        locally_evaluated=False,
        flag_id=metadata.get("id", base.flag_id), flag_version=metadata.get("version",
                                                                            base.flag_version),
        reason=replace(base.reason, code=ReasonCode.REMOTE, error=None,
                       condition_index=server_reason.get("condition_index"),
                       description=f"evaluated by the server: {description}"),
    )


def _remote_error(key: str, answer: RemoteFlags) -> Optional[str]:
    if answer.error:
        return answer.error
    if answer.quota_limited:
        return "quota_limited"
    if key not in answer.flags:
        return "errors_while_computing_flags" if answer.errors_while_computing else "flag_missing"
    return None


def called_event_properties(result: FlagResult, request_id: Optional[str],
                            payload: Any = None) -> Dict[str, Any]:
    """Return the properties of a ``$feature_flag_called`` event (protocol §5).

    ``payload`` stands in for the result's when a value-only evaluation left that out.
    """
    props: Dict[str, Any] = {
        "$feature_flag": result.key,
        "$feature_flag_response": result.value,
        f"$feature/{result.key}": result.value,
        "locally_evaluated": result.locally_evaluated,
    }
    if result.payload is not None:
        payload = result.payload
    if payload is not None:
        props["$feature_flag_payload"] = payload
    if result.flag_id is not None:
        props["$feature_flag_id"] = result.flag_id
    if result.flag_version is not None:
        props["$feature_flag_version"] = result.flag_version
    if result.reason.description:
        props["$feature_flag_reason"] = result.reason.description
    if request_id:
        props["$feature_flag_request_id"] = request_id
    error = called_event_error(result)
    if error:
        props["$feature_flag_error"] = error
    return props


_KNOWN_ERRORS = frozenset({
    "flag_missing", "timeout", "connection_error", "quota_limited", "invalid_properties",
    "errors_while_computing_flags", "local_evaluation_inconclusive",
})


def called_event_error(result: FlagResult) -> Optional[str]:
    """Name what went wrong for a result, in the words of protocol §5 (None if nothing)."""
    error = result.reason.error
    if error:
        if error in _KNOWN_ERRORS or error.startswith("api_error_"):
            return error
        return "unknown_error"  # an internal error's text stays in the reason, not the event
    if result.value is None:
        if result.reason.inconclusive is InconclusiveReason.FLAG_MISSING:
            return "flag_missing"
        return "local_evaluation_inconclusive"
    return None


def flags_for_event(values: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Return ``$feature/<key>`` properties and the sorted active keys for capture(flags=...).

    ``values`` maps keys to flag values (True/False/variant, None when unknown).
    """
    props = {f"$feature/{key}": value for key, value in values.items() if value is not None}
    active = sorted(key for key, value in values.items() if value not in (None, False))
    return props, active
