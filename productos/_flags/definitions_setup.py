"""Build the definitions poller a Client's options ask for, and describe where it stands.

Three sources share the poller's loop: the endpoint polled alone, the endpoint polled by one
process of a fleet through a shared cache (``shared_cache``), and a definitions file watched
for changes (hot reload).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import time
from typing import Any, Optional, Union

from productos._delivery.transport import Transport
from productos._flags.cache_setup import open_cache
from productos._flags.poller import Poller, SnapshotHolder, SourceStatus
from productos._flags.shared_cache import SharedFetch
from productos._flags.snapshot import Snapshot
from productos._flags.source import (
    DefinitionsFetch,
    DefinitionsRequester,
    FetchOutcome,
    definitions_body_problem,
)
from productos.errors import ConfigurationError
from productos.flags import parse_definitions

__all__ = ["FileWatch", "definitions_poller", "describe", "file_poller", "load_compiler"]

FILE_CHECK_INTERVAL = 2.0  # at most this long between two looks at a definitions file


def load_compiler() -> None:
    """Import the definitions compiler on the calling thread; return when it is imported.

    A poller parses on its own thread, and the first parse imports the compiler. Left to that
    thread, the import could race a fork (gunicorn --preload forks while the master's poller
    starts): the child would inherit the module's import lock held by a thread it does not
    have, and its own poller would wait on it for ever. So the thread that builds the client
    calls this before the constructor returns. It may do so after starting the poller: the
    import then overlaps the first fetch, and if the poller reaches its parse first, this
    waits until that thread's import is done, so no import is in progress once it returns.
    """
    importlib.import_module("productos._flags.compiler")


def definitions_poller(options: Any, transport: Transport, holder: SnapshotHolder[Snapshot]
                       ) -> Poller[Snapshot]:
    """The endpoint's poller: alone, or sharing through ``flag_definitions_cache``.

    The caller starts it, then calls :func:`load_compiler` before handing the client over.
    """
    key = options.project_api_key or ""
    requester = DefinitionsRequester(transport, key, options.personal_api_key)
    setting = options.flag_definitions_cache
    if setting is None:  # posthog's name for it
        setting = getattr(options, "flag_definition_cache_provider", None)
    cache = None if setting is None else open_cache(setting, key, options.poll_interval)
    shared = SharedFetch(requester.fetch, cache, interval=options.poll_interval,
                         direct_fallback=options.flag_definitions_cache_fallback)
    return Poller(shared, parse_definitions, holder, Snapshot.empty(),
                  interval=options.poll_interval, pace=shared.pace)


class FileWatch:
    """The poller's ``fetch`` for a definitions file: reads it again when it changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reads = 0
        self.fetched_at: Optional[float] = None

    def __call__(self, token: Optional[str]) -> DefinitionsFetch:
        """Answer NOT_MODIFIED while the file's time and size stay the same."""
        try:
            stat = os.stat(self.path)
            stamp = f"{stat.st_mtime_ns}-{stat.st_size}"
            if stamp == token:
                self.fetched_at = time.time()
                return DefinitionsFetch(FetchOutcome.NOT_MODIFIED, etag=stamp)
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            return DefinitionsFetch(FetchOutcome.ERROR, error=ConfigurationError(
                f"cannot read flag definitions from {self.path}: {exc}"))
        problem = definitions_body_problem(data)
        if problem is not None:
            return DefinitionsFetch(FetchOutcome.ERROR, error=ConfigurationError(
                f"{self.path} is not a flag definitions document: {problem}"))
        self.reads += 1
        self.fetched_at = time.time()
        return DefinitionsFetch(FetchOutcome.OK, data=data, etag=stamp)


def file_poller(path: str, holder: SnapshotHolder[Snapshot], interval: float
                ) -> Poller[Snapshot]:
    """A poller that reloads a definitions file when it changes."""
    load_compiler()
    return Poller(FileWatch(path), parse_definitions, holder, Snapshot.empty(),
                  interval=min(interval, FILE_CHECK_INTERVAL), name="productos-file-watch")


def describe(poller: Optional[Poller[Snapshot]]) -> Optional[SourceStatus]:
    """The poller's status with where the definitions come from, their age and the polls."""
    if poller is None:
        return None
    fetch: Union[SharedFetch, FileWatch, Any] = poller.fetcher
    status = poller.status
    fetched_at = getattr(fetch, "fetched_at", None)
    age = None if fetched_at is None else max(0.0, time.time() - fetched_at)
    if isinstance(fetch, FileWatch):
        return dataclasses.replace(status, source="file", age=age, polls=0)
    if isinstance(fetch, SharedFetch):
        return dataclasses.replace(status, source=fetch.role, age=age, polls=fetch.requests,
                                   cache=fetch.cache_health)
    return dataclasses.replace(status, age=age)
