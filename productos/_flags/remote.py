"""Remote evaluation: the ``/flags`` request, its body, and its answer normalised.

It speaks through ``Transport`` (so nothing here imports an HTTP library) and returns a
small result record instead of raising: the flag service decides what a failure means.
Definitions for local evaluation come from ``source``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from productos import errors
from productos._delivery.transport import FLAGS_PATH, Transport, error_for
from productos._runtime.ratelog import RateLimitedLog
from productos._runtime.records import record

# The description of a remote result when the server gave no reason (left out of events).
REMOTE_TEXT = "Evaluated by the server"

log = logging.getLogger("productos")


@record
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
    """Asks the server to evaluate flags; ``retries`` more tries on connection trouble, 502, 504.

    A flag read waits on this call, so retries are immediate rather than backed off: the
    reader's budget is the timeout per try.
    """

    def __init__(self, transport: Transport, api_key: str, *, timeout: float = 3.0,
                 disable_geoip: bool = True, retries: int = 1) -> None:
        self._transport = transport
        self._tries = 1 + max(0, retries)
        self._api_key = api_key
        self._timeout = timeout
        self._disable_geoip = disable_geoip
        # A failing /flags endpoint fails every flag read: one line per read would flood.
        self.failures = RateLimitedLog()

    def evaluate(self, distinct_id: str, *, groups: Mapping[str, str],
                 person_properties: Mapping[str, Any],
                 group_properties: Mapping[str, Mapping[str, Any]],
                 device_id: Optional[str] = None,
                 keys: Optional[Sequence[str]] = None,
                 disable_geoip: Optional[bool] = None) -> RemoteFlags:
        """Return the server's flag values for one person (never raises).

        ``disable_geoip`` (None: the client's setting) is sent as ``geoip_disable``.
        """
        body = flags_request_body(
            self._api_key, distinct_id, groups=groups, person_properties=person_properties,
            group_properties=group_properties, device_id=device_id,
            disable_geoip=self._disable_geoip if disable_geoip is None else disable_geoip,
            keys=keys)
        try:
            payload = json.dumps(body, default=str, separators=(",", ":")).encode()
        except Exception as exc:  # also a value whose str() raises, or nesting too deep
            self.failures.warn("/flags requests with properties that are not JSON",
                               "productos: /flags not asked: the properties are not JSON: %r",
                               exc)
            return RemoteFlags(error="invalid_properties")
        last_error = "unknown_error"
        for attempt in range(self._tries):
            try:
                response = self._transport.post_json(FLAGS_PATH, payload, gzip=False,
                                                     timeout=self._timeout)
            except errors.RequestTimeoutError:
                last_error = "timeout"
                continue
            except errors.TransportError:
                last_error = "connection_error"
                continue
            if response.status in (502, 504) and attempt + 1 < self._tries:
                last_error = f"api_error_{response.status}"
                continue
            if response.status != 200:
                error = f"api_error_{response.status}"
                self.failures.warn(f"/flags failures ({error})",
                                   "productos: /flags answered %s; flags that need the server "
                                   "read as unknown", error_for(response))
                return RemoteFlags(error=error)
            result = parse_flags_response(response.json())
            if result.error:
                self.failures.warn(f"/flags failures ({result.error})",
                                   "productos: /flags answered 200 with a body that is not a "
                                   "flags object; flags that need the server read as unknown")
            return result
        self.failures.warn(f"/flags failures ({last_error})",
                           "productos: /flags request failed (%s); flags that need the server "
                           "read as unknown", last_error)
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
    "RemoteFlags", "RemoteFlagsRequester", "decode_payload", "flags_request_body",
    "parse_flags_response",
]
