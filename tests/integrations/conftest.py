"""Fixtures shared by the web integration tests: a recording client, swallowed-error checks."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest

import productos
from productos.integrations import _common
from productos.testing import RecordingSender


class Recording:
    """A real Client whose events land in memory."""

    def __init__(self) -> None:
        self.sender = RecordingSender()
        # Port 9 (discard) refuses at once: a stray flag request never leaves the machine.
        self.client = productos.Client("phc_test", sender=self.sender, flush_interval=0.01,
                                       host="http://127.0.0.1:9")

    def events(self, name: Any = None) -> List[Dict[str, Any]]:
        """Every event delivered so far (only those called ``name`` if given)."""
        self.client.flush(5)
        return [e for e in self.sender.events if name is None or e["event"] == name]


@pytest.fixture
def recording() -> Iterator[Recording]:
    rec = Recording()
    try:
        yield rec
    finally:
        rec.client.shutdown(5)


@pytest.fixture(autouse=True)
def internal_errors() -> Iterator[List[BaseException]]:
    """Errors the integrations' guards swallowed; a test fails on any it did not expect.

    A test that provokes one on purpose checks the list and clears it.
    """
    seen: List[BaseException] = []
    _common.internal_error_hooks.append(seen.append)
    try:
        yield seen
    finally:
        _common.internal_error_hooks.remove(seen.append)
    assert not seen, f"productos swallowed internal errors: {seen!r}"


class FakeFlagsClient:
    """Stands in for a Client with the flag methods (PostHog's names and signatures)."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.calls: List[tuple] = []

    def feature_enabled(self, key: str, distinct_id: str, **kwargs: Any) -> bool:
        self.calls.append(("feature_enabled", key, distinct_id, kwargs))
        return key == "beta"

    def get_feature_flag(self, key: str, distinct_id: str, **kwargs: Any) -> Any:
        self.calls.append(("get_feature_flag", key, distinct_id, kwargs))
        return "variant-b"

    def get_feature_flag_payload(self, key: str, distinct_id: str, **kwargs: Any) -> Any:
        self.calls.append(("get_feature_flag_payload", key, distinct_id, kwargs))
        return {"color": "blue"}

    def capture(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.capture(*args, **kwargs) if self.inner else None

    def capture_exception(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.capture_exception(*args, **kwargs) if self.inner else None

    def shutdown(self, timeout: Any = None) -> bool:
        return True


@pytest.fixture
def fake_flags(recording: Recording) -> FakeFlagsClient:
    return FakeFlagsClient(recording.client)
