"""The shared definitions cache in a real redis-server, with clients in this process.

Each Client is its own contender (its own lease token), as a process of a fleet would be.
"""

from __future__ import annotations

import json
import logging

import pytest

import productos
from productos import CachedDefinitions, FlagDefinitionsCache

try:
    from tests.fleet import definitions, definitions_server, flag
    from tests.redis_server import redis_server
    from tests.server import LoopbackServer
    from tests.support import wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from fleet import definitions, definitions_server, flag  # type: ignore
    from redis_server import redis_server  # type: ignore # noqa: F401
    from server import LoopbackServer  # type: ignore
    from support import wait_until  # type: ignore

SECRET = "phx_fleet_secret_do_not_share"
INTERVAL = 0.4


@pytest.fixture
def server():
    with definitions_server(SECRET) as live:
        yield live


def client(server, cache, key="phc_project", **kwargs):
    return productos.Client(key, host=server.url, personal_api_key=SECRET, send=False,
                            poll_interval=INTERVAL, flag_definitions_cache=cache, **kwargs)


def definition_requests(server):
    return len(server.requests_for("/flags/definitions"))


def all_redis(redis_server):
    """Every key and value in the server, as bytes."""
    r = redis_server.client()
    found = []
    for key in r.scan_iter():
        found.append(key)
        kind = r.type(key)
        if kind == b"hash":
            for field, value in r.hgetall(key).items():
                found += [field, value]
        elif kind == b"string":
            found.append(r.get(key))
    return found


def test_one_holder_publishes_and_the_others_follow(server, redis_server):
    clients = [client(server, redis_server.url) for _ in range(4)]
    try:
        assert wait_until(lambda: all(c.feature_flag_definitions() for c in clients), 10)
        sources = sorted(c.flag_definitions_status().source for c in clients)
        assert sources == ["follower", "follower", "follower", "holder"]
        answers = [c.get_all_flags(f"p{n}", only_evaluate_locally=True)
                   for c in clients for n in range(20)]
        assert answers[:20] * 4 == answers
        # Over several intervals only the holder asks the server.
        before = definition_requests(server)
        holder = next(c for c in clients if c.flag_definitions_status().source == "holder")
        polls = holder.flag_definitions_status().polls
        assert wait_until(lambda: holder.flag_definitions_status().polls >= polls + 4, 10)
        made = definition_requests(server) - before
        assert 4 <= made <= 6, made
        assert all(c.flag_definitions_status().polls == 0 for c in clients if c is not holder)
        assert all(c.flag_definitions_status().cache == "ok" for c in clients)
    finally:
        for c in clients:
            c.shutdown()
    assert SECRET.encode() not in b"".join(all_redis(redis_server))


def test_a_change_reaches_every_client_and_listeners_hear_of_it(server, redis_server):
    clients = [client(server, redis_server.url) for _ in range(3)]
    heard = []
    for c in clients:
        c.on_flags_changed(heard.append)
    try:
        assert wait_until(lambda: all(c.feature_flag_definitions() for c in clients), 10)
        assert wait_until(lambda: len(heard) == 3, 5)
        assert all(change.added == {"alpha", "beta"} for change in heard)
        heard.clear()
        server.set_definitions(definitions(flag("alpha", 0), flag("gamma")))
        assert wait_until(lambda: len(heard) == 3, 2 * INTERVAL + 2)
        for change in heard:
            assert (change.added, change.removed, change.changed) == (
                {"gamma"}, {"beta"}, {"alpha"})
        assert all(c.get_feature_flag("alpha", "p1", only_evaluate_locally=True) is False
                   for c in clients)
    finally:
        for c in clients:
            c.shutdown()


def test_the_lease_is_released_on_shutdown_and_taken_over(server, redis_server):
    first, second = client(server, redis_server.url), client(server, redis_server.url)
    try:
        assert wait_until(lambda: first.feature_flag_definitions() is not None
                          and second.feature_flag_definitions() is not None, 10)
        holder, follower = ((first, second) if first.flag_definitions_status().source == "holder"
                            else (second, first))
        holder.shutdown()
        assert not any(b":lease" in k for k in redis_server.client().scan_iter())
        assert wait_until(lambda: follower.flag_definitions_status().source == "holder",
                          2 * INTERVAL + 2)
    finally:
        first.shutdown()
        second.shutdown()


@pytest.mark.allow_internal_errors
def test_redis_stopped_then_restarted(server, redis_server, caplog):
    clients = [client(server, redis_server.url) for _ in range(3)]
    try:
        assert wait_until(lambda: all(c.feature_flag_definitions() for c in clients), 10)
        expected = [c.get_all_flags("p1", only_evaluate_locally=True) for c in clients]
        caplog.set_level(logging.WARNING, "productos")
        redis_server.stop()
        assert wait_until(lambda: all(c.flag_definitions_status().source == "direct"
                                      for c in clients), 10)
        assert all(c.flag_definitions_status().cache.startswith("unreachable") for c in clients)
        assert [c.get_all_flags("p1", only_evaluate_locally=True) for c in clients] == expected
        # Direct polling keeps changes coming while Redis is down.
        server.set_definitions(definitions(flag("alpha", 0), flag("beta", 100)))
        assert wait_until(lambda: all(
            c.get_feature_flag("alpha", "p1", only_evaluate_locally=True) is False
            for c in clients), 5)
        unreachable = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(unreachable) == 3  # once per client, not once per poll
        redis_server.start()
        assert wait_until(lambda: sorted(c.flag_definitions_status().source for c in clients)
                          == ["follower", "follower", "holder"], 10)
        assert all(c.flag_definitions_status().cache == "ok" for c in clients)
    finally:
        for c in clients:
            c.shutdown()


