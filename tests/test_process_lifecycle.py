"""Processes end in many ways; queued events survive them (real subprocesses, real server)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest

import productos
from productos._runtime import lifecycle

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from support import wait_until  # type: ignore


def python_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}


def start(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=python_env())


def wait_for_line(proc: subprocess.Popen, expected: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == expected:
            return
        if not line and proc.poll() is not None:
            break
    raise AssertionError(f"never printed {expected!r}; stderr: {proc.stderr.read()}")


@pytest.mark.skipif(not hasattr(signal, "SIGTERM"), reason="needs SIGTERM")
def test_sigterm_with_the_helper_drains_then_dies_by_the_signal(live_server):
    live_server.set_delay(0.2)  # a slow endpoint: events are still queued when SIGTERM lands
    proc = start(f"""
        import time, productos
        client = productos.Client("phc_sig", host={live_server.url!r}, flush_interval=30,
                                  flush_at=100_000, max_queue_size=100_000)
        productos.install_sigterm_handler(timeout=10)
        for i in range(2_000):
            client.capture("before sigterm", distinct_id=str(i))
        print("ready", flush=True)
        time.sleep(60)
    """)
    wait_for_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    assert proc.returncode == -signal.SIGTERM  # the default action still happened
    assert len(set(live_server.uuids())) == 2_000


def test_sigterm_chains_to_the_previous_handler(live_server):
    proc = start(f"""
        import signal, sys, time, productos
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, previous)
        client = productos.Client("phc_sig", host={live_server.url!r}, flush_interval=30)
        productos.install_sigterm_handler(timeout=5)
        client.capture("chained", distinct_id="u")
        print("ready", flush=True)
        time.sleep(60)
    """)
    wait_for_line(proc, "ready")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 3 and "previous handler ran" in out
    assert [e["event"] for e in live_server.events] == ["chained"]


APP = """
import os
import productos

client = productos.Client("phc_gunicorn", host=os.environ["SINK_URL"], flush_interval=30,
                          flush_at=100_000)
client.capture("app loaded", distinct_id=f"pid-{os.getpid()}")


def app(environ, start_response):
    client.capture("request", distinct_id=f"pid-{os.getpid()}",
                   properties={"path": environ["PATH_INFO"]})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_fifty_requests_then_sigterm(command, port: int, cwd, sink_url: str) -> str:
    """Start a WSGI server, make 50 requests, send it SIGTERM; return what it printed."""
    import requests

    env = {**python_env(), "SINK_URL": sink_url}
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}/hello"

        def answers() -> bool:
            try:
                requests.get(url, timeout=2)
            except requests.ConnectionError:
                return False
            return True

        assert wait_until(answers, timeout=30), f"{command[0]} did not start"
        for _ in range(49):
            assert requests.get(url, timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
    return output


@pytest.mark.skipif(shutil.which("gunicorn") is None and
                    not os.path.exists(os.path.join(os.path.dirname(sys.executable), "gunicorn")),
                    reason="gunicorn is not installed")
@pytest.mark.parametrize("worker_class, preload", [
    ("sync", False), ("sync", True), ("gthread", False), ("gthread", True),
])
def test_gunicorn_workers_deliver_their_events_on_sigterm(live_server, tmp_path,
                                                          worker_class, preload):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
               "--workers", "2", "--worker-class", worker_class, "--graceful-timeout", "10",
               "--chdir", str(tmp_path), "app:app"]
    if preload:
        command.insert(3, "--preload")
    serve_fifty_requests_then_sigterm(command, port, tmp_path, live_server.url)
    requests_seen = [e for e in live_server.events if e["event"] == "request"]
    assert len(requests_seen) == 50
    uuids = live_server.uuids()
    assert len(uuids) == len(set(uuids))  # a preloaded parent's queue is never sent twice
    loaded = [e for e in live_server.events if e["event"] == "app loaded"]
    assert len(loaded) == (1 if preload else 2)


def _uwsgi() -> str:
    found = shutil.which("uwsgi") or os.path.join(os.path.dirname(sys.executable), "uwsgi")
    return found if os.path.exists(found) else ""


