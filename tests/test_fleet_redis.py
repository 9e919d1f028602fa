"""A dozen real processes sharing flag definitions through a real redis-server.

The definitions endpoint is a LoopbackServer that records every request, so the test counts
what the whole fleet asks of it per interval.
"""

from __future__ import annotations

import time

import pytest

try:
    from tests.fleet import Fleet, definitions, definitions_server, flag
    from tests.redis_server import redis_server
    from tests.server import LoopbackServer
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from fleet import Fleet, definitions, definitions_server, flag  # type: ignore
    from redis_server import redis_server  # type: ignore # noqa: F401
    from server import LoopbackServer  # type: ignore

pytestmark = pytest.mark.slow

SECRET = "phx_fleet_secret_never_in_redis"
INTERVAL = 1.0
SIZE = 12


@pytest.fixture
def server():
    with definitions_server(SECRET) as live:
        yield live


def settings(server, cache, key="phc_fleet"):
    return {"key": key, "host": server.url, "personal_api_key": SECRET,
            "interval": INTERVAL, "cache": cache}


def requests_since(server, since):
    return [r for r in server.requests_for("/flags/definitions") if r.received_at >= since]


def loaded(answers):
    return all(a["version"] is not None for a in answers)


def one_version(answers):
    return loaded(answers) and len({a["version"] for a in answers}) == 1


def test_a_dozen_processes_one_poller(server, redis_server):
    fleet = Fleet(SIZE, settings(server, redis_server.url))
    try:
        answers = fleet.wait(one_version, 20)
        assert one_version(answers)
        # Identical answers everywhere.
        assert all(a["values"] == answers[0]["values"] for a in answers)
        assert sorted(a["source"] for a in answers).count("holder") == 1
        # The whole fleet makes about one request per interval (not SIZE).
        start = time.monotonic()
        time.sleep(5 * INTERVAL)
        made = len(requests_since(server, start))
        assert 3 <= made <= 7, made
        # A change reaches every process within two intervals.
        server.set_definitions(definitions(flag("alpha", 0), flag("beta", 100)))
        changed_at = time.monotonic()
        answers = fleet.wait(lambda a: one_version(a) and a[0]["version"] != answers[0]["version"],
                             10)
        took = time.monotonic() - changed_at
        assert one_version(answers)
        assert took <= 2 * INTERVAL + 0.5, took  # query round trips included
        assert all(v["alpha"] is False for a in answers for v in a["values"].values())
    finally:
        fleet.stop()
    # The personal key is nowhere in Redis.
    r = redis_server.client()
    blob = b""
    for key in r.scan_iter():
        blob += key + b"".join(k + v for k, v in r.hgetall(key).items()) \
            if r.type(key) == b"hash" else key + (r.get(key) or b"")
    assert blob and SECRET.encode() not in blob


def test_kill_9_of_the_holder_is_taken_over(server, redis_server):
    fleet = Fleet(SIZE, settings(server, redis_server.url))
    try:
        answers = fleet.wait(one_version, 20)
        holder = next(w for w, a in zip(fleet.alive(), answers) if a["source"] == "holder")
        holder.kill()
        killed_at = time.monotonic()
        answers = fleet.wait(lambda a: [x["source"] for x in a].count("holder") == 1, 15)
        took = time.monotonic() - killed_at
        assert [x["source"] for x in answers].count("holder") == 1
        assert holder.pid not in [x["pid"] for x in answers]
        assert took <= 3 * INTERVAL + 1, took  # the lease (two intervals), then a look
        # And the new holder carries changes to everyone.
        server.set_definitions(definitions(flag("gamma", 100)))
        answers = fleet.wait(lambda a: one_version(a) and all(
            "gamma" in v for x in a for v in x["values"].values()), 10)
        assert all(set(v) == {"gamma"} for x in answers for v in x["values"].values())
    finally:
        fleet.stop()


def test_redis_stopped_and_restarted_under_a_fleet(server, redis_server):
    fleet = Fleet(6, settings(server, redis_server.url))
    try:
        answers = fleet.wait(one_version, 20)
        expected = answers[0]["values"]
        redis_server.stop()
        answers = fleet.wait(lambda a: all(x["source"] == "direct" for x in a), 15)
        assert all(x["source"] == "direct" for x in answers)
        assert all(x["values"] == expected for x in answers)  # every process keeps answering
        assert all(x["cache"].startswith("unreachable") for x in answers)
        redis_server.start()
        answers = fleet.wait(lambda a: sorted(x["source"] for x in a).count("holder") == 1
                             and all(x["cache"] == "ok" for x in a), 15)
        assert sorted(x["source"] for x in answers) == ["follower"] * 5 + ["holder"]
        start = time.monotonic()
        time.sleep(4 * INTERVAL)
        assert len(requests_since(server, start)) <= 6
    finally:
        fleet.stop()


def test_two_projects_share_one_redis(server, redis_server):
    other = LoopbackServer(personal_api_key=SECRET).start()
    other.set_definitions(definitions(flag("only-two", 100)))
    one = Fleet(3, settings(server, redis_server.url, key="phc_one"))
    two = Fleet(3, settings(other, redis_server.url, key="phc_two"))
    try:
        a, b = one.wait(one_version, 20), two.wait(one_version, 20)
        assert all(set(v) == {"alpha", "beta"} for x in a for v in x["values"].values())
        assert all(set(v) == {"only-two"} for x in b for v in x["values"].values())
        assert [x["source"] for x in a].count("holder") == 1
        assert [x["source"] for x in b].count("holder") == 1
    finally:
        one.stop()
        two.stop()
        other.stop()
