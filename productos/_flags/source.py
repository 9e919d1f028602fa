"""Where flag definitions come from: the definitions endpoint (ETag-aware) or a JSON file.

The endpoint's answers are classified into small ``DefinitionsFetch`` records instead of
exceptions: the poller decides what each outcome means for the snapshot in force. A file
is read once, at construction or on ``load_feature_flags()``, and a broken one raises.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Mapping, Optional

from productos import errors
from productos._delivery.transport import (
    DEFINITIONS_PATH,
    LEGACY_DEFINITIONS_PATH,
    Response,
    Transport,
    error_for,
)
from productos._flags.snapshot import Snapshot
from productos._runtime.records import record
from productos.errors import ConfigurationError
from productos.flags import parse_definitions

__all__ = [
    "DefinitionsFetch", "DefinitionsRequester", "FetchOutcome", "classify_definitions",
    "definitions_body_problem", "load_definitions_file",
]


class FetchOutcome(str, enum.Enum):
    """What one definitions request came to."""

    OK = "ok"                        # a body with a ``flags`` list
    NOT_MODIFIED = "not_modified"    # 304: the definitions of the ETag sent still hold
    UNAUTHORIZED = "unauthorized"    # 401/403: a key is wrong
    QUOTA_LIMITED = "quota_limited"  # 402: the feature flag quota is used up
    ERROR = "error"                  # anything else: no answer, 5xx, a body that is not usable

    def __str__(self) -> str:
        return self.value


@record(frozen=True)
class DefinitionsFetch:
    """The result of one definitions request.

    ``data`` holds the JSON body when the outcome is OK; ``etag`` is the version the answer
    describes, if the server gave one. An outcome given as its string value is converted.
    """

    outcome: FetchOutcome
    data: Optional[Mapping[str, Any]] = None
    etag: Optional[str] = None
    error: Optional[BaseException] = None

    def __post_init__(self) -> None:
        if type(self.outcome) is not FetchOutcome:
            object.__setattr__(self, "outcome", FetchOutcome(self.outcome))


def definitions_body_problem(data: Any) -> Optional[str]:
    """Say why a definitions body cannot be used (None when it has a ``flags`` list).

    ``{}``, ``{"flags": null}`` or ``{"flags": {}}`` describe no flag set at all (a broken
    proxy or server), unlike ``{"flags": []}``, which says every flag was deleted.
    """
    if not isinstance(data, Mapping):
        return "the definitions body is not a JSON object"
    if not isinstance(data.get("flags"), list):
        return "the definitions body has no 'flags' list"
    return None


class DefinitionsRequester:
    """Fetches flag definitions with the personal key.

    It keeps no ETag: the caller passes the one whose snapshot is in force, so a
    ``304`` can only ever confirm definitions that are really in place. Calls are not
    meant to overlap (the poller serialises them).
    """

    def __init__(self, transport: Transport, project_api_key: str, personal_api_key: str,
                 timeout: float = 10.0) -> None:
        self._transport = transport
        self._project_api_key = project_api_key
        self._personal_api_key = personal_api_key
        self._timeout = timeout
        self._path = DEFINITIONS_PATH

    def fetch(self, etag: Optional[str] = None) -> DefinitionsFetch:
        """Make one definitions request (conditional when etag is given) and classify it."""
        try:
            response = self._get(self._path, etag)
            if response.status == 404 and self._path == DEFINITIONS_PATH:
                # An older server: the legacy path serves the same body.
                response = self._get(LEGACY_DEFINITIONS_PATH, etag)
                if response.status != 404:
                    self._path = LEGACY_DEFINITIONS_PATH
        except errors.TransportError as exc:
            return DefinitionsFetch(FetchOutcome.ERROR, error=exc)
        return classify_definitions(response, etag)

    def _get(self, path: str, etag: Optional[str]) -> Response:
        headers = {"Authorization": f"Bearer {self._personal_api_key}"}
        if etag:
            headers["If-None-Match"] = etag
        return self._transport.request(
            "GET", path, headers=headers,
            params={"token": self._project_api_key, "send_cohorts": ""},
            timeout=self._timeout)


def classify_definitions(response: Response, sent_etag: Optional[str]) -> DefinitionsFetch:
    """Turn a definitions response into a DefinitionsFetch (never raises)."""
    status = response.status
    if status == 304:
        if not sent_etag:  # nothing was asked to be confirmed: there is nothing to keep
            return DefinitionsFetch(FetchOutcome.ERROR, error=errors.APIError(
                304, "not modified, but no ETag was sent"))
        return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=sent_etag)
    if status == 200:
        data = response.json()
        problem = definitions_body_problem(data)
        if problem is not None:
            return DefinitionsFetch(FetchOutcome.ERROR, error=errors.APIError(200, problem))
        return DefinitionsFetch(FetchOutcome.OK, data=data,
                                etag=response.headers.get("ETag") or None)
    error = error_for(response)
    if status in (401, 403):
        return DefinitionsFetch(FetchOutcome.UNAUTHORIZED, error=error)
    if status == 402:
        return DefinitionsFetch(FetchOutcome.QUOTA_LIMITED, error=error)
    return DefinitionsFetch(FetchOutcome.ERROR, error=error)


def load_definitions_file(path: str) -> Snapshot:
    """Parse a definitions JSON file (the body of the definitions endpoint) into a snapshot.

    A file that is missing or not JSON is a configuration mistake: it raises
    ``ConfigurationError`` (a ``ValueError``) at once rather than serving no flags quietly.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read flag definitions from {path}: {exc}") from exc
    problem = definitions_body_problem(data)
    if problem is not None:
        raise ConfigurationError(f"{path} is not a flag definitions document: {problem}")
    return parse_definitions(data)
