"""A person as the viewer shows it: every distinct id, properties, and the latest events."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Dict, List, Optional

from productos.devserver.store import _row_to_event

__all__ = ["person_view"]

_EVENT_SELECT = "SELECT seq, uuid, event, distinct_id, timestamp, received_at, data FROM events"


def person_view(conn: sqlite3.Connection, distinct_id: str,
                limit: int = 100) -> Optional[Dict[str, Any]]:
    """The person behind distinct_id with its latest events (newest first), or None if unknown.

    A distinct id seen only on events without a person profile is shown as a person of one id.
    """
    row = conn.execute(
        "SELECT p.id, p.properties, p.created_at, p.updated_at, p.is_identified"
        " FROM person_distinct_ids d JOIN persons p ON p.id = d.person_id"
        " WHERE d.distinct_id = ?", (distinct_id,)).fetchone()
    if row is None:
        if conn.execute("SELECT 1 FROM events WHERE distinct_id = ? LIMIT 1",
                        (distinct_id,)).fetchone() is None:
            return None
        person: Dict[str, Any] = {"id": None, "properties": {}, "created_at": None,
                                  "updated_at": None, "is_identified": False}
        ids = [distinct_id]
    else:
        person = {"id": row[0], "properties": json.loads(row[1]), "created_at": row[2],
                  "updated_at": row[3], "is_identified": bool(row[4])}
        ids = [r[0] for r in conn.execute(
            "SELECT distinct_id FROM person_distinct_ids WHERE person_id = ?"
            " ORDER BY distinct_id", (row[0],))]
    marks = ", ".join("?" * len(ids))
    events: List[Dict[str, Any]] = [
        _row_to_event(r) for r in conn.execute(
            f"{_EVENT_SELECT} WHERE distinct_id IN ({marks}) ORDER BY ts DESC, seq DESC LIMIT ?",
            [*ids, limit])]
    total = conn.execute(f"SELECT COUNT(*) FROM events WHERE distinct_id IN ({marks})",
                         ids).fetchone()[0]
    return {**person, "distinct_ids": ids, "events": events, "event_count": int(total)}
