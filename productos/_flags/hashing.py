"""The server's bucketing hash: where a person (or group) falls in [0, 1] for a flag."""

from __future__ import annotations

import functools
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

__all__ = [
    "HOLDOUT_HASHER",
    "LONG_SCALE",
    "bucket",
    "bucket_of_digest",
    "digests_where",
    "first_64_bits",
    "flag_hash",
    "key_hasher",
]

LONG_SCALE = float(0xFFFFFFFFFFFFFFF)
first_64_bits = struct.Struct(">Q").unpack_from  # the digest's first 8 bytes, big-endian

# Holdouts hash every flag's bucketing value with the same prefix.
HOLDOUT_HASHER = _sha1(b"holdout-")


def flag_hash(key: str, bucketing_value: str, salt: str = "") -> float:
    """The server's bucket in [0, 1]: first 60 bits of sha1(f"{key}.{bucketing_value}{salt}")."""
    return bucket_of_digest(_sha1(f"{key}.{bucketing_value}{salt}".encode()).digest())


def key_hasher(key: str) -> Any:
    """A sha1 already fed ``f"{key}."``, for :func:`bucket` (copied per use, never updated)."""
    return _sha1(f"{key}.".encode())


def bucket(hasher: Any, text: str) -> float:
    """The bucket of ``text`` under a :func:`key_hasher` prefix (or :data:`HOLDOUT_HASHER`)."""
    # Copying the prefixed hasher skips re-hashing the key (measured: a little faster than a
    # fresh sha1 over key + text, even for short keys).
    h = hasher.copy()
    h.update(text.encode())
    return bucket_of_digest(h.digest())


def bucket_of_digest(digest: bytes) -> float:
    """The bucket a sha1 digest stands for (what :func:`bucket` returns for it)."""
    high: int = first_64_bits(digest)[0]
    return (high >> 4) / LONG_SCALE


_BUCKETS = 1 << 60  # buckets are the first 60 bits of the digest
_NO_DIGEST = b"\xff" * 21  # above every 20-byte digest


@functools.lru_cache(maxsize=4096)
def digests_where(relation: str, edge: float) -> bytes:
    """The smallest digest whose bucket stands in ``relation`` to ``edge``.

    ``relation`` is ">", ">=", "!<" or "!<=": the last two are ``not bucket < edge`` and
    ``not bucket <= edge``, which differ from ">=" and ">" only for a NaN edge (they hold for
    every bucket), so that each edge reproduces the expression it replaces exactly.

    A digest is at or above the returned bytes exactly when ``bucket_of_digest(digest)``
    satisfies the relation, so the evaluator compares digests, which are already bytes,
    instead of unpacking each into an int and dividing it into a float. The relations hold
    for a contiguous upper range of buckets (the float arithmetic is monotonic), and the
    boundary is found with the evaluator's own arithmetic, so the two agree bit for bit.
    ``b""`` means every digest; 21 ``0xff`` bytes, none. Edges repeat across flags (50 %,
    100 %), hence the cache.
    """
    def holds(n: int) -> bool:
        value = n / LONG_SCALE
        if relation == ">":
            return value > edge
        if relation == ">=":
            return value >= edge
        if relation == "!<":
            return not value < edge
        return not value <= edge

    # The exact boundary is within a rounding step (at most 128 buckets) of edge * 2**60.
    try:
        guess = min(max(int(edge * LONG_SCALE), 0), _BUCKETS)
    except (OverflowError, ValueError):  # an infinite or NaN edge
        guess = 0
    low, high = max(guess - 256, 0), min(guess + 256, _BUCKETS)
    if (low > 0 and holds(low - 1)) or (high < _BUCKETS and not holds(high)):
        low, high = 0, _BUCKETS  # not bracketed after all: search every bucket
    # Smallest n in [low, high] that holds, where high stands for "none" when it is 2**60.
    while low < high:
        middle = (low + high) // 2
        if holds(middle):
            high = middle
        else:
            low = middle + 1
    if low == 0:
        return b""
    if low >= _BUCKETS:
        return _NO_DIGEST
    return (low << 4).to_bytes(8, "big") + bytes(12)
