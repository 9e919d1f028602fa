"""The public calls' arguments: checks, and the event each event-making call becomes (pure).

Every check raises ``EventError`` (a ``ValueError``) saying what is wrong; the client turns
that into a counted drop, or raises it in debug mode. Each ``*_event`` function takes the
client's ``EventBuilder`` and the request scope, and returns the event's ``Draft``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Callable, Dict, Optional

from productos._capture.events import Draft, EventBuilder, describe
from productos.context import Scope
from productos.errors import EventError

log = logging.getLogger("productos")

# Types whose str() makes a string, but never the id the caller meant.
_NOT_IDS = (bool, bytes, bytearray, memoryview, Mapping, list, tuple, set, frozenset)

FlagProperties = Callable[[Optional[str], Optional[Dict[str, str]]], Mapping[str, Any]]


# --- checks -----------------------------------------------------------------------------------


def to_id(value: Any) -> str:
    """Return an id (distinct id, group key...) as a string; strings and numbers qualify."""
    if isinstance(value, str):
        return value
    if isinstance(value, _NOT_IDS) or value is None:
        raise EventError(f"an id must be a string or number, not {describe(value)}")
    text = str(value)
    if not isinstance(text, str):
        raise EventError("an id's str() did not return a string")
    return text


def distinct_id_or(value: Any, from_context: Optional[str]) -> Optional[str]:
    """Return the distinct id given, else the context's (None when neither has one)."""
    if type(value) is str and value:
        return value
    if value is None or value == "":
        return from_context
    return to_id(value)


def required_id(name: str, value: Any) -> str:
    """Return a required id as a string; a missing one is an error naming the argument."""
    if value is None or value == "":
        raise EventError(f"{name} is required")
    return to_id(value)


def check_mapping(name: str, value: Any) -> Optional[Mapping[str, Any]]:
    """Return value if it is a mapping or None; anything else is an error naming the argument."""
    if value is None or type(value) is dict:  # the common cases, without an ABC check
        return value
    if not isinstance(value, Mapping):
        raise EventError(f"{name} must be a mapping, not {type(value).__name__}")
    return value


def check_groups(value: Any) -> Optional[Dict[str, str]]:
    """Return ``groups`` as group type → group key strings (None when there are none)."""
    if value is None:
        return None
    groups = check_mapping("groups", value)
    if not groups:
        return None
    return {to_id(k): to_id(v) for k, v in groups.items()}


def event_name(value: Any) -> str:
    """Return an event name: a non-empty string."""
    if type(value) is str and value:
        return value
    if not isinstance(value, str) or not value:
        raise EventError(f"event name must be a non-empty string, not {describe(value)}")
    return value


def timeout_arg(value: Any, default: Optional[float]) -> Optional[float]:
    """Return a usable timeout for flush()/shutdown(): None waits for good, bad means default."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float range: as good as forever
            return threading.TIMEOUT_MAX
        if seconds != seconds:  # NaN
            return default
        return min(max(0.0, seconds), threading.TIMEOUT_MAX)
    log.warning("productos: timeout=%s is not a number of seconds; %s is used instead",
                describe(value), default)
    return default


# --- the event of each call -------------------------------------------------------------------


def capture_event(builder: EventBuilder, scope: Scope, event: Any, distinct_id: Any,
                  properties: Any, groups: Any, timestamp: Any, uuid: Any,
                  flag_properties: Optional[FlagProperties] = None,
                  disable_geoip: Optional[bool] = None) -> Draft:
    """Return the event of ``capture()``; flag_properties come under the caller's properties."""
    # The common argument types are recognised inline: this runs on every capture().
    name = event if type(event) is str and event else event_name(event)
    props = (properties if properties is None or type(properties) is dict
             else check_mapping("properties", properties))
    group_map = None if groups is None else check_groups(groups)
    owner = (distinct_id if type(distinct_id) is str and distinct_id
             else distinct_id_or(distinct_id, scope.distinct_id))
    if flag_properties is not None:
        props = {**flag_properties(owner, group_map), **(props or {})}
    if disable_geoip is not None:
        return builder.draft(name, owner, props, timestamp, uuid, group_map, scope.session_id,
                             scope.tags, disable_geoip=disable_geoip)
    return builder.draft(name, owner, props, timestamp, uuid, group_map, scope.session_id,
                         scope.tags)


def flag_called_event(builder: EventBuilder, scope: Scope, distinct_id: str,
                      properties: Dict[str, Any], groups: Mapping[str, str],
                      disable_geoip: Optional[bool] = None) -> Draft:
    """Return a ``$feature_flag_called`` event, built like capture()'s without its checks.

    The flag read that reports itself has already checked the distinct_id and the groups,
    and built the properties; checking them again would only cost every read that sends.
    """
    return builder.draft("$feature_flag_called", distinct_id, properties, None, None,
                         groups or None, scope.session_id, scope.tags,
                         disable_geoip=disable_geoip)


def person_event(builder: EventBuilder, scope: Scope, kind: str, distinct_id: Any,
                 properties: Any, timestamp: Any, uuid: Any,
                 disable_geoip: Optional[bool] = None) -> Draft:
    """Return the event of ``set()`` (kind ``$set``) or ``set_once()`` (``$set_once``)."""
    props = check_mapping("properties", properties)
    owner = distinct_id_or(distinct_id, scope.distinct_id)
    if owner is None:
        raise EventError(f"{kind} needs a distinct_id (argument or context)")
    return builder.draft(kind, owner, None, timestamp=timestamp, uuid=uuid, system=False,
                         top_level={kind: dict(props or {})}, disable_geoip=disable_geoip)


def alias_event(builder: EventBuilder, scope: Scope, previous_id: Any, distinct_id: Any,
                timestamp: Any, uuid: Any, disable_geoip: Optional[bool] = None) -> Draft:
    """Return the event of ``alias()``: distinct_id (new) joins previous_id (existing)."""
    previous = required_id("previous_id", previous_id)
    new = required_id("distinct_id", distinct_id)
    return builder.draft("$create_alias", previous, {"distinct_id": previous, "alias": new},
                         timestamp=timestamp, uuid=uuid, system=False,
                         disable_geoip=disable_geoip)


def group_event(builder: EventBuilder, scope: Scope, group_type: Any, group_key: Any,
                properties: Any, distinct_id: Any, timestamp: Any, uuid: Any,
                disable_geoip: Optional[bool] = None) -> Draft:
    """Return the event of ``group_identify()``."""
    gtype = required_id("group_type", group_type)
    gkey = required_id("group_key", group_key)
    props = check_mapping("properties", properties)
    owner = distinct_id_or(distinct_id, scope.distinct_id)
    return builder.draft(
        "$groupidentify", owner or f"${gtype}_{gkey}",
        {"$group_type": gtype, "$group_key": gkey, "$group_set": dict(props or {})},
        timestamp=timestamp, uuid=uuid, system=False, disable_geoip=disable_geoip)
