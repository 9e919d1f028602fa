"""Shared pytest fixtures for the productos test suite."""

from __future__ import annotations

import logging
from typing import Dict, Iterator, List

import pytest

try:  # repo root on sys.path (python -m pytest, or tests/ is a package)
    from tests.server import LoopbackServer
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from server import LoopbackServer  # type: ignore[no-redef]


# --------------------------------------------------------------------------- loopback HTTP server


@pytest.fixture
def live_server() -> Iterator[LoopbackServer]:
    """A started LoopbackServer on 127.0.0.1, stopped after the test."""
    server = LoopbackServer().start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------- swallowed internal errors


class _SwallowedErrors(logging.Handler):
    """Collects what productos logged at ERROR with a traceback: errors its guards swallowed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: List[BaseException] = []
        self.lines: Dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the exception and the line that reported it."""
        if not record.exc_info or record.exc_info[1] is None:
            return  # an error line without a traceback reports a condition (a refused batch)
        exc = record.exc_info[1]
        self.errors.append(exc)
        self.lines[id(exc)] = f"{record.name}: {record.getMessage()}: {exc!r}"


@pytest.fixture(autouse=True)
def internal_errors(request: pytest.FixtureRequest) -> Iterator[List[BaseException]]:
    """Errors productos logged and swallowed during the test; any left over fails it.

    Every guard in productos reports the error it contains with ``log.exception`` (or
    ``log.error(..., exc_info=...)``) on the "productos" logger, so a handler there sees each
    one, from any thread. A test that provokes one on purpose either checks this list and
    clears it, or is marked ``allow_internal_errors``.
    """
    handler = _SwallowedErrors()
    logger = logging.getLogger("productos")
    logger.addHandler(handler)
    try:
        yield handler.errors
    finally:
        logger.removeHandler(handler)
    if handler.errors and request.node.get_closest_marker("allow_internal_errors") is None:
        lines = [handler.lines.get(id(exc), repr(exc)) for exc in handler.errors]
        pytest.fail("productos swallowed internal errors:\n  " + "\n  ".join(lines),
                    pytrace=False)
