"""serverless_handler against a real collector: events are sent before the handler returns."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, List

import pytest

import productos
from productos.context import get_tags, tag
from productos.integrations.serverless import serverless_handler

try:
    from tests.server import Delay
except ModuleNotFoundError:  # plain `pytest` from the tests folder
    from server import Delay  # type: ignore


class LambdaContext:
    """What AWS passes as ``context``: the time left before the invocation is cut."""

    def __init__(self, millis: int) -> None:
        self.deadline = time.monotonic() + millis / 1000.0
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return int(max(0.0, self.deadline - time.monotonic()) * 1000)


@pytest.fixture
def client(live_server):
    made = productos.Client("phc_lambda", host=live_server.url, flush_interval=60,
                            flush_at=10_000)
    yield made
    made.shutdown(5)


def test_a_sync_handler_returns_only_after_its_events_were_sent(live_server, client):
    @serverless_handler(client)
    def handler(event: Any, context: Any) -> Any:
        for i in range(10):
            client.capture("invoked", distinct_id=event["user"], properties={"i": i})
        return {"statusCode": 200}

    assert handler({"user": "u1"}, LambdaContext(3000)) == {"statusCode": 200}
    # No waiting here: the handler returned after the flush.
    assert len([e for e in live_server.events if e["event"] == "invoked"]) == 10


def test_an_async_handler_drains_too(live_server):
    async_client = productos.AsyncClient("phc_lambda", host=live_server.url,
                                         flush_interval=60)

    @serverless_handler(async_client)
    async def handler(event: Any, context: Any) -> str:
        async_client.capture("async invoked", distinct_id="u2")
        await asyncio.sleep(0)
        return "done"

    try:
        assert asyncio.run(handler({}, LambdaContext(3000))) == "done"
        assert [e["event"] for e in live_server.events] == ["async invoked"]
    finally:
        async_client.sync.shutdown(5)


def test_the_flush_keeps_within_the_time_the_invocation_has_left(live_server, client, caplog):
    live_server.enqueue(Delay(3.0), route="ingest")  # the collector is slow this time
    context = LambdaContext(700)

    @serverless_handler(client, reserve_ms=200)
    def handler(event: Any, ctx: Any) -> str:
        client.capture("late", distinct_id="u3")
        return "ok"

    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="productos"):
        assert handler({}, context) == "ok"
    took = time.monotonic() - started
    assert took < 0.7, took  # 700 ms left, 200 ms kept in reserve: about 0.5 s of flushing
    assert took >= 0.4, took  # and it did wait for the slow collector meanwhile
    assert context.calls == 1
    assert any("within the" in r.getMessage() for r in caplog.records)
    assert live_server.wait_for_events(1, timeout=10)  # delivered later, not lost


def test_an_exception_is_captured_once_sent_and_re_raised(live_server, client):
    @serverless_handler(client)
    def handler(event: Any, context: Any) -> None:
        tag("invocation", event["n"])
        raise KeyError("missing field")

    with pytest.raises(KeyError):
        handler({"n": 1}, LambdaContext(3000))
    exceptions = [e for e in live_server.events if e["event"] == "$exception"]
    assert len(exceptions) == 1
    assert exceptions[0]["properties"]["invocation"] == 1
    assert get_tags() == {}  # the invocation's context did not leak out


def test_bare_decorator_flushes_every_live_client(live_server, client):
    seen: List[Any] = []

    @serverless_handler
    def handler(request: Any) -> str:  # Cloud Functions style: one argument, no budget
        client.capture("bare", distinct_id="u4")
        seen.append(request)
        return "ok"

    assert handler("req") == "ok"
    assert seen == ["req"]
    assert [e["event"] for e in live_server.events] == ["bare"]
