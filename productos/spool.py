"""A durable spool: events wait in a SQLite file until the server has taken them.

Opt-in with ``Client(spool_path=...)``. The consumer thread (never the caller's) writes
events to the spool in batches and sends from it; a row is deleted only after the server
answered 200 (or refused it for good). After a crash, ``kill -9`` or a long outage, a new
client on the same path sends what is pending, with the same uuids and timestamps.

One process owns a spool file at a time: it holds an exclusive lock on ``<path>.lock``.
A second process (or a forked child) that points at the same file is told so in the log
and keeps its events in memory instead, so no event is ever sent twice by two owners.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from productos.transport import BatchOutcome

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("productos")

# Reasons after which a row may be retried later; every other drop is final.
_KEEP_REASONS = frozenset({"retries_exhausted", "deadline_exceeded", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run TEXT NOT NULL,
    size INTEGER NOT NULL,
    body BLOB NOT NULL
)
"""


class SpoolBusyError(RuntimeError):
    """Another process owns this spool file."""


class Spool:
    """A FIFO of serialised events in one SQLite file (WAL mode), owned by one process."""

    def __init__(self, path: str, max_bytes: int = 100 * 1024 * 1024) -> None:
        self.path = os.path.abspath(path)
        self.max_bytes = max_bytes
        self.run = uuid.uuid4().hex  # tells this process's rows from those of earlier runs
        self._lock_file = self._acquire_lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False,
                                       isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except Exception:
            self._release_lock()
            raise
        self._guard = threading.Lock()
        row = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()
        self._bytes = int(row[0])

    def _acquire_lock(self) -> Any:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        handle = open(self.path + ".lock", "a+")  # noqa: SIM115 - held for the spool's life
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                handle.close()
                raise SpoolBusyError(f"spool {self.path} is in use by another process") from exc
        return handle

    def _release_lock(self) -> None:
        try:
            self._lock_file.close()  # closing the descriptor drops the flock
        except Exception:
            pass

    def add(self, items: Sequence[bytes]) -> List[bytes]:
        """Append items; return those evicted (oldest first) to stay within max_bytes."""
        rows = [(self.run, len(body), body) for body in items]
        with self._guard:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT INTO events (run, size, body) VALUES (?, ?, ?)",
                                     rows)
                self._db.execute("COMMIT")
            except Exception:
                self._db.execute("ROLLBACK")
                raise
            self._bytes += sum(r[1] for r in rows)
            return self._evict_over_budget()

    def _evict_over_budget(self) -> List[bytes]:
        evicted: List[bytes] = []
        while self._bytes > self.max_bytes:
            found = self._db.execute(
                "SELECT id, size, body FROM events ORDER BY id LIMIT 500").fetchall()
            if not found:
                self._bytes = 0
                break
            doomed = []
            for row_id, size, body in found:
                if self._bytes <= self.max_bytes:
                    break
                doomed.append(row_id)
                evicted.append(bytes(body))
                self._bytes -= size
            self._delete_locked(doomed)
        return evicted

    def oldest(self, max_count: int, max_bytes: int) -> List[Tuple[int, bytes, bool]]:
        """Return up to one batch of the oldest rows as (id, body, from_this_run)."""
        with self._guard:
            found = self._db.execute(
                "SELECT id, run, size, body FROM events ORDER BY id LIMIT ?", (max_count,)
            ).fetchall()
        batch: List[Tuple[int, bytes, bool]] = []
        total = 0
        for row_id, run, size, body in found:
            if batch and total + size + 1 > max_bytes:
                break
            batch.append((row_id, bytes(body), run == self.run))
            total += size + 1
        return batch

    def delete(self, ids: Sequence[int]) -> None:
        """Remove rows the server has taken (or refused for good)."""
        if not ids:
            return
        with self._guard:
            self._delete_locked(ids)
            row = self._db.execute("SELECT COALESCE(SUM(size), 0) FROM events").fetchone()
            self._bytes = int(row[0])

    def _delete_locked(self, ids: Sequence[int]) -> None:
        self._db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])

    def pending(self) -> Tuple[int, int]:
        """Return how many rows wait: (from this run, from earlier runs)."""
        with self._guard:
            mine, total = self._db.execute(
                "SELECT COALESCE(SUM(run = ?), 0), COUNT(*) FROM events", (self.run,)
            ).fetchone()
        return int(mine), int(total) - int(mine)

    def close(self) -> None:
        """Close the database and give up ownership."""
        with self._guard:
            try:
                self._db.close()
            finally:
                self._release_lock()


