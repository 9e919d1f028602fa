"""Request context: scopes nest, follow threads and tasks, and feed events."""

from __future__ import annotations

import asyncio
import threading

import pytest

import productos
from productos.context import current_scope, get_context_distinct_id, get_tags
from productos.testing import RecordingSender


def test_nested_scopes_inherit_and_restore():
    with productos.new_context():
        productos.identify_context("outer")
        productos.tag("a", 1)
        with productos.new_context():
            assert get_context_distinct_id() == "outer"
            productos.tag("b", 2)
            productos.identify_context("inner")
            assert dict(get_tags()) == {"a": 1, "b": 2}
            assert get_context_distinct_id() == "inner"
        assert get_context_distinct_id() == "outer"
        assert dict(get_tags()) == {"a": 1}
    assert get_context_distinct_id() is None


def test_fresh_scope_starts_empty():
    with productos.new_context():
        productos.identify_context("outer")
        with productos.new_context(fresh=True):
            assert get_context_distinct_id() is None


def test_decorator_gives_each_call_its_own_scope():
    @productos.new_context()
    def handler(user):
        productos.identify_context(user)
        return get_context_distinct_id()

    assert handler("a") == "a"
    assert handler("b") == "b"
    assert get_context_distinct_id() is None


def test_decorator_works_on_coroutines_and_tasks_are_isolated():
    async def main():
        everyone_identified = asyncio.Event()
        identified = []

        @productos.new_context()
        async def handler(user):
            productos.identify_context(user)
            identified.append(user)
            if len(identified) == 5:
                everyone_identified.set()
            # Every task has set its id before any reads it back: they truly interleave.
            await asyncio.wait_for(everyone_identified.wait(), timeout=5)
            return get_context_distinct_id()

        return await asyncio.gather(*(handler(f"user-{i}") for i in range(5)))

    assert asyncio.run(main()) == [f"user-{i}" for i in range(5)]


def test_threads_do_not_share_scopes():
    seen = {}

    def worker(name):
        with productos.new_context():
            productos.identify_context(name)
            barrier.wait(timeout=5)
            seen[name] = get_context_distinct_id()

    barrier = threading.Barrier(4)
    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert seen == {f"t{i}": f"t{i}" for i in range(4)}


def test_session_id_and_scope_values():
    with productos.new_context():
        productos.set_context_session("s-1")
        assert current_scope().session_id == "s-1"


def test_exception_leaving_a_scope_propagates():
    try:
        with productos.new_context():
            raise KeyError("boom")
    except KeyError:
        pass
    else:  # pragma: no cover
        raise AssertionError("the exception must propagate")


class FakeCapturer:
    """Anything with the two members new_context() uses can receive scope exceptions."""

    def __init__(self, enabled):
        self.options = type("Opts", (), {"enable_exception_autocapture": enabled})()
        self.captured = []

    def capture_exception(self, exc=None, *, mechanism="generic"):
        self.captured.append((exc, mechanism))
        return "uuid"


@pytest.mark.parametrize("enabled", [True, False])
def test_a_scope_reports_to_the_client_it_was_given_only_with_autocapture(enabled):
    capturer = FakeCapturer(enabled)
    with pytest.raises(KeyError), productos.new_context(client=capturer):
        raise KeyError("boom")
    assert [(type(e), m) for e, m in capturer.captured] == (
        [(KeyError, "context")] if enabled else [])


def test_a_scope_without_a_client_reports_to_the_default_client(monkeypatch):
    sender = RecordingSender()
    monkeypatch.setattr(productos, "project_api_key", "phc_default")
    monkeypatch.setattr(productos, "sender", sender)
    monkeypatch.setattr(productos, "enable_exception_autocapture", True)
    productos.shutdown()
    try:
        with pytest.raises(KeyError), productos.new_context():  # before a default exists
            raise KeyError("nobody to tell")
        client = productos._default()
        with pytest.raises(KeyError), productos.new_context():
            productos.identify_context("u-scope")
            raise KeyError("told")
        assert client.flush(5)
    finally:
        productos.shutdown()
    (event,) = sender.events
    assert event["event"] == "$exception" and event["distinct_id"] == "u-scope"
    assert event["properties"]["$exception_list"][0]["value"] == "'told'"
