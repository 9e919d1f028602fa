"""Test doubles for applications that use productos: record events instead of sending them.

    from productos.testing import RecordingSender
    sender = RecordingSender()
    client = productos.Client("phc_test", sender=sender)
    ...; client.flush()
    assert sender.events[0]["event"] == "signed up"

For an application's own test suite, ``record_events()`` and ``override_flags()`` (the
``productos_events`` and ``productos_flags`` fixtures of the pytest plugin) reach every client
at once, including ones the application made before the test and the module-level client:
see :mod:`productos._runtime.testmode`.
"""

from __future__ import annotations

import contextlib
import json
import threading
import weakref
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from productos import errors
from productos._flags.hooked import HookedFlags
from productos._flags.service import WrapperOfService
from productos._runtime import lifecycle
from productos.client import Client
from productos.consumer import BatchOutcome, DropReason
from productos.flags import EvaluationContext, FlagResult, InconclusiveReason, Reason, ReasonCode


class RecordingSender:
    """A Sender that keeps every batch in memory; it can be told to fail or to be slow."""

    stores_locally = False  # it stands in for a sender that sends

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: List[List[Dict[str, Any]]] = []
        # Returns the reason to drop a batch for (a DropReason or its value), or None.
        self.fail_with: Optional[Callable[[Sequence[bytes]], Optional[str]]] = None
        self.delay: float = 0.0
        self._cancel = threading.Event()

    @property
    def events(self) -> List[Dict[str, Any]]:
        """Every event delivered so far, in order."""
        with self._lock:
            return [event for batch in self.batches for event in batch]

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        """Record items as delivered (or drop them with the reason ``fail_with`` returns)."""
        if self.delay:
            self._cancel.wait(self.delay)
        outcome = BatchOutcome()
        reason = self.fail_with(items) if self.fail_with else None
        if reason:
            outcome.drop(DropReason(reason), items, errors.APIError(400, "failed on purpose"))
            return outcome
        decoded = [json.loads(item) for item in items]
        with self._lock:
            self.batches.append(decoded)
        outcome.delivered = len(items)
        return outcome

    def cancel(self) -> None:
        """Cut a configured delay short."""
        self._cancel.set()

    def reset_after_fork(self) -> None:
        """Forget batches recorded by the parent."""
        self.batches = []
        self._cancel = threading.Event()
        self._lock = threading.Lock()


class FlagDefinitionsBuilder:
    """Builds a flag definitions document for tests, to feed a real client offline.

        flags = (FlagDefinitionsBuilder()
                 .flag("new-checkout", rollout=50)
                 .flag("beta", conditions=[person_condition("plan", "pro")],
                       payloads={"true": {"color": "blue"}})
                 .flag("pricing", variants={"control": 50, "test": 50}))
        client = productos.Client("phc_test", flag_definitions=flags.build(), send=False)
    """

    def __init__(self) -> None:
        self._flags: List[Dict[str, Any]] = []
        self._group_types: Dict[str, str] = {}
        self._cohorts: Dict[str, Any] = {}

    def flag(self, key: str, *, rollout: Optional[float] = 100, active: bool = True,
             conditions: Optional[List[Dict[str, Any]]] = None,
             variants: Optional[Dict[str, float]] = None,
             payloads: Optional[Mapping[Any, Any]] = None,
             group_type_index: Optional[int] = None) -> FlagDefinitionsBuilder:
        """Add a flag; without conditions it applies to ``rollout`` percent of everyone."""
        filters: Dict[str, Any] = {
            "groups": conditions if conditions is not None
            else [{"properties": [], "rollout_percentage": rollout}],
        }
        if variants:
            filters["multivariate"] = {"variants": [
                {"key": name, "rollout_percentage": share} for name, share in variants.items()]}
        if payloads:
            # The endpoint sends payloads as JSON text.
            filters["payloads"] = {str(k).lower() if isinstance(k, bool) else str(k):
                                   json.dumps(v) for k, v in payloads.items()}
        if group_type_index is not None:
            filters["aggregation_group_type_index"] = group_type_index
        self._flags.append({"id": len(self._flags) + 1, "key": key, "version": 1,
                            "active": active, "filters": filters})
        return self

    def group_type(self, index: int, name: str) -> FlagDefinitionsBuilder:
        """Name a group type (``company``) for flags aggregated by that index."""
        self._group_types[str(index)] = name
        return self

    def cohort(self, cohort_id: int, properties: Dict[str, Any]) -> FlagDefinitionsBuilder:
        """Add a cohort's property group, for ``type: cohort`` filters."""
        self._cohorts[str(cohort_id)] = properties
        return self

    def build(self) -> Dict[str, Any]:
        """Return the definitions document (the body of the definitions endpoint)."""
        return {"flags": json.loads(json.dumps(self._flags)),
                "group_type_mapping": dict(self._group_types),
                "cohorts": json.loads(json.dumps(self._cohorts))}


