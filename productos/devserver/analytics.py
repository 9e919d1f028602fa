"""The workbench's JSON API: funnels, trends, persons and flag exposures over the store.

Parameters are checked first (a 400 names the bad one); the queries are pure functions in
``funnels.py``, ``trends.py``, ``persons.py`` and ``exposures.py``, run under the store's lock.
"""

from __future__ import annotations

from typing import Any, Dict
from urllib.parse import unquote

from productos.devserver import validation as check
from productos.devserver.exposures import exposures
from productos.devserver.funnels import MAX_STEPS, MIN_STEPS, funnel
from productos.devserver.messages import HTTPProblem
from productos.devserver.persons import person_view
from productos.devserver.store import EventStore
from productos.devserver.trends import INTERVALS, TooManyBuckets, trend

__all__ = ["ANALYTICS_PATHS", "DEFAULT_WINDOW_SECONDS", "PERSONS_PREFIX", "analytics"]

ANALYTICS_PATHS = frozenset({"/api/funnel", "/api/trends", "/api/exposures"})
PERSONS_PREFIX = "/api/persons/"
DEFAULT_WINDOW_SECONDS = 14 * 86400  # PostHog's default conversion window
MAX_WINDOW_SECONDS = 366 * 86400


def _problem(name: str, detail: str) -> HTTPProblem:
    return HTTPProblem(400, "invalid_parameter", detail, attr=name)


def analytics(store: EventStore, path: str, query: check.Query) -> Dict[str, Any]:
    """Answer one analytics request."""
    if path == "/api/funnel":
        steps = check.names_param(query, "steps", MIN_STEPS, MAX_STEPS)
        window = check.positive_int_param(query, "window", DEFAULT_WINDOW_SECONDS,
                                          MAX_WINDOW_SECONDS)
        start, stop = check.time_range(query)
        breakdown = (check.first(query, "breakdown") or "").strip() or None
        result: Dict[str, Any] = store.read(
            lambda conn: funnel(conn, steps, window, start, stop, breakdown))
        return result
    if path == "/api/trends":
        event = (check.first(query, "event") or "").strip()
        if not event:
            raise _problem("event", "event is required (an event name).")
        interval = check.first(query, "interval") or "day"
        if interval not in INTERVALS:
            raise _problem("interval", f"interval must be hour or day, not {interval!r}.")
        start, stop = check.time_range(query)
        try:
            answer: Dict[str, Any] = store.read(
                lambda conn: trend(conn, event, interval, start, stop))
        except TooManyBuckets as exc:
            raise _problem("interval", f"{exc}: use a larger interval or a shorter range."
                           ) from None
        return answer
    if path == "/api/exposures":
        return {"flags": store.read(exposures)}
    distinct_id = unquote(path[len(PERSONS_PREFIX):])
    if not distinct_id:
        raise _problem("distinct_id", "Give a distinct id: /api/persons/<distinct_id>.")
    limit = check.int_param(query, "limit", 100, 1, 1000) or 100
    person = store.read(lambda conn: person_view(conn, distinct_id, limit))
    if person is None:
        raise HTTPProblem(404, "not_found", f"No person with distinct_id {distinct_id!r}.",
                          kind="invalid_request")
    found: Dict[str, Any] = person
    return found
