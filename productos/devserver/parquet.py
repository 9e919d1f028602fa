"""Events as a typed Parquet file for a warehouse (pyarrow, the ``[parquet]`` extra).

Columns: ``seq`` int64, ``uuid`` string, ``event`` string, ``distinct_id`` string,
``person_id`` string (the merged person; null for events sent without a person profile),
``timestamp`` and ``received_at`` as UTC timestamps (ms), and ``properties``, ``set``,
``set_once`` as JSON text. Rows are written in row groups, so memory stays bounded.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional

from productos.devserver.store import parse_moment

__all__ = ["PARQUET_COLUMNS", "ParquetUnavailable", "write_parquet"]

PARQUET_COLUMNS = ("seq", "uuid", "event", "distinct_id", "person_id", "timestamp",
                   "received_at", "properties", "set", "set_once")
_ROW_GROUP = 50_000


class ParquetUnavailable(ValueError):
    """pyarrow is not installed."""


def _pyarrow() -> Any:
    try:
        # Imported by name: pyarrow ships no type information, and is optional.
        pyarrow = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.parquet")
    except ImportError:
        raise ParquetUnavailable(
            "Parquet export needs pyarrow: pip install 'productos[parquet]'") from None
    return pyarrow


def _moment(text: Any) -> Optional[_dt.datetime]:
    moment = parse_moment(text)
    return None if moment is None else moment.astimezone(_dt.timezone.utc)


def _json_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _columns(rows: List[Mapping[str, Any]]) -> Dict[str, List[Any]]:
    person = [row.get("person_id") for row in rows]
    return {
        "seq": [row.get("seq") for row in rows],
        "uuid": [row.get("uuid") for row in rows],
        "event": [row.get("event") for row in rows],
        "distinct_id": [row.get("distinct_id") for row in rows],
        "person_id": [None if p is None else str(p) for p in person],
        "timestamp": [_moment(row.get("timestamp")) for row in rows],
        "received_at": [_moment(row.get("received_at")) for row in rows],
        "properties": [_json_text(row.get("properties") or {}) for row in rows],
        "set": [_json_text(row.get("$set")) for row in rows],
        "set_once": [_json_text(row.get("$set_once")) for row in rows],
    }


def write_parquet(events: Iterable[Mapping[str, Any]], path: str) -> int:
    """Write events to a Parquet file at path; return how many (raises ParquetUnavailable)."""
    pa = _pyarrow()
    stamp = pa.timestamp("ms", tz="UTC")
    schema = pa.schema([
        ("seq", pa.int64()), ("uuid", pa.string()), ("event", pa.string()),
        ("distinct_id", pa.string()), ("person_id", pa.string()), ("timestamp", stamp),
        ("received_at", stamp), ("properties", pa.string()), ("set", pa.string()),
        ("set_once", pa.string()),
    ])
    written = 0
    with pa.parquet.ParquetWriter(path, schema, compression="zstd") as writer:
        batch: List[Mapping[str, Any]] = []

        def flush() -> None:
            if batch:
                writer.write_table(pa.table(_columns(batch), schema=schema))
                batch.clear()

        for event in events:
            batch.append(event)
            written += 1
            if len(batch) >= _ROW_GROUP:
                flush()
        flush()
    return written