def person_condition(key: str, value: Any, operator: str = "exact", *,
                     rollout: Optional[float] = 100,
                     variant: Optional[str] = None) -> Dict[str, Any]:
    """Return a release condition on one person property (a list value means any of them)."""
    condition: Dict[str, Any] = {
        "properties": [{"key": key, "value": value, "operator": operator, "type": "person"}],
        "rollout_percentage": rollout,
    }
    if variant is not None:
        condition["variant"] = variant
    return condition


# --- every client at once: record_events() and override_flags() ------------------------------
#
# While either is active, every Client (those made before, those made during, and the
# module-level one) is switched into test mode: no network at all. Events go to the recorder
# (or nowhere, under override_flags() alone); flags are the overrides, else local definitions
# only. A client is switched by swapping three things it reads at call time (its pipeline's
# deliver function, its flag service, its ``disabled`` flag) and switched back the same way,
# so clients made outside a test keep their normal, unchanged hot paths.


class CapturedEvents:
    """The events every client captured while :func:`record_events` is active, in order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: List[Dict[str, Any]] = []

    @property
    def events(self) -> List[Dict[str, Any]]:
        """A copy of the events captured so far (dicts as they would be sent)."""
        with self._lock:
            return list(self._events)

    def clear(self) -> None:
        """Forget the events captured so far."""
        with self._lock:
            self._events.clear()

    def add(self, event: Dict[str, Any]) -> None:
        """Record one event (the clients call this)."""
        with self._lock:
            self._events.append(event)

    def find(self, event: Optional[str] = None, *, distinct_id: Any = None,
             **properties: Any) -> List[Dict[str, Any]]:
        """Return the captured events with this name, distinct id and property values."""
        return [e for e in self.events if _matches(e, event, distinct_id, properties)]

    def assert_captured(self, event: str, *, distinct_id: Any = None,
                        **properties: Any) -> Dict[str, Any]:
        """Return the first matching event; fail with a list of what was captured instead."""
        found = self.find(event, distinct_id=distinct_id, **properties)
        if found:
            return found[0]
        raise AssertionError(_not_captured(event, distinct_id, properties, self.events))

    def assert_not_captured(self, event: str, *, distinct_id: Any = None,
                            **properties: Any) -> None:
        """Fail if a matching event was captured."""
        found = self.find(event, distinct_id=distinct_id, **properties)
        if found:
            raise AssertionError(f"expected no {event!r} event, but captured:\n"
                                 + "\n".join(_describe_event(e, properties) for e in found))

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.events)


def _matches(e: Mapping[str, Any], event: Optional[str], distinct_id: Any,
             properties: Mapping[str, Any]) -> bool:
    if event is not None and e.get("event") != event:
        return False
    if distinct_id is not None and e.get("distinct_id") != str(distinct_id):
        return False
    props = e.get("properties") or {}
    return all(name in props and props[name] == value for name, value in properties.items())


def _describe_event(e: Mapping[str, Any], asked: Mapping[str, Any]) -> str:
    props = e.get("properties") or {}
    # The library's own $-properties are noise unless the assertion asked for one.
    shown = {k: v for k, v in props.items() if not k.startswith("$") or k in asked}
    return f"  {e.get('event')!r} distinct_id={e.get('distinct_id')!r} {shown!r}"


def _not_captured(event: str, distinct_id: Any, properties: Mapping[str, Any],
                  captured: List[Dict[str, Any]]) -> str:
    wanted = f"{event!r} event"
    if distinct_id is not None:
        wanted += f" for distinct_id={str(distinct_id)!r}"
    if properties:
        wanted += " with " + ", ".join(f"{k}={v!r}" for k, v in properties.items())
    if not captured:
        return f"no {wanted} was captured: no events were captured at all"
    lines = [_describe_event(e, properties) for e in captured]
    return (f"no {wanted} was captured; the {len(captured)} captured event(s):\n"
            + "\n".join(lines))


class FlagOverrides:
    """The flag values every client evaluates while :func:`override_flags` is active."""

    def __init__(self) -> None:
        self._results: Dict[str, FlagResult] = {}

    def set(self, key: str, value: Union[bool, str, None], payload: Any = None) -> None:
        """Make every client evaluate key to value (True/False/a variant) with this payload.

        ``None`` makes the flag unknown, as if it did not exist.
        """
        if not isinstance(key, str) or not key:
            raise ValueError("a flag key must be a non-empty string")
        if value is not None and not isinstance(value, (bool, str)):
            raise ValueError(f"a flag value is True, False, a variant key or None, not {value!r}")
        self._results = {**self._results, key: _override_result(key, value, payload)}

    def remove(self, key: str) -> None:
        """Stop overriding key (clients evaluate it from their definitions again)."""
        results = dict(self._results)
        results.pop(key, None)
        self._results = results

    def clear(self) -> None:
        """Stop overriding every flag."""
        self._results = {}

    def get(self, key: str) -> Optional[FlagResult]:
        """Return the overriding result for key, if any."""
        return self._results.get(key)

    @property
    def results(self) -> Dict[str, FlagResult]:
        """The overriding results, by key."""
        return self._results


def _override_result(key: str, value: Union[bool, str, None], payload: Any) -> FlagResult:
    description = "set by productos.testing"
    if value is None:
        return FlagResult(key, None, None, None, True, None, None,
                          Reason(ReasonCode.INCONCLUSIVE, description=description,
                                 inconclusive=InconclusiveReason.FLAG_MISSING))
    code = ReasonCode.CONDITION_MATCH if value else ReasonCode.NO_CONDITION_MATCH
    return FlagResult(key, value, value if isinstance(value, str) else None,
                      payload if value else None, True, None, None,
                      Reason(code, condition_index=0 if value else None,
                             description=description))


class _TestModeFlags(WrapperOfService):
    """A client's flag service in test mode: overrides first, then local definitions only."""

    def result(self, key: str, ctx: EvaluationContext, **kwargs: Any) -> FlagResult:
        overrides = _state.overrides
        found = None if overrides is None else overrides.get(key)
        if found is not None:
            return found
        kwargs["only_local"] = True
        result: FlagResult = self.inner.result(key, ctx, **kwargs)
        return result

    def all_results(self, ctx: EvaluationContext, **kwargs: Any) -> Dict[str, FlagResult]:
        kwargs["only_local"] = True
        results: Dict[str, FlagResult] = dict(self.inner.all_results(ctx, **kwargs))
        overrides = _state.overrides
        if overrides is not None:
            results.update(overrides.results)
        return results

    def all_values(self, ctx: EvaluationContext, **kwargs: Any) -> Dict[str, Any]:
        kwargs["only_local"] = True
        values: Dict[str, Any] = dict(self.inner.all_values(ctx, **kwargs))
        known_only = kwargs.get("known_only", False)
        for key, result in _overridden(kwargs.get("keys")).items():
            if result.value is None and known_only:
                values.pop(key, None)  # overridden to unknown: left out, as unknowns are
            else:
                values[key] = result.value
        return values

    def evaluate_set(self, ctx: EvaluationContext, **kwargs: Any) -> Any:
        """Flags evaluated together (evaluate_flags, named keys): overrides win, no server."""
        kwargs["only_local"] = True
        found = self.inner.evaluate_set(ctx, **kwargs)
        overridden = _overridden(kwargs.get("keys"))
        if not overridden:
            return found
        return found._replace(results={**found.results, **overridden})

    def value(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
              group_properties: Any, device_id: Any, only_local: bool, send_event: bool,
              **kwargs: Any) -> Any:
        overrides = _state.overrides
        found = None if overrides is None or type(key) is not str else overrides.get(key)
        if found is not None:
            return found.value
        return self.inner.value(key, distinct_id, groups, person_properties, group_properties,
                                device_id, True, send_event, **kwargs)


