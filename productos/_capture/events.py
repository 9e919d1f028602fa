"""Building event messages: ids, timestamps, property merging and JSON-safe serialisation.

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
import platform
import random
import sys
import time
import uuid as _uuid
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from productos.errors import EventError
from productos.version import VERSION

LIB_NAME = "productos-python"
MAX_EVENT_BYTES = 900 * 1024
MAX_BATCH_BYTES = 5 * 1024 * 1024
# Deeper nesting than this is almost always a bug (or a cycle) and would blow the C stack
# of json.dumps, so values below it are dropped by the sanitiser.
MAX_DEPTH = 64

_UTC = _dt.timezone.utc


def _system_properties() -> Dict[str, Any]:
    """Return the properties that describe this runtime, computed once at import."""
    os_name = {"darwin": "Mac OS X", "win32": "Windows"}.get(sys.platform)
    if os_name is None:
        os_name = "Linux" if sys.platform.startswith("linux") else sys.platform
    return {
        "$os": os_name,
        "$os_version": platform.release(),
        "$python_runtime": platform.python_implementation(),
        "$python_version": "{}.{}.{}".format(*sys.version_info[:3]),
    }


SYSTEM_PROPERTIES: Mapping[str, Any] = _system_properties()


# --- identifiers and time -------------------------------------------------------------

_getrandbits = random.SystemRandom().getrandbits if os.environ.get(
    "PRODUCTOS_CRYPTO_UUIDS") else random.getrandbits


def uuid7(now_ns: Optional[int] = None) -> str:
    """Return a new time-ordered UUID (version 7) as a string."""
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    # The random module is reseeded in forked children, so parent and child never repeat ids.
    rand = _getrandbits(74)
    value = (ms & 0xFFFFFFFFFFFF) << 80
    value |= 0x7 << 76  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # RFC 4122 variant
    value |= rand & 0x3FFFFFFFFFFFFFFF  # rand_b, 62 bits
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_second: Tuple[int, str] = (-1, "")  # (epoch second, its ISO prefix), swapped as one tuple


def iso_utc_from_ns(now_ns: int) -> str:
    """Return the ISO-8601 UTC form of an epoch time in nanoseconds, with microseconds.

    The date-and-time prefix is formatted once per second; capture() calls this on the
    caller's thread, where a full datetime round trip costs several times more.
    """
    global _second
    seconds, rest = divmod(now_ns, 1_000_000_000)
    cached_second, prefix = _second
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = (seconds, prefix)
    return f"{prefix}.{rest // 1000:06d}+00:00"


def normalize_uuid(value: Any) -> Optional[str]:
    """Return the canonical form of a caller's uuid, or None when it is not a valid UUID."""
    if isinstance(value, _uuid.UUID):
        return str(value)
    if isinstance(value, str) and 32 <= len(value) <= 45:
        try:
            return str(_uuid.UUID(value))
        except ValueError:
            return None
    return None


def format_timestamp(value: Optional[Any] = None) -> str:
    """Return an ISO-8601 UTC timestamp; naive datetimes are taken as UTC."""
    if value is None:
        return _dt.datetime.now(_UTC).isoformat()
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=_UTC).isoformat()
        return value.astimezone(_UTC).isoformat()
    if isinstance(value, _dt.date):
        return _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC).isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return _dt.datetime.fromtimestamp(value, _UTC).isoformat()
    if isinstance(value, str):
        from dateutil.parser import isoparse  # imported late: most callers never pass strings

        return format_timestamp(isoparse(value))
    raise TypeError("timestamp must be a datetime, date, epoch seconds or ISO string")


# --- JSON safety ----------------------------------------------------------------------


class _Unconvertible(Exception):
    """Raised inside the fast path when a value needs the sanitiser."""


def _convert_scalar(value: Any) -> Any:
    """Return a JSON-friendly stand-in for one non-JSON value, or raise _Unconvertible."""
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, (_dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _uuid.UUID):
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


def _make_fast_encoder() -> Callable[[Any], str]:
    """Return the quickest compact encoder this interpreter has.

    CPython's C encoder is built once here instead of on every call, as ``JSONEncoder.encode``
    would. It runs without cycle markers: a cycle then ends in RecursionError, which sends the
    message through the sanitiser that cuts it.
    """
    c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
    c_encode_str = getattr(json.encoder, "c_encode_basestring", None)
    if c_make_encoder is None or c_encode_str is None:  # pragma: no cover - PyPy and friends
        return json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                                default=_fast_default).encode
    encoder = c_make_encoder(None, _fast_default, c_encode_str, None, ":", ",",
                             False, False, False)
    return lambda obj: "".join(encoder(obj, 0))


_encode_fast = _make_fast_encoder()


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


