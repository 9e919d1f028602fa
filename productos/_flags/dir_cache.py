"""The flag definitions cache in a directory: the worker processes of one host share a file.

The lease is an exclusive ``fcntl.flock`` on a lock file, held by the holder for as long as
it lives (the kernel releases it when the process dies, ``kill -9`` included). The document
is one file, replaced atomically (written aside, then renamed): a first line of JSON with the
version, ETag and fetch time, then the body.
"""

from __future__ import annotations

import json
import os
from typing import IO, Any, Optional

from productos._flags.shared_cache import CachedDefinitions

__all__ = ["DirectoryDefinitionsCache"]


class DirectoryDefinitionsCache:
    """A :class:`~productos.FlagDefinitionsCache` in a directory (created if missing)."""

    def __init__(self, directory: str, namespace: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"productos-flags-{namespace}.json")
        self._lock_path = os.path.join(directory, f"productos-flags-{namespace}.lock")
        self._lock: Optional[IO[bytes]] = None
        self._lock_owner: Optional[str] = None
        self._pid = os.getpid()

    def acquire_lease(self, owner: str, ttl: float) -> bool:
        """Hold the lock file's lock (the ttl is the kernel's business: it ends with us)."""
        import fcntl

        self._forget_inherited()
        if self._lock is not None and self._lock_owner == owner:
            return True
        handle = open(self._lock_path, "ab")  # noqa: SIM115 - kept open while we lead
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock, self._lock_owner = handle, owner
        return True

    def release_lease(self, owner: str) -> None:
        """Unlock if owner holds the lock."""
        self._forget_inherited()
        if self._lock is not None and self._lock_owner == owner:
            self._lock.close()  # closing the only descriptor releases the lock
            self._lock, self._lock_owner = None, None

    def _forget_inherited(self) -> None:
        if self._pid != os.getpid():
            # A forked child shares the parent's open lock: drop its copy without unlocking.
            self._pid, self._lock, self._lock_owner = os.getpid(), None, None

    def reset_after_fork(self) -> None:
        """Forget a lock inherited from the parent."""
        self._forget_inherited()

    def _read(self, whole: bool) -> Optional[Any]:
        try:
            with open(self.path, "rb") as handle:
                header = json.loads(handle.readline())
                body = handle.read() if whole else b""
        except FileNotFoundError:
            return None
        if not isinstance(header, dict) or not isinstance(header.get("version"), str):
            raise ValueError("the cache file's header is not usable")
        return header, body

    def version(self) -> Optional[str]:
        """The version in the file's first line."""
        read = self._read(whole=False)
        return None if read is None else str(read[0]["version"])

    def load(self) -> Optional[CachedDefinitions]:
        """The document in the file."""
        read = self._read(whole=True)
        if read is None:
            return None
        header, body = read
        fetched_at = header.get("fetched_at")
        return CachedDefinitions(body, header.get("etag"),
                                 float(fetched_at) if isinstance(fetched_at, (int, float))
                                 else 0.0, str(header["version"]))

    def store(self, entry: CachedDefinitions, owner: str) -> None:
        """Write the file aside and rename it over the old one (readers see one or the other)."""
        if self._lock is None or self._lock_owner != owner:
            return
        header = json.dumps({"version": entry.version, "etag": entry.etag,
                             "fetched_at": entry.fetched_at}).encode()
        temporary = f"{self.path}.{os.getpid()}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(header + b"\n" + entry.body)
        os.replace(temporary, self.path)

    def close(self) -> None:
        """Nothing stays open but the lock, which release_lease gives up."""