def _overridden(keys: Optional[Sequence[str]]) -> Dict[str, FlagResult]:
    """The overrides in force, only those among ``keys`` when keys are named."""
    overrides = _state.overrides
    if overrides is None:
        return {}
    if keys is None:
        return dict(overrides.results)
    wanted = set(keys)
    return {k: r for k, r in overrides.results.items() if k in wanted}


class _Saved:
    __slots__ = ("deliver", "disabled", "flags", "inner")

    def __init__(self, deliver: Any, disabled: bool, flags: Any) -> None:
        self.deliver = deliver
        self.disabled = disabled
        self.flags = flags
        self.inner: Any = None  # the service inside the client's hooks, while it is wrapped


class _State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.events: Optional[CapturedEvents] = None
        self.overrides: Optional[FlagOverrides] = None
        self.saved: weakref.WeakKeyDictionary[Client, _Saved] = weakref.WeakKeyDictionary()
        self.hooked = False

    @property
    def active(self) -> bool:
        return self.events is not None or self.overrides is not None


_state = _State()


def _recorder(client: Client, events: CapturedEvents) -> Callable[[bytes], bool]:
    counters = client._ledger.counters

    def record(item: bytes) -> bool:
        events.add(json.loads(item))
        counters.add_direct()  # recorded counts as sent: the stats still add up
        counters.add_sent(1, 0)
        return True
    return record


