"""Building event messages: property merging and JSON-safe serialisation.

Everything here is pure and runs on the caller's thread, so the common path is one
``json.dumps`` call in C; the slow sanitiser only runs when that call refuses the data.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import json
import math
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Set, Tuple

from productos._capture.ids import (
    format_timestamp,
    is_uuid,
    iso_utc_from_ns,
    normalize_uuid,
    personless_id,
    time_ns,
    uuid7,
)
from productos._capture.runtime import system_properties
from productos.errors import EventError
from productos.version import VERSION

LIB_NAME = "productos-python"
MAX_EVENT_BYTES = 900 * 1024
MAX_BATCH_BYTES = 5 * 1024 * 1024
# Deeper nesting than this is almost always a bug (or a cycle) and would blow the C stack
# of json.dumps, so values below it are dropped by the sanitiser.
MAX_DEPTH = 64


# --- JSON safety ----------------------------------------------------------------------


class _Unconvertible(Exception):
    """Raised inside the fast path when a value needs the sanitiser."""


def _convert_scalar(value: Any) -> Any:
    """Return a JSON-friendly stand-in for one non-JSON value, or raise _Unconvertible."""
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if is_uuid(value):
        return str(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        return dump()
    dump = getattr(value, "dict", None)  # pydantic v1
    if callable(dump) and hasattr(value, "__fields__"):
        return dump()
    if isinstance(value, Mapping):
        return dict(value)
    raise _Unconvertible(type(value).__name__)


def _fast_default(value: Any) -> Any:
    try:
        return _convert_scalar(value)
    except _Unconvertible:
        raise
    except Exception as exc:  # a user object whose conversion hook itself blew up
        raise _Unconvertible(type(value).__name__) from exc


def sanitize(value: Any, problems: List[str], path: str = "", depth: int = 0,
             seen: Optional[Set[int]] = None) -> Tuple[bool, Any]:
    """Return ``(keep, json_safe_value)``; parts that cannot be made JSON are noted and left out."""
    if value is None or value is True or value is False:
        return True, value
    if isinstance(value, str):
        return True, str(value)
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return True, int(value)
    if isinstance(value, float) and not isinstance(value, enum.Enum):
        return True, float(value) if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        problems.append(f"{path or '<root>'}: nested deeper than {MAX_DEPTH} levels")
        return False, None
    if seen is None:
        seen = set()
    marker = id(value)
    if isinstance(value, (dict, list)) and marker in seen:
        problems.append(f"{path or '<root>'}: circular reference")
        return False, None
    if isinstance(value, dict):
        seen.add(marker)
        out: Dict[str, Any] = {}
        for key, item in list(value.items()):
            name = _key_to_str(key)
            if name is None:
                problems.append(f"{path}.{type(key).__name__}: key is not a string")
                continue
            keep, safe = sanitize(item, problems, f"{path}.{name}" if path else name,
                                  depth + 1, seen)
            if keep:
                out[name] = safe
        seen.discard(marker)
        return True, out
    if isinstance(value, list):
        seen.add(marker)
        items = []
        for index, item in enumerate(list(value)):
            keep, safe = sanitize(item, problems, f"{path}[{index}]", depth + 1, seen)
            if keep:
                items.append(safe)
        seen.discard(marker)
        return True, items
    try:
        converted = _convert_scalar(value)
    except Exception:
        problems.append(f"{path or '<root>'}: {_type_name(value)} is not JSON-serialisable")
        return False, None
    return sanitize(converted, problems, path, depth + 1, seen)


def _type_name(value: Any) -> str:
    try:
        return type(value).__name__
    except Exception:  # pragma: no cover - a hostile metaclass
        return "object"


def _key_to_str(key: Any) -> Optional[str]:
    if isinstance(key, str):
        return str(key)
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    if isinstance(key, (int, float)):
        return str(key)
    try:
        converted = _convert_scalar(key)
    except Exception:
        return None
    return converted if isinstance(converted, str) else None


def _make_chunk_encoder() -> Callable[[Any, int], Iterable[str]]:
    """Return the quickest compact encoder this interpreter has: ``(obj, 0)`` → JSON chunks.

    CPython's C encoder is built once here instead of on every call, as ``JSONEncoder.encode``
    would. It runs without cycle markers: a cycle then ends in RecursionError, which sends the
    message through the sanitiser that cuts it.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    c_encode_str = getattr(json.encoder, "c_encode_basestring", None)
    if c_make_encoder is None or c_encode_str is None:  # pragma: no cover - PyPy and friends
        encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                                   default=_fast_default)
        return lambda obj, level: encoder.iterencode(obj)
    return c_make_encoder(None, _fast_default, c_encode_str, None, ":", ",",  # type: ignore[no-any-return]
                          False, False, False)


