"""``evaluate_flags()``'s answer: every flag's value for one person, read without re-evaluating.

:class:`FeatureFlagEvaluations` behaves as posthog 7.91's class of the same name: branch on
``is_enabled()`` / ``get_flag()`` (each read sends ``$feature_flag_called`` once per person,
flag, value and groups), narrow it with ``only()`` / ``only_accessed()``, and pass it to
``capture(..., flags=snapshot)`` so the event carries the values the code branched on, with no
second evaluation and no request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Union

from productos._runtime.records import record

__all__ = ["FeatureFlagEvaluations", "FlagRecord", "raw_payload_text"]

log = logging.getLogger("productos")

FlagValue = Union[bool, str]
# report(distinct_id, key, response, properties, groups, disable_geoip): sends one
# $feature_flag_called unless this (person, flag, response, groups) was reported already.
Report = Callable[[str, str, Optional[FlagValue], Dict[str, Any], Mapping[str, str],
                   Optional[bool]], None]

LOCAL_REASON = "Evaluated locally"  # posthog's reason text for a locally evaluated flag


@record(frozen=True)
class FlagRecord:
    """One flag of an evaluation: its outcome and where it came from."""

    key: str
    enabled: bool
    variant: Optional[str]
    payload: Any  # decoded
    id: Optional[int]
    version: Optional[int]
    reason: Optional[str]
    locally_evaluated: bool

    @property
    def value(self) -> FlagValue:
        """The flag's value: False, the variant, or True."""
        if not self.enabled:
            return False
        return self.variant if self.variant is not None else True


