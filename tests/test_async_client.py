"""AsyncClient against a real server on 127.0.0.1: flag reads never stall the event loop.

The lag probe is a 5 ms ticker task: it records how late each tick wakes. A flag read that
blocks the loop (as the sync client's does) shows up as a tick a whole round trip late; the
control test proves the probe sees that.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Tuple, TypeVar

import pytest

import productos
from productos.async_client import AsyncClient

try:
    from tests.server import Delay
    from tests.support import wait_until
except ModuleNotFoundError:  # plain `pytest` from the tests folder
    from server import Delay  # type: ignore
    from support import wait_until  # type: ignore

T = TypeVar("T")
DEFINITIONS = json.loads(
    (Path(__file__).parent / "data" / "sample_definitions.json").read_text())
ROUND_TRIP = 1.0
TICK = 0.005
# "A few milliseconds" on a shared 2-core machine where other test runs compete for the CPU:
# every tick but the worst one within this, and even the worst far from a round trip.
MAX_TICK_LATENESS = 0.025
WORST_TICK_LATENESS = 0.1

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is in TEST_REQUIRES
    uvloop = None

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    uvloop is None, reason="uvloop is not installed"))]


def run(coro: Awaitable[T], kind: str = "asyncio") -> T:
    loop = uvloop.new_event_loop() if kind == "uvloop" else asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def slow_flags(seen: List[str], delay: float = ROUND_TRIP) -> Callable[[Dict[str, Any]],
                                                                        Tuple[int, Dict]]:
    """A /flags answer after delay: flag "remote" has the caller's distinct id as variant."""
    lock = threading.Lock()

    def answer(body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        with lock:
            seen.append(body["distinct_id"])
        time.sleep(delay)
        return 200, {"flags": {"remote": {
            "key": "remote", "enabled": True, "variant": body["distinct_id"],
            "reason": {"code": "condition_match"}, "metadata": {"id": 1, "version": 1}}},
            "errorsWhileComputingFlags": False, "requestId": "r"}
    return answer


def assert_kept_ticking(lateness: List[float]) -> None:
    """The loop served the ticker throughout: no wake-up delayed by anything like a request."""
    ordered = sorted(lateness)
    assert len(ordered) > 20, len(ordered)
    assert ordered[-2] < MAX_TICK_LATENESS, ordered[-5:]
    assert ordered[-1] < WORST_TICK_LATENESS, ordered[-5:]


async def with_ticker(work: Awaitable[T]) -> Tuple[T, List[float]]:
    """Run work while a 5 ms ticker records how late each of its wake-ups was."""
    lateness: List[float] = []
    stop = False

    async def tick() -> None:
        while not stop:
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            lateness.append(time.perf_counter() - due)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(TICK * 2)
    try:
        result = await work
    finally:
        stop = True
        await ticker
    return result, lateness


@pytest.fixture
def remote_client(live_server):
    made: List[AsyncClient] = []

    def make(**kwargs: Any) -> AsyncClient:
        options = {"host": live_server.url, "flush_interval": 0.05,
                   "feature_flags_request_timeout_seconds": 5.0, **kwargs}
        client = AsyncClient("phc_async", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.sync.shutdown(5)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_eight_remote_reads_take_one_round_trip_and_never_stall_the_loop(
        live_server, remote_client, loop_kind):
    seen: List[str] = []
    live_server.flags_handler = slow_flags(seen)
    client = remote_client()  # made outside any running loop
    users = [f"user-{i}" for i in range(8)]

    async def reads() -> Tuple[List[Any], float]:
        started = time.perf_counter()
        values = await asyncio.gather(*(client.get_feature_flag("remote", user)
                                        for user in users))
        return list(values), time.perf_counter() - started

    (values, took), lateness = run(with_ticker(reads()), loop_kind)
    assert values == users  # each user got the server's answer for that user
    assert sorted(seen) == users
    assert ROUND_TRIP <= took < ROUND_TRIP * 1.8, took  # concurrent, not 8 round trips
    assert len(lateness) > 100  # the ticker kept running all along
    assert_kept_ticking(lateness)


def test_the_probe_sees_a_blocking_flag_read(live_server, remote_client):
    # Control: the same read through the sync client blocks the loop for the round trip.
    live_server.flags_handler = slow_flags([], delay=0.3)
    client = remote_client()

    async def blocking() -> Any:
        return client.sync.get_feature_flag("remote", "user-1")

    value, lateness = run(with_ticker(blocking()))
    assert value == "user-1"
    assert max(lateness) > 0.25


def test_all_flags_reads_are_off_the_loop_and_concurrent(live_server, remote_client):
    seen: List[str] = []
    live_server.flags_handler = slow_flags(seen)
    client = remote_client()

    async def reads() -> List[Any]:
        return list(await asyncio.gather(
            client.get_all_flags("a"), client.get_all_flags_and_payloads("b"),
            client.get_feature_flag_result("remote", "c"), client.feature_enabled("remote", "d")))

    started = time.perf_counter()
    (values, lateness) = run(with_ticker(reads()))
    assert time.perf_counter() - started < ROUND_TRIP * 1.8
    all_flags, with_payloads, result, enabled = values
    assert all_flags == {"remote": "a"}
    assert with_payloads["featureFlags"] == {"remote": "b"}
    assert result is not None and result.value == "c" and not result.locally_evaluated
    assert enabled is True
    assert sorted(seen) == ["a", "b", "c", "d"]
    assert_kept_ticking(lateness)


def test_local_evaluation_answers_inline_without_the_server(live_server, local_client):
    client = local_client()

    async def reads() -> List[Any]:
        return [
            await client.feature_enabled("simple", "user-1"),
            await client.get_feature_flag("off", "user-1"),
            await client.get_feature_flag("beta", "user-1",
                                          person_properties={"plan": "pro"}),
            await client.get_feature_flag_payload("beta", "user-1",
                                                  person_properties={"plan": "pro"}),
            await client.get_feature_flag("multi", "user-1"),
            (await client.get_all_flags("user-1", only_evaluate_locally=True) or {}).get(
                "simple"),
        ]

    values = run(reads())
    assert values[:4] == [True, False, True, {"color": "blue"}]
    assert values[4] in ("control", "test") and values[5] is True
    assert live_server.requests_for("/flags/") == []
    assert client._pool is None  # answered on the loop: no worker was ever needed
    assert client.sync.flush(5)
    called = [e for e in live_server.events if e["event"] == "$feature_flag_called"]
    assert {e["properties"]["$feature_flag"] for e in called} >= {"simple", "off", "beta"}
    assert all(e["properties"]["locally_evaluated"] for e in called)


def test_first_definitions_load_does_not_block_the_loop(live_server):
    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    live_server.set_delay(0.6)
    client = AsyncClient("phc_async", host=live_server.url,
                         personal_api_key=live_server.personal_api_key,
                         flags_first_load_timeout=3.0, flush_interval=0.05)
    try:
        value, lateness = run(with_ticker(client.feature_enabled("simple", "user-1")))
        assert value is True  # it waited for the definitions, off the loop
        assert_kept_ticking(lateness)
    finally:
        live_server.set_delay(0)
        client.sync.shutdown(5)


def test_a_client_made_outside_a_loop_works_in_several_loops(live_server, remote_client):
    live_server.flags_handler = slow_flags([], delay=0.0)
    client = remote_client(flush_interval=60)

    async def use(user: str) -> Any:
        client.capture("in a loop", distinct_id=user)
        return await client.get_feature_flag("remote", user)

    assert run(use("first")) == "first"
    assert run(use("second"), "uvloop" if uvloop is not None else "asyncio") == "second"
    assert asyncio.run(use("third")) == "third"
    assert run(client.flush(5)) is True
    events = [e for e in live_server.events if e["event"] == "in a loop"]
    assert sorted(e["distinct_id"] for e in events) == ["first", "second", "third"]


def test_async_with_drains_on_exit(live_server):
    async def main() -> List[str]:
        async with AsyncClient("phc_async", host=live_server.url, flush_interval=60,
                               flush_at=10_000) as client:
            uuids = [client.capture("queued", distinct_id=f"u{i}") for i in range(20)]
            client.set(distinct_id="u0", properties={"plan": "pro"})
            client.alias("u0", "u0-new")
            client.group_identify("company", "acme", {"name": "Acme"})
            try:
                raise ValueError("boom")
            except ValueError as exc:
                client.capture_exception(exc, distinct_id="u0")
            assert live_server.events == []  # nothing sent before the exit
        assert client.stats()["queued"] == 0
        return [u for u in uuids if u]

    uuids = run(main())
    assert len(uuids) == 20
    assert set(uuids) <= set(live_server.uuids())
    names = sorted({e["event"] for e in live_server.events})
    assert names == ["$create_alias", "$exception", "$groupidentify", "$set", "queued"]


def test_flush_and_shutdown_are_awaitable_and_do_not_block(live_server):
    live_server.enqueue(*[productos_delay(0.5)], route="ingest")
    client = AsyncClient("phc_async", host=live_server.url, flush_interval=60)

    async def main() -> Tuple[bool, bool]:
        client.capture("one", distinct_id="u")
        flushed, lateness = await with_ticker(client.flush(5))
        assert_kept_ticking(lateness)
        client.capture("two", distinct_id="u")
        return flushed, await client.shutdown(5)

    assert run(main()) == (True, True)
    assert sorted(e["event"] for e in live_server.events) == ["one", "two"]
    assert client.capture("late", distinct_id="u") is None  # refused after shutdown


def productos_delay(seconds: float) -> Any:
    try:
        from tests.server import Delay
    except ModuleNotFoundError:  # plain `pytest` from the tests folder
        from server import Delay  # type: ignore
    return Delay(seconds)


def test_flag_reads_never_raise_and_report_failures(live_server, remote_client):
    live_server.flags_handler = lambda body: (500, {"detail": "boom"})
    client = remote_client()

    async def reads() -> List[Any]:
        return [await client.get_feature_flag("remote", "u"),
                await client.get_feature_flag(None, "u"),  # type: ignore[arg-type]
                await client.feature_enabled("remote", None),
                await client.get_all_flags("u")]

    values = run(reads())
    assert values[0] is None and values[1] is None and values[2] is None
    assert values[3] == {}


def test_a_disabled_client_answers_none_at_once():
    client = AsyncClient(disabled=True)

    async def reads() -> List[Any]:
        return [await client.get_feature_flag("k", "u"), await client.get_all_flags("u"),
                client.capture("e", distinct_id="u"), await client.flush(),
                await client.shutdown()]

    assert run(reads()) == [None, None, None, True, True]


def test_the_constructor_is_the_clients():
    import inspect

    assert (list(inspect.signature(AsyncClient).parameters)
            == list(inspect.signature(productos.Client).parameters))
    with pytest.raises(ValueError):
        AsyncClient("phc_x", flush_at=0)
    assert productos.AsyncClient is AsyncClient


def test_reads_in_flight_when_shutdown_comes_still_answer(live_server, remote_client):
    seen: List[str] = []
    live_server.flags_handler = slow_flags(seen, delay=0.3)
    client = remote_client()

    async def main() -> List[Any]:
        reads = [asyncio.ensure_future(client.get_feature_flag("remote", f"u{i}"))
                 for i in range(3)]
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:  # all three at the server
            await asyncio.sleep(0.005)
        assert sorted(seen) == ["u0", "u1", "u2"]
        assert await client.shutdown(5)
        return list(await asyncio.gather(*reads))

    assert run(main()) == ["u0", "u1", "u2"]
    assert wait_until(lambda: client._pool is None, timeout=1)


def test_thirty_two_concurrent_reads_share_one_round_trip_without_pool_warnings(
        live_server, remote_client, caplog):
    seen: List[str] = []
    live_server.flags_handler = slow_flags(seen, delay=0.5)
    client = remote_client()
    users = [f"u{i}" for i in range(32)]

    async def reads() -> Tuple[List[Any], float]:
        started = time.perf_counter()
        values = await asyncio.gather(*(client.get_feature_flag("remote", u) for u in users))
        return list(values), time.perf_counter() - started

    with caplog.at_level(logging.WARNING):
        values, took = run(reads())
    assert values == users
    assert took < 0.5 * 1.9, took
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_evaluate_flags_and_named_keys_answer_inline_from_local_data(live_server, local_client):
    client = local_client()

    async def reads() -> List[Any]:
        # "static-cohort" needs the server: reads that leave it out stay local.
        snapshot = await client.evaluate_flags("user-1", person_properties={"plan": "pro"},
                                               flag_keys=["beta", "simple"])
        named = await client.get_all_flags("user-1", flag_keys_to_evaluate=["simple"])
        both = await client.get_all_flags_and_payloads(
            "user-1", person_properties={"plan": "pro"}, only_evaluate_locally=True)
        return [snapshot.is_enabled("beta"), snapshot.get_flag_payload("beta"), named, both]

    enabled, payload, named, both = run(reads())
    assert (enabled, payload, named) == (True, {"color": "blue"}, {"simple": True})
    # The same shape as the sync client's (posthog's: payloads as JSON text).
    assert both == client.sync.get_all_flags_and_payloads(
        "user-1", person_properties={"plan": "pro"}, only_evaluate_locally=True)
    assert both["featureFlagPayloads"]["beta"] == '{"color": "blue"}'
    assert live_server.requests_for("/flags/") == []
    assert client._pool is None


def test_evaluate_flags_asks_the_server_off_the_loop_with_per_call_geoip(
        live_server, remote_client):
    seen: List[str] = []
    live_server.flags_handler = slow_flags(seen)
    client = remote_client()

    async def read() -> Any:
        return await client.evaluate_flags("a", disable_geoip=False)

    snapshot, lateness = run(with_ticker(read()))
    assert snapshot.get_flag("remote") == "a"
    assert seen == ["a"]
    bodies = [r.json for r in live_server.requests_for("/flags/")]
    assert [b["geoip_disable"] for b in bodies] == [False]
    assert_kept_ticking(lateness)

    async def single() -> Any:
        return await client.get_feature_flag("remote", "b", disable_geoip=False)

    assert run(single()) == "b"
    assert [r.json["geoip_disable"] for r in live_server.requests_for("/flags/")] == [
        False, False]


@pytest.fixture
def local_client(live_server):
    """Make AsyncClients whose definitions (the sample set) are loaded: local data answers."""
    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    made: List[AsyncClient] = []

    def make(**kwargs: Any) -> AsyncClient:
        client = AsyncClient("phc_async", host=live_server.url, flush_interval=0.05,
                             personal_api_key=live_server.personal_api_key, **kwargs)
        made.append(client)
        assert client.sync.load_feature_flags()
        return client

    yield make
    for client in made:
        client.sync.shutdown(5)


def _static_cohort_answer(seen: List[Dict[str, Any]]) -> Callable[[Dict[str, Any]],
                                                                   Tuple[int, Dict]]:
    def answer(body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        seen.append(body)
        return 200, {"flags": {"static-cohort": {
            "key": "static-cohort", "enabled": True, "variant": None,
            "reason": {"code": "condition_match"}, "metadata": {"id": 9, "version": 1}}},
            "errorsWhileComputingFlags": False, "requestId": "r-1"}
    return answer


def test_a_bulk_read_local_data_cannot_finish_asks_the_server_once_from_a_worker(
        live_server, local_client):
    seen: List[Dict[str, Any]] = []
    live_server.flags_handler = _static_cohort_answer(seen)
    client = local_client()

    async def reads() -> List[Any]:
        values = await client.get_all_flags("user-1", person_properties={"plan": "pro"})
        snapshot = await client.evaluate_flags("user-2", person_properties={"plan": "pro"})
        return [values, snapshot]

    values, snapshot = run(reads())
    # Local answers and the server's, merged; one request per read, never a second one for a
    # read begun inline and finished on the worker.
    assert values["static-cohort"] is True and values["simple"] is True
    assert values["beta"] is True
    assert snapshot.is_enabled("static-cohort") and snapshot.get_flag("simple") is True
    assert [body["distinct_id"] for body in seen] == ["user-1", "user-2"]
    assert client._pool is not None  # the reads that had to wait ran on a worker


def test_a_bulk_read_before_the_first_load_waits_on_a_worker_not_the_loop(live_server):
    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    # The first definitions load takes a while: the read starts before it is done.
    live_server.enqueue(Delay(0.3), route="definitions")
    client = AsyncClient("phc_async", host=live_server.url,
                         personal_api_key=live_server.personal_api_key, flush_interval=0.05)
    try:
        async def read() -> Any:
            return await client.get_all_flags("user-1", person_properties={"plan": "pro"},
                                              only_evaluate_locally=True)

        values, lateness = run(with_ticker(read()))
        assert values["simple"] is True and "static-cohort" not in values
        assert client._pool is not None
        assert_kept_ticking(lateness)
    finally:
        client.sync.shutdown(5)


def test_hooks_see_each_flag_of_an_async_bulk_read_exactly_once(local_client):
    seen: List[str] = []

    class Recording(productos.FlagHook):
        def after_evaluation(self, evaluation: Any, result: Any) -> None:
            seen.append(evaluation.key)

    client = local_client(hooks=[Recording()])

    async def read() -> Any:
        return await client.get_all_flags_results("user-1", person_properties={"plan": "pro"},
                                                  only_evaluate_locally=True)

    results = run(read())
    assert results and sorted(seen) == sorted(results)
    assert len(seen) == len(set(seen))


def test_a_local_read_sends_its_event_with_the_calls_own_geoip_setting(live_server,
                                                                       local_client):
    client = local_client()

    async def reads() -> List[Any]:
        return [
            await client.get_feature_flag("simple", "geo-1", disable_geoip=False),
            await client.feature_enabled("simple", "geo-2", disable_geoip=False),
            await client.get_feature_flag_result("simple", "geo-3", disable_geoip=False),
            await client.get_feature_flag("simple", "geo-4"),
        ]

    values = run(reads())
    assert values[:2] == [True, True] and values[2].value is True and values[3] is True
    assert client.sync.flush(5)
    called = {e["distinct_id"]: e["properties"] for e in live_server.events
              if e["event"] == "$feature_flag_called"}
    assert sorted(called) == ["geo-1", "geo-2", "geo-3", "geo-4"]
    # geoip on for these calls: no $geoip_disable, as posthog sends them
    assert [called[f"geo-{i}"].get("$geoip_disable") for i in (1, 2, 3)] == [None] * 3
    assert called["geo-4"]["$geoip_disable"] is True  # the client's setting
    assert live_server.requests_for("/flags/") == []  # all answered from local data
    assert client._pool is None


def test_work_an_inline_read_schedules_may_wait_later(live_server, local_client):
    # on_error runs inside the inline read; a task it starts runs after that read is over and
    # may wait on the server like any sync read (it must not inherit "refusing to wait").
    seen: List[Dict[str, Any]] = []
    live_server.flags_handler = _static_cohort_answer(seen)
    later: List[Any] = []
    tasks: List[Any] = []

    def on_error(exc: Exception, batch: Any) -> None:
        async def read_later() -> None:
            later.append(client.sync.get_all_flags("user-1", person_properties={"plan": "pro"}))

        tasks.append(asyncio.get_running_loop().create_task(read_later()))

    client = local_client(on_error=on_error)

    async def reads() -> Any:
        answer = await client.get_all_flags(None, person_properties={"plan": "pro"})  # no id
        await asyncio.gather(*tasks)
        return answer

    assert run(reads()) is None
    assert len(tasks) == 1 and later and later[0]["static-cohort"] is True
    assert [body["distinct_id"] for body in seen] == ["user-1"]

