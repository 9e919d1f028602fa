"""Resolve the host, keys and timeout from the options, then the environment."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

from productos.cli._errors import EXIT_CONFIG, EXIT_USAGE, CLIError
from productos.diagnostics import normalize_host

ENV_HOST = "PRODUCTOS_HOST"
ENV_API_KEY = "PRODUCTOS_API_KEY"
ENV_PERSONAL_API_KEY = "PRODUCTOS_PERSONAL_API_KEY"
ENV_FLAG_DEFINITIONS_CACHE = "PRODUCTOS_FLAG_DEFINITIONS_CACHE"  # doctor checks it

DEFAULT_TIMEOUT = 10.0
DEV_PROJECT_API_KEY = "phc_dev"  # any project key is accepted by a dev server by default
DEV_PERSONAL_API_KEY = "phx_dev"  # the dev server's personal key unless told otherwise


@dataclass(frozen=True)
class Settings:
    """Where to connect and with which keys (resolved from options, then the environment)."""

    host: str
    api_key: str = field(repr=False)
    personal_api_key: Optional[str] = field(repr=False)
    api_key_source: str
    personal_api_key_source: str
    timeout: float


def option_value(args: argparse.Namespace, name: str) -> Any:
    """An option's value, or None when it was not given (global options default to absent)."""
    return getattr(args, name, None)


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Resolve host, keys and timeout from the options and the environment."""
    host = option_value(args, "host") or os.environ.get(ENV_HOST) or None
    host = normalize_host(host)
    if not host.startswith(("http://", "https://")):
        raise CLIError(f"--host must be an http(s) URL, not {host!r}", EXIT_CONFIG)
    api_key, api_source = _key(args, "api_key", "--api-key", ENV_API_KEY)
    personal, personal_source = _key(args, "personal_api_key", "--personal-api-key",
                                     ENV_PERSONAL_API_KEY)
    timeout = option_value(args, "timeout")
    timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    if not timeout > 0:
        raise CLIError("--timeout must be a positive number of seconds", EXIT_USAGE)
    if (not api_key or not personal) and _is_local_devserver(host):
        # The dev server on this machine takes any project key and a public dev personal key,
        # so there is nothing to configure against it.
        if not api_key:
            api_key, api_source = DEV_PROJECT_API_KEY, "dev server default"
        if not personal:
            personal, personal_source = DEV_PERSONAL_API_KEY, "dev server default"
    return Settings(host, api_key or "", personal, api_source, personal_source, timeout)


def _is_local_devserver(host: str) -> bool:
    from productos.cli._devhttp import looks_like_devserver  # it imports this module

    return looks_like_devserver(host)


def _key(args: argparse.Namespace, name: str, option: str, env: str) -> Tuple[Optional[str], str]:
    value = option_value(args, name)
    if value:
        return value.strip(), option
    value = os.environ.get(env, "").strip()
    if value:
        return value, env
    return None, "not set"


def need_api_key(settings: Settings, what: str) -> None:
    """Raise a configuration error when the project API key is missing."""
    if not settings.api_key:
        raise CLIError(f"{what} needs the project API key: pass --api-key or set {ENV_API_KEY}",
                       EXIT_CONFIG)
