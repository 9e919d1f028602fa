"""The server's bucketing hash: where a person (or group) falls in [0, 1] for a flag."""

from __future__ import annotations

import hashlib
import importlib
import struct
import time
from typing import Any, Callable


def _bucket_cost(make: Callable[[bytes], Any], rounds: int = 48) -> int:
    """Nanoseconds for ``rounds`` buckets the way the evaluator computes them."""
    prefix = make(b"calibration-flag.")
    text = b"calibration-person-0123"
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(rounds):
        h = prefix.copy()
        h.update(text)
        h.digest()
    return clock() - start


try:
    _builtin_sha1: Callable[[bytes], Any] = importlib.import_module("_sha1").sha1
except ImportError:  # pragma: no cover - depends on how Python was built
    _builtin_sha1 = hashlib.sha1


def _fastest_sha1() -> Callable[[bytes], Any]:
    """OpenSSL's sha1 or CPython's own (the same digest), whichever is faster here.

    Which one wins depends on the machine: OpenSSL's is hardware-accelerated where the CPU
    has SHA instructions, but each call goes through its EVP layer, which for the short
    inputs flags hash can cost more than CPython's plain implementation saves. Bucketing
    runs for most flag reads, so the choice is measured once, at import (about 0.1 ms).
    """
    if _builtin_sha1 is hashlib.sha1:  # pragma: no cover - a build without CPython's own
        return hashlib.sha1
    try:
        openssl = min(_bucket_cost(hashlib.sha1) for _ in range(3))
        own = min(_bucket_cost(_builtin_sha1) for _ in range(3))
    except Exception:  # pragma: no cover - e.g. a FIPS build refusing sha1
        return _builtin_sha1
    return hashlib.sha1 if openssl < own else _builtin_sha1


_sha1 = _fastest_sha1()

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
