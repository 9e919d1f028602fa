"""SIGTERM under real ASGI servers and plain scripts: every queued event still arrives.

Each test starts a real server (or script) from tests/apps/ on 127.0.0.1, makes it capture
events it keeps queued, sends SIGTERM the way a deploy does, and checks at the loopback
collector that every event the app reported (by uuid) arrived, with no extra code in the app.
Some servers re-raise SIGTERM with the default action after their graceful shutdown (uvicorn,
gunicorn's uvicorn workers), which skips ``atexit``; see productos/signals.py.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
import requests

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from support import wait_until  # type: ignore

APPS = Path(__file__).parent / "apps"
REPO = Path(__file__).parent.parent

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name != "posix",
                                reason="needs POSIX signals")


def needs(*modules: str) -> pytest.MarkDecorator:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def app_env(sink_url: str, **extra: str) -> Dict[str, str]:
    path = os.pathsep.join([str(APPS), str(REPO), *sys.path])
    env = {**os.environ, "SINK_URL": sink_url, "PYTHONPATH": path}
    env.pop("PRODUCTOS_DRAIN_ON_SIGTERM", None)
    return {**env, **extra}


def uvicorn_worker_class() -> Optional[str]:
    """uvicorn's own gunicorn worker, or the uvicorn-worker package that replaces it."""
    for module, name in (("uvicorn_worker", "uvicorn_worker.UvicornWorker"),
                         ("uvicorn.workers", "uvicorn.workers.UvicornWorker")):
        try:
            if importlib.util.find_spec(module) is not None:
                return name
        except ImportError:  # the parent package is missing
            continue
    return None


@dataclass
class Served:
    """What one serve-then-SIGTERM run saw."""

    uuids: List[str] = field(default_factory=list)  # reported by the app, in responses
    returncode: Optional[int] = None
    output: str = ""


def serve_then_sigterm(command: Sequence[str], env: Dict[str, str], port: int, tmp_path: Path,
                       paths: Sequence[str], *, in_flight: bool = False,
                       to_group: bool = False) -> Served:
    """Start a server, capture one event per path, SIGTERM it, wait for it to end.

    in_flight: a request to /slow/ is still running when SIGTERM is sent; its event is
    captured during the server's graceful shutdown. to_group: SIGTERM goes to every process
    of the server at once (systemd's default KillMode, a terminal's process group).
    """
    marker = tmp_path / "slow-started"
    env = {**env, "SLOW_MARKER": str(marker)}
    proc = subprocess.Popen(list(command), cwd=APPS, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    served = Served()
    slow: List[str] = []
    slow_thread: Optional[threading.Thread] = None
    base = f"http://127.0.0.1:{port}"
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{command} ended: {proc.communicate()[0][-3000:]}")
            try:
                return requests.get(f"{base}/ping/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        if not wait_until(answers, timeout=40):
            proc.kill()
            raise AssertionError(f"{command} did not start: {proc.communicate()[0][-3000:]}")
        for path in paths:
            answer = requests.get(f"{base}{path}", timeout=10)
            assert answer.status_code == 200, answer.text[:500]
            served.uuids.append(answer.json()["uuid"])
        if in_flight:
            def slow_request() -> None:
                answer = requests.get(f"{base}/slow/", timeout=30)
                slow.append(answer.json()["uuid"])

            slow_thread = threading.Thread(target=slow_request, daemon=True)
            slow_thread.start()
            assert wait_until(marker.exists, timeout=20), "the slow request never started"
    finally:
        if proc.poll() is None:
            if to_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
        try:
            served.output = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            served.output = proc.communicate()[0]
            raise AssertionError(
                f"{command} did not stop on SIGTERM: {served.output[-3000:]}") from None
        served.returncode = proc.returncode
    if slow_thread is not None:
        slow_thread.join(30)
        assert slow, f"the in-flight request failed: {served.output[-3000:]}"
        served.uuids.extend(slow)
    return served


def assert_all_arrived(live_server, served: Served) -> None:
    assert served.uuids and all(served.uuids), served.output[-3000:]
    live_server.wait_for_events(len(served.uuids), timeout=10)
    arrived = set(live_server.uuids())
    missing = [u for u in served.uuids if u not in arrived]
    assert not missing, (f"{len(missing)} of {len(served.uuids)} events lost; "
                         f"exit {served.returncode}; output: {served.output[-3000:]}")


DJANGO_PATHS = ["/sync/", "/async/"] * 3 + ["/async/"]  # 7 events, as in the report
PLAIN_PATHS = ["/a/", "/b/", "/c/", "/d/", "/e/", "/f/", "/g/"]
DJANGO = "django_site.asgi:application"
PLAIN = "asgi_plain:app"


# --- uvicorn --------------------------------------------------------------------------------


@pytest.mark.slow
@needs("uvicorn", "django")
@pytest.mark.parametrize("target, paths", [(DJANGO, DJANGO_PATHS), (PLAIN, PLAIN_PATHS)],
                         ids=["django", "plain-asgi"])
def test_uvicorn_drains_on_sigterm(live_server, tmp_path, target, paths):
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               target]
    served = serve_then_sigterm(command, app_env(live_server.url), port, tmp_path, paths,
                                in_flight=True)
    assert_all_arrived(live_server, served)
    assert served.returncode == -signal.SIGTERM  # uvicorn still ends by the signal


@pytest.mark.slow
@needs("uvicorn", "django")
def test_uvicorn_worker_processes_drain_on_sigterm(live_server, tmp_path):
    # Each worker imports the app after uvicorn installed its handlers: the drain must catch
    # uvicorn's re-raise with the default action, including the in-flight request's event.
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--workers", "2", DJANGO]
    served = serve_then_sigterm(command, app_env(live_server.url), port, tmp_path,
                                DJANGO_PATHS, in_flight=True)
    assert_all_arrived(live_server, served)


@pytest.mark.slow
@needs("uvicorn")
def test_python_app_py_that_runs_uvicorn_drains_on_sigterm(live_server, tmp_path):
    port = free_port()
    command = [sys.executable, "serve_with_uvicorn.py"]
    served = serve_then_sigterm(command, app_env(live_server.url, PORT=str(port)), port,
                                tmp_path, PLAIN_PATHS, in_flight=True)
    assert_all_arrived(live_server, served)


# --- gunicorn with uvicorn workers ---------------------------------------------------------


@pytest.mark.slow
@needs("gunicorn", "uvicorn", "django")
@pytest.mark.skipif(uvicorn_worker_class() is None, reason="no uvicorn worker for gunicorn")
@pytest.mark.parametrize("preload", [False, True], ids=["app-per-worker", "preload"])
def test_gunicorn_uvicorn_workers_drain_on_sigterm(live_server, tmp_path, preload):
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
               "--workers", "2", "--worker-class", str(uvicorn_worker_class()),
               "--graceful-timeout", "20", DJANGO]
    if preload:
        command.insert(3, "--preload")
    served = serve_then_sigterm(command, app_env(live_server.url), port, tmp_path,
                                DJANGO_PATHS, in_flight=True)
    assert_all_arrived(live_server, served)


