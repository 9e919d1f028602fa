"""With a spool, admitted events reach the disk within flush_interval whatever the endpoint does.

The endpoint refuses connections or hangs them; events must still land on disk, the memory
buffer must never overflow while the spool has room, a ``kill -9`` at any moment loses at
most the last ``flush_interval`` of events, and a full disk falls back to sending from memory.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any, List, Set

import pytest

import productos

try:
    from tests.support import balanced, wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from support import balanced, wait_until  # type: ignore

try:
    from tests.faults import HANG, PASS, REFUSE, FaultGate
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from faults import HANG, PASS, REFUSE, FaultGate  # type: ignore

# Retries long enough that a sender stuck on them would fall far behind a burst.
PATIENT = {"retry_base_delay": 0.5, "retry_max_delay": 2.0, "max_retries": 3, "timeout": 1.0}
FAST = {"retry_base_delay": 0.05, "retry_max_delay": 0.3, "max_retries": 2, "timeout": 1.0}
BURST = 30_000




def uuids_on_disk(path: str) -> Set[str]:
    db = sqlite3.connect(path)
    try:
        return {json.loads(body)["uuid"] for (body,) in db.execute("SELECT body FROM events")}
    finally:
        db.close()


@pytest.fixture
def gate(live_server):
    gate = FaultGate(live_server.port)
    yield gate
    gate.close()


@pytest.mark.parametrize("fault", [REFUSE, HANG])
def test_a_30k_burst_reaches_the_disk_while_the_endpoint_is_down(gate, live_server,
                                                                   tmp_path, fault):
    gate.set_mode(fault)
    path = str(tmp_path / "spool.db")
    client = productos.Client("phc_outage", host=gate.url, spool_path=path, **PATIENT)
    try:
        uuids = [client.capture("burst", distinct_id=str(i % 50), properties={"i": i})
                 for i in range(BURST)]
        assert None not in uuids
        assert wait_until(lambda: client.stats()["spooled"] == BURST, timeout=10), \
            client.stats()
        stats = client.stats()
        # Nothing stayed in memory and nothing was refused while the spool had room.
        assert stats["queued"] == 0 and stats["in_flight"] == 0
        assert stats["dropped"] == {}, stats["dropped"]
        assert balanced(stats)
        assert uuids_on_disk(path) == set(uuids)
        # The endpoint comes back: everything goes out once, from the spool.
        gate.set_mode(PASS)
        assert client.flush(60)
        assert client.stats()["sent"] == BURST
        assert client.stats()["spooled"] == 0 and balanced(client.stats())
    finally:
        client.shutdown(10)
    got = live_server.uuids()
    assert set(got) == set(uuids) and len(got) == BURST


def test_the_memory_buffer_never_overflows_while_the_spool_has_room(gate, tmp_path):
    gate.set_mode(REFUSE)
    client = productos.Client("phc_outage", host=gate.url, spool_path=str(tmp_path / "s.db"),
                              max_queue_size=500, **PATIENT)
    try:
        for i in range(20_000):
            client.capture("tight", distinct_id="u", properties={"i": i})
        assert wait_until(lambda: client.stats()["spooled"] == 20_000), client.stats()
        assert client.stats()["dropped_total"] == 0
    finally:
        client.shutdown(1)


def test_rows_of_the_burst_go_out_concurrently_once_the_endpoint_is_back(gate, live_server,
                                                                       tmp_path):
    gate.set_mode(REFUSE)
    live_server.set_delay(0.1)  # a serial sender can't start two requests within 0.1 s
    client = productos.Client("phc_outage", host=gate.url, spool_path=str(tmp_path / "s.db"),
                              max_batch_size=500, max_concurrent_requests=4, **FAST)
    try:
        for i in range(6_000):
            client.capture("backlog", distinct_id="u", properties={"i": i})
        assert wait_until(lambda: client.stats()["spooled"] == 6_000)
        gate.set_mode(PASS)
        assert client.flush(30)
        assert client.stats()["sent"] == 6_000
    finally:
        client.shutdown(5)
    overlapping = _max_overlap(live_server.requests_for("/batch/"))
    assert overlapping >= 2, "spooled rows were sent one request at a time"


def _max_overlap(requests: List[Any]) -> int:
    """Most requests received within 80 ms of each other (each is answered after 100 ms)."""
    times = sorted(r.received_at for r in requests)
    return max((sum(1 for t in times if start <= t < start + 0.08) for start in times),
               default=0)


# --- kill -9 during a burst -------------------------------------------------------------


CHILD = """
import os, sys, time, productos
client = productos.Client("phc_kill", host=sys.argv[1], spool_path=sys.argv[2],
                          retry_base_delay=0.5, retry_max_delay=2.0, max_retries=3,
                          timeout=1.0, flush_interval=0.5)
