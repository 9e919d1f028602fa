"""Small helpers the delivery tests share: waiting on a condition, and the books' invariant."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll predicate until it holds or timeout passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def balanced(stats: Dict[str, Any]) -> bool:
    """True when every captured event is sent, waiting, spooled, dropped or filtered."""
    return stats["captured"] == (stats["sent"] + stats["queued"] + stats["in_flight"]
                                 + stats["spooled"] + stats["dropped_total"] + stats["filtered"])
