"""Persons and groups as events change them, inside the ingest transaction.

Merging follows PostHog's rules: ``$identify`` (``$anon_distinct_id``) and ``$create_alias``
(``alias``) fold the other id's person into the event's person, unless that other person was
already identified (PostHog refuses to merge two identified persons) or the other id is one of
the placeholder ids PostHog never merges on ("anonymous", "null", "undefined", ...). The person
the event is about becomes identified either way. ``$process_person_profile: false`` events
touch no person.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any, Dict, Iterable, Mapping, Optional

__all__ = ["ILLEGAL_MERGE_IDS", "PersonCache", "apply_person_updates", "person_id_of"]

log = logging.getLogger("productos.devserver")

# Ids that broken instrumentation sends for everyone; merging on them would make one huge person.
ILLEGAL_MERGE_IDS = frozenset({
    "anonymous", "guest", "distinctid", "distinct_id", "id", "not_authenticated", "email",
    "undefined", "true", "false", "[object object]", "nan", "none", "null", "0",
})


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _as_dict(value: Any) -> Dict[str, Any]:
    if type(value) is dict:  # what JSON gives: skip the slow ABC check
        return value
    if value is None:
        return {}
    return dict(value) if isinstance(value, Mapping) else {}


class PersonCache:
    """distinct id → person id for one ingest transaction, so a batch of one user's events
    looks the person up once; any merge empties it (ids move between persons)."""

    __slots__ = ("ids",)

    def __init__(self) -> None:
        self.ids: Dict[str, int] = {}

    def load(self, conn: sqlite3.Connection, distinct_ids: Iterable[str]) -> None:
        """Look up many distinct ids at once (those with no person yet stay out)."""
        wanted = list(set(distinct_ids))
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            self.ids.update(conn.execute(
                "SELECT distinct_id, person_id FROM person_distinct_ids"
                f" WHERE distinct_id IN ({', '.join('?' * len(chunk))})", chunk))


def person_id_of(conn: sqlite3.Connection, distinct_id: str) -> Optional[int]:
    """The person id behind a distinct id, or None."""
    row = conn.execute(
        "SELECT person_id FROM person_distinct_ids WHERE distinct_id = ?", (distinct_id,)
    ).fetchone()
    return int(row[0]) if row else None


def _ensure_person(conn: sqlite3.Connection, distinct_id: str, now: str,
                   cache: Optional[PersonCache] = None) -> int:
    if cache is not None and distinct_id in cache.ids:
        return cache.ids[distinct_id]
    person_id = person_id_of(conn, distinct_id)
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
    if cache is not None:
        cache.ids[distinct_id] = person_id
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


def _is_identified(conn: sqlite3.Connection, person_id: int) -> bool:
    row = conn.execute("SELECT is_identified FROM persons WHERE id = ?", (person_id,)).fetchone()
    return bool(row and row[0])


def _link(conn: sqlite3.Connection, keep_id: str, other_id: str, now: str,
          cache: Optional[PersonCache]) -> None:
    """Make other_id part of keep_id's person, as PostHog's merge would (or refuse, logged)."""
    keep = _ensure_person(conn, keep_id, now, cache)
    if other_id and other_id != keep_id:
        if other_id.strip().lower() in ILLEGAL_MERGE_IDS or \
                keep_id.strip().lower() in ILLEGAL_MERGE_IDS:
            log.info("productos devserver: not merging %r into %r: placeholder distinct id",
                     other_id, keep_id)
        else:
            gone = _merge(conn, keep, keep_id, other_id, now)
            if cache is not None:
                cache.ids.pop(other_id, None)
                if gone is not None:  # every id of the merged person now belongs to keep
                    for distinct_id, person in list(cache.ids.items()):
                        if person == gone:
                            cache.ids[distinct_id] = keep
    conn.execute("UPDATE persons SET is_identified = 1 WHERE id = ?", (keep,))


def _merge(conn: sqlite3.Connection, keep: int, keep_id: str, other_id: str,
           now: str) -> Optional[int]:
    """Merge; return the id of the person merged away (None when no person went away)."""
    other = person_id_of(conn, other_id)
    if other is None:
        conn.execute(
            "INSERT INTO person_distinct_ids (distinct_id, person_id) VALUES (?, ?)",
            (other_id, keep),
        )
        return None
    if other == keep:
        return None
    if _is_identified(conn, other):
        log.info("productos devserver: not merging %r into %r: %r is already identified "
                 "(PostHog refuses to merge two identified persons)", other_id, keep_id, other_id)
        return None
    # The person the event is about is kept; its own properties win.
    merged = {**_load_properties(conn, other), **_load_properties(conn, keep)}
    _save_properties(conn, keep, merged, now)
    conn.execute("UPDATE person_distinct_ids SET person_id = ? WHERE person_id = ?", (keep, other))
    conn.execute("DELETE FROM persons WHERE id = ?", (other,))
    return other


def _merge_target(name: str, properties: Mapping[str, Any]) -> Optional[str]:
    key = "alias" if name == "$create_alias" else "$anon_distinct_id" if name == "$identify" \
        else None
    if key is None:
        return None
    value = properties.get(key)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return str(value)
    return None


def apply_person_updates(conn: sqlite3.Connection, event: Mapping[str, Any], now: str,
                         cache: Optional[PersonCache] = None) -> None:
    """Apply one newly stored event to persons and groups."""
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
    if name in ("$identify", "$create_alias"):
        other = _merge_target(name, properties)
        if other is not None:
            _link(conn, distinct_id, other, now, cache)
    to_set = {**_as_dict(properties.get("$set")), **_as_dict(event.get("$set"))}
    to_set_once = {**_as_dict(properties.get("$set_once")), **_as_dict(event.get("$set_once"))}
    unset = properties.get("$unset", event.get("$unset"))
    unset_keys = [k for k in unset if isinstance(k, str)] if isinstance(unset, list) else []
    person_id = _ensure_person(conn, distinct_id, now, cache)
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