out = sys.stdout
for i in range(30_000):
    uuid = client.capture("burst", distinct_id="k", properties={"i": i})
    out.write(uuid + "\\n")
    if i % 200 == 0:
        out.flush()
        time.sleep(0.02)  # a paced burst (about 3 s): the kill lands inside it
out.flush()
time.sleep(30)
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_during_a_burst_loses_at_most_the_last_flush_interval(gate, tmp_path, seed):
    gate.set_mode(REFUSE)
    path = str(tmp_path / "spool.db")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    child = subprocess.Popen([sys.executable, "-c", CHILD, gate.url, path],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    admitted: List[tuple] = []  # (time the parent read it, uuid)
    reader = threading.Thread(target=_read_lines, args=(child, admitted), daemon=True)
    reader.start()
    # The kill lands at a seeded point of the burst, counted in admitted events.
    kill_at = random.Random(seed).randint(14_000, 24_000)
    assert wait_until(lambda: len(admitted) >= kill_at, timeout=60), child.stderr.read()
    killed_at = time.monotonic()
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    reader.join(5)
    assert child.returncode == -signal.SIGKILL
    assert len(admitted) > 1000, "the child did not get far enough into its burst"
    on_disk = uuids_on_disk(path)
    # Admitted more than flush_interval (plus scheduling slack) before the kill: on disk.
    settled = {u for when, u in admitted if when < killed_at - 1.0}
    assert settled, "nothing was admitted early enough to check"
    lost = settled - on_disk
    assert not lost, f"{len(lost)} of {len(settled)} settled events were lost"


def _read_lines(child: subprocess.Popen, sink: List[tuple]) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        sink.append((time.monotonic(), line.strip()))


# --- a full disk ----------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory, leave: int = 0) -> None:
    """Fill the filesystem under directory, leaving about `leave` bytes free."""
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize - leave
    with open(os.path.join(directory, "filler"), "wb") as handle:
        try:
            handle.write(b"\0" * max(0, free))
        except OSError:
            pass


@pytest.mark.parametrize("sync_mode", [False, True], ids=["background", "sync_mode"])
def test_a_full_disk_falls_back_to_sending_from_memory(small_disk, live_server, caplog,
                                                       sync_mode):
    path = str(small_disk / "spool.db")
    client = productos.Client("phc_full", host=live_server.url, spool_path=path,
                              sync_mode=sync_mode, **FAST)
    try:
        first = client.capture("before full", distinct_id="u", properties={"pad": "x" * 100})
        assert client.flush(10)
        fill(small_disk)
        caplog.set_level(logging.WARNING, logger="productos")
        uuids = [client.capture("on a full disk", distinct_id="u",
                                properties={"i": i, "pad": "y" * 2_000})
                 for i in range(300)]
        assert None not in uuids  # nothing raised, every event admitted
        assert client.flush(10)
        assert wait_until(lambda: client.stats()["sent"] == 301), client.stats()
        stats = client.stats()
        assert stats["dropped_total"] == 0 and stats["spooled"] == 0, stats
        assert balanced(stats)
    finally:
        client.shutdown(5)
    assert set(live_server.uuids()) == {first, *uuids}
    full = [r for r in caplog.records if "disk is full" in r.getMessage()]
    assert len(full) == 1, [r.getMessage() for r in caplog.records]
    assert "cannot write to the spool" in full[0].getMessage()
    assert not any(r.exc_info for r in caplog.records), "a traceback hid the cause"
