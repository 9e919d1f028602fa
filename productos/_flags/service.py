"""Flag orchestration: local evaluation first, the server when local data cannot decide.

The only place that combines the evaluator, the remote ``/flags`` call and the
``$feature_flag_called`` events. Its collaborators are injected callables, so the
fallback rules are tested without a client, threads or HTTP.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import replace
from typing import (
    Any,
    Callable,
    Dict,
    Iterator,
    Literal,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Union,
    overload,
)

from productos import flags
from productos._flags.arguments import call_context, check_flag_key, evaluation_context
from productos._flags.called_events import CalledEventDeduper, called_event_properties
from productos._flags.calls import error_result
from productos._flags.evaluator import STATELESS, new_evaluation, walk
from productos._flags.forks import FORKS, PID_CHECK_EVERY
from productos._flags.poller import SnapshotHolder
from productos._flags.remote import REMOTE_TEXT, RemoteFlags, decode_payload
from productos._flags.results import CallContext, Context
from productos._flags.snapshot import Snapshot
from productos.flags import EvaluationContext, FlagResult, InconclusiveReason, Reason, ReasonCode

log = logging.getLogger("productos")

RemoteCall = Callable[[EvaluationContext, Optional[Sequence[str]]], RemoteFlags]
# emit_called(distinct_id, properties, groups[, disable_geoip]): the last argument is only
# passed when a call set it.
EmitCalled = Callable[..., None]


class FlagSet(NamedTuple):
    """Flags evaluated together, and the server's answer when it was asked."""

    results: Dict[str, FlagResult]
    answer: Optional[RemoteFlags]


class Undecided:
    """Local data cannot answer without waiting: the first definitions load, or the server."""

    __slots__ = ()


UNDECIDED = Undecided()


class WouldWait(BaseException):
    """A read under :func:`refusing_to_wait` reached a wait: the first load, or the server.

    A BaseException, as asyncio's CancelledError is: the client's public methods turn every
    Exception into a logged failure, and this is not one, only a signal to the caller.
    """


class _Refusal(threading.local):
    active = False


# Per thread, not a ContextVar: a task or callback created during the read (say by an on_error
# handler) copies a context, and would keep refusing long after the read, then raise.
_REFUSING_TO_WAIT = _Refusal()


@contextlib.contextmanager
def refusing_to_wait() -> Iterator[None]:
    """Within it, a flag read on this thread that would wait raises :class:`WouldWait`.

    For the AsyncClient: it runs a read inline on the event loop when local data answers it,
    and on a worker thread only when the read raised WouldWait. One evaluation either way
    for the common case, instead of a probe first and the read after it.
    """
    before = _REFUSING_TO_WAIT.active
    _REFUSING_TO_WAIT.active = True
    try:
        yield
    finally:
        _REFUSING_TO_WAIT.active = before


class WrapperOfService:
    """Base of what stands in front of a FlagService (hooks, test overrides): everything not
    defined on the wrapper is the inner service's, and nothing is answered "now".

    An AsyncClient first asks for an answer without waiting (``value_now``, ``result_now``,
    or a bulk read under :func:`refusing_to_wait`) and otherwise runs the ordinary read on a
    worker. A wrapper's logic (a hook, an override) lives in that ordinary read only and must
    run exactly once, so it answers UNDECIDED here, and the AsyncClient sends its bulk reads
    straight to a worker: a read begun inline and repeated there would run it twice.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def values(self, distinct_id: Any, groups: Any, person_properties: Any,
               group_properties: Any, device_id: Any, only_local: bool,
               disable_geoip: Any = None) -> Dict[str, Any]:
        """get_all_flags() through the wrapper's own ``all_values`` (never the inner fast path)."""
        ctx: EvaluationContext = self.inner.context(
            distinct_id, groups, person_properties, group_properties, device_id,
            not only_local, disable_geoip)
        found: Dict[str, Any] = self.all_values(ctx, only_local=only_local, known_only=True)
        return found

    def value_now(self, *args: Any, **kwargs: Any) -> Undecided:
        """Always UNDECIDED: the wrapped read is ``value``."""
        return UNDECIDED

    def result_now(self, *args: Any, **kwargs: Any) -> Undecided:
        """Always UNDECIDED: the wrapped read is ``result``."""
        return UNDECIDED


