"""``get_remote_config_payload(key)``: a remote-config flag's payload, decrypted by the server.

The request is posthog's: ``GET /api/projects/@current/feature_flags/<key>/remote_config``
with the project token as ``token`` and the personal (or secret) key as a Bearer token, the
same credentials and the same kind of endpoint as the definitions request.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from productos import errors
from productos._delivery.transport import Transport, error_for

__all__ = ["remote_config_payload"]

log = logging.getLogger("productos")


def remote_config_payload(transport: Transport, project_api_key: str, personal_api_key: str,
                          key: str, timeout: float) -> Any:
    """The decoded answer of the remote-config endpoint for ``key``; None on any failure."""
    path = f"/api/projects/@current/feature_flags/{quote(key, safe='')}/remote_config"
    try:
        response = transport.request(
            "GET", path, headers={"Authorization": f"Bearer {personal_api_key}"},
            params={"token": project_api_key}, timeout=timeout)
    except errors.TransportError as exc:
        log.warning("productos: remote config of flag %r not fetched: %s", key,
                    type(exc).__name__)
        return None
    if response.status != 200:
        log.warning("productos: remote config of flag %r not fetched: %s", key,
                    error_for(response))
        return None
    try:
        return response.json()
    except Exception:
        log.warning("productos: remote config of flag %r: the answer is not JSON", key)
        return None