class SpoolingSender:
    """A Sender that writes batches to a Spool and delivers from it through another Sender."""

    durable = True

    def __init__(self, inner: Any, path: str, *, max_bytes: int, max_batch_size: int,
                 max_batch_bytes: int, outage_delay: float = 1.0, outage_cap: float = 30.0,
                 clock: Any = time.monotonic) -> None:
        self.inner = inner
        self.path = path
        self.max_bytes = max_bytes
        self._max_batch = max_batch_size
        self._max_batch_bytes = max_batch_bytes
        self._outage_delay = outage_delay
        self._outage_cap = outage_cap
        self._clock = clock
        self._lock = threading.Lock()  # one spool round at a time
        self._resume_at = 0.0
        self._failures = 0
        self.recovered = 0  # rows of earlier runs delivered by this one
        self.spool: Optional[Spool] = self._open()

    def _open(self) -> Optional[Spool]:
        try:
            spool = Spool(self.path, self.max_bytes)
        except SpoolBusyError as exc:
            log.error("productos: %s; this process keeps its events in memory instead "
                      "(use one spool file per process)", exc)
            return None
        except Exception as exc:
            log.error("productos: cannot open spool %s (%s); events stay in memory",
                      self.path, exc)
            return None
        waiting = spool.pending()[1]
        if waiting:
            log.info("productos: %d event(s) from an earlier run wait in the spool; "
                     "sending them", waiting)
        return spool

    def pending(self) -> Tuple[int, int]:
        """Rows waiting in the spool: (this run, earlier runs)."""
        return (0, 0) if self.spool is None else self.spool.pending()

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        """Spool items, then deliver what the spool holds while the endpoint takes it."""
        spool = self.spool
        if spool is None:
            return self.inner.send(items, deadline)
        outcome = BatchOutcome()
        with self._lock:
            if items:
                evicted = spool.add(items)
                if evicted:
                    outcome.drop("spool_full", evicted,
                                 RuntimeError("the spool reached spool_max_bytes"))
            if deadline is not None and self._clock() >= deadline:
                return outcome  # no time left: the rows wait on disk for the next run
            if self._clock() < self._resume_at and deadline is None:
                return outcome  # an outage: wait out the back-off before trying again
            self._deliver(spool, outcome, deadline)
        return outcome

    def _deliver(self, spool: Spool, outcome: BatchOutcome, deadline: Optional[float]) -> None:
        while True:
            rows = spool.oldest(self._max_batch, self._max_batch_bytes)
            if not rows:
                return
            bodies = [body for _, body, _ in rows]
            result = self.inner.send(bodies, deadline)
            outcome.retries += result.retries
            kept: Dict[int, None] = {}
            for reason, error, failed in result.failures:
                if reason in _KEEP_REASONS:
                    kept.update((id(b), None) for b in failed)
                    continue
                outcome.drop(reason, failed, error)
            done = [(row_id, mine) for (row_id, body, mine) in rows if id(body) not in kept]
            spool.delete([row_id for row_id, _ in done])
            failed_final = sum(result.dropped.get(r, 0) for r in result.dropped
                               if r not in _KEEP_REASONS)
            delivered = len(done) - failed_final
            earlier = sum(1 for _, mine in done if not mine)
            # Rows of earlier runs are reported apart: this run never counted them as captured.
            self.recovered += min(earlier, delivered)
            outcome.delivered += max(0, delivered - earlier)
            if kept:
                self._failures += 1
                delay = min(self._outage_cap, self._outage_delay * 2 ** (self._failures - 1))
                self._resume_at = self._clock() + delay
                return
            self._failures = 0
            self._resume_at = 0.0

    def cancel(self) -> None:
        """Cut the inner sender's back-off short; unsent rows stay spooled."""
        self.inner.cancel()

    def reset_after_fork(self) -> None:
        """In a forked child the parent owns the spool: try to own it, else use memory."""
        self.inner.reset_after_fork()
        self._lock = threading.Lock()
        self.spool = self._open()

    def close(self) -> None:
        """Release the spool file."""
        if self.spool is not None:
            self.spool.close()
            self.spool = None
