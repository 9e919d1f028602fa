"""Ordered funnels over the stored events, per merged person.

A person enters at their first step-1 event (inside ``from``/``to``) and reaches step k when
they performed steps 1..k in that order, each at or after the previous one, all within
``window`` seconds of that first step-1 event. Persons are the merged persons of
``person_distinct_ids`` (``$identify``, ``$create_alias``); an event sent without a person
profile counts under its own distinct id. Events at the same instant count in ingest order.

One covering-index scan reads (distinct id, event, time) for the step events; they are grouped
by person and each person's events walked once in time order. ``breakdown`` splits persons
by a property of their entering event.
"""

from __future__ import annotations

import sqlite3
import statistics
from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["MAX_STEPS", "MIN_STEPS", "funnel"]

MIN_STEPS, MAX_STEPS = 2, 10
MAX_BREAKDOWN_VALUES = 25  # the rest are folded into "$other", as PostHog's breakdown limit does


class _Tally:
    """Counts and step-to-step durations for one group of persons."""

    __slots__ = ("counts", "gaps")

    def __init__(self, steps: int) -> None:
        self.counts = [0] * steps
        self.gaps: List[List[int]] = [[] for _ in range(steps)]

    def add(self, times: Sequence[int]) -> None:
        for index in range(len(times)):
            self.counts[index] += 1
            if index:
                self.gaps[index].append(times[index] - times[index - 1])

    def steps(self, names: Sequence[str]) -> List[Dict[str, Any]]:
        entered = self.counts[0]
        out = []
        for index, name in enumerate(names):
            count = self.counts[index]
            previous = self.counts[index - 1] if index else count
            gaps = self.gaps[index]
            out.append({
                "event": name,
                "count": count,
                "conversion": round(count / entered, 4) if entered else 0.0,
                "conversion_from_previous": round(count / previous, 4) if previous else 0.0,
                "median_seconds_from_previous":
                    round(statistics.median(gaps) / 1000, 3) if gaps else None,
            })
        return out


def _json_path(prop: str) -> str:
    return '$.properties."' + prop.replace('"', '""') + '"'


def _persons(conn: sqlite3.Connection, steps: Sequence[str], start: Optional[int],
             stop: Optional[int], breakdown: Optional[str]) -> Dict[Any, List[Tuple[Any, ...]]]:
    """Each person's step events as (ts, seq, name, breakdown value), unordered.

    A covering index scan (event, ts, distinct_id) reads the rows without touching the event
    table; distinct ids map to merged persons through one read of ``person_distinct_ids``
    (an id without a person stands for itself: ints and strings never collide as keys).
    """
    names = sorted(set(steps))
    where = f"event IN ({', '.join('?' * len(names))})"
    params: List[Any] = []
    extra = ", NULL"
    if breakdown is not None:
        # Only entering (step-1) events need the property (and a read of the event's row).
        extra = ", CASE WHEN event = ? THEN json_extract(data, ?) END"
        params += [steps[0], _json_path(breakdown)]
    params += names
    if start is not None:
        where += " AND ts >= ?"
        params.append(start)
    if stop is not None:
        where += " AND ts < ?"
        params.append(stop)
    person_of: Dict[str, int] = dict(
        conn.execute("SELECT distinct_id, person_id FROM person_distinct_ids"))
    lookup = person_of.get
    groups: Dict[Any, List[Tuple[Any, ...]]] = {}
    for distinct_id, name, ts, seq, value in conn.execute(
            f"SELECT distinct_id, event, ts, seq{extra} FROM events WHERE {where}", params):
        who = lookup(distinct_id, distinct_id)
        found = groups.get(who)
        if found is None:
            groups[who] = [(ts, seq, name, value)]
        else:
            found.append((ts, seq, name, value))
    return groups


def _walk(groups: Dict[Any, List[Tuple[Any, ...]]], steps: Sequence[str],
          window_ms: int) -> List[Tuple[Any, List[int]]]:
    """(breakdown value, step times) for every person who entered."""
    first_step = steps[0]
    last = len(steps)
    results: List[Tuple[Any, List[int]]] = []
    for events in groups.values():
        if len(events) > 1:
            events.sort()  # by time, then ingest order
        times: List[int] = []
        value: Any = None
        deadline = 0
        for ts, _seq, name, extra in events:
            if not times:
                if name == first_step:
                    times.append(ts)
                    deadline = ts + window_ms
                    value = extra
                continue
            if ts > deadline:
                break
            reached = len(times)
            if name == steps[reached]:
                times.append(ts)
                if reached + 1 == last:
                    break
        if times:
            results.append((value, times))
    return results


def _value_key(value: Any) -> str:
    return "(none)" if value is None else str(value)


def funnel(conn: sqlite3.Connection, steps: Sequence[str], window_seconds: int,
           start: Optional[int] = None, stop: Optional[int] = None,
           breakdown: Optional[str] = None) -> Dict[str, Any]:
    """The funnel answer: steps with counts, conversions and median times (see the module)."""
    if not MIN_STEPS <= len(steps) <= MAX_STEPS:
        raise ValueError(f"a funnel has {MIN_STEPS} to {MAX_STEPS} steps")
    if window_seconds <= 0:
        raise ValueError("the window must be positive")
    persons = _walk(_persons(conn, steps, start, stop, breakdown), steps, window_seconds * 1000)
    total = _Tally(len(steps))
    groups: Dict[str, _Tally] = {}
    for value, times in persons:
        total.add(times)
        if breakdown is not None:
            key = _value_key(value)
            if key not in groups:
                groups[key] = _Tally(len(steps))
            groups[key].add(times)
    answer: Dict[str, Any] = {
        "steps": total.steps(steps),
        "window_seconds": window_seconds,
        "from": start,
        "to": stop,
    }
    answer["median_seconds_between_steps"] = [
        step["median_seconds_from_previous"] for step in answer["steps"][1:]]
    if breakdown is not None:
        ordered = sorted(groups.items(), key=lambda item: (-item[1].counts[0], item[0]))
        kept, rest = ordered[:MAX_BREAKDOWN_VALUES], ordered[MAX_BREAKDOWN_VALUES:]
        values = [{"value": key, "steps": tally.steps(steps)} for key, tally in kept]
        if rest:
            other = _Tally(len(steps))
            for _, tally in rest:
                other.counts = [a + b for a, b in zip(other.counts, tally.counts)]
                for index, gaps in enumerate(tally.gaps):
                    other.gaps[index].extend(gaps)
            values.append({"value": "$other", "steps": other.steps(steps)})
        answer["breakdown"] = {"property": breakdown, "values": values}
    return answer
