"""Event ids and timestamps, made on the caller's thread for every event."""

from __future__ import annotations

import datetime as _dt
import itertools
import math
import os
import random
import sys
import time
from typing import Any, Optional, Tuple

__all__ = [
    "format_timestamp",
    "is_uuid",
    "iso_utc_from_ns",
    "normalize_uuid",
    "personless_id",
    "reseed",
    "time_ns",
    "uuid7",
]

_UTC = _dt.timezone.utc

# A generator of our own, so the application's random state is neither used nor disturbed.
# A forked child reseeds it (the at-fork hook below, or the client's check for forks nobody
# announced, as uWSGI's), so parent and child never draw the same ids.
_CRYPTO = bool(os.environ.get("PRODUCTOS_CRYPTO_UUIDS"))
_random = random.SystemRandom() if _CRYPTO else random.Random()
_getrandbits = _random.getrandbits


def reseed() -> None:
    """Draw this process's ids from a fresh seed (in a forked child)."""
    global _ms, _start
    _random.seed()
    # The parent's millisecond head and sequence start are not this process's.
    _ms = (-1, "")
    _start = _getrandbits(48)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reseed)
time_ns = time.time_ns
_ms: Tuple[int, str] = (-1, "")  # (epoch millisecond, the uuid7 text it starts), one tuple
# uuid7's last 48 bits: a random start for this process plus a process-wide sequence
# (next() on itertools.count is one C call, atomic under the GIL: threads never share a
# number; the random draws it replaces had no more protection on a free-threaded build).
_start = _getrandbits(48)
_sequence = itertools.count()
_LOW_48 = 0xFFFFFFFFFFFF
_second: Tuple[int, str] = (-1, "")  # (epoch second, its ISO prefix), swapped as one tuple


def uuid7(now_ns: Optional[int] = None) -> str:
    """Return a new time-ordered UUID (version 7) as a string.

    RFC 9562's "monotonic random" layout (§6.2, method 2): the 48-bit millisecond, the version,
    12 random bits of rand_a, the variant and 14 random bits are drawn and formatted once per
    millisecond; the last 48 bits are this process's random start plus a sequence number, so
    ids are unique within the process and each costs one formatted integer, not three random
    draws (capture() makes one per event). With ``PRODUCTOS_CRYPTO_UUIDS`` set, every id
    draws all of its random bits from the system's generator instead.
    """
    global _ms
    ms = (time_ns() if now_ns is None else now_ns) // 1_000_000
    if _CRYPTO:
        stamp = "%012x" % (ms & _LOW_48)
        return "%s-%s-7%03x-%04x-%012x" % (  # noqa: UP031
            stamp[:8], stamp[8:], _getrandbits(12), 0x8000 | _getrandbits(14), _getrandbits(48))
    cached_ms, head = _ms
    if cached_ms != ms:
        stamp = "%012x" % (ms & _LOW_48)
        head = "%s-%s-7%03x-%04x-" % (  # noqa: UP031
            stamp[:8], stamp[8:], _getrandbits(12), 0x8000 | _getrandbits(14))
        _ms = (ms, head)
    # %-formatting: quicker than an f-string with format specs, on every capture().
    return "%s%012x" % (head, (_start + next(_sequence)) & _LOW_48)  # noqa: UP031


def iso_utc_from_ns(now_ns: int) -> str:
    """Return the ISO-8601 UTC form of an epoch time in nanoseconds, with microseconds.

    The date-and-time prefix is formatted once per second; capture() calls this on the
    caller's thread, where a full datetime round trip costs several times more.
    """
    global _second
    seconds = now_ns // 1_000_000_000
    cached_second, prefix = _second
    if cached_second != seconds:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _second = (seconds, prefix)
    return "%s.%06d+00:00" % (prefix, now_ns % 1_000_000_000 // 1000)  # noqa: UP031


def is_uuid(value: Any) -> bool:
    # The uuid module is not imported by productos up front: it imports platform, which costs
    # more than most of productos. No value can be a UUID before someone has imported it.
    module = sys.modules.get("uuid")
    return module is not None and isinstance(value, module.UUID)


def normalize_uuid(value: Any) -> Optional[str]:
    """Return the canonical form of a caller's uuid, or None when it is not a valid UUID."""
    if is_uuid(value):
        return str(value)
    if isinstance(value, str) and 32 <= len(value) <= 45:
        import uuid  # only for a uuid the caller gave as text

        try:
            return str(uuid.UUID(value))
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


def personless_id() -> str:
    """Return a fresh distinct id (a random UUID, version 4) for an event without a person."""
    return "%08x-%04x-4%03x-%04x-%012x" % (  # noqa: UP031
        _getrandbits(32), _getrandbits(16), _getrandbits(12), 0x8000 | _getrandbits(14),
        _getrandbits(48))
