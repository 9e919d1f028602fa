"""Request context: scopes nest, follow threads and tasks, and feed events."""

from __future__ import annotations

import asyncio
import threading

import productos
from productos.context import current_scope, get_context_distinct_id, get_tags


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
    @productos.new_context()
    async def handler(user):
        productos.identify_context(user)
        await asyncio.sleep(0.01)
        return get_context_distinct_id()

    async def main():
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