def test_redis_down_without_direct_fallback_keeps_the_last_good(server, redis_server):
    c = client(server, redis_server.url, flag_definitions_cache_fallback=False)
    try:
        assert wait_until(lambda: c.feature_flag_definitions() is not None, 10)
        redis_server.stop()
        before = definition_requests(server)
        assert wait_until(lambda: c.flag_definitions_status().cache.startswith("unreachable"),
                          5)
        polls = c.flag_definitions_status().polls
        server.set_definitions(definitions(flag("alpha", 0)))
        wait_until(lambda: False, 3 * INTERVAL)  # a few polls
        assert c.flag_definitions_status().polls == polls
        assert definition_requests(server) - before <= 1  # at most a poll already under way
        assert c.get_feature_flag("beta", "p1", only_evaluate_locally=True) is True
    finally:
        c.shutdown()


def test_a_corrupt_value_is_ignored_and_healed(server, redis_server, caplog):
    clients = [client(server, redis_server.url) for _ in range(3)]
    try:
        assert wait_until(lambda: all(c.feature_flag_definitions() for c in clients), 10)
        r = redis_server.client()
        (entry,) = [k for k in r.scan_iter() if k.endswith(b":definitions")]
        good = r.hget(entry, "version")
        caplog.set_level(logging.WARNING, "productos")
        r.hset(entry, mapping={"body": b"{not json", "version": b"garbage"})
        assert wait_until(lambda: r.hget(entry, "version") == good, 2 * INTERVAL + 3)
        assert all(c.get_feature_flag("beta", "p1", only_evaluate_locally=True) is True
                   for c in clients)
        assert all(c.flag_definitions_status().state is productos.SourceState.VALID
                   for c in clients)
    finally:
        for c in clients:
            c.shutdown()


def test_two_projects_on_one_redis_never_mix(server, redis_server):
    other = LoopbackServer(personal_api_key=SECRET).start()
    other.set_definitions(definitions(flag("other-only", 100)))
    a = [client(server, redis_server.url, key="phc_one") for _ in range(2)]
    b = [client(other, redis_server.url, key="phc_two") for _ in range(2)]
    try:
        assert wait_until(lambda: all(c.feature_flag_definitions() for c in a + b), 10)
        assert all(set(c.get_all_flags("p", only_evaluate_locally=True)) == {"alpha", "beta"}
                   for c in a)
        assert all(set(c.get_all_flags("p", only_evaluate_locally=True)) == {"other-only"}
                   for c in b)
        keys = {k for k in redis_server.client().scan_iter() if k.endswith(b":definitions")}
        assert len(keys) == 2
        assert not any(b"phc_" in k for k in keys)  # namespaced by a hash, not the key
    finally:
        for c in a + b:
            c.shutdown()
        other.stop()


def test_unix_socket_url(server, redis_server):
    c = client(server, redis_server.unix_url)
    try:
        assert wait_until(lambda: c.feature_flag_definitions() is not None, 10)
        assert c.flag_definitions_status().source == "holder"
        assert c.flag_definitions_status().cache == "ok"
    finally:
        c.shutdown()


class MemoryCache:
    """A user's own store, through the public protocol."""

    def __init__(self):
        self.lease = None
        self.entry = None
        self.stored = 0

    def acquire_lease(self, owner, ttl):
        if self.lease in (None, owner):
            self.lease = owner
            return True
        return False

    def release_lease(self, owner):
        if self.lease == owner:
            self.lease = None

    def version(self):
        return None if self.entry is None else self.entry.version

    def load(self):
        return self.entry

    def store(self, entry, owner):
        assert isinstance(entry, CachedDefinitions)
        self.stored += 1
        self.entry = entry

    def close(self):
        pass


def test_a_custom_cache_object(server):
    cache = MemoryCache()
    assert isinstance(cache, FlagDefinitionsCache)
    clients = [client(server, cache) for _ in range(3)]
    try:
        assert wait_until(lambda: all(c.feature_flag_definitions() for c in clients), 10)
        assert cache.stored == 1
        assert json.loads(cache.entry.body)["flags"][0]["key"] == "alpha"
        assert SECRET.encode() not in cache.entry.body
    finally:
        for c in clients:
            c.shutdown()
    assert cache.lease is None


def test_posthog_cache_provider_is_adapted(server):
    calls = []

    class Provider:  # posthog's FlagDefinitionCacheProvider protocol
        def __init__(self):
            self.data = None
            self.locked = False

        def should_fetch_flag_definitions(self):
            calls.append("should_fetch")
            if self.locked:
                return False
            self.locked = True
            return True

        def get_flag_definitions(self):
            return self.data

        def on_flag_definitions_received(self, data):
            calls.append("received")
            self.data = data
            self.locked = False

        def shutdown(self):
            calls.append("shutdown")

    provider = Provider()
    c = client(server, provider)
    try:
        assert wait_until(lambda: c.feature_flag_definitions() is not None, 10)
        assert [f["key"] for f in provider.data["flags"]] == ["alpha", "beta"]
        assert set(provider.data) >= {"flags", "group_type_mapping", "cohorts"}
    finally:
        c.shutdown()
    assert "received" in calls and calls[-1] == "shutdown"


def test_invalid_cache_settings_raise_at_construction():
    with pytest.raises(ValueError, match="flag_definitions_cache"):
        productos.Client("phc_x", flag_definitions_cache=42, send=False)
    with pytest.raises(ValueError, match="flag_definitions_cache"):
        productos.Client("phc_x", flag_definitions_cache="  ", send=False)