def _switch(client: Any) -> None:
    """Put client in test mode as the state says now (or back to normal when inactive)."""
    if not isinstance(client, Client):
        return
    _switch_client(client)


def _switch_client(client: Any) -> None:
    # Typed Any: the swapped attributes hold stand-ins for the client's own parts.
    with _state.lock:
        saved = _state.saved.get(client)
        if not _state.active:
            if saved is not None:
                client._pipeline._deliver = saved.deliver
                client.disabled = saved.disabled
                client._flags = saved.flags
                if saved.inner is not None:
                    saved.flags.inner = saved.inner
                del _state.saved[client]
            return
        if saved is None:
            saved = _Saved(client._pipeline._deliver, client.disabled, client._flags)
            _state.saved[client] = saved
        if saved.disabled and client.options.disabled:
            return  # disabled on purpose: it records nothing, as it sends nothing
        keyless = saved.disabled  # disabled for want of an API key: tests usually have none
        events = _state.events
        if events is not None:
            client._pipeline._deliver = _recorder(client, events)
        elif keyless:
            client._pipeline._deliver = None  # never sent without a key; counted as such
        else:
            client._pipeline._deliver = saved.deliver
        client.disabled = False
        service = saved.flags
        if isinstance(service, HookedFlags):
            # Inside the hooks, so that hooks see overridden reads too.
            if saved.inner is None:
                saved.inner = service.inner
                service.inner = _TestModeFlags(saved.inner)
        elif not isinstance(client._flags, _TestModeFlags):
            client._flags = _TestModeFlags(service)


def _switch_all() -> None:
    with _state.lock:
        if _state.active and not _state.hooked:
            lifecycle.on_track(_switch)  # clients made from now on
            _state.hooked = True
        clients = [*lifecycle.live_clients(), *list(_state.saved.keys())]
        for client in dict.fromkeys(clients):
            _switch(client)


@contextlib.contextmanager
def record_events() -> Iterator[CapturedEvents]:
    """Make every client record its events here instead of sending them, until the block ends.

    No client opens a socket meanwhile: flag reads use overrides and local definitions only.
    """
    with _state.lock:
        if _state.events is not None:
            raise RuntimeError("record_events() is already active")
        events = _state.events = CapturedEvents()
        _switch_all()
    try:
        yield events
    finally:
        with _state.lock:
            _state.events = None
            _switch_all()


@contextlib.contextmanager
def override_flags() -> Iterator[FlagOverrides]:
    """Make every client evaluate the flags set on the returned object, until the block ends.

    Flags not set are evaluated from local definitions only (never the server).
    """
    with _state.lock:
        if _state.overrides is not None:
            raise RuntimeError("override_flags() is already active")
        overrides = _state.overrides = FlagOverrides()
        _switch_all()
    try:
        yield overrides
    finally:
        with _state.lock:
            _state.overrides = None
            _switch_all()