class FlagService:
    """Answers flag questions for the client."""

    def __init__(self, *, snapshot: Callable[[], Snapshot], remote: Optional[RemoteCall],
                 emit_called: EmitCalled, wait_ready: Callable[[float], bool],
                 first_load_timeout: float = 1.0, dedupe_size: int = 50_000,
                 check_fork: Optional[Callable[[], None]] = None) -> None:
        self._snapshot = snapshot
        self._remote = remote
        self._emit_called = emit_called
        self._wait_ready = wait_ready
        self._first_load_timeout = first_load_timeout
        self._waited = False
        self.deduper = CalledEventDeduper(dedupe_size)
        self._check_fork = check_fork
        self._forks = FORKS[0]
        self._countdown = PID_CHECK_EVERY
        # A SnapshotHolder's get() is read as the attribute it returns: one frame less per read.
        owner = getattr(snapshot, "__self__", None)
        self._holder: Optional[SnapshotHolder[Snapshot]] = (
            owner if isinstance(owner, SnapshotHolder)
            and getattr(snapshot, "__func__", None) is SnapshotHolder.get else None)

    def fork_check(self) -> None:
        """Run the client's fork check (pid, poller) now; flag calls do it when it may matter."""
        self._forks = FORKS[0]
        self._countdown = PID_CHECK_EVERY
        if self._check_fork is not None:
            self._check_fork()

    def _count_read(self, sends: bool) -> None:
        # A pid check is a system call: made before anything that takes a lock or sends
        # (events, the server), after an announced fork, and every PID_CHECK_EVERY reads.
        if sends or FORKS[0] != self._forks:
            self.fork_check()
        else:
            left = self._countdown = self._countdown - 1
            if left <= 0:
                self.fork_check()

    def context(self, distinct_id: Any, groups: Any, person_properties: Any,
                group_properties: Any, device_id: Any, sends: bool,
                disable_geoip: Any = None) -> EvaluationContext:
        """Check the arguments of a flag call; ``sends``: the call may send or emit events."""
        self._count_read(sends)
        return evaluation_context(distinct_id, groups, person_properties, group_properties,
                                  device_id, disable_geoip)

    @overload
    def value(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
              group_properties: Any, device_id: Any, only_local: bool,
              send_event: bool, disable_geoip: Any = None, wait: Literal[True] = True
              ) -> Union[bool, str, None]: ...

    @overload
    def value(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
              group_properties: Any, device_id: Any, only_local: bool,
              send_event: bool, disable_geoip: Any, wait: Literal[False]
              ) -> Union[bool, str, Undecided, None]: ...

    def value(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
              group_properties: Any, device_id: Any, only_local: bool,
              send_event: bool, disable_geoip: Any = None, wait: bool = True
              ) -> Union[bool, str, Undecided, None]:
        """One flag's value for the client's get_feature_flag(): ``result(detail=False).value``.

        The hot path: a flag decided locally is walked here;
        anything else (no definitions yet, unknown key, undecided) takes :meth:`result`.
        ``wait=False`` (see :meth:`value_now`) answers UNDECIDED where this would wait.
        Raises EventError for bad arguments, as the argument checks do.
        """
        # _count_read(send_event), inlined: this is the hot path.
        if send_event or FORKS[0] != self._forks:
            self.fork_check()
        else:
            left = self._countdown = self._countdown - 1
            if left <= 0:
                self.fork_check()
        if key.__class__ is not str or not key:
            key = check_flag_key(key)
        ctx = call_context(distinct_id, groups, person_properties, group_properties,
                           device_id, disable_geoip)
        holder = self._holder
        snap = self._snapshot() if holder is None else holder.current
        flag = snap.lookup(key)  # None: not loaded, no such flag, or not compiled yet
        if flag is None:
            if not send_event:  # the general path may wait on a lock or ask the server
                self.fork_check()
            if not wait:
                found = self.result_now(key, _public(ctx), only_local=only_local,
                                        send_event=send_event, detail=False)
                return found if isinstance(found, Undecided) else found.value
            return self.result(key, _public(ctx), only_local=only_local, send_event=send_event,
                               detail=False).value
        try:  # flags.evaluate(detail=False), inlined
            ev = new_evaluation(snap, ctx, True, False, key) if flag.plan.stateful else STATELESS
            result = walk(flag, ctx, ev, None)
        except Exception as exc:
            result = error_result(key, flag, exc)
        if result.value is None and not only_local and self._remote is not None:
            if not wait:
                return UNDECIDED
            if not send_event:  # checked above when it sends
                self.fork_check()
            answer = self._ask_server(_public(ctx), [key])
            result = remote_result(key, answer, result)
            if send_event:
                self._maybe_emit(result, ctx, answer.request_id)
            return result.value
        if send_event:
            self._maybe_emit(result, ctx, None)
        return result.value

    def values(self, distinct_id: Any, groups: Any, person_properties: Any,
               group_properties: Any, device_id: Any, only_local: bool,
               disable_geoip: Any = None) -> Dict[str, Any]:
        """Every flag's known value for the client's get_all_flags(): ``all_values(ctx,
        known_only=True)`` with the argument checks of :meth:`value` and its cheaper context.
        """
        self._count_read(not only_local)
        ctx = call_context(distinct_id, groups, person_properties, group_properties,
                           device_id, disable_geoip)
        holder = self._holder
        snap = self._snapshot() if holder is None else holder.current
        if not snap.loaded or (not only_local and self._remote is not None):
            # Maybe a wait for the first load, maybe the server: the general path.
            return self.all_values(_public(ctx), only_local=only_local, known_only=True)
        return flags.evaluate_values(snap, ctx, known_only=True)

    # --- without waiting (AsyncClient): answer from local data, or say it needs to wait ------

    def value_now(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
                  group_properties: Any, device_id: Any, only_local: bool,
                  send_event: bool, disable_geoip: Any = None
                  ) -> Union[bool, str, Undecided, None]:
        """:meth:`value` without waiting: UNDECIDED when the answer needs the first definitions
        load or the server (then call :meth:`value` where waiting is fine)."""
        return self.value(key, distinct_id, groups, person_properties, group_properties,
                          device_id, only_local, send_event, disable_geoip, False)

    def result_now(self, key: str, ctx: EvaluationContext, *, only_local: bool = False,
                   send_event: bool = True, detail: bool = True) -> Union[FlagResult, Undecided]:
        """:meth:`result` without waiting: UNDECIDED when it would wait (see value_now)."""
        snap = self._snapshot()
        if not snap.loaded and not self._waited:
            return UNDECIDED
        local = flags.evaluate(snap, key, ctx, detail=detail)
        if local.value is None and not only_local and self._remote is not None:
            return UNDECIDED
        if send_event:
            self._maybe_emit(local, ctx, None)
        return local

    def _current(self) -> Snapshot:
        snap = self._snapshot()
        if not snap.loaded and not self._waited:
            if _REFUSING_TO_WAIT.active:
                raise WouldWait
            # Only the first call(s) wait, and only up to the configured budget.
            self._wait_ready(self._first_load_timeout)
            self._waited = True
            snap = self._snapshot()
        return snap

    def _ask_server(self, ctx: EvaluationContext, keys: Optional[Sequence[str]]) -> RemoteFlags:
        if _REFUSING_TO_WAIT.active:
            raise WouldWait
        assert self._remote is not None  # every caller checked it
        return self._remote(ctx, keys)

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
            answer = self._ask_server(ctx, [key])
            result = remote_result(key, answer, local)
            if send_event:
                self._maybe_emit(result, ctx, answer.request_id)
            return result
        if send_event:
            self._maybe_emit(local, ctx, None)
        return local

    def all_results(self, ctx: EvaluationContext, *, only_local: bool = False,
                    keys: Optional[Sequence[str]] = None) -> Dict[str, FlagResult]:
        """Evaluate every flag (or only ``keys``); at most one remote request fills what local
        data could not."""
        return self.evaluate_set(ctx, only_local=only_local, keys=keys).results

    def evaluate_set(self, ctx: EvaluationContext, *, only_local: bool = False,
                     keys: Optional[Sequence[str]] = None,
                     ask_for_missing: bool = False, detail: bool = True) -> FlagSet:
        """Evaluate every flag, or the flags named by ``keys`` (in definition order).

        The server is asked once, for the same keys, when definitions are missing or a flag
        is undecided locally, or (``ask_for_missing``) when a named key has no definition.
        ``detail=False``: results without explanations or payloads (see flags.evaluate).
        """
        snap = self._current()
        wanted = None if keys is None else set(keys)
        if wanted is None:
            results = flags.evaluate_all(snap, ctx, detail=detail)
        elif snap.loaded:
            results = {key: flags.evaluate(snap, key, ctx, detail=detail) for key in snap.flags
                       if key in wanted}
        else:
            results = {}
        needs_server = not snap.loaded or any(r.inconclusive for r in results.values())
        if ask_for_missing and wanted is not None and not wanted.issubset(results):
            needs_server = True
        answer: Optional[RemoteFlags] = None
        if needs_server and not only_local and self._remote is not None:
            answer = self._ask_server(ctx, None if keys is None else list(keys))
            fill = set(answer.flags) | {k for k, r in results.items() if r.inconclusive}
            if wanted is not None:
                fill &= wanted
            for key in fill:
                local = results.get(key)
                if local is None or local.inconclusive:
                    results[key] = remote_result(key, answer, local)
        return FlagSet(results, answer)

    def all_values(self, ctx: EvaluationContext, *, only_local: bool = False,
                   keys: Optional[Sequence[str]] = None,
                   known_only: bool = False) -> Dict[str, Any]:
        """Return every flag's value (None = unknown) the fastest way; one remote call at most.

        With ``keys``, only those flags (see :meth:`evaluate_set`). ``known_only`` leaves the
        unknown values out.
        """
        if keys is not None:
            return {key: result.value for key, result in
                    self.evaluate_set(ctx, only_local=only_local, keys=keys).results.items()
                    if result.value is not None or not known_only}
        snap = self._current()
        if only_local or self._remote is None:
            return flags.evaluate_values(snap, ctx, known_only=known_only)
        values = flags.evaluate_values(snap, ctx)
        unknown = [key for key, value in values.items() if value is None]
        if (unknown or not snap.loaded) and not only_local and self._remote is not None:
            answer = self._ask_server(ctx, None)
            for key in set(answer.flags).union(unknown):
                if values.get(key) is None:
                    values[key] = remote_result(key, answer, None).value
        if known_only:
            return {key: value for key, value in values.items() if value is not None}
        return values

    def report_called(self, distinct_id: str, key: str, response: Any,
                      properties: Dict[str, Any], groups: Mapping[str, str],
                      disable_geoip: Optional[bool]) -> None:
        """Send one ``$feature_flag_called`` built by the caller, once per (person, flag,
        response, groups) like every other flag read."""
        dedupe_key = (distinct_id, key, response,
                      tuple(sorted(groups.items())) if groups else ())
        if not self.deduper.first_time(dedupe_key):
            return
        if disable_geoip is None:
            self._emit_called(distinct_id, properties, groups)
        else:
            self._emit_called(distinct_id, properties, groups, disable_geoip)

    def _maybe_emit(self, result: FlagResult, ctx: Context,
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
            properties = called_event_properties(result, request_id, payload)
            # The groups are not copied: the event copies them into $groups as it is built.
            if ctx.disable_geoip is None:
                self._emit_called(ctx.distinct_id, properties, groups)
            else:
                self._emit_called(ctx.distinct_id, properties, groups, ctx.disable_geoip)
        except Exception:  # an event must never turn a flag read into an error
            log.exception("productos: could not queue $feature_flag_called")


def _public(ctx: Context) -> EvaluationContext:
    """The EvaluationContext of a context, for what takes only that type."""
    return ctx.full() if isinstance(ctx, CallContext) else ctx


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
    # The server's own words, as posthog reports them; else a sentence of ours, which the
    # $feature_flag_called event leaves out (posthog sends no reason then).
    description = server_reason.get("description")
    if not isinstance(description, str) or not description:
        code = server_reason.get("code")
        description = f"{REMOTE_TEXT} ({code})" if isinstance(code, str) and code else REMOTE_TEXT
    return replace(
        base, value=value, variant=variant if enabled else None,
        payload=decode_payload(metadata.get("payload")) if enabled else None,
        locally_evaluated=False,
        flag_id=metadata.get("id", base.flag_id), flag_version=metadata.get("version",
                                                                            base.flag_version),
        reason=replace(base.reason, code=ReasonCode.REMOTE, error=None,
                       condition_index=server_reason.get("condition_index"),
                       description=description),
    )



def _remote_error(key: str, answer: RemoteFlags) -> Optional[str]:
    if answer.error:
        return answer.error
    if answer.quota_limited:
        return "quota_limited"
    if key not in answer.flags:
        return "errors_while_computing_flags" if answer.errors_while_computing else "flag_missing"
    return None
