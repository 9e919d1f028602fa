"""The dev server as an analytics workbench: a real dev server subprocess fed by a real Client.

One designed data set (below) is sent once per module; funnels, trends, persons, exposures,
the CLI and the Parquet export are checked against counts worked out by hand.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

import productos

REPO = Path(__file__).resolve().parent.parent
T0 = _dt.datetime(2026, 1, 10, 10, 0, 0, tzinfo=_dt.timezone.utc)
STEPS = "visit,signup,purchase"
HOUR = 3600

pytestmark = pytest.mark.slow


def at(minutes: float) -> _dt.datetime:
    return T0 + _dt.timedelta(minutes=minutes)


def send_designed_events(client: productos.Client) -> None:
    """The funnel visit → signup → purchase, window 1 hour. Worked out by hand:

    p1  anon-1 visits (ads); alias anon-1 → user-1; user-1 signs up +10m, buys +20m  → 3
    p2  anon-2 visits (ads); $identify user-2 ← anon-2; signs up +5m; buys +2h (late) → 2
    p3  signs up, then visits +1m (organic), then buys +2m: out of order               → 1
    p4  visits (organic), buys +5m without signing up: skips a step                   → 1
    p5  visits (ads), signs up +30m, buys +50m                                          → 3
    p6  signs up and buys, never visits: never enters                                   → -
    p7  visits at 0 and again at +3h; signs up +3h01m: late for the FIRST visit         → 1
    ghost  visits (organic) and signs up +1m without a person profile                  → 2
    entered 7, signed up 4 (gaps 10m, 5m, 30m, 1m: median 7.5m), bought 2 (10m, 20m: 15m)
    """
    cap = client.capture
    cap("visit", distinct_id="anon-1", properties={"source": "ads"}, timestamp=at(0))
    client.alias("anon-1", "user-1", timestamp=at(1))
    cap("signup", distinct_id="user-1", timestamp=at(10))
    cap("purchase", distinct_id="user-1", timestamp=at(20))
    client.set(distinct_id="user-1", properties={"email": "one@example.com"}, timestamp=at(21))

    cap("visit", distinct_id="anon-2", properties={"source": "ads"}, timestamp=at(0))
    cap("$identify", distinct_id="user-2", properties={"$anon_distinct_id": "anon-2"},
        timestamp=at(4))
    cap("signup", distinct_id="user-2", timestamp=at(5))
    cap("purchase", distinct_id="user-2", timestamp=at(120))

    cap("signup", distinct_id="p3", timestamp=at(0))
    cap("visit", distinct_id="p3", properties={"source": "organic"}, timestamp=at(1))
    cap("purchase", distinct_id="p3", timestamp=at(2))

    cap("visit", distinct_id="p4", properties={"source": "organic"}, timestamp=at(0))
    cap("purchase", distinct_id="p4", timestamp=at(5))

    cap("visit", distinct_id="p5", properties={"source": "ads"}, timestamp=at(0))
    cap("signup", distinct_id="p5", timestamp=at(30))
    cap("purchase", distinct_id="p5", timestamp=at(50))

    cap("signup", distinct_id="p6", timestamp=at(0))
    cap("purchase", distinct_id="p6", timestamp=at(1))

    cap("visit", distinct_id="p7", timestamp=at(0))
    cap("visit", distinct_id="p7", timestamp=at(180))
    cap("signup", distinct_id="p7", timestamp=at(181))

    cap("visit", distinct_id="ghost", timestamp=at(0),
        properties={"source": "organic", "$process_person_profile": False})
    cap("signup", distinct_id="ghost", timestamp=at(1),
        properties={"$process_person_profile": False})

    # Flag exposures and an exception for the viewer.
    for who, variant in (("p4", "control"), ("p5", "test"), ("p5", "test"), ("p7", "test")):
        cap("$feature_flag_called", distinct_id=who, timestamp=at(3),
            properties={"$feature_flag": "pricing", "$feature_flag_response": variant})


DESIGNED_EVENTS = 28  # every call above


@pytest.fixture(scope="module")
def devserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    """`productos devserver` in a subprocess, fed the designed events by a real Client."""
    db = tmp_path_factory.mktemp("workbench") / "events.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCTOS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "productos", "--json", "devserver", "--port", "0", "--db",
         str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=str(REPO))
    try:
        assert proc.stdout is not None
        started = json.loads(proc.stdout.readline())
        url = started["url"]
        client = productos.Client("phc_workbench", host=url, flush_interval=0.05)
        try:
            send_designed_events(client)
            assert client.flush(15)
        finally:
            client.shutdown(10)
        stats = client.stats()
        assert stats["dropped_total"] == 0, stats
        assert stats["sent"] == DESIGNED_EVENTS, stats
        yield {"url": url, "db": str(db), "started": started, "sent": stats["sent"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


def api(server: Dict[str, Any], path: str, **params: Any) -> requests.Response:
    return requests.get(server["url"] + path, params=params, timeout=30)


def ok(server: Dict[str, Any], path: str, **params: Any) -> Dict[str, Any]:
    response = api(server, path, **params)
    assert response.status_code == 200, response.text
    answer: Dict[str, Any] = response.json()
    return answer


def counts(answer: Dict[str, Any]) -> List[int]:
    return [step["count"] for step in answer["steps"]]


# --------------------------------------------------------------------------- funnels


def test_the_designed_funnel_counts_exactly(devserver: Dict[str, Any]) -> None:
    answer = ok(devserver, "/api/funnel", steps=STEPS, window=HOUR)
    assert [s["event"] for s in answer["steps"]] == ["visit", "signup", "purchase"]
    assert counts(answer) == [7, 4, 2]
    assert [s["conversion"] for s in answer["steps"]] == [1.0, round(4 / 7, 4), round(2 / 7, 4)]
    assert [s["conversion_from_previous"] for s in answer["steps"]] == [1.0, round(4 / 7, 4),
                                                                        0.5]
    # signup gaps 10m, 5m, 30m, 1m → median 7.5 min; purchase gaps 10m, 20m → 15 min.
    assert answer["median_seconds_between_steps"] == [450.0, 900.0]
    assert answer["steps"][0]["median_seconds_from_previous"] is None
    assert answer["window_seconds"] == HOUR


def test_a_longer_window_lets_the_late_steps_in(devserver: Dict[str, Any]) -> None:
    # 4 hours: p2's purchase at +2h and p7's signup at +3h01m now count.
    answer = ok(devserver, "/api/funnel", steps=STEPS, window=4 * HOUR)
    assert counts(answer) == [7, 5, 3]


def test_the_window_is_counted_from_the_first_step_one_event(devserver: Dict[str, Any]) -> None:
    # A window of 1m: only ghost (signup +1m) and nobody else converts; edges are inclusive.
    assert counts(ok(devserver, "/api/funnel", steps="visit,signup", window=60)) == [7, 1]


def test_steps_in_another_order(devserver: Dict[str, Any]) -> None:
    # signup → purchase: p1 (merged with anon-1), p2 (late, 1h window misses), p3, p5, p6.
    answer = ok(devserver, "/api/funnel", steps="signup,purchase", window=HOUR)
    assert counts(answer) == [7, 4]


def test_breakdown_by_a_property_of_the_entering_event(devserver: Dict[str, Any]) -> None:
    answer = ok(devserver, "/api/funnel", steps=STEPS, window=HOUR, breakdown="source")
    assert counts(answer) == [7, 4, 2]
    groups = {g["value"]: [s["count"] for s in g["steps"]]
              for g in answer["breakdown"]["values"]}
    assert groups == {"ads": [3, 3, 2], "organic": [3, 1, 0], "(none)": [1, 0, 0]}
    assert answer["breakdown"]["property"] == "source"


def test_from_and_to_limit_the_events(devserver: Dict[str, Any]) -> None:
    # From +2h59m only p7's second visit (and its signup) are inside.
    late = ok(devserver, "/api/funnel", steps=STEPS, window=HOUR,
              **{"from": at(179).isoformat()})
    assert counts(late) == [1, 1, 0]
    before = ok(devserver, "/api/funnel", steps=STEPS, window=HOUR,
                **{"from": "2026-01-09", "to": "2026-01-09"})
    assert counts(before) == [0, 0, 0]
    same_day = ok(devserver, "/api/funnel", steps=STEPS, window=HOUR,
                  **{"from": "2026-01-10", "to": "2026-01-10"})
    assert counts(same_day) == [7, 4, 2]


def test_unknown_events_give_zero_counts(devserver: Dict[str, Any]) -> None:
    answer = ok(devserver, "/api/funnel", steps="visit,never-sent", window=HOUR)
    assert counts(answer) == [7, 0]
    assert answer["steps"][1]["conversion"] == 0.0
    nothing = ok(devserver, "/api/funnel", steps="nope,never", window=HOUR)
    assert counts(nothing) == [0, 0] and nothing["steps"][1]["conversion"] == 0.0


@pytest.mark.parametrize("params, attr", [
    ({"steps": "visit"}, "steps"),
    ({"steps": ",".join(f"e{i}" for i in range(11))}, "steps"),
    ({"steps": "visit,,signup"}, "steps"),
    ({}, "steps"),
    ({"steps": STEPS, "window": "0"}, "window"),
    ({"steps": STEPS, "window": "-5"}, "window"),
    ({"steps": STEPS, "window": "1d"}, "window"),
    ({"steps": STEPS, "from": "yesterday"}, "from"),
    ({"steps": STEPS, "to": "2026-13-40"}, "to"),
    ({"steps": STEPS, "from": "2026-01-11", "to": "2026-01-10"}, "to"),
])
def test_bad_funnel_input_is_400_naming_the_parameter(devserver: Dict[str, Any],
                                                      params: Dict[str, str], attr: str) -> None:
    response = api(devserver, "/api/funnel", **params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["attr"] == attr and attr in body["detail"]


# --------------------------------------------------------------------------- persons


def test_alias_and_identify_merge_persons(devserver: Dict[str, Any]) -> None:
    one = ok(devserver, "/api/persons/anon-1")
    assert one["distinct_ids"] == ["anon-1", "user-1"]
    assert one["properties"] == {"email": "one@example.com"}
    assert one["is_identified"] is True
    names = [e["event"] for e in one["events"]]
    assert names == ["$set", "purchase", "signup", "$create_alias", "visit"]  # newest first
    assert one["event_count"] == 5
    assert ok(devserver, "/api/persons/user-1")["id"] == one["id"]
    two = ok(devserver, "/api/persons/user-2")
    assert two["distinct_ids"] == ["anon-2", "user-2"]


def test_a_personless_distinct_id_is_its_own_person(devserver: Dict[str, Any]) -> None:
    ghost = ok(devserver, "/api/persons/ghost")
    assert ghost["id"] is None and ghost["distinct_ids"] == ["ghost"]
    assert [e["event"] for e in ghost["events"]] == ["signup", "visit"]


def test_an_unknown_person_is_404(devserver: Dict[str, Any]) -> None:
    assert api(devserver, "/api/persons/nobody").status_code == 404


# --------------------------------------------------------------------------- trends


def test_trends_per_hour_and_day(devserver: Dict[str, Any]) -> None:
    hourly = ok(devserver, "/api/trends", event="visit", interval="hour")
    # Visits: seven persons in the 10:00 hour (p3 at 10:01), p7 again at 13:00.
    assert [(r["bucket"], r["count"], r["persons"]) for r in hourly["series"]] == [
        ("2026-01-10T10:00:00Z", 7, 7), ("2026-01-10T11:00:00Z", 0, 0),
        ("2026-01-10T12:00:00Z", 0, 0), ("2026-01-10T13:00:00Z", 1, 1)]
    assert hourly["total"] == 8 and hourly["persons"] == 7
    daily = ok(devserver, "/api/trends", event="visit", interval="day",
               **{"from": "2026-01-09", "to": "2026-01-10"})
    assert [(r["bucket"], r["count"], r["persons"]) for r in daily["series"]] == [
        ("2026-01-09T00:00:00Z", 0, 0), ("2026-01-10T00:00:00Z", 8, 7)]
    # Merged persons count once: anon-1 visits and user-1 signs up, one person each day.
    signups = ok(devserver, "/api/trends", event="signup", interval="day")
    assert signups["series"][0]["count"] == 7 and signups["series"][0]["persons"] == 7


@pytest.mark.parametrize("params, attr", [
    ({}, "event"),
    ({"event": "visit", "interval": "week"}, "interval"),
    ({"event": "visit", "from": "nope"}, "from"),
    ({"event": "visit", "interval": "hour", "from": "2000-01-01", "to": "2026-01-01"},
     "interval"),
])
def test_bad_trends_input_is_400(devserver: Dict[str, Any], params: Dict[str, str],
                                 attr: str) -> None:
    response = api(devserver, "/api/trends", **params)
    assert response.status_code == 400, response.text
    assert response.json()["attr"] == attr


# --------------------------------------------------------------------------- exposures


def test_exposures_per_flag_variant(devserver: Dict[str, Any]) -> None:
    flags = ok(devserver, "/api/exposures")["flags"]
    assert flags == {"pricing": [{"variant": "test", "count": 3, "persons": 2},
                                 {"variant": "control", "count": 1, "persons": 1}]}


# --------------------------------------------------------------------------- the CLI


def run_cli(*argv: str, url: Optional[str] = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCTOS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    if url:
        env["PRODUCTOS_HOST"] = url
    return subprocess.run([sys.executable, "-m", "productos", *argv], capture_output=True,
                          text=True, timeout=60, cwd=str(REPO), env=env)


def test_cli_funnel_prints_the_api_numbers(devserver: Dict[str, Any]) -> None:
    proc = run_cli("funnel", "visit", "signup", "purchase", "--window", "1h",
                   url=devserver["url"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "Funnel, conversion window 1.0h:"
    assert lines[2].split()[:3] == ["1.", "visit", "7"]
    assert lines[3].split()[:4] == ["2.", "signup", "4", "57.1%"]
    assert lines[4].split()[:4] == ["3.", "purchase", "2", "28.6%"]
    as_json = run_cli("--json", "funnel", "visit", "signup", "purchase", "--window", "3600",
                      "--host", devserver["url"])
    assert as_json.returncode == 0, as_json.stderr
    assert counts(json.loads(as_json.stdout)) == [7, 4, 2]


def test_cli_funnel_bad_input(devserver: Dict[str, Any]) -> None:
    one = run_cli("funnel", "visit", url=devserver["url"])
    assert one.returncode == 1 and "steps" in one.stderr
    window = run_cli("funnel", "a", "b", "--window", "soon", url=devserver["url"])
    assert window.returncode == 2 and "--window" in window.stderr


def test_cli_trends(devserver: Dict[str, Any]) -> None:
    proc = run_cli("trends", "visit", "--interval", "day", url=devserver["url"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "visit per day: 8 event(s), 7 person(s)"


def test_cli_tail_and_export_read_the_running_server(devserver: Dict[str, Any],
                                                     tmp_path: Path) -> None:
    tail = run_cli("events", "tail", "--format", "ndjson", "--limit", "3", url=devserver["url"])
    assert tail.returncode == 0, tail.stderr
    rows = [json.loads(line) for line in tail.stdout.splitlines()]
    assert len(rows) == 3 and rows[0]["seq"] < rows[1]["seq"] < rows[2]["seq"]
    exported = run_cli("events", "export", "--host", devserver["url"])
    assert exported.returncode == 0, exported.stderr
    every = [json.loads(line) for line in exported.stdout.splitlines()]
    assert len(every) == devserver["sent"]
    assert [r["seq"] for r in every] == sorted(r["seq"] for r in every)
    csv_file = tmp_path / "events.csv"
    as_csv = run_cli("events", "export", "--format", "csv", "-o", str(csv_file),
                     url=devserver["url"])
    assert as_csv.returncode == 0, as_csv.stderr
    assert len(csv_file.read_text().splitlines()) == devserver["sent"] + 1


def test_parquet_export_reads_back_typed(devserver: Dict[str, Any], tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    out = tmp_path / "events.parquet"
    proc = run_cli("events", "export", "--format", "parquet", "-o", str(out),
                   url=devserver["url"])
    assert proc.returncode == 0, proc.stderr
    assert f"exported {devserver['sent']} event(s)" in proc.stderr
    table = pq.read_table(out)
    assert table.num_rows == devserver["sent"]
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("received_at").type == pa.timestamp("ms", tz="UTC")
    for name in ("uuid", "event", "distinct_id", "person_id", "properties"):
        assert schema.field(name).type == pa.string(), name
    assert schema.field("seq").type == pa.int64()
    rows = table.to_pylist()
    person = {r["distinct_id"]: r["person_id"] for r in rows}
    assert person["anon-1"] == person["user-1"] is not None
    assert person["anon-2"] == person["user-2"] != person["user-1"]
    assert person["ghost"] is None
    first = min((r for r in rows if r["distinct_id"] == "anon-1"), key=lambda r: r["seq"])
    assert first["timestamp"] == T0
    assert json.loads(first["properties"])["source"] == "ads"
    # The same file from the database file.
    from_db = tmp_path / "db.parquet"
    db = run_cli("events", "export", "--db", devserver["db"], "--format", "parquet", "-o",
                 str(from_db))
    assert db.returncode == 0, db.stderr
    assert pq.read_table(from_db).num_rows == devserver["sent"]


def test_parquet_needs_an_output_file(devserver: Dict[str, Any]) -> None:
    proc = run_cli("events", "export", "--format", "parquet", url=devserver["url"])
    assert proc.returncode == 3 and "-o" in proc.stderr


def test_devserver_prints_its_dev_personal_key_and_the_cli_uses_it(
        devserver: Dict[str, Any]) -> None:
    assert devserver["started"]["personal_api_key"] == "phx_dev"
    # No keys given at all: the CLI sees a dev server on this machine and uses its defaults.
    listed = run_cli("--json", "flags", "list", url=devserver["url"])
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["count"] == 0


def test_flags_init_writes_a_file_the_dev_server_loads(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    proc = run_cli("flags", "init", str(path))
    assert proc.returncode == 0, proc.stderr
    assert "5 sample flags" in proc.stdout
    again = run_cli("flags", "init", str(path))
    assert again.returncode == 3 and "--force" in again.stderr
    listed = run_cli("--json", "flags", "list", "--file", str(path))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["count"] == 5
    from productos.devserver import DevServer

    with DevServer(port=0, flags_path=str(path)) as server:
        keys = [f["key"] for f in requests.get(server.url + "/api/flags", timeout=10)
                .json()["flags"]]
    assert keys == ["new-checkout", "pricing-page", "bulk-export", "beta-banner",
                    "old-sidebar"]


def test_a_whitespace_distinct_id_costs_only_its_own_event() -> None:
    """capture() accepts "   " as a distinct id; the dev server drops that one event (as
    PostHog's ingestion does) and stores the rest of the batch."""
    from productos.devserver import DevServer

    with DevServer(port=0) as server:
        client = productos.Client("phc_ws", host=server.url, flush_interval=60)
        try:
            client.capture("before", distinct_id="ok-1")
            client.capture("blank", distinct_id="   ")
            client.capture("after", distinct_id="ok-2")
            assert client.flush(10)
        finally:
            client.shutdown(5)
        stats = client.stats()
        names = sorted(e["event"] for e in server.store.events())
    assert stats["captured"] == 3 and stats["dropped_total"] == 0, stats
    assert names == ["after", "before"]