class FeatureFlagEvaluations:
    """A point-in-time snapshot of every flag evaluated for one distinct id.

    Returned by ``Client.evaluate_flags()``. Reading a flag (``is_enabled``, ``get_flag``)
    sends ``$feature_flag_called`` (deduplicated per person, flag, value and groups) unless
    ``send_feature_flag_events=False``; ``get_flag_payload`` and ``keys`` send nothing.
    ``capture(..., flags=snapshot)`` adds ``$feature/<key>`` for every flag in it and
    ``$active_feature_flags`` (sorted) for the enabled ones.
    """

    def __init__(self, distinct_id: str, flags: Mapping[str, FlagRecord], *,
                 groups: Optional[Mapping[str, str]] = None,
                 disable_geoip: Optional[bool] = None, request_id: Optional[str] = None,
                 evaluated_at: Optional[int] = None, errors_while_computing: bool = False,
                 quota_limited: bool = False, accessed: Optional[Iterable[str]] = None,
                 unresolved_flags: Optional[Mapping[str, str]] = None,
                 report: Optional[Report] = None) -> None:
        self._distinct_id = distinct_id
        self._flags: Dict[str, FlagRecord] = dict(flags)
        self._groups: Dict[str, str] = dict(groups or {})
        self._disable_geoip = disable_geoip
        self._request_id = request_id
        self._evaluated_at = evaluated_at
        self._errors_while_computing = errors_while_computing
        self._quota_limited = quota_limited
        self._accessed: Set[str] = set(accessed or ())
        self._unresolved: Dict[str, str] = dict(unresolved_flags or {})
        self._report = report

    # --- reads ----------------------------------------------------------------------------

    def is_enabled(self, key: str, default_value: bool = False, *,
                   send_feature_flag_events: bool = True) -> bool:
        """Whether the flag is enabled; ``default_value`` when it is not in the snapshot."""
        flag = self._flags.get(key)
        self._record_access(key, send_feature_flag_events)
        return bool(flag.enabled) if flag else default_value

    def get_flag(self, key: str, *, send_feature_flag_events: bool = True
                 ) -> Optional[FlagValue]:
        """The flag's value (variant, True or False), or None when it is not in the snapshot."""
        flag = self._flags.get(key)
        self._record_access(key, send_feature_flag_events)
        return None if flag is None else flag.value

    def get_flag_payload(self, key: str) -> Any:
        """The decoded payload of the flag's value, if any (no event, not an access)."""
        flag = self._flags.get(key)
        return flag.payload if flag else None

    @property
    def keys(self) -> List[str]:
        """The keys of the flags in this snapshot."""
        return list(self._flags)

    @property
    def unresolved_flags(self) -> Mapping[str, str]:
        """Flags local evaluation could not decide and the server did not fill, with why."""
        return MappingProxyType(self._unresolved)

    @property
    def distinct_id(self) -> str:
        """Whom the flags were evaluated for ("" when no distinct id could be found)."""
        return self._distinct_id

    # --- narrowing ------------------------------------------------------------------------

    def only_accessed(self) -> FeatureFlagEvaluations:
        """A copy with only the flags read so far through ``is_enabled`` / ``get_flag``."""
        return self._clone({k: self._flags[k] for k in self._accessed if k in self._flags})

    def only(self, keys: List[str]) -> FeatureFlagEvaluations:
        """A copy with only these flags; keys not in the snapshot are dropped with a warning."""
        kept: Dict[str, FlagRecord] = {}
        missing: List[str] = []
        for key in keys:
            flag = self._flags.get(key)
            if flag is None:
                missing.append(key)
            else:
                kept[key] = flag
        if missing:
            log.warning("productos: FeatureFlagEvaluations.only() was called with flag keys "
                        "that are not in the evaluation set and will be dropped: %s",
                        ", ".join(missing))
        return self._clone(kept)

    def event_properties(self) -> Dict[str, Any]:
        """``$feature/<key>`` for every flag and ``$active_feature_flags`` (if any is on)."""
        properties: Dict[str, Any] = {}
        active: List[str] = []
        for key, flag in self._flags.items():
            properties[f"$feature/{key}"] = flag.value
            if flag.enabled:
                active.append(key)
        if active:
            properties["$active_feature_flags"] = sorted(active)
        return properties

    def __repr__(self) -> str:
        return (f"FeatureFlagEvaluations(distinct_id={self._distinct_id!r}, "
                f"flags={ {k: f.value for k, f in self._flags.items()} !r})")

    # --- internals ------------------------------------------------------------------------

    def _clone(self, flags: Dict[str, FlagRecord]) -> FeatureFlagEvaluations:
        # The copy tracks its own reads; reads on the copy do not show on the original.
        return FeatureFlagEvaluations(
            self._distinct_id, flags, groups=self._groups, disable_geoip=self._disable_geoip,
            request_id=self._request_id, evaluated_at=self._evaluated_at,
            errors_while_computing=self._errors_while_computing,
            quota_limited=self._quota_limited, accessed=self._accessed, report=self._report)

    def _record_access(self, key: str, send_event: bool) -> None:
        self._accessed.add(key)
        if not send_event or not self._distinct_id or self._report is None:
            return
        flag = self._flags.get(key)
        response = None if flag is None else flag.value
        try:
            self._report(self._distinct_id, key, response,
                         self._called_properties(key, flag, response), self._groups,
                         self._disable_geoip)
        except Exception:  # an event must never turn a flag read into an error
            log.exception("productos: could not queue $feature_flag_called")

    def _called_properties(self, key: str, flag: Optional[FlagRecord],
                           response: Optional[FlagValue]) -> Dict[str, Any]:
        props: Dict[str, Any] = {
            "$feature_flag": key,
            "$feature_flag_response": response,
            "locally_evaluated": flag.locally_evaluated if flag else False,
            f"$feature/{key}": response,
        }
        if flag is not None:
            if flag.payload is not None:
                props["$feature_flag_payload"] = flag.payload
            if flag.id:
                props["$feature_flag_id"] = flag.id
            if flag.version:
                props["$feature_flag_version"] = flag.version
            if flag.reason:
                props["$feature_flag_reason"] = flag.reason
        if self._request_id:
            props["$feature_flag_request_id"] = self._request_id
        if self._evaluated_at and not (flag and flag.locally_evaluated):
            props["$feature_flag_evaluated_at"] = self._evaluated_at
        errors: List[str] = []
        if self._errors_while_computing:
            errors.append("errors_while_computing_flags")
        if self._quota_limited:
            errors.append("quota_limited")
        if key in self._unresolved:
            errors.append("local_evaluation_inconclusive")
        elif flag is None:
            errors.append("flag_missing")
        if errors:
            props["$feature_flag_error"] = ",".join(errors)
        return props


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


# One decoder for every payload: json.loads() with an argument builds a new one per call.
_PAYLOAD_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def raw_payload_text(raw: Any) -> Any:
    """A payload as posthog's bulk getters return it: valid JSON text as it came, invalid
    text as None, anything else unchanged."""
    if isinstance(raw, str):
        try:
            _PAYLOAD_DECODER.decode(raw)
        except (ValueError, RecursionError):
            return None
        return raw
    return raw


def decoded_payload(raw: Any) -> Any:
    """A payload decoded as posthog decodes it for a snapshot (invalid JSON text: None)."""
    if isinstance(raw, str):
        try:
            return _PAYLOAD_DECODER.decode(raw)
        except (ValueError, RecursionError):
            return None
    return raw


def definition_payload(definition: Mapping[str, Any], value: Any) -> Any:
    """The raw payload a flag definition has for value (True/False/variant), as posthog reads
    it: booleans look up "true"/"false", a variant its own name."""
    filters = definition.get("filters") or {}
    payloads = filters.get("payloads") if isinstance(filters, Mapping) else None
    if not isinstance(payloads, Mapping):
        return None
    name = str(value).lower() if isinstance(value, bool) else str(value)
    return payloads.get(name)
