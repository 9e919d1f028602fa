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
from typing import Any, Callable, Dict, List, Optional, Sequence

from productos import errors
from productos.transport import BatchOutcome


class RecordingSender:
    """A Sender that keeps every batch in memory; it can be told to fail or to be slow."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: List[List[Dict[str, Any]]] = []
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
            outcome.drop(reason, items, errors.APIError(400, "failed on purpose"))
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
