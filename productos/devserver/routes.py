"""The endpoints: ingestion, ``/flags``, flag definitions, the viewer page and its JSON API.

:class:`Routes` maps a checked request to the store and the flag definitions of one server and
returns the response; checking lives in ``validation.py``, HTTP in ``plumbing.py``.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from typing import Any, Dict, Mapping, Optional, Protocol

from productos.devserver import validation as check
from productos.devserver.analytics import ANALYTICS_PATHS, PERSONS_PREFIX, analytics
from productos.devserver.definitions import FlagDefinitions
from productos.devserver.evaluation import flags_response, server_evaluate
from productos.devserver.messages import HTTPProblem, Request, Response, bad_request
from productos.devserver.page import PAGE_HTML
from productos.devserver.store import EventStore
from productos.devserver.summaries import summarise_flags
from productos.flags import EvaluationContext
from productos.version import VERSION

INGEST_PATHS = frozenset({"/batch", "/i/v0/e", "/capture", "/e", "/track"})
FLAGS_PATHS = frozenset({"/flags"})
DEFINITIONS_PATHS = frozenset({"/flags/definitions", "/api/feature_flag/local_evaluation"})
PAGE_PATHS = frozenset({"/", "/index.html"})
API_PATHS = frozenset({"/api/events", "/api/stats", "/api/flags", "/api/person", "/_health"})
CLEAR_PATH = "/api/clear"
MAX_API_LIMIT = 1000

log = logging.getLogger("productos.devserver")

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, X-Requested-With",
    "Access-Control-Max-Age": "600",
}


class ServerState(Protocol):
    """What the routes read from their server (looked up on every request)."""

    @property
    def store(self) -> EventStore:
        """Where events and persons are kept."""

    @property
    def definitions(self) -> FlagDefinitions:
        """The flag definitions served and evaluated."""

    @property
    def project_api_key(self) -> Optional[str]:
        """The only project key accepted, or None for any."""

    @property
    def personal_api_key(self) -> Optional[str]:
        """The personal key the definitions endpoint wants, or None for none."""

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted."""

    @property
    def db_path(self) -> str:
        """The SQLite file."""

    @property
    def started_at(self) -> Optional[float]:
        """When the server bound its port (epoch seconds)."""


