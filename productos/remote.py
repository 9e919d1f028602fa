"""Requests to the flag endpoints: definitions for local evaluation, and remote ``/flags``.

Both speak through ``Transport`` (so nothing here imports an HTTP library) and return
small result records instead of raising: the poller and the flag service decide what a
failure means.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from productos import errors
from productos.transport import (
    DEFINITIONS_PATH,
    FLAGS_PATH,
    LEGACY_DEFINITIONS_PATH,
    Response,
    Transport,
    error_for,
)

log = logging.getLogger("productos")


@dataclass(frozen=True)
class DefinitionsFetch:
    """The result of one definitions request.

    ``outcome`` is one of ``"ok"`` (``data`` holds the JSON body), ``"not_modified"``,
    ``"unauthorized"`` (401/403: a key is wrong), ``"quota_limited"`` (402) or ``"error"``.
    """

    outcome: str
    data: Optional[Mapping[str, Any]] = None
    etag: Optional[str] = None
    error: Optional[BaseException] = None


class DefinitionsRequester:
    """Fetches flag definitions with the personal key, remembering the ETag between calls."""

    def __init__(self, transport: Transport, project_api_key: str, personal_api_key: str,
                 timeout: float = 10.0) -> None:
        self._transport = transport
        self._project_api_key = project_api_key
        self._personal_api_key = personal_api_key
        self._timeout = timeout
        self._etag: Optional[str] = None
        self._path = DEFINITIONS_PATH
        self._lock = threading.Lock()  # one fetch at a time: the poller and load_feature_flags()

    def forget_etag(self) -> None:
        """Make the next fetch a full one (after the snapshot was cleared)."""
        self._etag = None

    def fetch(self) -> DefinitionsFetch:
        """Make one definitions request and classify its answer."""
        with self._lock:
            try:
                response = self._get(self._path)
                if response.status == 404 and self._path == DEFINITIONS_PATH:
                    # An older server: the legacy path serves the same body.
                    response = self._get(LEGACY_DEFINITIONS_PATH)
                    if response.status != 404:
                        self._path = LEGACY_DEFINITIONS_PATH
            except errors.TransportError as exc:
                return DefinitionsFetch("error", error=exc)
            return self._classify(response)

    def _get(self, path: str) -> Response:
        headers = {"Authorization": f"Bearer {self._personal_api_key}"}
        if self._etag:
            headers["If-None-Match"] = self._etag
        return self._transport.request(
            "GET", path, headers=headers,
            params={"token": self._project_api_key, "send_cohorts": ""},
            timeout=self._timeout)

    def _classify(self, response: Response) -> DefinitionsFetch:
        status = response.status
        if status == 304:
            return DefinitionsFetch("not_modified", etag=self._etag)
        if status == 200:
            data = response.json()
            if not isinstance(data, Mapping):
                return DefinitionsFetch("error", error=errors.APIError(
                    200, "the definitions body is not a JSON object"))
            self._etag = response.headers.get("ETag") or None
            return DefinitionsFetch("ok", data=data, etag=self._etag)
        error = error_for(response)
        if status in (401, 403):
            return DefinitionsFetch("unauthorized", error=error)
        if status == 402:
            return DefinitionsFetch("quota_limited", error=error)
        return DefinitionsFetch("error", error=error)


@dataclass
class RemoteFlags:
    """The answer of ``POST /flags``, normalised from either response version."""

    flags: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # key -> v2-shaped entry
    request_id: Optional[str] = None
    errors_while_computing: bool = False
    quota_limited: bool = False
    error: Optional[str] = None  # timeout, connection_error, api_error_<status>, ...


def group_properties_with_keys(groups: Mapping[str, str],
                               group_properties: Mapping[str, Mapping[str, Any]]
                               ) -> Dict[str, Dict[str, Any]]:
    """Return properties for each passed group, with ``$group_key`` unless the caller set one.

    Properties of group types that were not passed are left out, as the server ignores them.
    """
    return {gtype: {"$group_key": gkey, **dict(group_properties.get(gtype) or {})}
            for gtype, gkey in groups.items()}


def flags_request_body(api_key: str, distinct_id: str, *, groups: Mapping[str, str],
                       person_properties: Mapping[str, Any],
                       group_properties: Mapping[str, Mapping[str, Any]],
                       device_id: Optional[str], disable_geoip: bool,
                       keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Return the body of a ``/flags`` request (protocol §3)."""
    body: Dict[str, Any] = {
        "api_key": api_key,
        "distinct_id": distinct_id,
        "groups": dict(groups),
        "person_properties": dict(person_properties),
        "group_properties": group_properties_with_keys(groups, group_properties),
        "geoip_disable": disable_geoip,
        "sent_at": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    }
    if device_id is not None:
        body["device_id"] = device_id
    if keys:
        body["flag_keys_to_evaluate"] = list(keys)
    return body


