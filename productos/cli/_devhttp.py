"""Reading a running dev server's JSON API over HTTP (the standard library's urllib).

The CLI's analytics commands (events tail/export, funnel) talk to the dev server's own
``/api/*`` endpoints, not to PostHog's API, so they need none of the SDK's delivery machinery.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Mapping, Optional

from productos.cli._errors import EXIT_CONFIG, EXIT_FAILURE, CLIError
from productos.cli._settings import ENV_HOST, option_value

__all__ = ["DEFAULT_DEV_HOST", "dev_host", "get_json", "is_loopback", "looks_like_devserver"]

DEFAULT_DEV_HOST = "http://127.0.0.1:8010"
_TIMEOUT = 10.0


def dev_host(args: argparse.Namespace) -> str:
    """The dev server's URL: --host, else $PRODUCTOS_HOST, else the dev server's default."""
    host = (option_value(args, "host") or os.environ.get(ENV_HOST) or DEFAULT_DEV_HOST).strip()
    if not host.startswith(("http://", "https://")):
        host = "http://" + host
    return host.rstrip("/")


def is_loopback(host: str) -> bool:
    """True for a URL on this machine (localhost, 127.0.0.0/8, ::1)."""
    name = urllib.parse.urlsplit(host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _timeout(args: Optional[argparse.Namespace]) -> float:
    value = option_value(args, "timeout") if args is not None else None
    return float(value) if value else _TIMEOUT


def get_json(host: str, path: str, params: Optional[Mapping[str, Any]] = None,
             args: Optional[argparse.Namespace] = None) -> Dict[str, Any]:
    """GET host+path?params and decode the JSON answer; CLIError on any failure.

    A 4xx answer from the dev server is reported with its ``detail`` (exit 1); an unreachable
    host or a non-JSON answer is a connection problem (exit 3).
    """
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None},
                                   doseq=True)
    url = f"{host}{path}" + (f"?{query}" if query else "")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_timeout(args)) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        detail = _detail(exc.read())
        code = EXIT_FAILURE if 400 <= exc.code < 500 and exc.code != 404 else EXIT_CONFIG
        if exc.code == 404 and detail is None:
            detail = f"{host} has no {path}: is it a productos dev server?"
        raise CLIError(f"{host} answered {exc.code}: {detail or exc.reason}", code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CLIError(f"cannot reach the dev server at {host}: {reason} (start it with "
                       f"`productos devserver`, or pass --host / --db)", EXIT_CONFIG) from None
    try:
        answer = json.loads(body)
    except ValueError:
        raise CLIError(f"{host}{path} did not answer JSON: is it a productos dev server?",
                       EXIT_CONFIG) from None
    if not isinstance(answer, dict):
        raise CLIError(f"{host}{path} answered unexpected JSON", EXIT_CONFIG)
    return answer


def _detail(body: bytes) -> Optional[str]:
    try:
        answer = json.loads(body)
    except ValueError:
        return None
    if isinstance(answer, dict) and isinstance(answer.get("detail"), str):
        return str(answer["detail"])
    return None


def looks_like_devserver(host: str, timeout: float = 2.0) -> bool:
    """True when host is on this machine and answers like a productos dev server."""
    if not is_loopback(host):
        return False
    try:
        with urllib.request.urlopen(f"{host.rstrip('/')}/_health",
                                    timeout=timeout) as response:
            server = response.headers.get("Server") or ""
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return server.startswith("productos-devserver/") and isinstance(answer, dict) \
        and answer.get("status") == "ok"
