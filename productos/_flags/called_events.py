"""The ``$feature_flag_called`` event: its properties, and which reads have sent theirs.

A flag read reports itself once per (person, flag, value, groups); the properties follow
protocol §5, in the words posthog uses. Pure functions, and one bounded memory.
"""

from __future__ import annotations

from typing import Any, Dict, Hashable, List, Mapping, Optional, Tuple

from productos._flags.remote import REMOTE_TEXT
from productos.flags import FlagResult, InconclusiveReason, ReasonCode

__all__ = ["CalledEventDeduper", "called_event_error", "called_event_properties",
           "flags_for_event"]


class CalledEventDeduper:
    """Remembers which (person, flag, value, groups) already produced an event, boundedly.

    Two generations of at most half the bound each: keys go into the current one, and when
    it is full it becomes the previous one while the older is forgotten. A key found in the
    previous generation moves to the current one, so what is read often stays remembered.
    Each step is one dict operation, atomic under the GIL, so a flag read takes no lock. The
    races left only ever send an event twice, which is harmless: two threads may both find a
    new key absent, and two rotating at once may forget one generation early.
    """

    def __init__(self, max_size: int = 50_000) -> None:
        self._half = max(1, max_size // 2)
        self._current: Dict[Hashable, None] = {}
        self._previous: Dict[Hashable, None] = {}

    def first_time(self, key: Hashable) -> bool:
        """Return True the first time key is seen (recently)."""
        current = self._current
        if key in current:
            return False
        seen_before = key in self._previous
        current[key] = None
        if len(current) >= self._half:
            self._previous = current
            self._current = {}
        return not seen_before

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def reset(self) -> None:
        """Forget everything (after fork, the child's events are its own)."""
        self._current = {}
        self._previous = {}


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
    # As posthog: only the server's own words (a local reason stays in the FlagResult).
    description = result.reason.description
    if (result.reason.code is ReasonCode.REMOTE and description
            and not description.startswith(REMOTE_TEXT)):
        props["$feature_flag_reason"] = description
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
