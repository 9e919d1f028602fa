"""The dev server's SQLite event store: events de-duplicated by uuid, persons, aliases, groups.

One connection guarded by one lock does every write inside a single ``BEGIN IMMEDIATE``
transaction, so a request is stored entirely or not at all. The database runs in WAL mode,
so ``export_events`` / ``tail_events`` (and other processes) can read it while the server writes.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import sqlite3
import sys
import threading
import time
from typing import IO, Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "SCHEMA_VERSION",
    "EventStore",
    "StoreResult",
    "export_events",
    "tail_events",
]

SCHEMA_VERSION = 1
MAX_QUERY_LIMIT = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL UNIQUE,
    event TEXT NOT NULL,
    distinct_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    received_at TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_name ON events (event, seq);
CREATE INDEX IF NOT EXISTS events_by_distinct_id ON events (distinct_id, seq);
CREATE TABLE IF NOT EXISTS persons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    properties TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
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


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_schema(conn: sqlite3.Connection, path: str) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, SCHEMA_VERSION):
        raise ValueError(
            f"{path} has dev server schema version {version}; this productos reads {SCHEMA_VERSION}"
        )


class EventStore:
    """Events, persons and groups in one SQLite file; safe to share between threads."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            # Autocommit mode: transactions are opened explicitly, one per request.
            conn = sqlite3.connect(
                path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            _check_schema(conn, path)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
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
        received_at = _now_iso()
        stored = duplicates = 0
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                for event in events:
                    cursor = conn.execute(
                        "INSERT OR IGNORE INTO events"
                        " (uuid, event, distinct_id, timestamp, received_at, data)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            event["uuid"],
                            event["event"],
                            event["distinct_id"],
                            event["timestamp"],
                            received_at,
                            _dumps(event),
                        ),
                    )
                    if cursor.rowcount == 1:
                        stored += 1
                        # Only a newly stored event changes persons: a resent event is a no-op.
                        _apply_person_updates(conn, event, received_at)
                    else:
                        duplicates += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return StoreResult(stored, duplicates)

    # ------------------------------------------------------------------ reading

    def events(
        self,
        limit: int = 100,
        event: Optional[str] = None,
        distinct_id: Optional[str] = None,
        after: Optional[int] = None,
    ) -> List[Dict[str, Any]]:
        """The latest events, newest first, optionally filtered; ``after`` = only seq > after."""
        with self._lock:
            return _query_events(
                self._conn, limit=limit, event=event, distinct_id=distinct_id, after=after,
                newest_first=True,
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
# Person and group updates (inside the ingest transaction)
# ---------------------------------------------------------------------------------------------


def _as_dict(value: Any) -> Dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _person_id(conn: sqlite3.Connection, distinct_id: str) -> Optional[int]:
    row = conn.execute(
        "SELECT person_id FROM person_distinct_ids WHERE distinct_id = ?", (distinct_id,)
    ).fetchone()
    return int(row[0]) if row else None


def _ensure_person(conn: sqlite3.Connection, distinct_id: str, now: str) -> int:
    person_id = _person_id(conn, distinct_id)
    if person_id is None:
        cursor = conn.execute(
            "INSERT INTO persons (properties, created_at, updated_at) VALUES ('{}', ?, ?)",
            (now, now),
        )
        person_id = cursor.lastrowid
        if person_id is None:  # an INSERT into a rowid table always sets it
            raise sqlite3.DatabaseError("the new person got no row id")
        conn.execute(
            "INSERT INTO person_distinct_ids (distinct_id, person_id) VALUES (?, ?)",
            (distinct_id, person_id),
        )
    return person_id


def _load_properties(conn: sqlite3.Connection, person_id: int) -> Dict[str, Any]:
    row = conn.execute("SELECT properties FROM persons WHERE id = ?", (person_id,)).fetchone()
    return json.loads(row[0]) if row else {}


def _save_properties(
    conn: sqlite3.Connection, person_id: int, properties: Mapping[str, Any], now: str
) -> None:
    conn.execute(
        "UPDATE persons SET properties = ?, updated_at = ? WHERE id = ?",
        (_dumps(properties), now, person_id),
    )


def _link(conn: sqlite3.Connection, keep_id: str, other_id: str, now: str) -> None:
    """Make two distinct ids one person (``$create_alias``, ``$identify``)."""
    if not other_id or other_id == keep_id:
        return
    keep = _ensure_person(conn, keep_id, now)
    other = _person_id(conn, other_id)
    if other is None:
        conn.execute(
            "INSERT INTO person_distinct_ids (distinct_id, person_id) VALUES (?, ?)",
            (other_id, keep),
        )
        return
    if other == keep:
        return
    # Two known persons: merge into the one the event is about; its own properties win.
    merged = {**_load_properties(conn, other), **_load_properties(conn, keep)}
    _save_properties(conn, keep, merged, now)
    conn.execute("UPDATE person_distinct_ids SET person_id = ? WHERE person_id = ?", (keep, other))
    conn.execute("DELETE FROM persons WHERE id = ?", (other,))


def _apply_person_updates(conn: sqlite3.Connection, event: Mapping[str, Any], now: str) -> None:
    properties = _as_dict(event.get("properties"))
    name = event["event"]
    if name == "$groupidentify":
        group_type, group_key = properties.get("$group_type"), properties.get("$group_key")
        if isinstance(group_type, str) and group_key is not None and group_type:
            _update_group(conn, group_type, str(group_key), _as_dict(properties.get("$group_set")),
                          now)
    if properties.get("$process_person_profile") is False:
        return  # PostHog creates no person for these events
    distinct_id = event["distinct_id"]
    if name == "$create_alias":
        alias = properties.get("alias")
        if isinstance(alias, (str, int)) and not isinstance(alias, bool):
            _link(conn, distinct_id, str(alias), now)
    elif name == "$identify":
        anon = properties.get("$anon_distinct_id")
        if isinstance(anon, (str, int)) and not isinstance(anon, bool):
            _link(conn, distinct_id, str(anon), now)
    to_set = {**_as_dict(properties.get("$set")), **_as_dict(event.get("$set"))}
    to_set_once = {**_as_dict(properties.get("$set_once")), **_as_dict(event.get("$set_once"))}
    unset = properties.get("$unset", event.get("$unset"))
    unset_keys = [k for k in unset if isinstance(k, str)] if isinstance(unset, list) else []
    person_id = _ensure_person(conn, distinct_id, now)
    if not (to_set or to_set_once or unset_keys):
        return
    current = _load_properties(conn, person_id)
    updated = dict(current)
    for key, value in to_set_once.items():
        updated.setdefault(key, value)
    updated.update(to_set)
    for key in unset_keys:
        updated.pop(key, None)
    if updated != current:
        _save_properties(conn, person_id, updated, now)


def _update_group(
    conn: sqlite3.Connection, group_type: str, group_key: str, values: Mapping[str, Any], now: str
) -> None:
    row = conn.execute(
        "SELECT properties FROM groups WHERE group_type = ? AND group_key = ?",
        (group_type, group_key),
    ).fetchone()
    merged = {**(json.loads(row[0]) if row else {}), **values}
    conn.execute(
        "INSERT INTO groups (group_type, group_key, properties, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (group_type, group_key)"
        " DO UPDATE SET properties = excluded.properties, updated_at = excluded.updated_at",
        (group_type, group_key, _dumps(merged), now),
    )


# ---------------------------------------------------------------------------------------------
# Queries shared by the store and the file helpers
# ---------------------------------------------------------------------------------------------


def _row_to_event(row: Sequence[Any]) -> Dict[str, Any]:
    seq, _uuid, _event, _distinct_id, _timestamp, received_at, data = row
    event: Dict[str, Any] = json.loads(data)
    event["seq"] = seq
    event["received_at"] = received_at
    return event


def _query_events(
    conn: sqlite3.Connection,
    *,
    limit: Optional[int],
    event: Optional[str] = None,
    distinct_id: Optional[str] = None,
    after: Optional[int] = None,
    newest_first: bool,
) -> List[Dict[str, Any]]:
    clauses, params = _filters(event, distinct_id, after)
    sql = f"SELECT {', '.join(_EVENT_COLUMNS)}, data FROM events{clauses}"
    sql += " ORDER BY seq DESC" if newest_first else " ORDER BY seq"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(max(0, min(int(limit), MAX_QUERY_LIMIT)))
    return [_row_to_event(row) for row in conn.execute(sql, params)]


def _filters(
    event: Optional[str], distinct_id: Optional[str], after: Optional[int]
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
    return (" WHERE " + " AND ".join(where) if where else ""), params


def _open_readonly(db_path: str) -> sqlite3.Connection:
    if not os.path.isfile(db_path):
        raise FileNotFoundError(f"no dev server database at {db_path}")
    try:
        # Not mode=ro: a WAL reader may need to create the -shm file; nothing here writes.
        conn = sqlite3.connect(db_path, timeout=10.0, isolation_level=None)
        _check_schema(conn, db_path)
        conn.execute("SELECT seq FROM events LIMIT 0")
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{db_path} is not a productos dev server database: {exc}") from exc
    return conn


def _csv_row(event: Mapping[str, Any]) -> List[Any]:
    row: List[Any] = [event.get(column) for column in _EVENT_COLUMNS]
    for key in ("properties", "$set", "$set_once"):
        value = event.get(key)
        row.append("" if value is None else _dumps(value))
    return row


def _write(events: Iterable[Mapping[str, Any]], fmt: str, out: IO[str]) -> int:
    written = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for event in events:
            writer.writerow(_csv_row(event))
            written += 1
    else:
        for event in events:
            out.write(_dumps(event) + "\n")
            written += 1
    return written


def export_events(
    db_path: str,
    fmt: str = "ndjson",
    out: Optional[IO[str]] = None,
    limit: Optional[int] = None,
    event: Optional[str] = None,
    distinct_id: Optional[str] = None,
) -> int:
    """Write stored events, oldest first, as NDJSON or CSV to ``out``; return how many."""
    if fmt not in ("ndjson", "csv"):
        raise ValueError(f"unknown export format {fmt!r}; use 'ndjson' or 'csv'")
    if out is None:
        out = sys.stdout
    conn = _open_readonly(db_path)
    try:
        if limit is None:
            rows = _iter_events(conn, event, distinct_id)
        else:
            # The newest ``limit`` events, still written oldest first.
            rows = iter(reversed(_query_events(
                conn, limit=limit, event=event, distinct_id=distinct_id, newest_first=True)))
        return _write(rows, fmt, out)
    finally:
        conn.close()


def _iter_events(
    conn: sqlite3.Connection, event: Optional[str], distinct_id: Optional[str]
) -> Iterator[Dict[str, Any]]:
    # Pages by seq so an export of millions of events never holds them all in memory.
    after = 0
    while True:
        page = _query_events(
            conn, limit=1000, event=event, distinct_id=distinct_id, after=after,
            newest_first=False,
        )
        yield from page
        if len(page) < 1000:
            return
        after = page[-1]["seq"]


def tail_events(
    db_path: str,
    follow: bool = False,
    limit: int = 10,
    event: Optional[str] = None,
    distinct_id: Optional[str] = None,
    poll_interval: float = 0.5,
    timeout: Optional[float] = None,
    stop: Optional[threading.Event] = None,
) -> Iterator[Dict[str, Any]]:
    """Yield the last ``limit`` events oldest first; with ``follow``, then each new one.

    Following ends when ``stop`` is set, after ``timeout`` seconds, or when the caller stops
    iterating (Ctrl-C in the CLI).
    """
    conn = _open_readonly(db_path)
    try:
        last = _query_events(
            conn, limit=limit, event=event, distinct_id=distinct_id, newest_first=True
        )
        after = last[0]["seq"] if last else _max_seq(conn, event, distinct_id)
        yield from reversed(last)
        if not follow:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        waiter = stop if stop is not None else threading.Event()  # never set: a plain wait
        while not waiter.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            page = _query_events(
                conn, limit=1000, event=event, distinct_id=distinct_id, after=after,
                newest_first=False,
            )
            if page:
                after = page[-1]["seq"]
                yield from page
                continue
            wait = poll_interval
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            waiter.wait(wait)
    finally:
        conn.close()


def _max_seq(conn: sqlite3.Connection, event: Optional[str], distinct_id: Optional[str]) -> int:
    clauses, params = _filters(event, distinct_id, None)
    row = conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM events{clauses}", params).fetchone()
    return int(row[0])