class Routes:
    """The dev server's endpoints for one server's state."""

    def __init__(self, state: ServerState) -> None:
        self._state = state

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted (after decompression too)."""
        return self._state.max_body_bytes

    def handle(self, request: Request) -> Response:
        """Answer one request (HTTPProblem for anything refused)."""
        path, method = request.path, request.method
        if path in INGEST_PATHS or path in FLAGS_PATHS:
            if method == "OPTIONS":
                return Response(204, b"", headers=CORS)
            if method != "POST":
                raise HTTPProblem(405, "method_not_allowed", f"{path} only accepts POST.",
                                  headers={"Allow": "POST, OPTIONS"})
            if path in FLAGS_PATHS:
                return Response.json(200, self.flags(request.json(), request.query),
                                     headers=CORS)
            return Response.json(200, self.ingest(request.json()), headers=CORS)
        if path == CLEAR_PATH:
            return self.clear(request)
        if path in ANALYTICS_PATHS or path.startswith(PERSONS_PREFIX):
            if method != "GET":
                raise HTTPProblem(405, "method_not_allowed", f"{path} only accepts GET.",
                                  headers={"Allow": "GET, HEAD"})
            return Response.json(200, analytics(self._state.store, path, request.query))
        if path in DEFINITIONS_PATHS or path in PAGE_PATHS or path in API_PATHS:
            if method != "GET":
                raise HTTPProblem(405, "method_not_allowed", f"{path} only accepts GET.",
                                  headers={"Allow": "GET, HEAD"})
            if path in DEFINITIONS_PATHS:
                return self.flag_definitions(request)
            if path in PAGE_PATHS:
                return Response(200, PAGE_HTML.encode(), "text/html; charset=utf-8")
            return Response.json(200, self.api(path, request.query))
        raise HTTPProblem(404, "not_found", f"No endpoint at {path}.", kind="invalid_request")

    # -- ingestion and flags ----------------------------------------------------------------

    def ingest(self, payload: Any) -> Dict[str, Any]:
        """Validate and store an ingestion body; returns the response body."""
        raw_events, token = check.events_of(payload)
        tokens = [token] if token is not None else [check.event_token(raw) for raw in raw_events]
        check.check_project_token(self._state.project_api_key, tokens or [None])
        now = _dt.datetime.now(_dt.timezone.utc)
        events = []
        discarded = []
        for i, raw in enumerate(raw_events):
            try:
                events.append(check.normalise_event(raw, i, now))
            except check.DiscardedEvent as exc:
                # PostHog drops such an event (an ingestion warning) and keeps the rest.
                log.warning("productos devserver: discarded: %s", exc)
                discarded.append(str(exc))
        result = self._state.store.ingest(events)
        answer: Dict[str, Any] = {"status": 1, "received": len(raw_events),
                                  "stored": result.stored, "duplicates": result.duplicates,
                                  "discarded": len(discarded)}
        if discarded:
            answer["warnings"] = discarded
        return answer

    def clear(self, request: Request) -> Response:
        """Delete every stored event, person and group (POST with {"confirm": true})."""
        if request.method != "POST":
            raise HTTPProblem(405, "method_not_allowed", f"{CLEAR_PATH} only accepts POST.",
                              headers={"Allow": "POST"})
        # A JSON body (not a form) keeps other sites' pages from clearing it: a cross-origin
        # JSON POST needs a CORS pre-flight this path never grants.
        if (request.header("Content-Type") or "").split(";")[0].strip() != "application/json":
            raise bad_request("invalid_request", "Send Content-Type: application/json.")
        body = request.json()
        if not isinstance(body, dict) or body.get("confirm") is not True:
            raise bad_request("invalid_payload", 'Send {"confirm": true} to clear the store.')
        deleted = self._state.store.clear()
        log.info("productos devserver: store cleared (%d events)", deleted)
        return Response.json(200, {"cleared": True, "events_deleted": deleted})

    def flags(self, payload: Any, query: check.Query) -> Dict[str, Any]:
        """Evaluate flags for a ``/flags`` body; returns the v2 (or v1) response body."""
        body = check.flags_body(payload)
        check.check_project_token(self._state.project_api_key, [check.body_token(body)])
        asked = check.flags_request(body)
        version = check.int_param(query, "v", 1, 0, 100) or 1
        ctx = self.evaluation_context(
            asked.distinct_id, groups=asked.groups, person_properties=asked.person_properties,
            group_properties=asked.group_properties, device_id=asked.device_id)
        results = server_evaluate(self._state.definitions.current(), ctx, asked.keys)
        return flags_response(results, version)

    def evaluation_context(self, distinct_id: str, *, groups: Mapping[str, str],
                           person_properties: Mapping[str, Any],
                           group_properties: Mapping[str, Mapping[str, Any]],
                           device_id: Optional[str] = None) -> EvaluationContext:
        """Build a context with stored person and group properties under the given ones."""
        store = self._state.store
        person = {**store.person_properties(distinct_id), **person_properties}
        merged_groups = {
            gtype: {**store.group_properties(gtype, gkey),
                    **(group_properties.get(gtype) or {})}
            for gtype, gkey in groups.items()
        }
        return EvaluationContext(distinct_id=distinct_id, groups=dict(groups),
                                 person_properties=person, group_properties=merged_groups,
                                 device_id=device_id)

    def flag_definitions(self, request: Request) -> Response:
        """The definitions body for local evaluation, or 304 when the ETag still holds."""
        state = self._state
        check.check_personal_key(state.personal_api_key, state.project_api_key,
                                 request.header("Authorization"), request.query)
        current = state.definitions.current()
        if check.etag_matches(request.header("If-None-Match"), current.etag):
            return Response(304, headers={"ETag": current.etag}, bare=True)
        return Response(200, current.body, headers={"ETag": current.etag})

    # -- the viewer's JSON API ----------------------------------------------------------------

    def api(self, path: str, query: check.Query) -> Dict[str, Any]:
        """The viewer's JSON API."""
        state = self._state
        store = state.store
        if path == "/api/events":
            limit = check.int_param(query, "limit", 100, 1, MAX_API_LIMIT)
            after = check.int_param(query, "after", None, 0, 2**62)
            before = check.int_param(query, "before", None, 0, 2**62)
            order = check.first(query, "order") or "desc"
            if order not in ("asc", "desc"):
                raise HTTPProblem(400, "invalid_parameter", "order must be asc or desc.",
                                  attr="order")
            events = store.events(limit=limit or 100,
                                  event=check.first(query, "event") or None,
                                  distinct_id=check.first(query, "distinct_id") or None,
                                  after=after, before=before, oldest_first=order == "asc",
                                  with_person=check.first(query, "person") == "1")
            return {"events": events, "last_seq": store.last_seq()}
        if path == "/api/stats":
            current = state.definitions.current()
            started = state.started_at
            return {
                **store.summary(),
                "by_event": store.counts_by_event(),
                "flags": len(current.document.get("flags", [])),
                "definitions_etag": current.etag,
                "db_path": state.db_path,
                "started_at": started,
                "uptime_seconds": None if started is None else round(time.time() - started, 3),
                "version": VERSION,
            }
        if path == "/api/flags":
            return self._api_flags(query)
        if path == "/api/person":
            distinct_id = check.first(query, "distinct_id")
            if not distinct_id:
                raise bad_request("invalid_parameter", "distinct_id is required.")
            person = store.person(distinct_id)
            if person is None:
                raise HTTPProblem(404, "not_found", f"No person with distinct_id {distinct_id!r}.",
                                  kind="invalid_request")
            return person
        return {"status": "ok", "version": VERSION}  # /_health

    def _api_flags(self, query: check.Query) -> Dict[str, Any]:
        definitions = self._state.definitions
        current = definitions.current()
        flags = summarise_flags(current)
        distinct_id = check.first(query, "distinct_id")
        if distinct_id:
            ctx = self.evaluation_context(distinct_id, groups={}, person_properties={},
                                          group_properties={})
            results = server_evaluate(current, ctx)
            for summary in flags:
                result = results.get(summary["key"])
                if result is not None:
                    summary["value"] = result.value
                    summary["reason"] = result.reason.description
        return {
            "flags": flags,
            "etag": current.etag,
            "source": current.source,
            "reload_error": definitions.reload_error,
            "problems": list(current.definitions.problems),
            "group_type_mapping": dict(current.document.get("group_type_mapping") or {}),
            "cohorts": sorted(str(k) for k in (current.document.get("cohorts") or {})),
        }