@pytest.mark.skipif(not _uwsgi(), reason="uWSGI is not installed (.ci/run tries to build it)")
@pytest.mark.parametrize("lazy_apps", [False, True], ids=["preforked-app", "lazy-apps"])
def test_uwsgi_workers_deliver_their_events_on_sigterm(live_server, tmp_path, lazy_apps):
    (tmp_path / "app.py").write_text(APP)
    port = free_port()
    # uWSGI forks in C and runs no Python at-fork hooks by default: without --lazy-apps the
    # workers inherit a client whose thread does not exist in them. productos notices the
    # new process id on the next call and starts fresh.
    command = [_uwsgi(), "--http-socket", f"127.0.0.1:{port}", "--wsgi-file", "app.py",
               "--callable", "app", "--master", "--processes", "2", "--die-on-term",
               "--enable-threads", "--need-app", "--disable-logging"]
    if lazy_apps:
        command.append("--lazy-apps")
    output = serve_fifty_requests_then_sigterm(command, port, tmp_path, live_server.url)
    requests_seen = [e for e in live_server.events if e["event"] == "request"]
    assert len(requests_seen) == 50, output[-2000:]
    uuids = live_server.uuids()
    assert len(uuids) == len(set(uuids))


# --------------------------------------------------------------------------- drain_all


class _BrokenClient:
    """A Drainable whose flush fails: drain_all must log it and go on to the others."""

    disabled = True
    options = types.SimpleNamespace(shutdown_timeout=1.0)

    def flush(self, timeout=None):
        raise RuntimeError("flush broke")

    def shutdown(self, timeout=None):
        return True

    def stats(self):
        return {"queued": 0, "in_flight": 0}

    def reset_after_fork(self):
        pass


def test_drain_all_flushes_every_live_client_and_leaves_them_usable(live_server):
    clients = [productos.Client("phc_drain", host=live_server.url, flush_interval=60,
                                flush_at=100_000) for _ in range(2)]
    try:
        for n, client in enumerate(clients):
            for i in range(5):
                client.capture("queued", distinct_id=f"c{n}-{i}")
        assert live_server.events == []  # nothing goes out on its own within the test
        assert productos.drain_all(10) is True
        assert len(live_server.events) == 10
        assert all(c.stats()["queued"] == 0 for c in clients)
        clients[0].capture("after the drain", distinct_id="u")  # flushed, not shut down
        assert clients[0].flush(10)
        assert live_server.events[-1]["event"] == "after the drain"
    finally:
        for client in clients:
            client.shutdown(5)


def test_drain_all_goes_on_past_a_client_that_fails(live_server, internal_errors):
    broken = _BrokenClient()
    lifecycle.track(broken)
    client = productos.Client("phc_drain", host=live_server.url, flush_interval=60,
                              flush_at=100_000)
    try:
        client.capture("queued", distinct_id="u")
        assert productos.drain_all(10) is False  # one client did not settle
        assert [e["event"] for e in live_server.events] == ["queued"]
        assert [str(e) for e in internal_errors] == ["flush broke"]  # logged, not raised
        internal_errors.clear()
    finally:
        lifecycle.untrack(broken)
        client.shutdown(5)


def test_drain_all_says_when_time_ran_out(live_server):
    live_server.set_delay(3)
    client = productos.Client("phc_drain", host=live_server.url, flush_interval=60,
                              flush_at=100_000, max_retries=0)
    try:
        client.capture("slow", distinct_id="u")
        assert productos.drain_all(0.3) is False
    finally:
        live_server.set_delay(0)
        client.shutdown(10)


def test_drain_all_takes_a_bad_timeout_without_raising(live_server, caplog):
    client = productos.Client("phc_drain", host=live_server.url, flush_interval=60,
                              flush_at=100_000)
    try:
        client.capture("queued", distinct_id="u")
        with caplog.at_level("WARNING", logger="productos"):
            assert productos.drain_all("soon") is True  # type: ignore[arg-type]
        assert "drain_all(timeout='soon')" in caplog.text
        assert [e["event"] for e in live_server.events] == ["queued"]
    finally:
        client.shutdown(5)
