"""End to end against a real HTTP server on 127.0.0.1: real threads, gzip, retries, failures.

Every scenario checks the same promise: each captured event arrives (by uuid) or is
counted as dropped with a reason, and the counters add up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any, List

import pytest

import productos

try:
    from tests.server import Delay, Drop, LoopbackServer, Respond, RetryAfter
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from server import Delay, Drop, LoopbackServer, Respond, RetryAfter  # type: ignore

FAST_RETRIES = {"retry_base_delay": 0.02, "retry_max_delay": 0.2}


@pytest.fixture
def make_client(live_server: LoopbackServer):
    made: List[productos.Client] = []

    def make(**kwargs: Any) -> productos.Client:
        options = {"host": live_server.url, **FAST_RETRIES, **kwargs}
        client = productos.Client("phc_e2e", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(5)


def capture_many(client: productos.Client, n: int, prefix: str = "u") -> List[str]:
    uuids = [client.capture("e2e", distinct_id=f"{prefix}{i}", properties={"i": i})
             for i in range(n)]
    assert None not in uuids
    return uuids


def assert_books_balance(client: productos.Client) -> None:
    s = client.stats()
    assert s["captured"] == (s["sent"] + s["queued"] + s["in_flight"] + s["dropped_total"]
                             + s["filtered"]), s


def test_events_arrive_once_each_gzipped(make_client, live_server):
    client = make_client()
    uuids = capture_many(client, 250)
    assert client.flush(10)
    assert sorted(live_server.uuids()) == sorted(uuids)
    request = live_server.requests_for("/batch/")[0]
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["User-Agent"].startswith("productos-python/")
    assert request.json["api_key"] == "phc_e2e"
    assert client.stats()["sent"] == 250
    assert_books_balance(client)


def test_a_burst_of_503s_is_retried_until_delivered(make_client, live_server):
    live_server.enqueue(Respond(503), Respond(503), Respond(502))
    client = make_client()
    uuids = capture_many(client, 20)
    assert client.flush(10)
    assert sorted(live_server.uuids()) == sorted(uuids)
    assert client.stats()["retried"] == 3
    bodies = [r.json for r in live_server.requests_for("/batch/")]
    # a retried batch is the same events: same uuids and timestamps every attempt
    assert all(b["batch"] == bodies[-1]["batch"] for b in bodies)


def test_retry_after_is_the_minimum_wait(make_client, live_server):
    live_server.enqueue(RetryAfter(429, seconds=1))
    client = make_client()
    capture_many(client, 3)
    assert client.flush(10)
    first, second = live_server.requests_for("/batch/")
    assert second.received_at - first.received_at >= 0.95
    assert len(live_server.uuids()) == 3


def test_413_splits_the_batch_until_it_fits(make_client, live_server):
    live_server.max_body_bytes = 6_000
    client = make_client(gzip=False)
    uuids = capture_many(client, 60)
    assert client.flush(10)
    assert sorted(live_server.uuids()) == sorted(uuids)
    assert any(r.response_status == 413 for r in live_server.requests)


def test_an_event_too_large_for_the_server_alone_is_counted(make_client, live_server):
    live_server.max_body_bytes = 2_000
    seen = []
    client = make_client(gzip=False, on_error=lambda exc, batch: seen.append(exc))
    client.capture("big", distinct_id="u", properties={"blob": "x" * 5_000})
    client.capture("small", distinct_id="u")
    assert client.flush(10)
    assert [e["event"] for e in live_server.events] == ["small"]
    assert client.stats()["dropped"] == {"too_large": 1}
    assert seen and getattr(seen[0], "status", None) == 413
    assert_books_balance(client)


def test_dropped_connections_are_retried(make_client, live_server):
    live_server.enqueue(Drop(), Drop())
    client = make_client()
    uuids = capture_many(client, 10)
    assert client.flush(10)
    assert sorted(live_server.uuids()) == sorted(uuids)


def test_slow_replies_do_not_lose_events(make_client, live_server):
    live_server.enqueue(Delay(0.3), Delay(0.3))
    client = make_client(flush_at=10)
    uuids = capture_many(client, 50)
    assert client.flush(10)
    assert sorted(live_server.uuids()) == sorted(uuids)


def test_a_lost_reply_resends_the_same_uuids(make_client, live_server):
    live_server.enqueue(Respond(503, store=True))
    client = make_client()
    uuids = capture_many(client, 5)
    assert client.flush(10)
    # the server stored the first attempt and the retry: duplicates by uuid, which the
    # server de-duplicates; never two different events
    assert set(live_server.uuids()) == set(uuids)
    assert len(live_server.uuids()) == 10


def test_a_final_4xx_is_not_retried_and_is_counted(make_client, live_server):
    live_server.enqueue(Respond(400, body={"detail": "bad request"}))
    seen = []
    client = make_client(on_error=lambda exc, batch: seen.append((exc, batch)))
    capture_many(client, 4)
    assert client.flush(10)
    assert len(live_server.requests_for("/batch/")) == 1
    assert client.stats()["dropped"] == {"rejected": 4}
    exc, batch = seen[0]
    assert exc.status == 400 and "bad request" in str(exc) and len(batch) == 4
    assert_books_balance(client)


def test_retries_exhausted_are_counted_not_lost(make_client, live_server):
    live_server.enqueue(*[Respond(500)] * 3)
    client = make_client(max_retries=2)
    capture_many(client, 7)
    assert client.flush(10)
    assert client.stats()["dropped"] == {"retries_exhausted": 7}
    assert_books_balance(client)


def test_random_faults_lose_nothing(make_client, live_server):
    live_server.fail_rate(p503=0.2, p429=0.1, retry_after=0, p_store_then_503=0.05, seed=7)
    client = make_client(max_retries=10, flush_at=50)
    uuids = capture_many(client, 1000)
    assert client.flush(30)
    assert set(live_server.uuids()) == set(uuids)
    stats = client.stats()
    assert stats["sent"] == 1000 and stats["dropped_total"] == 0
    assert_books_balance(client)


def test_endpoint_down_then_up_drains_the_backlog(make_client, live_server):
    live_server.set_down(True)
    client = make_client(max_retries=20, retry_max_delay=0.2)
    uuids = capture_many(client, 30)
    # Two attempts met the dead endpoint: the backlog has been retried at least once.
    assert live_server.wait_for_requests(2, path="/batch/", timeout=10)
    live_server.set_down(False)
    assert client.flush(15)
    assert set(live_server.uuids()) == set(uuids)
    assert client.stats()["retried"] >= 1


def test_shutdown_drains_what_is_queued(make_client, live_server):
    client = make_client(flush_at=10_000, flush_interval=60)
    uuids = capture_many(client, 100)
    assert client.shutdown(10)
    assert sorted(live_server.uuids()) == sorted(uuids)


def test_sync_mode_delivers_before_capture_returns(make_client, live_server):
    client = make_client(sync_mode=True)
    uuid = client.capture("now", distinct_id="u")
    assert live_server.uuids() == [uuid]


def run_script(server: LoopbackServer, body: str,
               timeout: float = 30) -> subprocess.CompletedProcess:
    code = textwrap.dedent(f"""
        import os, sys, productos
        client = productos.Client("phc_e2e", host={server.url!r}, retry_base_delay=0.02)
    """) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_a_script_that_exits_without_shutdown_still_delivers(live_server):
    result = run_script(live_server, """
        for i in range(500):
            client.capture("at exit", distinct_id=str(i))
    """)
    assert result.returncode == 0, result.stderr
    assert len(set(live_server.uuids())) == 500


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_client_created_before_fork_works_in_the_child(live_server):
    result = run_script(live_server, """
        client.capture("parent before fork", distinct_id="p")
        pid = os.fork()
        if pid == 0:
            client.capture("child", distinct_id="c")
            ok = client.flush(10)
            os._exit(0 if ok else 1)
        client.capture("parent after fork", distinct_id="p")
        _, status = os.waitpid(pid, 0)
        assert client.flush(10)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    assert result.returncode == 0, result.stderr
    names = sorted(e["event"] for e in live_server.events)
    # the parent's queued event is sent once, by the parent; the child sends only its own
    assert names == ["child", "parent after fork", "parent before fork"]


def test_a_batch_in_flight_or_retrying_at_exit_is_still_delivered(live_server):
    live_server.enqueue(RetryAfter(503, seconds=1.5))
    result = run_script(live_server, """
        import logging, threading

        retrying = threading.Event()

        class Retrying(logging.Handler):
            def emit(self, record):
                if "retrying in" in record.getMessage():
                    retrying.set()

        logger = logging.getLogger("productos")
        logger.setLevel(logging.DEBUG)
        logger.addHandler(Retrying())
        for i in range(10):
            client.capture("retrying at exit", distinct_id=str(i))
        # The first attempt failed: the batch now waits (Retry-After) to be sent again.
        assert retrying.wait(10), "the first attempt never failed"
        stats = client.stats()
        assert stats["queued"] == 0 and stats["in_flight"] == 10, stats
    """)
    assert result.returncode == 0, result.stderr
    assert len(set(live_server.uuids())) == 10
