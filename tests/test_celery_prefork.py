"""A real Celery worker with the prefork pool: events captured in tasks reach the server.

Pool processes are recycled after each task (``--max-tasks-per-child=1``) and end with
``os._exit()``, which skips atexit hooks; ``setup_celery()`` drains before that happens.
The broker is kombu's filesystem transport, so no broker server is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from support import wait_until  # type: ignore

pytest.importorskip("celery")


def _ended(pid: int) -> bool:
    """True when process pid is gone (or a zombie, which has run its exit already)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

TASKS = """
import os
from celery import Celery
import productos
from productos.integrations.celery import setup_celery

BROKER_DIR = os.environ["BROKER_DIR"]
app = Celery("tasks", broker="filesystem://", backend=None)
app.conf.broker_transport_options = {
    "data_folder_in": BROKER_DIR, "data_folder_out": BROKER_DIR,
    "processed_folder": os.path.join(BROKER_DIR, "processed"), "store_processed": False,
}
app.conf.worker_hijack_root_logger = False

client = productos.Client("phc_celery", host=os.environ["SINK_URL"], flush_interval=30,
                          flush_at=100_000)
if os.environ.get("WITH_SETUP") == "1":
    setup_celery(timeout=5)


@app.task
def work(n):
    client.capture("task ran", distinct_id=f"task-{n}", properties={"pid": os.getpid()})
    with open(os.path.join(os.environ["MARK_DIR"], f"ran-{n}"), "w") as mark:
        mark.write(str(os.getpid()))
    return n
"""


@pytest.mark.parametrize("with_setup", [True, False], ids=["setup_celery", "without"])
def test_prefork_children_deliver_their_events(live_server, tmp_path, with_setup):
    broker = tmp_path / "broker"
    (broker / "processed").mkdir(parents=True)
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "tasks.py").write_text(TASKS)
    env = {**os.environ, "BROKER_DIR": str(broker), "MARK_DIR": str(marks),
           "SINK_URL": live_server.url,
           "WITH_SETUP": "1" if with_setup else "0",
           "PYTHONPATH": os.pathsep.join([str(tmp_path), os.getcwd(), *sys.path])}
    send = textwrap.dedent("""
        from tasks import work
        for n in range(6):
            work.delay(n)
    """)
    subprocess.run([sys.executable, "-c", send], env=env, check=True, timeout=60,
                   cwd=tmp_path)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=prefork",
         "--concurrency=2", "--max-tasks-per-child=1", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # Every task ran, and every pool process that ran one has ended (recycled after its
        # one task): whatever those processes were going to send is sent by now.
        assert wait_until(lambda: len(list(marks.glob("ran-*"))) == 6, timeout=60)
        pids = {int(mark.read_text()) for mark in marks.glob("ran-*")}
        assert wait_until(lambda: all(_ended(pid) for pid in pids), timeout=30)
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=60)
    ran = [e for e in live_server.events if e["event"] == "task ran"]
    if with_setup:
        assert len(ran) == 6, output[-2000:]
    else:
        # Documents the problem setup_celery solves: recycled children lose their events.
        assert len(ran) < 6
