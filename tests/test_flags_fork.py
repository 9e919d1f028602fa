"""Flag reads after a fork: the child polls on its own, whether or not the fork was announced.

Flag reads do not ask the kernel for the process id on every call (a system call): an
announced fork is seen through the at-fork hook (productos._flags.forks), an unannounced one
(uWSGI forks in C) by the pid check made before events and remote calls and every
PID_CHECK_EVERY value-only reads.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from productos._flags.forks import PID_CHECK_EVERY

DATA = Path(__file__).parent / "data" / "sample_definitions.json"
DEFINITIONS = json.loads(DATA.read_text())
ROOT = Path(__file__).resolve().parent.parent


def test_a_forked_child_polls_again_and_sees_new_definitions(live_server, tmp_path):
    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    changed = tmp_path / "changed"
    script = textwrap.dedent(f"""
        import os, sys, time, productos
        client = productos.Client("phc_fork", host={live_server.url!r},
                                  personal_api_key={live_server.personal_api_key!r},
                                  poll_interval=0.1, send=False)
        assert client.get_feature_flag("off", "u", send_feature_flag_events=False) is False
        pid = os.fork()
        if pid == 0:
            open({str(changed)!r} + ".ready", "w").close()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # value-only reads, no events, no capture
                if client.get_feature_flag("off", "u", send_feature_flag_events=False):
                    os._exit(0)
                time.sleep(0.02)
            os._exit(3)
        _, status = os.waitpid(pid, 0)
        client.shutdown(2)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        from tests.support import wait_until
    except ModuleNotFoundError:  # pragma: no cover
        from support import wait_until  # type: ignore
    assert wait_until(lambda: Path(str(changed) + ".ready").exists(), timeout=20)
    definitions = copy.deepcopy(DEFINITIONS)
    for flag in definitions["flags"]:
        if flag["key"] == "off":
            flag["active"] = True
            flag["filters"] = {"groups": [{"properties": [], "rollout_percentage": 100}]}
    live_server.set_definitions(definitions)  # only a poller running in the child sees this
    _, err = proc.communicate(timeout=40)
    assert proc.returncode == 0, err


def test_an_unannounced_fork_is_noticed_within_the_check_interval(live_server):
    import productos

    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    client = productos.Client("phc_fork", host=live_server.url,
                              personal_api_key=live_server.personal_api_key, send=False)
    try:
        assert client.get_feature_flag("simple", "u", send_feature_flag_events=False) is True
        client._pipeline.pid = -1  # as in a uWSGI worker: another pid, no at-fork hook ran
        reads = 0
        while client._pipeline.pid == -1 and reads < PID_CHECK_EVERY + 1:
            assert client.get_feature_flag("simple", "u", send_feature_flag_events=False)
            reads += 1
        assert client._pipeline.pid == os.getpid() and 0 < reads <= PID_CHECK_EVERY
        client._pipeline.pid = -1
        client.get_feature_flag("simple", "u")  # a read that sends an event checks at once
        assert client._pipeline.pid == os.getpid()
    finally:
        client.shutdown(2)


def test_an_unannounced_fork_is_noticed_before_a_read_without_events_asks_the_server(
        live_server):
    # A value-only read checks the pid only every PID_CHECK_EVERY reads, unless it goes past
    # the local walk: asking the server, or waiting for the first load, checks at once.
    import productos

    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    client = productos.Client("phc_fork", host=live_server.url,
                              personal_api_key=live_server.personal_api_key, send=False)
    try:
        assert client.get_feature_flag("simple", "u", send_feature_flag_events=False) is True
        for key in ("beta", "no-such-flag"):  # beta is undecided without person properties
            asked = len(live_server.requests_for("/flags/"))
            client._pipeline.pid = -1  # as in a uWSGI worker: another pid, no at-fork hook ran
            client.get_feature_flag(key, "u", send_feature_flag_events=False)
            assert len(live_server.requests_for("/flags/")) == asked + 1, key
            assert client._pipeline.pid == os.getpid(), key
    finally:
        client.shutdown(2)