_encode_chunks = _make_chunk_encoder()


def _encode_fast(obj: Any) -> str:
    """Return obj as compact JSON, or raise when it holds what JSON cannot (see dumps)."""
    return "".join(_encode_chunks(obj, 0))


def dumps(message: Mapping[str, Any]) -> Tuple[bytes, List[str]]:
    """Serialise one message to compact UTF-8 JSON; return the bytes and any problems found.

    The fast path is a single C-accelerated encode; only data that it refuses (NaN,
    cycles, odd keys, unknown objects) goes through the slower sanitiser.
    """
    try:
        text = _encode_fast(message)
    except (ValueError, TypeError, RecursionError, _Unconvertible):
        pass
    else:
        try:
            return text.encode("utf-8"), []
        except UnicodeEncodeError:  # a lone surrogate: no valid UTF-8 for it, so replace it
            return text.encode("utf-8", "replace"), ["a string held an unpaired surrogate"]
    problems: List[str] = []
    _, safe = sanitize(message, problems)
    text = json.dumps(safe, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8", "replace"), problems


# --- messages -------------------------------------------------------------------------


def base_properties(disable_geoip: bool) -> Dict[str, Any]:
    """Return the properties productos adds to every event."""
    props: Dict[str, Any] = {"$lib": LIB_NAME, "$lib_version": VERSION}
    if disable_geoip:
        props["$geoip_disable"] = True
    return props


_EMPTY: Mapping[str, Any] = MappingProxyType({})
_encode_str: Callable[[str], str] = (getattr(json.encoder, "c_encode_basestring", None)
                                     or json.encoder.py_encode_basestring)
_new_tuple = tuple.__new__
class Envelope(NamedTuple):
    """The JSON of an event's properties object around the caller's own, made once per builder.

    ``open`` starts the object and holds the constant properties (those productos sets on
    every event), ready to have the caller's members appended; ``closed`` is the whole object
    when the caller has none. Encoding the constants once per client instead of once per
    event is a good share of capture()'s time.
    """

    open: str
    closed: str
    constants: Mapping[str, Any]


def _envelope(constants: Mapping[str, Any]) -> Envelope:
    members = _encode_fast(constants)[1:-1]
    if not members:
        return Envelope('"properties":{', '"properties":{}', _EMPTY)
    return Envelope(f'"properties":{{{members},', f'"properties":{{{members}}}', constants)


_WHOLE = _envelope(_EMPTY)  # for properties that already hold the constant ones


class Draft(NamedTuple):
    """An event made from a call's arguments, before before_send and serialisation."""

    event: str
    distinct_id: str
    timestamp: str
    uuid: str
    properties: Mapping[str, Any]  # without the envelope's constants
    top_level: Optional[Mapping[str, Any]]  # $set, $set_once ... beside the properties
    envelope: Envelope


class EventBuilder:
    """Builds the events of one client; the constant properties are encoded once.

    With ``defer_constants`` (the client sets it when no ``before_send`` hook must see whole
    events), a draft leaves the constant properties to its envelope, and the caller's
    properties are not even copied when nothing is added to them.
    """

    def __init__(self, disable_geoip: bool = True,
                 super_properties: Optional[Mapping[str, Any]] = None,
                 defer_constants: bool = False,
                 on_invalid_uuid: Optional[Callable[[str, Any], None]] = None) -> None:
        self._on_invalid_uuid = on_invalid_uuid
        plain = base_properties(disable_geoip)
        with_system = {**system_properties(), **plain}
        self._lib = {"$lib": LIB_NAME, "$lib_version": VERSION}
        self._super: Dict[str, Any] = dict(super_properties or {})
        self._defer = defer_constants
        self._constant_keys = frozenset(with_system) | {"$geoip_disable"}
        self._plain = _envelope(plain)
        self._system = _envelope(with_system)
        # A call's own disable_geoip (posthog's per-call argument) picks the other pair.
        self._geoip = bool(disable_geoip)
        other = base_properties(not disable_geoip)
        self._other_plain = _envelope(other)
        self._other_system = _envelope({**system_properties(), **other})

    def draft(self, event: str, distinct_id: Optional[str],
              properties: Optional[Mapping[str, Any]], timestamp: Any = None,
              uuid: Any = None, groups: Optional[Mapping[str, Any]] = None,
              session_id: Optional[str] = None, tags: Optional[Mapping[str, Any]] = None,
              system: bool = True, top_level: Optional[Mapping[str, Any]] = None,
              disable_geoip: Optional[bool] = None) -> Draft:
        """Return one event; the precedence is tags < caller < super < $lib.

        capture() passes the arguments up to ``tags`` by position: it is a little quicker.
        ``disable_geoip`` (None: the client's setting) decides ``$geoip_disable`` for this one.
        """
        if disable_geoip is None or bool(disable_geoip) == self._geoip:
            envelope = self._system if system else self._plain
        else:
            envelope = self._other_system if system else self._other_plain
        props: Mapping[str, Any]
        if tags or session_id is not None or self._super or groups or distinct_id is None:
            merged: Dict[str, Any] = {}
            if tags:
                merged.update(tags)
                merged["$context_tags"] = list(tags)  # which properties came from the scope
            if session_id is not None:
                merged["$session_id"] = session_id
            if properties:
                merged.update(properties)
            merged.update(self._super)
            if groups:
                merged["$groups"] = dict(groups)
            if distinct_id is None:
                distinct_id = personless_id()
                merged["$process_person_profile"] = False
            props = merged
        else:
            props = properties or _EMPTY
        if not self._defer or (props and not self._constant_keys.isdisjoint(props)):
            # A hook must see the whole event, or the caller set a property productos also
            # sets: merge in full so that the precedence holds (splicing would repeat keys).
            props = {**envelope.constants, **props, **self._lib}
            envelope = _WHOLE
        now_ns = time_ns()
        return _new_tuple(Draft, (
            event, distinct_id,
            iso_utc_from_ns(now_ns) if timestamp is None else format_timestamp(timestamp),
            uuid7(now_ns) if uuid is None else (
                normalize_uuid(uuid) or self._replace_uuid(event, uuid, now_ns)),
            props, top_level, envelope))

    def build(self, event: str, distinct_id: Optional[str],
              properties: Optional[Mapping[str, Any]], **options: Any) -> Dict[str, Any]:
        """Return one whole event message (``draft()``'s arguments)."""
        return self.message(self.draft(event, distinct_id, properties, **options))

    def _replace_uuid(self, event: str, given: Any, now_ns: int) -> str:
        """Return a fresh uuid in place of a caller's invalid one, and report the swap."""
        if self._on_invalid_uuid is not None:
            self._on_invalid_uuid(event, given)
        return uuid7(now_ns)

    @staticmethod
    def message(draft: Draft) -> Dict[str, Any]:
        """Return the whole message of a draft, constant properties included (a new dict)."""
        message: Dict[str, Any] = {"event": draft.event, "distinct_id": draft.distinct_id,
                                   "timestamp": draft.timestamp, "uuid": draft.uuid}
        if draft.top_level:
            message.update(draft.top_level)
        message["properties"] = {**draft.envelope.constants, **draft.properties}
        return message

    def encode(self, draft: Draft) -> Tuple[bytes, List[str]]:
        """Serialise a draft to compact UTF-8 JSON; return the bytes and any problems found.

        The event's own data is encoded in C and joined with fixed pieces and the envelope;
        data the fast encoder refuses goes through ``dumps()`` and its sanitiser instead.
        """
        event, owner, timestamp, uuid, props, top_level, envelope = draft
        try:
            extra = "," + _encode_fast(top_level)[1:-1] + "," if top_level else ","
            own = "".join(_encode_chunks(props, 0)) if props else "{}"
            if len(own) > 2:  # the caller's members, and the brace that closes them
                start, members = envelope.open, own[1:]
            else:
                start, members = envelope.closed, ""
            text = "".join((
                '{"event":', _encode_str(event), ',"distinct_id":', _encode_str(owner),
                ',"timestamp":"', timestamp, '","uuid":"', uuid, '"', extra, start, members,
                "}"))
        except (ValueError, TypeError, RecursionError, _Unconvertible):
            return dumps(self.message(draft))
        try:
            return text.encode("utf-8"), []
        except UnicodeEncodeError:  # a lone surrogate: no valid UTF-8 for it, so replace it
            return text.encode("utf-8", "replace"), ["a string held an unpaired surrogate"]


# --- what before_send gives back --------------------------------------------------------


def checked_hook_output(changed: Mapping[str, Any], uuid: str, timestamp: str) -> Dict[str, Any]:
    """Return before_send's output as a sendable message, or raise EventError saying why not.

    The server refuses a whole batch for one malformed event, so the hook's output meets the
    rules capture() applies to its arguments. A uuid or timestamp the hook removed (or set to
    None) comes back from the event as built, so a retried event still de-duplicates.
    """
    try:
        message = dict(changed)
    except Exception as exc:
        raise EventError(f"before_send returned a {_type_name(changed)} that cannot be read: "
                         f"{exc!r}") from exc
    name = message.get("event")
    if not isinstance(name, str) or not name:
        raise EventError(f"before_send returned event={describe(name)}; an event name is a "
                         f"non-empty string")
    owner = message.get("distinct_id")
    if not isinstance(owner, str):
        if isinstance(owner, bool) or not (isinstance(owner, int) or is_uuid(owner)):
            raise EventError(f"before_send returned distinct_id={describe(owner)} for "
                             f"{name!r}; a distinct_id is a non-empty string")
        message["distinct_id"] = owner = str(owner)
    if not owner:
        raise EventError(f"before_send returned an empty distinct_id for {name!r}")
    properties = message.get("properties")
    if properties is None:
        message["properties"] = {}
    elif not isinstance(properties, Mapping):
        raise EventError(f"before_send returned properties of type {_type_name(properties)} "
                         f"for {name!r}; properties are a dict")
    elif type(properties) is not dict:
        message["properties"] = dict(properties)
    for field in ("$set", "$set_once"):
        value = message.get(field)
        if value is not None and not isinstance(value, Mapping):
            raise EventError(f"before_send returned {field} of type {_type_name(value)} for "
                             f"{name!r}; it is a dict")
    given_uuid = message.get("uuid")
    if given_uuid is None:
        message["uuid"] = uuid
    else:
        canonical = normalize_uuid(given_uuid)
        if canonical is None:
            raise EventError(f"before_send returned uuid={describe(given_uuid)} for "
                             f"{name!r}; it is not a valid UUID")
        message["uuid"] = canonical
    given_time = message.get("timestamp")
    if given_time is None:
        message["timestamp"] = timestamp
    elif not isinstance(given_time, str):
        try:
            message["timestamp"] = format_timestamp(given_time)
        except Exception:
            raise EventError(f"before_send returned timestamp={describe(given_time)} for "
                             f"{name!r}; a timestamp is an ISO-8601 string or a "
                             f"datetime") from None
    elif not given_time:
        raise EventError(f"before_send returned an empty timestamp for {name!r}")
    return message


def describe(value: Any) -> str:
    """Return a short repr of value for messages, even when its repr is broken."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{_type_name(value)} with a broken repr>"
    return text if len(text) <= 80 else text[:77] + "..."
