"""Trends: how often an event happened per hour or day, and by how many (merged) persons.

Buckets are UTC hours or days; every bucket from the first to the last is present (zero when
nothing happened), from ``from``/``to`` when given, else from the first and last event.
"""

from __future__ import annotations

import datetime as _dt
import sqlite3
from typing import Any, Dict, List, Optional

from productos.devserver.store import PERSON_OF_EVENT

__all__ = ["INTERVALS", "MAX_BUCKETS", "trend"]

INTERVALS = {"hour": 3_600_000, "day": 86_400_000}
MAX_BUCKETS = 5000


class TooManyBuckets(ValueError):
    """The range holds more buckets than one answer carries."""


def _iso(ms: int) -> str:
    moment = _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def trend(conn: sqlite3.Connection, event: str, interval: str, start: Optional[int] = None,
          stop: Optional[int] = None) -> Dict[str, Any]:
    """Counts and unique persons of one event per bucket, oldest bucket first."""
    size = INTERVALS[interval]
    where = "event = ?"
    params: List[Any] = [event]
    if start is not None:
        where += " AND ts >= ?"
        params.append(start)
    if stop is not None:
        where += " AND ts < ?"
        params.append(stop)
    who = f"COALESCE({PERSON_OF_EVENT}, 'd:' || distinct_id)"
    rows = conn.execute(
        f"SELECT ts / {size} AS bucket, COUNT(*), COUNT(DISTINCT {who}) FROM events"
        f" WHERE {where} GROUP BY bucket ORDER BY bucket", params).fetchall()
    total, persons = conn.execute(
        f"SELECT COUNT(*), COUNT(DISTINCT {who}) FROM events WHERE {where}", params).fetchone()
    found = {int(bucket): (int(count), int(unique)) for bucket, count, unique in rows}
    first = start // size if start is not None else (min(found) if found else None)
    last = (stop - 1) // size if stop is not None else (max(found) if found else None)
    series: List[Dict[str, Any]] = []
    if first is not None and last is not None:
        if last - first + 1 > MAX_BUCKETS:
            raise TooManyBuckets(
                f"from..to holds {last - first + 1} {interval}s; at most {MAX_BUCKETS}")
        for bucket in range(first, last + 1):
            count, unique = found.get(bucket, (0, 0))
            series.append({"bucket": _iso(bucket * size), "count": count, "persons": unique})
    return {"event": event, "interval": interval, "series": series, "total": int(total),
            "persons": int(persons), "from": start, "to": stop}
