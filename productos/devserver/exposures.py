"""Flag exposures: how many ``$feature_flag_called`` events, and persons, saw each variant."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Dict, List

from productos.devserver.store import PERSON_OF_EVENT

__all__ = ["exposures"]


def _variant(value: Any) -> str:
    # json_extract gives 1/0 for JSON booleans; the SDK sends true/false or the variant key.
    if value is None:
        return "(none)"
    if isinstance(value, int) and value in (0, 1):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def exposures(conn: sqlite3.Connection) -> Dict[str, List[Dict[str, Any]]]:
    """{flag key: [{"variant", "count", "persons"}, ...]} with the most exposed variant first."""
    who = f"COALESCE({PERSON_OF_EVENT}, 'd:' || distinct_id)"
    rows = conn.execute(
        "SELECT json_extract(data, '$.properties.\"$feature_flag\"') AS flag,"
        " json_extract(data, '$.properties.\"$feature_flag_response\"') AS variant,"
        f" COUNT(*), COUNT(DISTINCT {who}) FROM events WHERE event = '$feature_flag_called'"
        " GROUP BY flag, variant ORDER BY flag, COUNT(*) DESC").fetchall()
    out: Dict[str, List[Dict[str, Any]]] = {}
    for flag, variant, count, persons in rows:
        key = "(none)" if flag is None else str(flag)
        entry = {"variant": _variant(variant), "count": int(count), "persons": int(persons)}
        # Two raw values can show the same (1 and true): add them up.
        for existing in out.setdefault(key, []):
            if existing["variant"] == entry["variant"]:
                existing["count"] += entry["count"]
                existing["persons"] += entry["persons"]
                break
        else:
            out[key].append(entry)
    return out