def personless_id() -> str:
    """Return a fresh distinct id for an event without a person."""
    return str(_uuid.uuid4())


class PartialMessage(Dict[str, Any]):
    """A message whose constant properties are left out, to be spliced in as ready-made JSON.

    Every event carries the same handful of properties ($lib, $os, ...). Encoding them once
    per client instead of once per event is a good share of capture()'s time.
    """

    constants: bytes = b""


class EventBuilder:
    """Builds event messages for one client; the merged base properties are made once.

    With ``defer_constants`` (the client sets it when no ``before_send`` hook must see whole
    events), the constant properties stay out of the dict and ``encode()`` splices them in.
    """

    def __init__(self, disable_geoip: bool = True,
                 super_properties: Optional[Mapping[str, Any]] = None,
                 defer_constants: bool = False,
                 on_invalid_uuid: Optional[Callable[[str, Any], None]] = None) -> None:
        self._on_invalid_uuid = on_invalid_uuid
        self._plain = base_properties(disable_geoip)
        self._with_system = {**SYSTEM_PROPERTIES, **self._plain}
        self._lib = {"$lib": LIB_NAME, "$lib_version": VERSION}
        self._super: Dict[str, Any] = dict(super_properties or {})
        self._defer = defer_constants
        self._constant_keys = frozenset(self._with_system)
        self._json_plain = _json_members(self._plain)
        self._json_system = _json_members(self._with_system)

    def build(self, event: str, distinct_id: Optional[str], properties: Optional[Mapping[str, Any]],
              *, timestamp: Any = None, uuid: Any = None,
              groups: Optional[Mapping[str, Any]] = None, session_id: Optional[str] = None,
              tags: Optional[Mapping[str, Any]] = None, system: bool = True,
              top_level: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """Return one event message; the precedence is tags < caller < super < $lib."""
        defer = self._defer
        props: Dict[str, Any] = {} if defer else (
            self._with_system if system else self._plain).copy()
        if tags:
            props.update(tags)
        if session_id is not None:
            props["$session_id"] = session_id
        if properties:
            props.update(properties)
        if self._super:
            props.update(self._super)
        if defer and props and not self._constant_keys.isdisjoint(props):
            # The caller set a property productos also sets: merge in full so that the
            # precedence above holds (splicing would repeat the key).
            props = {**(self._with_system if system else self._plain), **props}
            defer = False
        if not defer and (properties or self._super or tags):
            props.update(self._lib)  # nobody may pass off events as another library's
        if groups:
            props["$groups"] = dict(groups)
        if distinct_id is None:
            distinct_id = personless_id()
            props["$process_person_profile"] = False
        now_ns = time.time_ns()
        message: Dict[str, Any] = (PartialMessage if defer else dict)(
            event=event,
            distinct_id=distinct_id,
            timestamp=(iso_utc_from_ns(now_ns) if timestamp is None
                       else format_timestamp(timestamp)),
            uuid=uuid7(now_ns) if uuid is None else (
                normalize_uuid(uuid) or self._replace_uuid(event, uuid, now_ns)),
        )
        if top_level:
            message.update(top_level)
        message["properties"] = props  # last, so encode() knows where the object ends
        if defer:
            message.constants = self._json_system if system else self._json_plain  # type: ignore[attr-defined]
        return message

    def _replace_uuid(self, event: str, given: Any, now_ns: int) -> str:
        """Return a fresh uuid in place of a caller's invalid one, and report the swap."""
        if self._on_invalid_uuid is not None:
            self._on_invalid_uuid(event, given)
        return uuid7(now_ns)

    def complete(self, message: Mapping[str, Any]) -> Dict[str, Any]:
        """Return message with its constant properties merged in (for hooks and errors)."""
        if not isinstance(message, PartialMessage):
            return dict(message)
        full = dict(message)
        base = self._with_system if message.constants is self._json_system else self._plain
        full["properties"] = {**base, **message["properties"]}
        return full

    def encode(self, message: Mapping[str, Any]) -> Tuple[bytes, List[str]]:
        """Serialise a message built here, splicing in its constant properties."""
        if not isinstance(message, PartialMessage):
            return dumps(message)
        data, problems = dumps(message)
        if problems:  # the sanitiser rebuilt the dict: encode it whole instead
            return dumps(self.complete(message))
        if message["properties"]:
            return b"".join((data[:-2], b",", message.constants, b"}}")), problems
        return b"".join((data[:-2], message.constants, b"}}")), problems


def _json_members(properties: Mapping[str, Any]) -> bytes:
    """Return the JSON members of an object, without braces, ready to splice."""
    return dumps(properties)[0][1:-1]


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
        if isinstance(owner, bool) or not isinstance(owner, (int, _uuid.UUID)):
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
