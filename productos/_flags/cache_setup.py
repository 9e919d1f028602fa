"""Turn the ``flag_definitions_cache`` setting into a cache: a URL, a directory or an object.

PostHog's ``flag_definition_cache_provider`` objects (``should_fetch_flag_definitions``,
``get_flag_definitions``, ``on_flag_definitions_received``, ``shutdown``) are adapted.
"""

from __future__ import annotations

import inspect
import json
import os
import time
from typing import Any, Optional

from productos._flags.shared_cache import (
    CachedDefinitions,
    FlagDefinitionsCache,
    canonical_body,
    content_version,
    namespace_for,
)
from productos.errors import ConfigurationError

__all__ = ["PosthogProviderCache", "check_cache_setting", "open_cache"]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
_POSTHOG_METHODS = ("should_fetch_flag_definitions", "get_flag_definitions",
                    "on_flag_definitions_received")


def check_cache_setting(value: Any) -> None:
    """Raise ConfigurationError when value cannot be a flag definitions cache."""
    if value is None or isinstance(value, (str, os.PathLike)):
        if isinstance(value, str) and not value.strip():
            raise ConfigurationError("flag_definitions_cache must not be empty")
        return
    if isinstance(value, FlagDefinitionsCache) or all(
            callable(getattr(value, name, None)) for name in _POSTHOG_METHODS):
        return
    raise ConfigurationError(
        "flag_definitions_cache must be a redis://, rediss:// or unix:// URL, a directory, "
        f"or a FlagDefinitionsCache, not {type(value).__name__}")


def open_cache(value: Any, project_api_key: str, interval: float) -> FlagDefinitionsCache:
    """Return the cache a setting describes (check_cache_setting has accepted it)."""
    namespace = namespace_for(project_api_key)
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if text.startswith(REDIS_SCHEMES):
            from productos._flags.redis_cache import RedisDefinitionsCache

            # A slow Redis must not hold a poll up for long.
            return RedisDefinitionsCache(text, namespace,
                                         timeout=max(0.05, min(1.0, interval / 2)))
        from productos._flags.dir_cache import DirectoryDefinitionsCache

        return DirectoryDefinitionsCache(text, namespace)
    if isinstance(value, FlagDefinitionsCache):
        return value
    return PosthogProviderCache(value)


def _resolve(value: Any) -> Any:
    """PostHog's providers may return awaitables: run them to completion."""
    if inspect.isawaitable(value):
        import asyncio  # only for async providers: asyncio costs import time for everyone else

        async def wait() -> Any:
            return await value
        return asyncio.run(wait())
    return value


class PosthogProviderCache:
    """A PostHog ``FlagDefinitionCacheProvider`` seen as a FlagDefinitionsCache.

    Its lock is the lease (``should_fetch_flag_definitions``); it stores documents, not
    versions, so the version is the hash of the document it returns.
    """

    def __init__(self, provider: Any) -> None:
        self._provider = provider

    def acquire_lease(self, owner: str, ttl: float) -> bool:
        """The provider decides whether this process fetches."""
        return bool(_resolve(self._provider.should_fetch_flag_definitions()))

    def release_lease(self, owner: str) -> None:
        """The provider releases its lock on shutdown (see close)."""

    def _document(self) -> Optional[bytes]:
        data = _resolve(self._provider.get_flag_definitions())
        return None if not data else canonical_body(data)

    def version(self) -> Optional[str]:
        """The hash of the provider's document."""
        body = self._document()
        return None if body is None else content_version(body)

    def load(self) -> Optional[CachedDefinitions]:
        """The provider's document."""
        body = self._document()
        return None if body is None else CachedDefinitions(body, None, time.time(),
                                                           content_version(body))

    def store(self, entry: CachedDefinitions, owner: str) -> None:
        """Hand the document to the provider (which releases its lock)."""
        data = json.loads(entry.body)
        document = {"flags": data.get("flags") or [],
                    "group_type_mapping": data.get("group_type_mapping") or {},
                    "cohorts": data.get("cohorts") or {}}
        for extra in ("property_matching_version", "minimal_flag_called_events"):
            if extra in data:
                document[extra] = data[extra]
        _resolve(self._provider.on_flag_definitions_received(document))

    def close(self) -> None:
        """Call the provider's shutdown."""
        shutdown = getattr(self._provider, "shutdown", None)
        if shutdown is not None:
            _resolve(shutdown())
