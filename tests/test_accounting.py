"""The books balance in every case: earlier runs' rows, forks, after shutdown, sync mode.

``captured == sent + queued + in_flight + spooled + dropped_total + filtered`` counts this
run's events only; what earlier runs left in the spool is reported apart.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List

import pytest

import productos

try:
    from tests.support import balanced
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from support import balanced  # type: ignore

try:
    from tests.server import Respond
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from server import Respond  # type: ignore

FAST = {"retry_base_delay": 0.02, "retry_max_delay": 0.1, "max_retries": 1}



def leave_rows(live_server, path: str, count: int, pad: int = 0) -> None:
    """Run a client against a down endpoint and shut it down with `count` rows on disk."""
    live_server.set_down(True)
    first = productos.Client("phc_books", host=live_server.url, spool_path=path, **FAST)
    for i in range(count):
        first.capture("earlier", distinct_id=str(i), properties={"pad": "x" * pad})
    first.shutdown(1)
    assert first.stats()["spooled"] == count
    live_server.set_down(False)


def test_earlier_rows_the_server_refuses_are_not_this_runs_drops(live_server, tmp_path):
    path = str(tmp_path / "spool.db")
    leave_rows(live_server, path, 50)
    live_server.enqueue(*[Respond(400)] * 10)
    client = productos.Client("phc_books", host=live_server.url, spool_path=path,
                              max_batch_size=10, **FAST)
    try:
        for i in range(5):
            client.capture("now", distinct_id=str(i))
        client.flush(10)
        stats = client.stats()
    finally:
        client.shutdown(5)
    assert stats["captured"] == 5
    assert stats["dropped"] == {"rejected": 5}
    assert stats["earlier_runs_dropped"] == {"rejected": 50}
    assert stats["spool_from_earlier_runs"] == 0
    assert balanced(stats), stats


def test_evicted_earlier_rows_are_reported_apart(live_server, tmp_path):
    path = str(tmp_path / "spool.db")
    leave_rows(live_server, path, 40, pad=500)
    live_server.set_down(True)
    client = productos.Client("phc_books", host=live_server.url, spool_path=path,
                              spool_max_bytes=30_000, **FAST)
    try:
        for i in range(20):
            client.capture("now", distinct_id=str(i), properties={"pad": "y" * 500})
        client.flush(5)
        stats = client.stats()
    finally:
        client.shutdown(1)
    assert stats["captured"] == 20
    assert stats["earlier_runs_dropped"].get("spool_full", 0) > 0
    assert stats["dropped"].get("spool_full", 0) == 0  # the oldest were the earlier run's
    assert stats["spooled"] == 20
    assert balanced(stats), stats


def test_spooled_rows_still_count_after_shutdown(live_server, tmp_path):
    live_server.set_down(True)
    client = productos.Client("phc_books", host=live_server.url,
                              spool_path=str(tmp_path / "spool.db"), **FAST)
    for i in range(30):
        client.capture("kept", distinct_id=str(i))
    client.shutdown(1)
    stats = client.stats()
    assert stats["spooled"] == 30 and stats["dropped_total"] == 0
    assert balanced(stats), stats


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
def test_a_forked_child_starts_its_own_books(live_server, tmp_path, spool):
    options: Dict[str, Any] = dict(FAST)
    if spool:
        options["spool_path"] = str(tmp_path / "spool.db")
    live_server.enqueue(Respond(400))
    client = productos.Client("phc_books", host=live_server.url, **options)
    try:
        client.capture("parent refused", distinct_id="p")
        client.flush(10)
        for i in range(10):
            client.capture("parent", distinct_id=str(i))
        assert client.flush(10)
        parent = client.stats()
        assert parent["sent"] == 10 and parent["dropped_total"] == 1
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                for i in range(3):
                    client.capture("child", distinct_id=str(i))
                client.flush(10)
                os.write(write, json.dumps(client.stats()).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            child = json.loads(pipe.read())
        os.waitpid(pid, 0)
    finally:
        client.shutdown(5)
    assert child["captured"] == 3 and child["sent"] == 3, child
    assert child["dropped_total"] == 0 and balanced(child), child


def test_sync_mode_counts_what_it_captured(tmp_path):
    client = productos.Client("phc_books", host="http://127.0.0.1:9", sync_mode=True,
                              max_retries=0)
    try:
        client.capture("unreachable", distinct_id="u")
        stats = client.stats()
    finally:
        client.shutdown(1)
    assert stats["captured"] == 1 and stats["dropped_total"] == 1
    assert balanced(stats), stats


def test_drop_reasons_are_an_enum_whose_values_stay_the_plain_strings():
    from productos.consumer import DropReason
    from productos.testing import RecordingSender

    reasons: List[Any] = []
    client = productos.Client("phc_books", sender=RecordingSender(), max_queue_size=1,
                              flush_at=1000, flush_interval=30,
                              on_drop=lambda event, reason: reasons.append(reason))
    try:
        for i in range(3):
            client.capture("burst", distinct_id=str(i))
        stats = client.stats()
    finally:
        client.shutdown(5)
    assert reasons == ["queue_full", "queue_full"]
    assert all(reason is DropReason.QUEUE_FULL for reason in reasons)
    assert [f"{reason}" for reason in reasons] == ["queue_full", "queue_full"]
    # stats() is plain data: the keys are str, as before the enum existed
    assert stats["dropped"] == {"queue_full": 2}
    assert [type(key) for key in stats["dropped"]] == [str]
    assert {reason.value for reason in DropReason} >= {
        "invalid", "unserializable", "too_large", "queue_full", "after_shutdown", "rejected",
        "retries_exhausted", "deadline_exceeded", "shutdown_timeout", "cancelled",
        "send_disabled", "spool_full", "internal_error"}
