"""Every tunable of a Client in one frozen record, with defaults and validation."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from productos._delivery.transport import normalize_host
from productos.errors import ConfigurationError

ENV_API_KEY = "PRODUCTOS_API_KEY"
ENV_HOST = "PRODUCTOS_HOST"
ENV_PERSONAL_API_KEY = "PRODUCTOS_PERSONAL_API_KEY"


@dataclass(frozen=True)
class Options:
    """The resolved configuration of one Client."""

    project_api_key: str = ""
    host: str = normalize_host(None)
    personal_api_key: Optional[str] = field(default=None, repr=False)
    flush_at: int = 100
    flush_interval: float = 0.5
    max_queue_size: int = 10_000
    max_batch_size: int = 2_000
    max_queue_bytes: Optional[int] = None
    on_full: str = "drop_new"
    block_timeout: float = 0.5
    max_concurrent_requests: int = 4
    on_drop: Optional[Callable[[dict, str], Any]] = None
    spool_path: Optional[str] = None
    spool_max_bytes: int = 100 * 1024 * 1024
    gzip: bool = True
    max_retries: int = 5
    retry_base_delay: float = 1.0
    retry_max_delay: float = 30.0
    timeout: float = 15.0
    shutdown_timeout: float = 5.0
    on_error: Optional[Callable[..., Any]] = None
    before_send: Optional[Callable[[dict], Optional[dict]]] = None
    super_properties: Optional[Mapping[str, Any]] = None
    disabled: bool = False
    send: bool = True
    sync_mode: bool = False
    debug: bool = False
    disable_geoip: bool = True
    historical_migration: bool = False
    poll_interval: float = 30.0
    feature_flags_request_timeout_seconds: float = 3.0

    def __repr__(self) -> str:
        # Keys stay out of reprs: they end up in logs and tracebacks.
        return f"Options(host={self.host!r}, flush_at={self.flush_at}, sync_mode={self.sync_mode})"

    def validate(self) -> Options:
        """Raise ConfigurationError for values that cannot work; return self otherwise."""
        _positive_int("flush_at", self.flush_at)
        _positive_int("max_queue_size", self.max_queue_size)
        _positive_int("max_batch_size", self.max_batch_size)
        _non_negative_int("max_retries", self.max_retries)
        _positive_int("max_concurrent_requests", self.max_concurrent_requests)
        _positive_int("spool_max_bytes", self.spool_max_bytes)
        if self.spool_path is not None and not isinstance(self.spool_path, (str, os.PathLike)):
            raise ConfigurationError("spool_path must be a file path")
        if self.max_queue_bytes is not None:
            _positive_int("max_queue_bytes", self.max_queue_bytes)
        if self.on_full not in ("drop_new", "drop_old", "block"):
            raise ConfigurationError(
                f"on_full must be 'drop_new', 'drop_old' or 'block', not {self.on_full!r}")
        _non_negative_number("block_timeout", self.block_timeout)
        _positive_number("flush_interval", self.flush_interval)
        _non_negative_number("retry_base_delay", self.retry_base_delay)
        _non_negative_number("retry_max_delay", self.retry_max_delay)
        _positive_number("timeout", self.timeout)
        _non_negative_number("shutdown_timeout", self.shutdown_timeout)
        _positive_number("poll_interval", self.poll_interval)
        _positive_number("feature_flags_request_timeout_seconds",
                         self.feature_flags_request_timeout_seconds)
        for name in ("on_error", "before_send", "on_drop"):
            value = getattr(self, name)
            if value is not None and not callable(value):
                raise ConfigurationError(f"{name} must be callable, not {type(value).__name__}")
        if self.super_properties is not None and not isinstance(self.super_properties, Mapping):
            raise ConfigurationError("super_properties must be a mapping")
        if not self.host.startswith(("http://", "https://")):
            raise ConfigurationError(f"host must be an http(s) URL, not {self.host!r}")
        return self


def resolve_api_key(project_api_key: Optional[str], api_key: Optional[str]) -> str:
    """Pick the project key from the argument, its alias, or the environment."""
    if project_api_key is not None and api_key is not None and project_api_key != api_key:
        raise ConfigurationError("project_api_key and api_key were both given and differ")
    key = project_api_key if project_api_key is not None else api_key
    if key is None:
        key = os.environ.get(ENV_API_KEY, "")
    if not isinstance(key, str):
        raise ConfigurationError("project_api_key must be a string")
    return key.strip()


def resolve_host(host: Optional[str]) -> str:
    """Pick the host from the argument or the environment, normalised."""
    if host is not None and not isinstance(host, str):
        raise ConfigurationError("host must be a string")
    return normalize_host(host or os.environ.get(ENV_HOST) or None)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, not {value!r}")


def _non_negative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise ConfigurationError(f"{name} must be a non-negative integer, not {value!r}")


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _positive_number(name: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")


def _non_negative_number(name: str, value: Any) -> None:
    if not _is_number(value) or value < 0:
        raise ConfigurationError(f"{name} must be zero or more seconds, not {value!r}")