class RemoteFlagsRequester:
    """Asks the server to evaluate flags; one retry on connection trouble, 502 and 504."""

    def __init__(self, transport: Transport, api_key: str, *, timeout: float = 3.0,
                 disable_geoip: bool = True) -> None:
        self._transport = transport
        self._api_key = api_key
        self._timeout = timeout
        self._disable_geoip = disable_geoip

    def evaluate(self, distinct_id: str, *, groups: Mapping[str, str],
                 person_properties: Mapping[str, Any],
                 group_properties: Mapping[str, Mapping[str, Any]],
                 device_id: Optional[str] = None,
                 keys: Optional[Sequence[str]] = None) -> RemoteFlags:
        """Return the server's flag values for one person (never raises)."""
        body = flags_request_body(
            self._api_key, distinct_id, groups=groups, person_properties=person_properties,
            group_properties=group_properties, device_id=device_id,
            disable_geoip=self._disable_geoip, keys=keys)
        try:
            payload = json.dumps(body, default=str, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            log.warning("productos: flag request properties are not JSON: %s", exc)
            return RemoteFlags(error="invalid_properties")
        last_error = "unknown_error"
        for attempt in range(2):
            try:
                response = self._transport.post_json(FLAGS_PATH, payload, gzip=False,
                                                     timeout=self._timeout)
            except errors.TimeoutError:
                last_error = "timeout"
                continue
            except errors.TransportError:
                last_error = "connection_error"
                continue
            if response.status in (502, 504) and attempt == 0:
                last_error = f"api_error_{response.status}"
                continue
            if response.status != 200:
                log.warning("productos: /flags answered %s", error_for(response))
                return RemoteFlags(error=f"api_error_{response.status}")
            return parse_flags_response(response.json())
        log.warning("productos: /flags request failed (%s)", last_error)
        return RemoteFlags(error=last_error)


def parse_flags_response(data: Any) -> RemoteFlags:
    """Normalise a v2 or v1 ``/flags`` body into RemoteFlags."""
    if not isinstance(data, Mapping):
        return RemoteFlags(error="api_error_invalid_body")
    result = RemoteFlags(
        request_id=data.get("requestId") if isinstance(data.get("requestId"), str) else None,
        errors_while_computing=bool(data.get("errorsWhileComputingFlags")),
        quota_limited="feature_flags" in (data.get("quotaLimited") or []),
    )
    flags = data.get("flags")
    if isinstance(flags, Mapping):
        for key, entry in flags.items():
            if isinstance(entry, Mapping):
                result.flags[str(key)] = dict(entry)
        return result
    values = data.get("featureFlags")
    payloads = data.get("featureFlagPayloads") or {}
    if isinstance(values, Mapping):
        for key, value in values.items():
            enabled = bool(value)
            result.flags[str(key)] = {
                "key": key, "enabled": enabled,
                "variant": value if isinstance(value, str) else None,
                "metadata": {"payload": payloads.get(key)},
            }
    return result


def decode_payload(raw: Any) -> Any:
    """Decode a payload the server sends as a JSON string; other values pass through."""
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


__all__: List[str] = [
    "DefinitionsFetch", "DefinitionsRequester", "RemoteFlags", "RemoteFlagsRequester",
    "decode_payload", "flags_request_body", "parse_flags_response",
]
