"""productos' local dev server: PostHog's public API on 127.0.0.1, events in SQLite.

Standard library only (``http.server`` threads and ``sqlite3``)::

    from productos.devserver import DevServer
    server = DevServer(port=0, definitions={"flags": [...]}).start()
    client = productos.Client("phc_dev", host=server.url, personal_api_key="phx_dev")
"""

from __future__ import annotations

from productos.devserver.definitions import load_definitions_file, normalise_definitions
from productos.devserver.files import EXPORT_FORMATS, export_events, tail_events, write_events
from productos.devserver.parquet import PARQUET_COLUMNS, ParquetUnavailable, write_parquet
from productos.devserver.server import MAX_BODY_BYTES, DevServer
from productos.devserver.store import EventStore

__all__ = [
    "EXPORT_FORMATS",
    "MAX_BODY_BYTES",
    "PARQUET_COLUMNS",
    "DevServer",
    "EventStore",
    "ParquetUnavailable",
    "export_events",
    "load_definitions_file",
    "normalise_definitions",
    "tail_events",
    "write_events",
    "write_parquet",
]