# --- hypercorn and daphne -------------------------------------------------------------------


@pytest.mark.slow
@needs("hypercorn", "django")
@pytest.mark.parametrize("target, paths", [(DJANGO, DJANGO_PATHS), (PLAIN, PLAIN_PATHS)],
                         ids=["django", "plain-asgi"])
def test_hypercorn_drains_when_every_process_gets_sigterm(live_server, tmp_path, target,
                                                          paths):
    # hypercorn serves from a spawned worker process that leaves SIGTERM at its default:
    # SIGTERM sent to the whole group (systemd's default) ends it before any exit hook.
    port = free_port()
    command = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", target]
    served = serve_then_sigterm(command, app_env(live_server.url), port, tmp_path, paths,
                                to_group=True)
    assert_all_arrived(live_server, served)


@pytest.mark.slow
@needs("hypercorn")
def test_hypercorn_drains_on_sigterm_to_its_parent(live_server, tmp_path):
    # The parent tells its worker to stop; the worker then exits normally (exit hooks run).
    port = free_port()
    command = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", PLAIN]
    served = serve_then_sigterm(command, app_env(live_server.url), port, tmp_path,
                                PLAIN_PATHS, in_flight=True)
    assert_all_arrived(live_server, served)


@pytest.mark.slow
@needs("daphne", "django")
@pytest.mark.parametrize("to_group", [False, True], ids=["server", "group"])
def test_daphne_drains_on_sigterm(live_server, tmp_path, to_group):
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), DJANGO]
    served = serve_then_sigterm(command, app_env(live_server.url), port, tmp_path,
                                DJANGO_PATHS, to_group=to_group)
    assert_all_arrived(live_server, served)


# --- plain scripts -----------------------------------------------------------------------------


