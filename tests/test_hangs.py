"""Nothing hangs: flush racing shutdown, flush/join/shutdown from callbacks, fork mid-capture."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Dict, List

import pytest

import productos

try:
    from tests.server import Respond
    from tests.support import wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from server import Respond  # type: ignore
    from support import wait_until  # type: ignore

FAST = {"retry_base_delay": 0.02, "retry_max_delay": 0.1, "max_retries": 1}


def finishes(target, timeout: float = 10.0) -> bool:
    """Run target on a thread; return True if it returned within timeout."""
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    return not thread.is_alive()


@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
def test_join_racing_shutdown_returns(live_server, tmp_path, spool):
    # A slow endpoint keeps the worker in its last round while join() asks for a new one.
    live_server.set_delay(0.3)
    options: Dict[str, Any] = dict(FAST)
    if spool:
        options["spool_path"] = str(tmp_path / "spool.db")
    for round_ in range(3):
        client = productos.Client("phc_race", host=live_server.url, **options)
        sent_before = len(live_server.requests_for("/batch/"))
        for i in range(20):
            client.capture("race", distinct_id=str(i))
        stopper = threading.Thread(target=client.shutdown, args=(5,), daemon=True)
        stopper.start()
        # shutdown's last round is now on the wire (the server holds it for 0.3 s)
        assert live_server.wait_for_requests(sent_before + 1, path="/batch/", timeout=10)
        assert finishes(client.join), f"join() hung after shutdown (round {round_})"
        stopper.join(10)
        assert not stopper.is_alive()
    assert live_server.wait_for_events(60, timeout=10)


@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
@pytest.mark.parametrize("call", ["flush", "join", "shutdown"])
@pytest.mark.parametrize("hook", ["on_error", "on_drop"])
def test_flush_join_shutdown_from_a_callback_return_at_once(live_server, tmp_path, spool,
                                                           call, hook):
    returned = threading.Event()
    results: List[Any] = []
    holder: Dict[str, productos.Client] = {}

    def callback(*args: Any) -> None:
        if returned.is_set():
            return
        results.append(getattr(holder["client"], call)())
        returned.set()

    options: Dict[str, Any] = {**FAST, hook: callback}
    if spool:
        options["spool_path"] = str(tmp_path / "spool.db")
    live_server.enqueue(Respond(400))  # a final refusal: the callbacks run on the sender
    client = productos.Client("phc_cb", host=live_server.url, **options)
    holder["client"] = client
    try:
        client.capture("refused", distinct_id="u")
        assert returned.wait(10), f"{call}() from {hook} blocked the delivery thread"
        assert results and results[0] in (False, None)
        if call != "shutdown":
            # The delivery thread is alive and well: later events still go out.
            client.capture("after", distinct_id="u")
            assert client.flush(10)
            assert "after" in [e["event"] for e in live_server.events]
    finally:
        client.shutdown(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_children_forked_while_threads_capture_never_deadlock(live_server):
    # A tiny buffer makes every capture a drop, so the app threads hold the stats and
    # drop-log locks most of the time; a child forked then must not inherit them held.
    client = productos.Client("phc_fork", host=live_server.url, max_queue_size=1,
                              flush_interval=30, flush_at=10_000, on_drop=lambda *a: None)
    stop = threading.Event()

    calls = [0]

    def hammer() -> None:
        while not stop.is_set():
            client.capture("busy", distinct_id="t")
            calls[0] += 1

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    hung = 0
    forks = 0
    try:
        for _ in range(25):
            # Fork only while the app threads are busy capturing (and holding locks).
            assert wait_until(lambda mark=calls[0]: calls[0] > mark + 20, timeout=10)
            pid = os.fork()
            if pid == 0:  # the child: drop, count, read the books, then leave
                try:
                    signal.alarm(5)  # a deadlocked child dies by SIGALRM instead of hanging
                    for _ in range(5):
                        client.capture("child", distinct_id="c")
                    stats = client.stats()
                    os._exit(0 if stats["captured"] == 5 else 3)
                except BaseException:
                    os._exit(4)
            forks += 1
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGALRM:
                hung += 1
            else:
                assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        client.shutdown(1)
    assert forks == 25
    assert hung == 0, f"{hung} of {forks} children deadlocked"
