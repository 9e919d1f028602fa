"""The examples run as documented and their events reach a real (loopback) server."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List

import pytest

import productos

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def _env(live_server: Any) -> Dict[str, str]:
    return {**os.environ, "PRODUCTOS_API_KEY": "phc_examples", "PRODUCTOS_HOST": live_server.url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _by_name(events: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    return {e["event"]: e for e in events}


def test_script_basic(live_server: Any) -> None:
    if not hasattr(productos.Client, "feature_enabled"):
        pytest.skip("the Client has no flag methods yet")
    out = subprocess.run([sys.executable, str(EXAMPLES / "script_basic.py")],
                         capture_output=True, text=True, timeout=60, env=_env(live_server))
    assert out.returncode == 0, out.stderr
    assert "stats:" in out.stdout
    events = _by_name(live_server.events)
    assert {"signed up", "$set", "$groupidentify", "invoice paid", "$exception"} <= set(events)
    assert events["invoice paid"]["properties"]["$groups"] == {"company": "acme"}
    exc = events["$exception"]
    assert exc["distinct_id"] == "user-42"
    assert exc["properties"]["component"] == "checkout"
    assert [e["type"] for e in exc["properties"]["$exception_list"]] == ["RuntimeError",
                                                                         "ValueError"]
    assert any(r.path.startswith("/flags") for r in live_server.requests)


def test_flask_app(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("flask")
    monkeypatch.setenv("PRODUCTOS_API_KEY", "phc_examples")
    monkeypatch.setenv("PRODUCTOS_HOST", live_server.url)
    spec = importlib.util.spec_from_file_location("flask_app_example", EXAMPLES / "flask_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.app
    client = app.test_client()
    try:
        home = client.get("/", headers={"X-POSTHOG-DISTINCT-ID": "user-1"})
        assert home.status_code == 200 and home.json["user"] == "user-1"
        assert client.get("/items/7").json == {"item": 7}
        assert client.get("/boom").status_code == 500
        assert live_server.wait_for_events(3, timeout=10)
    finally:
        with app.app_context():
            from productos.integrations.flask import get_client

            get_client().shutdown(5)
    events = _by_name(live_server.events)
    assert events["home viewed"]["distinct_id"] == "user-1"
    assert events["home viewed"]["properties"]["app"] == "flask-example"
    assert events["item viewed"]["properties"]["$request_route"] == "/items/<int:item_id>"
    assert events["$exception"]["properties"]["$exception_list"][0]["value"] == "something broke"


def test_django_project(live_server: Any) -> None:
    pytest.importorskip("django")
    script = textwrap.dedent("""
        import asyncio, os
        os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"
        import django
        django.setup()
        from django.test import AsyncClient, Client
        from productos.integrations.django import get_client

        c = Client(raise_request_exception=False)
        home = c.get("/", headers={"X-POSTHOG-DISTINCT-ID": "user-1"})
        assert home.status_code == 200 and home.json()["user"] == "user-1", home.content
        assert c.get("/boom/").status_code == 500
        assert c.get("/health/").content == b"ok"
        live = asyncio.run(AsyncClient().get("/live/", headers={"X-POSTHOG-DISTINCT-ID": "u-2"}))
        assert live.json() == {"user": "u-2"}
        assert get_client().shutdown(5)
        print("served")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, cwd=EXAMPLES / "django_project", env=_env(live_server))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "served"
    events = _by_name(live_server.events)
    home = events["home viewed"]
    assert home["distinct_id"] == "user-1"
    assert home["properties"]["$current_url"] == "http://testserver/"
    assert home["properties"]["app"] == "django-example"
    assert events["live page viewed"]["distinct_id"] == "u-2"
    assert events["$exception"]["properties"]["$request_path"] == "/boom/"
    assert not (EXAMPLES / "django_project" / "db.sqlite3").exists()  # anonymous: no database
