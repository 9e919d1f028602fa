"""The pytest plugin productos ships (registered through the ``pytest11`` entry point).

It only defines fixtures, so it changes nothing in a test that does not ask for one:

* ``productos_events``: while the test runs, every ``productos.Client`` (and the module-level
  client) records its events in memory instead of sending them, and opens no socket. The
  fixture is a :class:`productos.testing.CapturedEvents`: ``.events``, ``.clear()``,
  ``.find(...)`` and ``.assert_captured(event, distinct_id=..., **properties)``.
* ``productos_flags``: a :class:`productos.testing.FlagOverrides`; ``.set(key, value,
  payload=...)`` decides what every client evaluates for that flag during the test. Flags not
  set come from the clients' local definitions only, never from the server.

Both end with the test: nothing leaks into the next one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import pytest

if TYPE_CHECKING:
    from productos.testing import CapturedEvents, FlagOverrides

# productos itself is imported by the fixtures, not here: pytest loads this module in every
# session of a project that has productos installed.


@pytest.fixture
def productos_events() -> Iterator[CapturedEvents]:
    """Events every productos client captures during the test, recorded instead of sent."""
    from productos.testing import record_events

    with record_events() as events:
        yield events


@pytest.fixture
def productos_flags() -> Iterator[FlagOverrides]:
    """Flag values every productos client evaluates during the test (``.set(key, value)``)."""
    from productos.testing import override_flags

    with override_flags() as overrides:
        yield overrides
