"""The spool's storage: a FIFO of serialised events in one SQLite file, owned by one process.

Rows carry the id of the run that wrote them, so a new run tells its own events from those
an earlier run left. Ownership is an exclusive ``flock`` on ``<path>.lock``: a second owner
is refused with ``SpoolBusyError`` rather than sending the same rows twice.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from typing import Any, List, Sequence

from productos._runtime.records import record

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

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


@record(frozen=True)
class SpooledRow:
    """One event read back from the spool."""

    id: int
    size: int
    body: bytes
    mine: bool  # written by this run (counted as captured here), not an earlier one


@record
class SpoolCounts:
    """Rows on disk, kept in memory so reading them costs no query (and survives close)."""

    mine: int = 0
    earlier: int = 0
    bytes: int = 0


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
            count, size = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM events").fetchone()
        except Exception:
            self._release_lock()
            raise
        self._guard = threading.Lock()  # one statement at a time on the shared connection
        self.counts = SpoolCounts(earlier=int(count), bytes=int(size))
        self._closed = False

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

    @property
    def closed(self) -> bool:
        """True once close() ran."""
        return self._closed

    def add(self, items: Sequence[bytes]) -> List[SpooledRow]:
        """Append items in one transaction; return the rows evicted to stay within max_bytes.

        Raises the database error when the write fails; nothing is then stored or evicted.
        """
        rows = [(self.run, len(body), body) for body in items]
        added = sum(size for _, size, _ in rows)
        with self._guard:
            if self._closed:
                raise sqlite3.ProgrammingError("the spool is closed")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "INSERT INTO events (run, size, body) VALUES (?, ?, ?)", rows)
                evicted = self._pick_evictions(self.counts.bytes + added)
                self._delete_ids([row.id for row in evicted])
                self._db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
            counts = self.counts
            counts.mine += len(rows)
            counts.bytes += added
            self._forget(evicted)
            return evicted

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:  # SQLite may have rolled back on its own (disk full)
            pass

    def _pick_evictions(self, total: int) -> List[SpooledRow]:
        evicted: List[SpooledRow] = []
        last_id = 0
        while total > self.max_bytes:
            found = self._db.execute(
                "SELECT id, run, size, body FROM events WHERE id > ? ORDER BY id LIMIT 500",
                (last_id,)).fetchall()
            if not found:
                break
            for row_id, run, size, body in found:
                if total <= self.max_bytes:
                    break
                evicted.append(SpooledRow(row_id, size, bytes(body), run == self.run))
                total -= size
                last_id = row_id
        return evicted

    def oldest(self, max_count: int, max_bytes: int, batches: int = 1) -> List[List[SpooledRow]]:
        """Return up to ``batches`` batches of the oldest rows, each bounded by count and bytes."""
        with self._guard:
            if self._closed:
                return []
            found = self._db.execute(
                "SELECT id, run, size, body FROM events ORDER BY id LIMIT ?",
                (max_count * batches,)).fetchall()
        result: List[List[SpooledRow]] = []
        batch: List[SpooledRow] = []
        total = 0
        for row_id, run, size, body in found:
            if batch and (len(batch) >= max_count or total + size + 1 > max_bytes):
                result.append(batch)
                if len(result) == batches:
                    return result
                batch, total = [], 0
            batch.append(SpooledRow(row_id, size, bytes(body), run == self.run))
            total += size + 1
        if batch:
            result.append(batch)
        return result

    def last_id(self) -> int:
        """Return the id of the newest row (0 when empty)."""
        with self._guard:
            if self._closed:
                return 0
            return int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])

    def delete(self, rows: Sequence[SpooledRow]) -> None:
        """Remove rows the server has taken (or refused for good)."""
        if not rows:
            return
        with self._guard:
            if self._closed:
                return
            self._delete_ids([row.id for row in rows])
            self._forget(rows)

    def _delete_ids(self, ids: Sequence[int]) -> None:
        if ids:
            self._db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in ids])

    def _forget(self, rows: Sequence[SpooledRow]) -> None:
        counts = self.counts
        for row in rows:
            if row.mine:
                counts.mine -= 1
            else:
                counts.earlier -= 1
            counts.bytes -= row.size

    def close(self) -> None:
        """Close the database and give up ownership; the counts stay readable."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.close()
            finally:
                self._release_lock()
