"""ProductosMiddleware under real uvicorn and hypercorn processes, for FastAPI, Starlette, Django.

Each run starts the server on 127.0.0.1 with an app from tests/apps/ whose client keeps every
event queued (flush_interval=60), sends requests with identity headers, an unhandled error,
a 404 and a request still in flight, then SIGTERM. At the loopback collector: every event
arrived (only the drain at shutdown could send them), tagged with the request's identity,
session and request properties; exactly one ``$exception``, for the error, none for the 404.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests

try:
    from tests.support import wait_until
    from tests.test_sigterm_servers import APPS, app_env, free_port, uvicorn_worker_class
except ModuleNotFoundError:  # plain `pytest` from the tests folder
    from support import wait_until  # type: ignore
    from test_sigterm_servers import (  # type: ignore
        APPS,
        app_env,
        free_port,
        uvicorn_worker_class,
    )

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")]

APPS_BY_NAME = {
    "fastapi": ("asgi_fastapi_app:app", ("fastapi",)),
    "starlette": ("asgi_starlette_app:app", ("starlette",)),
    "django": ("asgi_django_app:app", ("django",)),
}
SERVERS = {
    "uvicorn": lambda port, target: [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1",
                                     "--port", str(port), target],
    "hypercorn": lambda port, target: [sys.executable, "-m", "hypercorn", "--bind",
                                       f"127.0.0.1:{port}", target],
}
HEADERS = {"X-POSTHOG-DISTINCT-ID": "user-42", "X-POSTHOG-SESSION-ID": "session-7",
           "User-Agent": "asgi-test/1.0", "X-Forwarded-For": "203.0.113.9"}


def gunicorn_command(port: int, target: str) -> List[str]:
    """gunicorn --preload with uvicorn workers: the client is made before the workers fork."""
    return [sys.executable, "-m", "gunicorn", "--preload", "--bind", f"127.0.0.1:{port}",
            "--workers", "2", "--worker-class", str(uvicorn_worker_class()),
            "--graceful-timeout", "20", target]


def remote_answer(body: Dict[str, Any]) -> Dict[str, Any]:
    return {"flags": {"remote": {"key": "remote", "enabled": True,
                                 "variant": f"for-{body['distinct_id']}"}},
            "errorsWhileComputingFlags": False, "requestId": "r"}


def serve(live_server, tmp_path: Path, server: str, app: str) -> Dict[str, Any]:
    """Run the scenario; return what the client saw and the server's output."""
    target, _ = APPS_BY_NAME[app]
    port = free_port()
    marker = tmp_path / "slow-started"
    env = app_env(live_server.url, SLOW_MARKER=str(marker))
    command = gunicorn_command(port, target) if server == "gunicorn" else SERVERS[server](
        port, target)
    proc = subprocess.Popen(command, cwd=APPS, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    seen: Dict[str, Any] = {"uuids": [], "statuses": {}}
    slow: List[str] = []
    try:
        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server ended: {proc.communicate()[0][-3000:]}")
            try:
                return requests.get(f"{base}/ping/", timeout=2).status_code == 200
            except requests.ConnectionError:
                return False

        assert wait_until(answers, timeout=40), "the server did not start"
        for path in ("/capture/", "/sync-capture/", "/capture/?q=1"):
            answer = requests.get(f"{base}{path}", headers=HEADERS, timeout=10)
            assert answer.status_code == 200, answer.text[:500]
            seen["uuids"].append(answer.json()["uuid"])
        anonymous = requests.get(f"{base}/capture/", timeout=10)
        seen["anonymous"] = anonymous.json()["uuid"]
        seen["flag"] = requests.get(f"{base}/flag/", headers=HEADERS, timeout=10).json()
        for path in ("/boom/", "/missing/"):
            seen["statuses"][path] = requests.get(f"{base}{path}", headers=HEADERS,
                                                  timeout=10).status_code

        def slow_request() -> None:
            try:
                slow.append(requests.get(f"{base}/slow/", headers=HEADERS, timeout=30)
                            .json()["uuid"])
            except (requests.RequestException, ValueError):
                pass  # a server that cuts in-flight requests short at SIGTERM (hypercorn)

        thread = threading.Thread(target=slow_request, daemon=True)
        thread.start()
        assert wait_until(marker.exists, timeout=20), "the slow request never started"
    finally:
        if proc.poll() is None:
            # hypercorn serves from a child process: the whole group gets it, as under systemd.
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            seen["output"] = proc.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            seen["output"] = proc.communicate()[0]
            raise AssertionError(f"no stop on SIGTERM: {seen['output'][-3000:]}") from None
    thread.join(30)
    seen["slow"] = slow[0] if slow else None
    return seen


@pytest.mark.parametrize("server", sorted(SERVERS))
@pytest.mark.parametrize("app", sorted(APPS_BY_NAME))
def test_request_context_exceptions_and_sigterm_drain(live_server, tmp_path, server, app):
    missing = [m for m in (*APPS_BY_NAME[app][1], server) if not _installed(m)]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    live_server.flags_handler = remote_answer
    seen = serve(live_server, tmp_path, server, app)
    output = seen["output"][-3000:]
    assert seen["statuses"] == {"/boom/": 500, "/missing/": 404}, output
    assert seen["flag"] == {"value": "for-user-42"}, output  # the request's id, off the loop
    expected = [*seen["uuids"], seen["anonymous"]]
    if server == "uvicorn" or seen["slow"]:
        expected.append(seen["slow"])  # hypercorn may cut the in-flight request short
    assert all(expected), (seen, output)
    assert live_server.wait_for_events(len(expected) + 1, timeout=15), output
    events = {e["uuid"]: e for e in live_server.events}
    lost = [u for u in expected if u not in events]
    assert not lost, f"{len(lost)} events lost; output: {output}"

    for uuid in [*seen["uuids"], seen["slow"]]:
        if uuid is None:
            continue
        event = events[uuid]
        props = event["properties"]
        assert event["distinct_id"] == "user-42", event
        assert props["$session_id"] == "session-7"
        assert props["$request_method"] == "GET"
        assert props["$request_path"] in ("/capture/", "/sync-capture/", "/slow/")
        assert props["$current_url"].startswith("http://127.0.0.1:")
        assert props["$current_url"].endswith(props["$request_path"]) or \
            props["$current_url"].endswith("?q=1")
        assert props["$ip"] == "203.0.113.9"
        assert props["$user_agent"] == "asgi-test/1.0"
    assert events[seen["anonymous"]]["properties"].get("$session_id") is None

    exceptions = [e for e in live_server.events if e["event"] == "$exception"]
    assert len(exceptions) == 1, [e["properties"].get("$exception_list") for e in exceptions]
    props = exceptions[0]["properties"]
    assert exceptions[0]["distinct_id"] == "user-42"
    assert props["$request_path"] == "/boom/" and props["$session_id"] == "session-7"
    assert f"boom from {app}" in str(props.get("$exception_list"))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None






@pytest.mark.skipif(uvicorn_worker_class() is None or not _installed("gunicorn"),
                    reason="needs gunicorn and a uvicorn worker class")
def test_gunicorn_preload_with_uvicorn_workers(live_server, tmp_path):
    # Requests land on either worker; each drains its own queue at lifespan shutdown.
    test_request_context_exceptions_and_sigterm_drain(live_server, tmp_path, "gunicorn",
                                                      "fastapi")
