"""The dev server's SQLite event store: events de-duplicated by uuid, persons, aliases, groups.

One connection guarded by one lock does every write inside a single ``BEGIN IMMEDIATE``
transaction, so a request is stored entirely or not at all. The database runs in WAL mode,
so the file helpers in ``files.py`` (and other processes) can read it while the server writes.

Each event also keeps its timestamp as epoch milliseconds (``ts``) so that funnels and trends
compare instants, not ISO strings with different offsets. ``person_distinct_ids`` maps every
distinct id to its (merged) person, maintained at ingest by ``identity.py``; queries join it.
"""

from __future__ import annotations

import datetime as _dt
import json
import sqlite3
import threading
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from dateutil.parser import isoparse

from productos.devserver.identity import PersonCache, apply_person_updates

__all__ = [
    "SCHEMA_VERSION",
    "EventStore",
    "StoreResult",
    "timestamp_ms",
]

SCHEMA_VERSION = 2
MAX_QUERY_LIMIT = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL,
    data TEXT NOT NULL,
    ts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_by_distinct_id ON events (distinct_id, seq);
CREATE TABLE IF NOT EXISTS persons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    properties TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    is_identified INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS person_distinct_ids (
    distinct_id TEXT PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES persons (id)
);
CREATE INDEX IF NOT EXISTS distinct_ids_by_person ON person_distinct_ids (person_id);
CREATE TABLE IF NOT EXISTS groups (
    group_type TEXT NOT NULL,
    group_key TEXT NOT NULL,
    properties TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (group_type, group_key)
);
"""
# Funnels and trends read (event, ts, distinct_id) of events by name and time from this index
# alone, never the wide rows (a covering index: 4x faster at 1M events); it also serves the
# viewer's "events named X".
_INDEXES = """
CREATE INDEX IF NOT EXISTS events_by_name_ts ON events (event, ts, distinct_id);
"""

_EVENT_COLUMNS = ("seq", "uuid", "event", "distinct_id", "timestamp", "received_at")
CSV_COLUMNS = (*_EVENT_COLUMNS, "properties", "set", "set_once")

class StoreResult(Tuple[int, int]):
    """``(stored, duplicates)`` for one ingested request."""

    __slots__ = ()

    def __new__(cls, stored: int, duplicates: int) -> StoreResult:
        return tuple.__new__(cls, (stored, duplicates))

    @property
    def stored(self) -> int:
        """Events newly written."""
        return self[0]

    @property
    def duplicates(self) -> int:
        """Events skipped because their uuid was already stored."""
        return self[1]


_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _check_schema(conn: sqlite3.Connection, path: str) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version not in (0, 1, SCHEMA_VERSION):
        raise ValueError(
            f"{path} has dev server schema version {version}; this productos reads {SCHEMA_VERSION}"
        )
    return version


def parse_moment(text: Any) -> Optional[_dt.datetime]:
    """An ISO-8601 timestamp as an aware datetime (naive = UTC); None when unparsable."""
    if not isinstance(text, str):
        return None
    try:
        moment = _dt.datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = isoparse(text)
        except (ValueError, OverflowError):
            return None
    return moment.replace(tzinfo=_dt.timezone.utc) if moment.tzinfo is None else moment


def timestamp_ms(text: str, fallback_ms: int) -> int:
    """An ISO-8601 timestamp as epoch milliseconds (naive = UTC); fallback_ms when unparsable.

    PostHog ingests an event with an unparsable timestamp at the time it was received.
    """
    moment = parse_moment(text)
    if moment is None:
        return fallback_ms
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return fallback_ms


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Add what schema 2 added to a version-1 database: event ts, identified persons."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(events)")}
    if "ts" not in columns:
        conn.execute("ALTER TABLE events ADD COLUMN ts INTEGER NOT NULL DEFAULT 0")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(persons)")}
    if "is_identified" not in columns:
        conn.execute("ALTER TABLE persons ADD COLUMN is_identified INTEGER NOT NULL DEFAULT 0")
    now = int(_dt.datetime.now(_dt.timezone.utc).timestamp() * 1000)
    rows = conn.execute("SELECT seq, timestamp FROM events WHERE ts = 0").fetchall()
    conn.executemany("UPDATE events SET ts = ? WHERE seq = ?",
                     [(timestamp_ms(text, now), seq) for seq, text in rows])
    conn.execute("DROP INDEX IF EXISTS events_by_name")


def _stored_uuids(conn: sqlite3.Connection, uuids: Sequence[str]) -> Set[str]:
    found: Set[str] = set()
    for start in range(0, len(uuids), 500):
        chunk = uuids[start:start + 500]
        found.update(row[0] for row in conn.execute(
            f"SELECT uuid FROM events WHERE uuid IN ({', '.join('?' * len(chunk))})", chunk))
    return found


class EventStore:
    """Events, persons and groups in one SQLite file; safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            # Autocommit mode: transactions are opened explicitly, one per request.
            conn = sqlite3.connect(
                path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            version = _check_schema(conn, path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB: funnels scan big indexes
            conn.execute("PRAGMA temp_store=MEMORY")
            conn.executescript(_SCHEMA)  # no-ops for the tables a version-1 file has
            if version == 1:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    _migrate_v1(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            conn.executescript(_INDEXES)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"{path} is not a usable dev server database: {exc}") from exc
        self._conn = conn
        # sqlite3 connections are not safe for concurrent use; one lock serialises all access
        # (SQLite serialises writers anyway, and a dev server's reads are small).
        self._lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ writing

    def ingest(self, events: Sequence[Mapping[str, Any]]) -> StoreResult:
        """Store validated events in one transaction; a uuid already stored is skipped."""
        now = _dt.datetime.now(_dt.timezone.utc)
        received_at = now.isoformat()
        now_ms = int(now.timestamp() * 1000)
        stored = duplicates = 0
        rows = [(event["uuid"], event["event"], event["distinct_id"], event["timestamp"],
                 received_at, _dumps(event), timestamp_ms(event["timestamp"], now_ms))
                for event in events]
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                # One look-up for the uuids already stored, one executemany for the new rows,
                # then persons in event order: far fewer round trips than a row at a time.
                seen = _stored_uuids(conn, [row[0] for row in rows])
                fresh: List[Mapping[str, Any]] = []
                fresh_rows = []
                for event, row in zip(events, rows):
                    if row[0] in seen:
                        duplicates += 1
                        continue
                    seen.add(row[0])
                    fresh.append(event)
                    fresh_rows.append(row)
                conn.executemany(
                    "INSERT INTO events"
                    " (uuid, event, distinct_id, timestamp, received_at, data, ts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", fresh_rows)
                stored = len(fresh_rows)
                cache = PersonCache()
                cache.load(conn, (row[2] for row in fresh_rows))
                for event in fresh:
                    # Only a newly stored event changes persons: a resent event is a no-op.
                    apply_person_updates(conn, event, received_at, cache)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return StoreResult(stored, duplicates)

    def clear(self) -> int:
        """Delete every event, person and group in one transaction; returns the events deleted."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                deleted = int(conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])
                for table in ("events", "person_distinct_ids", "persons", "groups"):
                    conn.execute(f"DELETE FROM {table}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return deleted

    def read(self, work: Any) -> Any:
        """Run ``work(connection)`` under the store's lock (for the query modules)."""
        with self._lock:
            return work(self._conn)

    # ------------------------------------------------------------------ reading

    def events(
        self,
        limit: int = 100,
        event: Optional[str] = None,
        distinct_id: Optional[str] = None,
        after: Optional[int] = None,
        before: Optional[int] = None,
        oldest_first: bool = False,
        with_person: bool = False,
    ) -> List[Dict[str, Any]]:
        """The latest events, newest first, optionally filtered; ``after`` = only seq > after,
        ``before`` = only seq < before (the next page of older events)."""
        with self._lock:
            return _query_events(
                self._conn, limit=limit, event=event, distinct_id=distinct_id, after=after,
                before=before, newest_first=not oldest_first, with_person=with_person,
            )

    def count(self) -> int:
        """Number of stored events."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        """The sequence number of the newest event (0 when empty)."""
        with self._lock:
            return int(self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def counts_by_event(self) -> Dict[str, int]:
        """Event counts by name, most frequent first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT event, COUNT(*) AS n FROM events GROUP BY event ORDER BY n DESC, event"
            ).fetchall()
        return {name: int(n) for name, n in rows}

    def person_properties(self, distinct_id: str) -> Dict[str, Any]:
        """The stored properties of the person behind a distinct id ({} when unknown)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT p.properties FROM person_distinct_ids d JOIN persons p"
                " ON p.id = d.person_id WHERE d.distinct_id = ?",
                (str(distinct_id),),
            ).fetchone()
        return json.loads(row[0]) if row else {}

    def person(self, distinct_id: str) -> Optional[Dict[str, Any]]:
        """The person behind a distinct id: id, properties and all its distinct ids."""
        with self._lock:
            row = self._conn.execute(
                "SELECT p.id, p.properties, p.created_at, p.updated_at FROM person_distinct_ids d"
                " JOIN persons p ON p.id = d.person_id WHERE d.distinct_id = ?",
                (str(distinct_id),),
            ).fetchone()
            if row is None:
                return None
            ids = [
                r[0]
                for r in self._conn.execute(
                    "SELECT distinct_id FROM person_distinct_ids WHERE person_id = ?"
                    " ORDER BY distinct_id",
                    (row[0],),
                )
            ]
        return {
            "id": row[0],
            "properties": json.loads(row[1]),
            "created_at": row[2],
            "updated_at": row[3],
            "distinct_ids": ids,
        }

    def group_properties(self, group_type: str, group_key: str) -> Dict[str, Any]:
        """The stored properties of one group ({} when unknown)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT properties FROM groups WHERE group_type = ? AND group_key = ?",
                (str(group_type), str(group_key)),
            ).fetchone()
        return json.loads(row[0]) if row else {}

    def summary(self) -> Dict[str, Any]:
        """Totals for the stats endpoint."""
        with self._lock:
            conn = self._conn
            total, last = conn.execute("SELECT COUNT(*), MAX(received_at) FROM events").fetchone()
            persons = conn.execute("SELECT COUNT(*) FROM persons").fetchone()[0]
            distinct_ids = conn.execute("SELECT COUNT(*) FROM person_distinct_ids").fetchone()[0]
            groups = conn.execute("SELECT COUNT(*) FROM groups").fetchone()[0]
        return {
            "events": int(total),
            "last_received_at": last,
            "persons": int(persons),
            "distinct_ids": int(distinct_ids),
            "groups": int(groups),
        }

    def close(self) -> None:
        """Checkpoint the WAL and close the connection (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # another process may hold the database; the WAL stays valid
            self._conn.close()


# ---------------------------------------------------------------------------------------------
# Queries shared by the store and the file helpers
# ---------------------------------------------------------------------------------------------


def _row_to_event(row: Sequence[Any]) -> Dict[str, Any]:
    seq, _uuid, _event, _distinct_id, _timestamp, received_at, data = row[:7]
    event: Dict[str, Any] = json.loads(data)
    event["seq"] = seq
    event["received_at"] = received_at
    if len(row) > 7:
        event["person_id"] = row[7]
    return event


# The person an event's distinct id belongs to now (after every merge so far).
PERSON_OF_EVENT = (
    "(SELECT person_id FROM person_distinct_ids p WHERE p.distinct_id = events.distinct_id)"
)


def _query_events(
    conn: sqlite3.Connection,
    *,
    limit: Optional[int],
    event: Optional[str] = None,
    distinct_id: Optional[str] = None,
    after: Optional[int] = None,
    before: Optional[int] = None,
    newest_first: bool,
    with_person: bool = False,
) -> List[Dict[str, Any]]:
    clauses, params = _filters(event, distinct_id, after, before)
    person = f", {PERSON_OF_EVENT}" if with_person else ""
    sql = f"SELECT {', '.join(_EVENT_COLUMNS)}, data{person} FROM events{clauses}"
    sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, min(int(limit), MAX_QUERY_LIMIT)))
    return [_row_to_event(row) for row in conn.execute(sql, params)]


def _filters(
    event: Optional[str], distinct_id: Optional[str], after: Optional[int],
    before: Optional[int] = None,
) -> Tuple[str, List[Any]]:
    where: List[str] = []
    params: List[Any] = []
    if event is not None:
        where.append("event = ?")
        params.append(event)
    if distinct_id is not None:
        where.append("distinct_id = ?")
        params.append(str(distinct_id))
    if after is not None:
        where.append("seq > ?")
        params.append(int(after))
    if before is not None:
        where.append("seq < ?")
        params.append(int(before))
    return (" WHERE " + " AND ".join(where) if where else ""), params


