"""posthog's answers built from productos' results: the payload map of
``get_all_flags_and_payloads``, the records of ``evaluate_flags``, and the flag properties
``capture(send_feature_flags={...})`` adds. Pure functions over results and definitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

from productos._flags.evaluations import (
    LOCAL_REASON,
    FlagRecord,
    decoded_payload,
    definition_payload,
    raw_payload_text,
)
from productos._flags.remote import RemoteFlags
from productos._flags.snapshot import Snapshot
from productos.flags import FlagResult

__all__ = ["SendFlagsOptions", "capture_flag_properties", "evaluation_records",
           "payloads_as_posthog", "send_flags_options"]


def _raw_local_payload(snapshot: Snapshot, key: str, value: Any) -> Any:
    flag = snapshot.flags.get(key) if snapshot.loaded else None
    return None if flag is None else definition_payload(flag.raw, value)


def _raw_remote_payload(answer: Optional[RemoteFlags], key: str) -> Any:
    entry = None if answer is None else answer.flags.get(key)
    if not isinstance(entry, Mapping) or not entry.get("enabled"):
        return None
    metadata = entry.get("metadata")
    return metadata.get("payload") if isinstance(metadata, Mapping) else None


def payloads_as_posthog(results: Mapping[str, FlagResult], answer: Optional[RemoteFlags],
                        snapshot: Snapshot) -> Dict[str, Any]:
    """``featureFlagPayloads`` as posthog returns it: the payload text of each flag's value
    as the definitions or the server hold it (invalid JSON text becomes None)."""
    payloads: Dict[str, Any] = {}
    for key, result in results.items():
        if result.value is None:
            continue
        if result.locally_evaluated:
            raw = _raw_local_payload(snapshot, key, result.value)
        else:
            raw = _raw_remote_payload(answer, key)
        if raw is not None:
            payloads[key] = raw_payload_text(raw)
    return payloads


def evaluation_records(results: Mapping[str, FlagResult], answer: Optional[RemoteFlags],
                       snapshot: Snapshot) -> Tuple[Dict[str, FlagRecord], Dict[str, str]]:
    """The records of an ``evaluate_flags()`` snapshot, and the flags left undecided (with
    the reason local evaluation gave)."""
    records: Dict[str, FlagRecord] = {}
    unresolved: Dict[str, str] = {}
    for key, result in results.items():
        value = result.value
        if value is None:
            # Defined locally, undecided there, and not filled by the server.
            why = result.reason.unresolved
            if why is not None:
                unresolved[key] = why.value
            continue
        if result.locally_evaluated:
            raw = _raw_local_payload(snapshot, key, value)
            reason: Optional[str] = LOCAL_REASON
        else:
            raw = _raw_remote_payload(answer, key)
            entry = answer.flags.get(key, {}) if answer is not None else {}
            server = entry.get("reason") if isinstance(entry, Mapping) else None
            reason = (server.get("description") or None) if isinstance(server, Mapping) else None
        records[key] = FlagRecord(
            key=key, enabled=value is not False,
            variant=value if isinstance(value, str) else None,
            payload=decoded_payload(raw), id=result.flag_id, version=result.flag_version,
            reason=reason, locally_evaluated=result.locally_evaluated)
    return records, unresolved


class SendFlagsOptions(NamedTuple):
    """posthog's ``send_feature_flags`` options dict, normalised."""

    only_evaluate_locally: Optional[bool]
    person_properties: Optional[Mapping[str, Any]]
    group_properties: Optional[Mapping[str, Mapping[str, Any]]]
    flag_keys_filter: Optional[Sequence[str]]


def send_flags_options(value: Mapping[str, Any]) -> SendFlagsOptions:
    """The options of ``capture(send_feature_flags={...})`` (posthog's names)."""
    keys = value.get("flag_keys_filter")
    return SendFlagsOptions(value.get("only_evaluate_locally"), value.get("person_properties"),
                            value.get("group_properties"),
                            None if keys is None else [str(k) for k in keys])


def capture_flag_properties(values: Mapping[str, Any]) -> Dict[str, Any]:
    """The properties posthog's ``send_feature_flags`` adds: ``$feature/<key>`` for every
    known flag and ``$active_feature_flags`` (in flag order) when any is on."""
    properties: Dict[str, Any] = {}
    active: List[str] = []
    for key, value in values.items():
        if value is None:
            continue
        properties[f"$feature/{key}"] = value
        if value is not False:
            active.append(key)
    if active:
        properties["$active_feature_flags"] = active
    return properties
