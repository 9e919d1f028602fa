"""The dev server: PostHog's public HTTP API on ``http.server`` threads, events in SQLite.

Every request is parsed and validated completely before anything is written, then stored in one
transaction, so a bad request changes nothing. This module holds the server's configuration and
lifetime; ``plumbing.py`` speaks HTTP, ``routes.py`` answers, ``validation.py`` checks.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from typing import Any, Mapping, Optional

from productos.devserver.definitions import FlagDefinitions
from productos.devserver.plumbing import HTTPServer, make_server
from productos.devserver.routes import Routes
from productos.devserver.store import EventStore

__all__ = ["MAX_BODY_BYTES", "DevServer"]

MAX_BODY_BYTES = 20 * 1024 * 1024  # PostHog's request cap (protocol §1)


class DevServer:
    """A local PostHog-compatible server: ingestion, flags, definitions, a viewer page."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8010,
        db_path: Optional[str] = None,
        flags_path: Optional[str] = None,
        definitions: Optional[Mapping[str, Any]] = None,
        project_api_key: Optional[str] = None,
        personal_api_key: Optional[str] = "phx_dev",
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if flags_path is not None and definitions is not None:
            raise ValueError("give flags_path or definitions, not both")
        self.host = host
        self.port = port
        self.project_api_key = project_api_key or None
        self.personal_api_key = personal_api_key or None
        self.max_body_bytes = max_body_bytes
        self.definitions = FlagDefinitions(definitions, flags_path)
        self._tempdir: Optional[str] = None
        if db_path is None:
            # A real file rather than :memory: so WAL works and export/tail can read it.
            self._tempdir = tempfile.mkdtemp(prefix="productos-devserver-")
            db_path = f"{self._tempdir}/events.sqlite3"
        self.db_path = db_path
        try:
            self.store = EventStore(db_path)
        except BaseException:
            self._remove_tempdir()
            raise
        self._httpd: Optional[HTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._lifecycle = threading.Lock()
        self._stopped = False
        self._serving = False
        self.started_at: Optional[float] = None

    # -- lifecycle ------------------------------------------------------------------------

    def _bind(self) -> HTTPServer:
        with self._lifecycle:
            if self._stopped:
                raise RuntimeError("this DevServer was stopped; create a new one")
            if self._httpd is None:
                httpd = make_server(self.host, self.port, Routes(self))
                self.port = httpd.server_address[1]
                self._httpd = httpd
                self.started_at = time.time()
            return self._httpd

    def start(self) -> DevServer:
        """Bind (port 0 picks a free port) and serve on daemon threads; returns self."""
        httpd = self._bind()
        with self._lifecycle:
            if self._thread is None:
                self._serving = True
                self._thread = threading.Thread(
                    target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                    name="productos-devserver", daemon=True)
                self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C (or ``stop()`` from another thread), then clean up."""
        httpd = self._bind()
        self._serving = True
        try:
            httpd.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, close the database and remove a temporary one (idempotent)."""
        with self._lifecycle:
            if self._stopped:
                return
            self._stopped = True
            httpd, thread = self._httpd, self._thread
        if httpd is not None:
            if thread is not None or self._serving:
                # shutdown() waits for a serve_forever loop, so only call it when one ran.
                httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self.store.close()
        self._remove_tempdir()

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait up to timeout for the thread ``start()`` began to end; True when it has."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _remove_tempdir(self) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8010``."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def set_definitions(self, definitions: Mapping[str, Any]) -> None:
        """Replace the flag definitions (ValueError when malformed); the ETag changes."""
        self.definitions.set(definitions)
