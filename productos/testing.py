"""Test doubles for applications that use productos: record events instead of sending them.

    from productos.testing import RecordingSender
    sender = RecordingSender()
    client = productos.Client("phc_test", sender=sender)
    ...; client.flush()
    assert sender.events[0]["event"] == "signed up"
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from productos import errors
from productos.consumer import BatchOutcome, DropReason


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
