"""Checking what clients send: events, ``/flags`` bodies, keys and query parameters.

Pure functions: each returns the checked value or raises :class:`HTTPProblem` naming what is
wrong, so a bad request is refused before anything is written.
"""

from __future__ import annotations

import datetime as _dt
import hmac
import re
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from productos.devserver.messages import HTTPProblem, bad_request

Query = Mapping[str, List[str]]


# --- events ------------------------------------------------------------------------------------


class DiscardedEvent(Exception):
    """One event PostHog would drop on its own (an ingestion warning), keeping the others:
    no event name, or no usable distinct id. The sentence says which event and why."""


def text_id(value: Any) -> Optional[str]:
    """A distinct or device id as text: numbers are accepted, empty and bool values are not."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def _is_object(value: Any) -> bool:
    # JSON objects arrive as dicts: the exact type check skips the slow ABC check per event.
    return type(value) is dict or isinstance(value, Mapping)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _where(position: int, name: Any) -> str:
    return f"Event #{position}" if not isinstance(name, str) or not name \
        else f"Event #{position} ({name!r})"


def normalise_event(raw: Any, position: int, now: _dt.datetime) -> Dict[str, Any]:
    """Check one event of an ingestion body and return it in the stored shape."""
    if not _is_object(raw):
        raise bad_request("invalid_event", f"Event #{position} is not a JSON object.")
    name = raw.get("event")
    if not isinstance(name, str) or not name:
        raise DiscardedEvent(f"{_where(position, name)} has no event name.")
    properties = raw.get("properties")
    if properties is None:
        properties = {}
    if not _is_object(properties):
        raise bad_request("invalid_event",
                          f"{_where(position, name)}: properties must be an object.")
    raw_id = raw.get("distinct_id")
    if raw_id is None:
        raw_id = properties.get("distinct_id", properties.get("$distinct_id"))
    distinct_id = text_id(raw_id)
    if distinct_id is None:
        raise DiscardedEvent(f"{_where(position, name)} has no distinct_id (a non-empty "
                             f"string, not only whitespace).")
    raw_uuid = raw.get("uuid")
    if raw_uuid is None:
        event_uuid = str(uuid.uuid4())  # nothing to de-duplicate on, as in PostHog
    elif isinstance(raw_uuid, str) and _CANONICAL_UUID.fullmatch(raw_uuid):
        event_uuid = raw_uuid  # already in the stored form (what SDKs send)
    else:
        try:
            event_uuid = str(uuid.UUID(raw_uuid)) if isinstance(raw_uuid, str) else ""
        except ValueError:
            event_uuid = ""
        if not event_uuid:
            raise bad_request("invalid_event",
                              f"{_where(position, name)} has an invalid uuid {raw_uuid!r}.")
    timestamp = raw.get("timestamp")
    if timestamp is None:
        offset = raw.get("offset")
        moment = now
        if isinstance(offset, (int, float)) and not isinstance(offset, bool):
            moment = now - _dt.timedelta(milliseconds=offset)
        timestamp = moment.isoformat()
    elif not isinstance(timestamp, str) or not timestamp:
        raise bad_request("invalid_event",
                          f"{_where(position, name)}: timestamp must be an ISO-8601 string.")
    event: Dict[str, Any] = {
        "uuid": event_uuid,
        "event": name,
        "distinct_id": distinct_id,
        "timestamp": timestamp,
        # The body was decoded for this request alone: its dicts can be kept, not copied.
        "properties": properties if type(properties) is dict else dict(properties),
    }
    for key in ("$set", "$set_once"):
        value = raw.get(key)
        if value is None:
            continue
        if not _is_object(value):
            raise bad_request("invalid_event", f"{_where(position, name)}: {key} must be an "
                                               f"object.")
        event[key] = dict(value)
    return event


def events_of(payload: Any) -> Tuple[List[Any], Any]:
    """The events of an ingestion body and its request-level token."""
    if isinstance(payload, list):
        return payload, None
    if not isinstance(payload, Mapping):
        raise bad_request("invalid_payload",
                          "The body must be an event, a list of events or a batch.")
    token = body_token(payload)
    if "batch" in payload:
        batch = payload["batch"]
        if not isinstance(batch, list):
            raise bad_request("invalid_payload", "'batch' must be a list of events.")
        return batch, token
    if "data" in payload and "event" not in payload:
        data = payload["data"]
        return (data if isinstance(data, list) else [data]), token
    return [payload], token


def event_token(raw: Any) -> Any:
    """The project key one event carries itself (when the body has none)."""
    if not isinstance(raw, Mapping):
        return None
    token = raw.get("api_key", raw.get("token"))
    if token is None and isinstance(raw.get("properties"), Mapping):
        token = raw["properties"].get("token")
    return token


# --- /flags ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagsRequest:
    """A checked ``/flags`` body."""

    distinct_id: str
    groups: Dict[str, str]
    person_properties: Mapping[str, Any]
    group_properties: Mapping[str, Mapping[str, Any]]
    device_id: Optional[str]
    keys: Optional[List[str]]  # flag_keys_to_evaluate


def flags_body(payload: Any) -> Mapping[str, Any]:
    """The ``/flags`` body as an object (its key is checked before its fields)."""
    if not isinstance(payload, Mapping):
        raise bad_request("invalid_payload", "The /flags body must be a JSON object.")
    return payload


def body_token(payload: Mapping[str, Any]) -> Any:
    """The project key a request body carries."""
    return payload.get("api_key", payload.get("token"))


def flags_request(payload: Mapping[str, Any]) -> FlagsRequest:
    """Check the fields of a ``/flags`` body."""
    distinct_id = text_id(payload.get("distinct_id"))
    if distinct_id is None:
        raise bad_request("invalid_payload", "distinct_id is required (a non-empty string).")
    groups = payload.get("groups") or {}
    if not isinstance(groups, Mapping):
        raise bad_request("invalid_payload", "groups must be an object of type -> key.")
    person_properties = payload.get("person_properties") or {}
    if not isinstance(person_properties, Mapping):
        raise bad_request("invalid_payload", "person_properties must be an object.")
    group_properties = payload.get("group_properties") or {}
    if not isinstance(group_properties, Mapping) or not all(
            isinstance(v, Mapping) for v in group_properties.values()):
        raise bad_request("invalid_payload", "group_properties must be an object of objects.")
    device_id = text_id(payload.get("device_id"))
    keys = payload.get("flag_keys_to_evaluate")
    if keys is not None and (not isinstance(keys, list)
                             or not all(isinstance(k, str) for k in keys)):
        raise bad_request("invalid_payload",
                          "flag_keys_to_evaluate must be a list of flag keys.")
    return FlagsRequest(distinct_id, {str(k): str(v) for k, v in groups.items()},
                        person_properties, group_properties, device_id, keys)


# --- keys --------------------------------------------------------------------------------------


def check_project_token(expected: Optional[str], tokens: Sequence[Any]) -> None:
    """Raise 401 unless every token is the expected project key (any key when none is set)."""
    if expected is None:
        return
    if not tokens or any(t is None or t == "" for t in tokens):
        raise HTTPProblem(401, "missing_api_key",
                          "No project API key: send it as 'api_key' or 'token'.",
                          kind="authentication_error")
    for token in tokens:
        if not isinstance(token, str) or not hmac.compare_digest(token, expected):
            raise HTTPProblem(401, "invalid_api_key",
                              "Project API key invalid. Check the project API key (phc_...).",
                              kind="authentication_error")


def check_personal_key(expected: Optional[str], project_key: Optional[str],
                       authorization: Optional[str], query: Query) -> None:
    """Raise 401 unless the Bearer key (and a given project token) are right."""
    if expected is not None:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise HTTPProblem(401, "authentication_failed",
                              "Send the personal API key as 'Authorization: Bearer phx_...'.",
                              kind="authentication_error")
        if not hmac.compare_digest(key.strip(), expected):
            raise HTTPProblem(401, "authentication_failed",
                              "Personal API key invalid. Check the personal API key.",
                              kind="authentication_error")
    token = first(query, "token")
    if token and project_key is not None and not hmac.compare_digest(token, project_key):
        raise HTTPProblem(401, "invalid_api_key",
                          "Project API key invalid. Check the project API key (phc_...).",
                          kind="authentication_error")


# --- query parameters ----------------------------------------------------------------------------


def first(query: Query, name: str) -> Optional[str]:
    """The first value of a query parameter, or None."""
    values = query.get(name)
    return values[0] if values else None


def int_param(query: Query, name: str, default: Optional[int], low: int,
              high: int) -> Optional[int]:
    """An integer query parameter within [low, high], or default when absent."""
    text = first(query, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request("invalid_parameter", f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise bad_request("invalid_parameter", f"{name} must be between {low} and {high}.")
    return value


def etag_matches(header: Optional[str], etag: str) -> bool:
    """True when an If-None-Match header names etag (or ``*``)."""
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate.startswith("W/"):
            candidate = candidate[2:]
        if candidate in ("*", etag):
            return True
    return False


# --- analytics query parameters ------------------------------------------------------------------


def _parse_moment(text: str) -> Optional[_dt.datetime]:
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_dt.timezone.utc)
    return moment


def time_param(query: Query, name: str, end: bool = False) -> Optional[int]:
    """An ISO-8601 date or datetime parameter as epoch ms (naive = UTC), or None when absent.

    A bare date as the end of a range (``end``) means the end of that day.
    """
    text = (first(query, name) or "").strip()
    if not text:
        return None
    moment = _parse_moment(text)
    if moment is None:
        raise HTTPProblem(400, "invalid_parameter",
                          f"{name} must be an ISO-8601 date or datetime, not {text!r}.",
                          attr=name)
    if end and len(text) == 10:  # YYYY-MM-DD: the whole day
        moment += _dt.timedelta(days=1)
    return int(moment.timestamp() * 1000)


def time_range(query: Query) -> Tuple[Optional[int], Optional[int]]:
    """The ``from``/``to`` parameters as epoch ms, checked to be in order."""
    start, stop = time_param(query, "from"), time_param(query, "to", end=True)
    if start is not None and stop is not None and stop <= start:
        raise HTTPProblem(400, "invalid_parameter", "to must be after from.", attr="to")
    return start, stop


def names_param(query: Query, name: str, low: int, high: int) -> List[str]:
    """Event names given as ``name=A,B,C`` or repeated ``name=A&name=B``, low..high of them."""
    values = query.get(name) or []
    names = [n.strip() for n in values[0].split(",")] if len(values) == 1 else \
        [v.strip() for v in values]
    if not values or any(not n for n in names):
        raise HTTPProblem(400, "invalid_parameter",
                          f"{name} must list {low} to {high} event names, comma-separated.",
                          attr=name)
    if not low <= len(names) <= high:
        raise HTTPProblem(400, "invalid_parameter",
                          f"{name} must list {low} to {high} event names, not {len(names)}.",
                          attr=name)
    return names


def positive_int_param(query: Query, name: str, default: int, high: int) -> int:
    """A positive integer parameter (400 naming it when not)."""
    text = (first(query, name) or "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 0 < value <= high:
        raise HTTPProblem(400, "invalid_parameter",
                          f"{name} must be a whole number from 1 to {high}, not {text!r}.",
                          attr=name)
    return value
