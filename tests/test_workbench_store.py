"""Workbench pieces over real HTTP on 127.0.0.1 (in-process dev server): PostHog's merge rules,
clearing the store, paging, the schema-1 migration, funnel edge cases."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import requests

from productos.devserver import DevServer, EventStore


@pytest.fixture
def server() -> Iterator[DevServer]:
    srv = DevServer(port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


def ev(name: str, who: str, ts: str = "2026-03-01T12:00:00Z", **props: Any) -> Dict[str, Any]:
    return {"event": name, "distinct_id": who, "uuid": str(uuid.uuid4()), "timestamp": ts,
            "properties": props}


def send(server: DevServer, events: List[Dict[str, Any]]) -> Dict[str, Any]:
    answer = requests.post(server.url + "/batch/", json={"api_key": "k", "batch": events},
                           timeout=10)
    assert answer.status_code == 200, answer.text
    body: Dict[str, Any] = answer.json()
    return body


def person(server: DevServer, distinct_id: str) -> Dict[str, Any]:
    answer = requests.get(f"{server.url}/api/persons/{distinct_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    body: Dict[str, Any] = answer.json()
    return body


def test_two_identified_persons_are_not_merged(server: DevServer) -> None:
    send(server, [
        ev("$identify", "alice", **{"$anon_distinct_id": "anon-a"}),
        ev("$identify", "bob", **{"$anon_distinct_id": "anon-b"}),
        # bob is identified: PostHog refuses to fold him into alice.
        ev("$identify", "alice", **{"$anon_distinct_id": "bob"}),
        ev("$create_alias", "alice", alias="bob"),
    ])
    assert person(server, "alice")["distinct_ids"] == ["alice", "anon-a"]
    assert person(server, "bob")["distinct_ids"] == ["anon-b", "bob"]
    assert server.store.summary()["persons"] == 2


def test_an_anonymous_person_is_merged_with_its_properties(server: DevServer) -> None:
    send(server, [
        ev("$set", "anon", **{"$set": {"plan": "free", "seen": True}}),
        ev("$set", "carol", **{"$set": {"plan": "pro"}}),
        ev("$identify", "carol", **{"$anon_distinct_id": "anon"}),
    ])
    merged = person(server, "anon")
    assert merged["distinct_ids"] == ["anon", "carol"]
    assert merged["properties"] == {"plan": "pro", "seen": True}
    assert merged["is_identified"] is True


@pytest.mark.parametrize("placeholder", ["anonymous", "null", "undefined", "0", "None"])
def test_placeholder_ids_are_never_merged(server: DevServer, placeholder: str) -> None:
    send(server, [ev("x", placeholder), ev("$identify", "dave",
                                           **{"$anon_distinct_id": placeholder})])
    assert person(server, "dave")["distinct_ids"] == ["dave"]


def test_a_merge_inside_one_batch_is_seen_by_later_events(server: DevServer) -> None:
    send(server, [
        ev("visit", "anon-e", "2026-03-01T12:00:00Z"),
        ev("$create_alias", "erin", "2026-03-01T12:01:00Z", alias="anon-e"),
        ev("signup", "erin", "2026-03-01T12:02:00Z", **{"$set": {"plan": "pro"}}),
        ev("buy", "anon-e", "2026-03-01T12:03:00Z"),
    ])
    answer = requests.get(server.url + "/api/funnel", params={"steps": "visit,signup,buy",
                                                              "window": 600}, timeout=10).json()
    assert [s["count"] for s in answer["steps"]] == [1, 1, 1]
    assert server.store.person_properties("anon-e") == {"plan": "pro"}


def test_timestamps_with_offsets_are_compared_as_instants(server: DevServer) -> None:
    # 13:00+02:00 is 11:00Z: the signup is BEFORE the visit, so nobody converts.
    send(server, [ev("visit", "f", "2026-03-01T12:00:00Z"),
                  ev("signup", "f", "2026-03-01T13:00:00+02:00")])
    answer = requests.get(server.url + "/api/funnel",
                          params={"steps": "visit,signup", "window": 86400}, timeout=10).json()
    assert [s["count"] for s in answer["steps"]] == [1, 0]


def test_repeated_step_names_need_two_events(server: DevServer) -> None:
    send(server, [ev("view", "g", "2026-03-01T12:00:00Z"), ev("view", "h", "2026-03-01T12:00:00Z"),
                  ev("view", "h", "2026-03-01T12:05:00Z")])
    answer = requests.get(server.url + "/api/funnel",
                          params={"steps": "view,view", "window": 3600}, timeout=10).json()
    assert [s["count"] for s in answer["steps"]] == [2, 1]


def test_clear_needs_a_json_confirmation(server: DevServer) -> None:
    send(server, [ev("x", "a"), ev("y", "b")])
    url = server.url + "/api/clear"
    assert requests.get(url, timeout=10).status_code == 405
    # A cross-site form cannot send JSON without a pre-flight; a form post is refused.
    assert requests.post(url, data={"confirm": "true"}, timeout=10).status_code == 400
    assert requests.post(url, json={"confirm": False}, timeout=10).status_code == 400
    assert requests.options(url, timeout=10).status_code == 405
    assert server.store.count() == 2
    answer = requests.post(url, json={"confirm": True}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"cleared": True, "events_deleted": 2}
    assert server.store.count() == 0 and server.store.summary()["persons"] == 0
    send(server, [ev("z", "a")])  # and it still works afterwards
    assert server.store.count() == 1


def test_events_page_backwards_and_forwards(server: DevServer) -> None:
    send(server, [ev(f"e{i}", "p") for i in range(7)])
    url = server.url + "/api/events"
    first = requests.get(url, params={"limit": 3}, timeout=10).json()["events"]
    assert [e["event"] for e in first] == ["e6", "e5", "e4"]
    second = requests.get(url, params={"limit": 3, "before": first[-1]["seq"]},
                          timeout=10).json()["events"]
    assert [e["event"] for e in second] == ["e3", "e2", "e1"]
    oldest = requests.get(url, params={"limit": 2, "order": "asc", "after": 0, "person": "1"},
                          timeout=10).json()["events"]
    assert [e["event"] for e in oldest] == ["e0", "e1"]
    assert oldest[0]["person_id"] is not None
    assert requests.get(url, params={"order": "up"}, timeout=10).status_code == 400


def test_a_schema_1_database_is_migrated(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL UNIQUE,
            event TEXT NOT NULL, distinct_id TEXT NOT NULL, timestamp TEXT NOT NULL,
            received_at TEXT NOT NULL, data TEXT NOT NULL);
        CREATE INDEX events_by_name ON events (event, seq);
        CREATE TABLE persons (id INTEGER PRIMARY KEY AUTOINCREMENT, properties TEXT NOT NULL,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
        CREATE TABLE person_distinct_ids (distinct_id TEXT PRIMARY KEY, person_id INTEGER);
        CREATE TABLE groups (group_type TEXT, group_key TEXT, properties TEXT, updated_at TEXT,
            PRIMARY KEY (group_type, group_key));
        PRAGMA user_version=1;
    """)
    for name, ts in (("visit", "2026-03-01T12:00:00+01:00"), ("signup", "2026-03-01T11:30:00Z")):
        conn.execute("INSERT INTO events (uuid, event, distinct_id, timestamp, received_at, data)"
                     " VALUES (?, ?, 'old', ?, 'x', '{}')", (str(uuid.uuid4()), name, ts))
    conn.commit()
    conn.close()
    store = EventStore(path)
    try:
        from productos.devserver.funnels import funnel

        answer = store.read(lambda c: funnel(c, ["visit", "signup"], 3600))
        assert [s["count"] for s in answer["steps"]] == [1, 1]  # 11:00Z then 11:30Z
        assert store.read(lambda c: c.execute("PRAGMA user_version").fetchone()[0]) == 2
    finally:
        store.close()
