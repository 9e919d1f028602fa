"""The pytest plugin productos ships (``productos_events``, ``productos_flags``), run by pytester.

Each test writes a small application test suite and runs it in a fresh pytest process, which
finds the plugin through the package's ``pytest11`` entry point, as a user's suite would.
"""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

# Records every attempt to open a network connection in the inner session, in a file the
# outer test reads: "offline" is checked, not assumed.
SOCKET_GUARD = """
import json, os, socket
import pytest

ATTEMPTS = []
_connect = socket.socket.connect
_getaddrinfo = socket.getaddrinfo

def _guarded_connect(self, address):
    ATTEMPTS.append(repr(address))
    raise OSError("network access in a productos test")

def _guarded_getaddrinfo(host, *args, **kwargs):
    ATTEMPTS.append(repr(host))
    raise OSError("name lookup in a productos test")

socket.socket.connect = _guarded_connect
socket.getaddrinfo = _guarded_getaddrinfo

def pytest_sessionfinish(session):
    import productos
    productos.shutdown(2)  # the module-level client too: nothing may go out at the end
    with open(os.path.join(str(session.config.rootpath), "sockets.json"), "w") as f:
        json.dump(ATTEMPTS, f)
"""

APP_SUITE = """
import productos
from productos.testing import FlagDefinitionsBuilder

# Made at import time, before any fixture: the plugin must reach it too.
APP_CLIENT = productos.Client("phc_app", host="http://127.0.0.1:9")
OFFLINE = productos.Client("phc_app", host="http://127.0.0.1:9", send=False,
                           flag_definitions=FlagDefinitionsBuilder()
                           .flag("new-checkout", rollout=0).build())


def checkout(client, user):
    flow = "new" if client.feature_enabled("new-checkout", user) else "old"
    client.capture("checkout started", distinct_id=user, properties={"flow": flow})
    return flow


def test_override_reaches_a_client_made_before_the_test(productos_events, productos_flags):
    productos_flags.set("new-checkout", True)
    assert checkout(APP_CLIENT, "u1") == "new"
    assert checkout(OFFLINE, "u2") == "new"
    productos_events.assert_captured("checkout started", distinct_id="u1", flow="new")
    productos_events.assert_captured("checkout started", distinct_id="u2", flow="new")


def test_overrides_do_not_leak_into_the_next_test():
    assert OFFLINE.feature_enabled("new-checkout", "u1") is False


def test_overrides_start_empty(productos_flags):
    assert OFFLINE.feature_enabled("new-checkout", "u1") is False
    assert APP_CLIENT.get_feature_flag("new-checkout", "u1") is None  # never asks the server


def test_events_start_empty_and_clear(productos_events):
    assert productos_events.events == []
    APP_CLIENT.capture("one", distinct_id="u")
    productos_events.clear()
    assert productos_events.events == []


def test_module_level_client(productos_events):
    productos.capture("signed up", distinct_id="u3", properties={"plan": "pro"})
    event = productos_events.assert_captured("signed up", distinct_id="u3", plan="pro")
    assert event["properties"]["plan"] == "pro"


def test_variant_and_payload_in_a_client_made_during_the_test(productos_flags):
    productos_flags.set("pricing", "test", payload={"price": 9})
    client = productos.Client("phc_new", sync_mode=True)
    assert client.get_feature_flag("pricing", "u") == "test"
    assert client.get_feature_flag_payload("pricing", "u") == {"price": 9}
    assert client.get_all_flags("u") == {"pricing": "test"}
    result = client.get_feature_flag_result("pricing", "u")
    assert result.variant == "test"
    client.shutdown(1)


def test_sync_mode_flush_and_shutdown_send_nothing(productos_events):
    client = productos.Client("phc_sync", sync_mode=True, host="http://127.0.0.1:9")
    client.capture("e", distinct_id="u")
    assert client.flush(1) is True
    client.shutdown(1)
    assert [e["event"] for e in productos_events.events] == ["e"]
"""


def _run(pytester: pytest.Pytester, suite: str) -> pytest.RunResult:
    pytester.makeconftest(SOCKET_GUARD)
    pytester.makepyfile(test_app=suite)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")


def _socket_attempts(pytester: pytest.Pytester) -> list:
    return json.loads((pytester.path / "sockets.json").read_text())


def test_the_plugin_is_registered_as_a_pytest11_entry_point():
    plugins = [e.value for e in entry_points(group="pytest11") if e.name == "productos"]
    assert plugins == ["productos.pytest_plugin"]


def test_a_passing_suite_passes_offline(pytester: pytest.Pytester):
    result = _run(pytester, APP_SUITE)
    result.assert_outcomes(passed=7)
    assert _socket_attempts(pytester) == []


def test_a_missing_event_fails_with_the_list_of_what_was_captured(pytester: pytest.Pytester):
    result = _run(pytester, """
import productos

def test_expects_an_event_that_is_not_there(productos_events):
    client = productos.Client("phc_x")
    client.capture("page viewed", distinct_id="u1", properties={"path": "/home"})
    client.capture("signed up", distinct_id="u2", properties={"plan": "free"})
    productos_events.assert_captured("signed up", distinct_id="u2", plan="pro")
""")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*AssertionError: no 'signed up' event for distinct_id='u2' with plan='pro' was "
        "captured; the 2 captured event(s):",
        "*'page viewed' distinct_id='u1' {'path': '/home'}",
        "*'signed up' distinct_id='u2' {'plan': 'free'}",
    ])
    assert _socket_attempts(pytester) == []


def test_without_its_fixtures_the_plugin_changes_nothing(pytester: pytest.Pytester):
    # A client outside the fixtures sends for real: here, to a closed port, so the guard
    # sees the attempt. That the plugin is loaded at all is checked with --fixtures.
    result = _run(pytester, """
import productos

def test_sends_for_real():
    client = productos.Client("phc_x", host="http://127.0.0.1:9", sync_mode=True,
                              max_retries=0)
    client.capture("e", distinct_id="u")
    assert client.stats()["sent"] == 0
    client.shutdown(1)
""")
    result.assert_outcomes(passed=1)
    assert _socket_attempts(pytester) != []
    fixtures = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures")
    fixtures.stdout.fnmatch_lines(["*productos_events*", "*productos_flags*"])
