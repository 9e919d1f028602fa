"""The directory cache: the workers of one host share one file (real gunicorn workers)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

import productos

try:
    from tests.fleet import definitions, definitions_server, flag
    from tests.support import wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from fleet import definitions, definitions_server, flag  # type: ignore
    from support import wait_until  # type: ignore

SECRET = "phx_dir_cache_secret"
INTERVAL = 0.5
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def server():
    with definitions_server(SECRET) as live:
        yield live


def test_clients_share_a_directory(server, tmp_path):
    clients = [productos.Client("phc_dir", host=server.url, personal_api_key=SECRET,
                                send=False, poll_interval=INTERVAL,
                                flag_definitions_cache=str(tmp_path / "cache"))
               for _ in range(3)]
    try:
        assert wait_until(lambda: all(c.feature_flag_definitions() for c in clients), 10)
        assert sorted(c.flag_definitions_status().source for c in clients) == [
            "follower", "follower", "holder"]
        server.set_definitions(definitions(flag("gamma", 100)))
        assert wait_until(lambda: all(
            c.get_feature_flag("gamma", "p", only_evaluate_locally=True) is True
            for c in clients), 2 * INTERVAL + 2)
        holder = next(c for c in clients if c.flag_definitions_status().source == "holder")
        holder.shutdown()  # gives the lock up: another client takes over
        rest = [c for c in clients if c is not holder]
        assert wait_until(lambda: any(c.flag_definitions_status().source == "holder"
                                      for c in rest), 2 * INTERVAL + 2)
    finally:
        for c in clients:
            c.shutdown()
    files = list((tmp_path / "cache").iterdir())
    assert files and all(SECRET.encode() not in f.read_bytes() for f in files)


def test_a_corrupt_file_is_ignored(server, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = productos.Client("phc_dir", host=server.url, personal_api_key=SECRET, send=False,
                             poll_interval=INTERVAL, flag_definitions_cache=str(cache))
    second = productos.Client("phc_dir", host=server.url, personal_api_key=SECRET, send=False,
                              poll_interval=INTERVAL, flag_definitions_cache=str(cache))
    try:
        assert wait_until(lambda: first.feature_flag_definitions() is not None
                          and second.feature_flag_definitions() is not None, 10)
        (document,) = cache.glob("*.json")
        document.write_bytes(b'{"version": "bad"}\n{{{ not json')
        # The holder writes the good document again; nobody loses its flags meanwhile.
        assert wait_until(lambda: b'"bad"' not in document.read_bytes(), 2 * INTERVAL + 3)
        assert first.get_feature_flag("beta", "p", only_evaluate_locally=True) is True
        assert second.get_feature_flag("beta", "p", only_evaluate_locally=True) is True
    finally:
        first.shutdown()
        second.shutdown()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_gunicorn_workers_share_one_poller(server, tmp_path):
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
               FLEET_HOST=server.url, FLEET_SECRET=SECRET, FLEET_INTERVAL=str(INTERVAL),
               FLEET_CACHE=str(tmp_path / "cache"))
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "4", "--bind", f"127.0.0.1:{port}",
         "--chdir", os.path.join(ROOT, "tests", "apps"), "flag_cache_wsgi:app"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    seen = {}

    def ask():
        try:
            answer = requests.get(url, timeout=2).json()
        except requests.RequestException:
            return
        seen[answer["pid"]] = answer

    try:
        assert wait_until(lambda: ask() or (len(seen) == 4 and all(
            a["values"]["p0"] for a in seen.values())), 40), seen
        sources = sorted(a["source"] for a in seen.values())
        assert sources.count("holder") == 1, sources
        assert len({str(a["values"]) for a in seen.values()}) == 1
        start = time.monotonic()
        time.sleep(6 * INTERVAL)
        made = [r for r in server.requests_for("/flags/definitions")
                if r.received_at >= start]
        assert len(made) <= 8, len(made)  # about one per interval, not four
        server.set_definitions(definitions(flag("gamma", 100)))
        seen.clear()
        assert wait_until(lambda: ask() or (len(seen) == 4 and all(
            set(a["values"]["p0"]) == {"gamma"} for a in seen.values())), 20), seen
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        process.stderr.close()
    files = list((tmp_path / "cache").iterdir())
    assert files and all(SECRET.encode() not in f.read_bytes() for f in files)
