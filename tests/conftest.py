"""Shared pytest fixtures for the productos test suite."""

from __future__ import annotations

from typing import Iterator

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