def start_script(sink_url: str, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "plain_script.py", *args], cwd=APPS,
                            env=app_env(sink_url, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def read_until_ready(proc: subprocess.Popen, timeout: float = 30) -> List[str]:
    """The uuids the script printed before 'ready'."""
    assert proc.stdout is not None
    lines: List[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline().strip()
        if line == "ready":
            return lines
        if not line and proc.poll() is not None:
            break
        lines.append(line)
    proc.kill()
    raise AssertionError(f"the script never got ready: {proc.communicate()[1][-3000:]}")


@pytest.mark.slow
def test_plain_script_drains_on_sigterm_and_still_dies_by_it(live_server):
    proc = start_script(live_server.url, "25")
    uuids = read_until_ready(proc)
    assert len(uuids) == 25
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    live_server.wait_for_events(25, timeout=10)
    assert set(uuids) <= set(live_server.uuids()), err[-3000:]
    assert "not delivered" not in err


@pytest.mark.slow
def test_one_line_says_how_many_events_a_timed_out_drain_left(live_server):
    live_server.set_delay(30)  # the endpoint hangs: the drain cannot finish
    proc = start_script(live_server.url, "12", DRAIN="0.5")
    read_until_ready(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    lines = [line for line in err.splitlines() if "productos:" in line]
    assert [line for line in lines if "not delivered" in line] == [
        "productos: 12 event(s) not delivered at exit (SIGTERM): the drain ran out of time"
    ], err[-3000:]
    assert not [line for line in lines if "shutdown timed out" in line]


def run_snippet(code: str, sink_url: str, timeout: float = 30,
                **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=APPS, env=app_env(sink_url, **env),
                          capture_output=True, text=True, timeout=timeout)


def test_the_handler_respects_ignored_sigterm_threads_and_the_off_switch(live_server):
    code = f"""if True:
        import signal, threading, productos, productos.signals as ps
        def made(**kw):
            return productos.Client("phc_x", host={live_server.url!r}, **kw)
        made()
        print("default:", type(signal.getsignal(signal.SIGTERM)).__name__)
        print("sigint:", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        ps.drain_on_sigterm(False)
        print("off:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        made()
        print("still off:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        ps.drain_on_sigterm(True)
        print("on again:", type(signal.getsignal(signal.SIGTERM)).__name__)
        ps.drain_on_sigterm(False)
        ps._auto = True
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        made()
        print("ignored stays:", signal.getsignal(signal.SIGTERM) == signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        thread = threading.Thread(target=made)
        thread.start(); thread.join()
        print("thread:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
        made(disabled=True)
        print("disabled:", signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    """
    result = run_snippet(code, live_server.url)
    assert result.stdout.splitlines() == [
        "default: _DrainThenChain", "sigint: True", "off: True", "still off: True",
        "on again: _DrainThenChain", "ignored stays: True", "thread: True", "disabled: True",
    ], result.stderr[-3000:]


def test_the_environment_switch_turns_the_handler_off(live_server):
    code = f"""if True:
        import signal, productos
        productos.Client("phc_x", host={live_server.url!r})
        print(signal.getsignal(signal.SIGTERM) == signal.SIG_DFL)
    """
    result = run_snippet(code, live_server.url, PRODUCTOS_DRAIN_ON_SIGTERM="0")
    assert result.stdout.split() == ["True"], result.stderr[-3000:]


def test_a_handler_the_app_installed_first_still_runs_after_the_drain(live_server):
    code = f"""if True:
        import os, signal, sys, time, productos
        def previous(signum, frame):
            print("previous handler ran", flush=True)
            sys.exit(7)
        signal.signal(signal.SIGTERM, previous)
        client = productos.Client("phc_x", host={live_server.url!r}, flush_interval=60,
                                  flush_at=100_000)
        print(client.capture("before sigterm", distinct_id="u"), flush=True)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
    """
    result = run_snippet(code, live_server.url)
    uuid, ran = result.stdout.splitlines()
    assert ran == "previous handler ran" and result.returncode == 7, result.stderr[-3000:]
    live_server.wait_for_events(1, timeout=10)
    assert live_server.uuids() == [uuid]


def test_ctrl_c_still_raises_keyboard_interrupt_and_drains_at_exit(live_server):
    code = f"""if True:
        import os, signal, time, productos
        client = productos.Client("phc_x", host={live_server.url!r}, flush_interval=60,
                                  flush_at=100_000)
        print(client.capture("before ctrl-c", distinct_id="u"), flush=True)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
    """
    result = run_snippet(code, live_server.url)
    uuid, interrupted = result.stdout.splitlines()
    assert interrupted == "KeyboardInterrupt" and result.returncode == 0, result.stderr[-3000:]
    live_server.wait_for_events(1, timeout=10)
    assert live_server.uuids() == [uuid]


def test_one_line_says_how_many_events_a_normal_exit_left(live_server):
    live_server.set_delay(30)
    code = f"""if True:
        import productos
        client = productos.Client("phc_x", host={live_server.url!r}, flush_interval=60,
                                  flush_at=100_000, shutdown_timeout=0.5)
        for n in range(9):
            client.capture("left behind", distinct_id=str(n))
    """
    result = run_snippet(code, live_server.url)
    lines = [line for line in result.stderr.splitlines() if "productos:" in line]
    assert lines == ["productos: 9 event(s) not delivered at exit: the drain ran out of time"], \
        result.stderr[-3000:]
