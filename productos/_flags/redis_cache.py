"""The flag definitions cache in Redis (the ``[redis]`` extra; redis-py is imported here only).

Two keys per project, namespaced by a hash of the project key: the lease (a token set with
``SET NX PX``, renewed and released by small scripts that compare the token first) and the
published document (a hash: body, etag, fetched_at, version). Only the lease holder's writes
land: publication checks the lease in the same script.
"""

from __future__ import annotations

from typing import Any, Optional

from productos._flags.shared_cache import CachedDefinitions
from productos.errors import ConfigurationError

__all__ = ["RedisDefinitionsCache"]

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[2], 'body', ARGV[2], 'etag', ARGV[3], 'fetched_at', ARGV[4],
           'version', ARGV[5])
return 1
"""


class RedisDefinitionsCache:
    """A :class:`~productos.FlagDefinitionsCache` in Redis (``redis://``, ``rediss://``,
    ``unix://`` URLs). Every call is bounded by ``timeout`` and fails fast, without retries:
    the poller retries at its next poll."""

    def __init__(self, url: str, namespace: str, *, timeout: float = 1.0) -> None:
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "flag_definitions_cache is a Redis URL but redis-py is not installed: "
                "pip install 'productos[redis]'") from exc
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0), health_check_interval=0)
        prefix = f"productos:flags:{namespace}:v1"
        self.lease_key = f"{prefix}:lease"
        self.entry_key = f"{prefix}:definitions"
        self._renew = self._redis.register_script(_RENEW)
        self._release = self._redis.register_script(_RELEASE)
        self._publish = self._redis.register_script(_PUBLISH)

    def acquire_lease(self, owner: str, ttl: float) -> bool:
        """Renew the lease if owner holds it, else take it if it is free."""
        ttl_ms = max(1, int(ttl * 1000))
        if self._renew(keys=[self.lease_key], args=[owner, ttl_ms]):
            return True
        return bool(self._redis.set(self.lease_key, owner, nx=True, px=ttl_ms))

    def release_lease(self, owner: str) -> None:
        """Delete the lease if owner still holds it."""
        self._release(keys=[self.lease_key], args=[owner])

    def version(self) -> Optional[str]:
        """The published version (one HGET)."""
        value = self._redis.hget(self.entry_key, "version")
        return None if value is None else bytes(value).decode("utf-8", "replace")

    def load(self) -> Optional[CachedDefinitions]:
        """The published document, or None."""
        body, etag, fetched_at, version = self._redis.hmget(
            self.entry_key, ["body", "etag", "fetched_at", "version"])
        if body is None or version is None:
            return None
        try:
            when = float(fetched_at)
        except (TypeError, ValueError):
            when = 0.0  # a garbled time does not make the body unusable
        return CachedDefinitions(bytes(body), etag.decode("utf-8", "replace") if etag else None,
                                 when, bytes(version).decode("utf-8", "replace"))

    def store(self, entry: CachedDefinitions, owner: str) -> None:
        """Publish entry, if owner holds the lease."""
        self._publish(keys=[self.lease_key, self.entry_key],
                      args=[owner, entry.body, entry.etag or "", repr(entry.fetched_at),
                            entry.version])

    def close(self) -> None:
        """Close the connection pool."""
        self._redis.close()
