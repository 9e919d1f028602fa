"""The durable spool: outages, kill -9 and restarts lose nothing; two owners never share a file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any, List

import pytest

import productos

try:
    from tests.support import balanced, wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from support import balanced, wait_until  # type: ignore
from productos._delivery.spool import SpoolingSender
from productos._delivery.spool_store import Spool, SpoolBusyError
from productos.testing import RecordingSender

try:
    from tests.server import Respond
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from server import Respond  # type: ignore

FAST = {"retry_base_delay": 0.02, "retry_max_delay": 0.2, "max_retries": 2}


@pytest.fixture
def spool_path(tmp_path):
    return str(tmp_path / "spool" / "events.db")


@pytest.fixture
def make_client(live_server, spool_path):
    made: List[productos.Client] = []

    def make(**kwargs: Any) -> productos.Client:
        options = {"host": live_server.url, "spool_path": spool_path, **FAST, **kwargs}
        client = productos.Client("phc_spool", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(5)




def test_events_wait_in_the_spool_through_an_outage(make_client, live_server):
    live_server.set_down(True)
    client = make_client()
    uuids = [client.capture("outage", distinct_id=str(i)) for i in range(200)]
    assert not client.flush(10)  # safe on disk, but not delivered: flush says so
    stats = client.stats()
    assert stats["spooled"] == 200 and stats["dropped_total"] == 0
    assert balanced(stats)
    live_server.set_down(False)
    client.capture("after", distinct_id="x")
    assert client.flush(10)
    assert wait_until(lambda: client.stats()["sent"] == 201)
    assert client.stats()["spooled"] == 0
    assert set(uuids) <= set(live_server.uuids())
    assert balanced(client.stats())


def test_final_rejections_leave_the_spool_and_are_counted(make_client, live_server):
    live_server.enqueue(Respond(400))
    client = make_client()
    client.capture("refused", distinct_id="u")
    assert client.flush(10)
    stats = client.stats()
    assert stats["dropped"] == {"rejected": 1} and stats["spooled"] == 0


def test_spool_max_bytes_evicts_the_oldest_and_counts(make_client, live_server):
    live_server.set_down(True)
    reported: List[BaseException] = []
    client = make_client(spool_max_bytes=20_000,
                         on_error=lambda exc, batch: reported.append(exc))
    for i in range(100):
        client.capture("filler", distinct_id=str(i), properties={"pad": "x" * 500})
    assert not client.flush(10)  # the endpoint is down: what is left waits on disk
    stats = client.stats()
    assert stats["dropped"].get("spool_full", 0) > 0
    assert balanced(stats)
    # on_error hears of the eviction with productos' own error type, nothing else.
    assert reported and {type(exc) for exc in reported} == {productos.errors.SpoolFullError}


def test_shutdown_during_an_outage_keeps_events_for_the_next_run(
        live_server, spool_path):
    live_server.set_down(True)
    first = productos.Client("phc_spool", host=live_server.url, spool_path=spool_path, **FAST)
    uuids = [first.capture("kept", distinct_id=str(i)) for i in range(50)]
    first.shutdown(2)
    assert first.stats()["dropped_total"] == 0
    live_server.set_down(False)
    second = productos.Client("phc_spool", host=live_server.url, spool_path=spool_path,
                              **FAST)
    second.capture("new", distinct_id="n")
    assert second.flush(10)
    assert wait_until(lambda: set(uuids) <= set(live_server.uuids()))
    assert second.stats()["recovered"] == 50
    second.shutdown(5)


def test_a_second_owner_of_the_same_file_is_refused(spool_path):
    first = Spool(spool_path)
    with pytest.raises(SpoolBusyError):
        Spool(spool_path)
    first.close()
    Spool(spool_path).close()  # free again once the owner let go


def test_the_spooling_sender_stores_locally_only_while_it_owns_the_file(spool_path):
    def sender() -> SpoolingSender:
        return SpoolingSender(RecordingSender(), spool_path, max_bytes=1_000_000,
                              max_batch_size=100, max_batch_bytes=500_000,
                              account=lambda outcome: None, background=False)

    owner, other = sender(), sender()
    try:
        # The consumer waits for the owner's writes; the other one sends from memory.
        assert owner.stores_locally is True
        assert other.stores_locally is False
    finally:
        owner.close()
        other.close()
    assert owner.stores_locally is False  # once closed, batches would go to the network


def run_child(server, spool_path: str, body: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import os, signal, sys, time, productos
        client = productos.Client("phc_spool", host={server.url!r}, spool_path={spool_path!r},
                                  retry_base_delay=0.02, retry_max_delay=0.2, max_retries=1)
    """) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_kill_9_then_restart_sends_what_was_pending(live_server, spool_path):
    live_server.set_down(True)
    child = run_child(live_server, spool_path, """
        uuids = [client.capture("before kill", distinct_id=str(i)) for i in range(300)]
        deadline = time.monotonic() + 10
        while client.stats()["spooled"] < 300 and time.monotonic() < deadline:
            time.sleep(0.01)  # the writer puts them on disk without any flush()
        assert client.stats()["spooled"] == 300, client.stats()
        print(",".join(uuids), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, err
    uuids = out.strip().split(",")
    assert len(uuids) == 300
    live_server.set_down(False)
    again = run_child(live_server, spool_path, """
        assert client.flush(10)
        deadline = time.monotonic() + 10
        while client.stats()["recovered"] < 300 and time.monotonic() < deadline:
            client.flush(1)
            time.sleep(0.05)
        print(client.stats()["recovered"])
        client.shutdown(5)
    """)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert out.strip() == "300"
    got = live_server.uuids()
    assert set(uuids) <= set(got)
    assert len(got) == len(set(got)) == 300  # each event once, with its original uuid


def test_two_processes_on_one_file_never_send_an_event_twice(live_server, spool_path,
                                                              tmp_path):
    # Each child says it holds its client, then waits until the other does too: both
    # clients exist at the same time, whichever process starts first.
    body = f"""
        uuids = [client.capture("proc", distinct_id=str(i)) for i in range(100)]
        open(os.path.join({str(tmp_path)!r}, "ready-%d" % os.getpid()), "w").close()
        deadline = time.monotonic() + 30
        while (len([n for n in os.listdir({str(tmp_path)!r}) if n.startswith("ready-")]) < 2
               and time.monotonic() < deadline):
            time.sleep(0.01)
        client.shutdown(10)
        print(client.stats()["sent"])
    """
    first = run_child(live_server, spool_path, body)
    second = run_child(live_server, spool_path, body)
    outs = [p.communicate(timeout=60) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outs
    got = live_server.uuids()
    assert len(got) == len(set(got)) == 200
    assert any("in use by another process" in err for _, err in outs)


def test_fuzzed_capture_inputs_with_a_spool_never_raise_and_balance(tmp_path):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from productos.testing import RecordingSender

    sender = RecordingSender()
    client = productos.Client("phc_fuzz", sender=sender, spool_path=str(tmp_path / "f.db"),
                              flush_interval=0.05)
    values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=50),
                  st.binary(max_size=20), st.datetimes()),
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=10)

    @settings(max_examples=150, deadline=None)
    @given(event=st.one_of(st.text(max_size=20), st.none()),
           props=st.one_of(st.none(), st.dictionaries(st.text(max_size=8), values, max_size=5)))
    def capture(event, props):
        client.capture(event, distinct_id="fuzz", properties=props)

    try:
        capture()
        assert client.flush(10)
        # stats() is a snapshot: it balances once the last round has been accounted for
        assert wait_until(lambda: client.stats()["spooled"] == 0 and balanced(client.stats()))
        stats = client.stats()
        assert len(sender.events) == stats["sent"]
    finally:
        client.shutdown(5)
