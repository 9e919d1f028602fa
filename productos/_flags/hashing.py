"""The server's bucketing hash: where a person (or group) falls in [0, 1] for a flag."""

from __future__ import annotations

import hashlib
import importlib
import struct
from typing import Any, Callable

_sha1: Callable[[bytes], Any]
try:
    # CPython's own sha1 (the same digest): for the short inputs flags hash, copying and
    # finishing it costs about a third fewer instructions than OpenSSL's, whose every call
    # goes through the EVP layer. Some builds leave the module out; then OpenSSL's it is.
    _sha1 = importlib.import_module("_sha1").sha1
except ImportError:  # pragma: no cover - depends on how Python was built
    _sha1 = hashlib.sha1

__all__ = ["HOLDOUT_HASHER", "LONG_SCALE", "bucket", "first_64_bits", "flag_hash", "key_hasher"]

LONG_SCALE = float(0xFFFFFFFFFFFFFFF)
first_64_bits = struct.Struct(">Q").unpack_from  # the digest's first 8 bytes, big-endian

# Holdouts hash every flag's bucketing value with the same prefix.
HOLDOUT_HASHER = _sha1(b"holdout-")


def flag_hash(key: str, bucketing_value: str, salt: str = "") -> float:
    """The server's bucket in [0, 1]: first 60 bits of sha1(f"{key}.{bucketing_value}{salt}")."""
    digest = _sha1(f"{key}.{bucketing_value}{salt}".encode()).digest()
    high: int = first_64_bits(digest)[0]
    return (high >> 4) / LONG_SCALE


def key_hasher(key: str) -> Any:
    """A sha1 already fed ``f"{key}."``, for :func:`bucket` (copied per use, never updated)."""
    return _sha1(f"{key}.".encode())


def bucket(hasher: Any, text: str) -> float:
    """The bucket of ``text`` under a :func:`key_hasher` prefix (or :data:`HOLDOUT_HASHER`)."""
    # Copying the prefixed hasher skips re-hashing the key (measured: a little faster than a
    # fresh sha1 over key + text, even for short keys).
    h = hasher.copy()
    h.update(text.encode())
    high: int = first_64_bits(h.digest())[0]
    return (high >> 4) / LONG_SCALE
