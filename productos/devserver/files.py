"""Reading a dev server database file from another process: export and tail.

The store keeps the file in WAL mode, so these readers see committed events while the server
writes. Exports page by sequence number, so millions of events never sit in memory at once.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import sys
import threading
import time
from typing import IO, Any, Dict, Iterable, Iterator, List, Mapping, Optional

from productos.devserver.parquet import write_parquet
from productos.devserver.store import (
    _EVENT_COLUMNS,
    CSV_COLUMNS,
    _check_schema,
    _filters,
    _query_events,
)

__all__ = ["EXPORT_FORMATS", "export_events", "tail_events", "write_events"]

EXPORT_FORMATS = ("ndjson", "csv", "parquet")
_PAGE = 1000


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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


def write_events(events: Iterable[Mapping[str, Any]], fmt: str, out: IO[str]) -> int:
    """Write events as NDJSON or CSV (with a header row); return how many."""
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
    path: Optional[str] = None,
) -> int:
    """Write stored events, oldest first; return how many.

    NDJSON and CSV go to ``out`` (stdout by default); Parquet needs ``path`` and the
    ``[parquet]`` extra (pyarrow), and carries each event's person id after merging.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet" and not path:
        raise ValueError("a Parquet export needs an output file (-o FILE)")
    conn = _open_readonly(db_path)
    try:
        with_person = fmt == "parquet"
        if limit is None:
            rows: Iterator[Dict[str, Any]] = _iter_events(conn, event, distinct_id, with_person)
        else:
            # The newest ``limit`` events, still written oldest first.
            rows = iter(reversed(_query_events(
                conn, limit=limit, event=event, distinct_id=distinct_id, newest_first=True,
                with_person=with_person)))
        if fmt == "parquet":
            assert path is not None
            return write_parquet(rows, path)
        return write_events(rows, fmt, sys.stdout if out is None else out)
    finally:
        conn.close()


def _iter_events(
    conn: sqlite3.Connection, event: Optional[str], distinct_id: Optional[str],
    with_person: bool = False,
) -> Iterator[Dict[str, Any]]:
    after = 0
    while True:
        page = _query_events(
            conn, limit=_PAGE, event=event, distinct_id=distinct_id, after=after,
            newest_first=False, with_person=with_person,
        )
        yield from page
        if len(page) < _PAGE:
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
