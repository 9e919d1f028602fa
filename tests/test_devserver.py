"""The dev server over real HTTP on 127.0.0.1: ingestion, flags, definitions, bad input, export."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import socket
import threading
import time
import uuid
import zlib
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

import productos
from productos.devserver import DevServer, export_events, tail_events
from productos.diagnostics import Definitions
from productos.flags import EvaluationContext

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from support import wait_until  # type: ignore

PERSONAL_KEY = "phx_test_personal"
PROJECT_KEY = "phc_test_project"

COHORT_ACME = {
    "type": "OR",
    "values": [{"type": "AND", "values": [
        {"key": "email", "operator": "icontains", "value": "@acme.com", "type": "person"},
    ]}],
}

DEFINITIONS: Dict[str, Any] = {
    "flags": [
        {"id": 1, "key": "simple", "version": 3, "active": True,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}},
        {"id": 2, "key": "beta", "version": 1, "active": True,
         "filters": {"groups": [{"properties": [
             {"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}],
             "rollout_percentage": 100}],
             "payloads": {"true": "{\"color\": \"blue\"}"}}},
        {"id": 3, "key": "multi", "version": 1, "active": True,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 100}],
                     "multivariate": {"variants": [{"key": "control", "rollout_percentage": 50},
                                                   {"key": "test", "rollout_percentage": 50}]},
                     "payloads": {"control": "{\"x\": 0}", "test": "{\"x\": 1}"}}},
        {"id": 4, "key": "half", "version": 2, "active": True,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 50}]}},
        {"id": 5, "key": "acme", "version": 1, "active": True,
         "filters": {"groups": [{"properties": [
             {"key": "id", "value": 7, "type": "cohort"}], "rollout_percentage": 100}]}},
        {"id": 6, "key": "beta-dependent", "version": 1, "active": True,
         "filters": {"groups": [{"properties": [
             {"key": "beta", "operator": "flag_evaluates_to", "value": True, "type": "flag",
              "dependency_chain": ["beta"]}], "rollout_percentage": 100}]}},
        {"id": 7, "key": "big-company", "version": 1, "active": True,
         "filters": {"aggregation_group_type_index": 0,
                     "groups": [{"properties": [
                         {"key": "employees", "value": 10, "operator": "gt", "type": "group",
                          "group_type_index": 0}], "rollout_percentage": 100}]}},
        {"id": 8, "key": "no-email", "version": 1, "active": True,
         "filters": {"groups": [{"properties": [
             {"key": "email", "operator": "is_not_set", "type": "person"}],
             "rollout_percentage": 100}]}},
        {"id": 9, "key": "continuity", "version": 1, "active": True,
         "ensure_experience_continuity": True,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}},
        {"id": 10, "key": "static-cohort", "version": 1, "active": True,
         "filters": {"groups": [{"properties": [
             {"key": "id", "value": 999, "type": "cohort"}], "rollout_percentage": 100}]}},
        {"id": 11, "key": "off", "version": 1, "active": False,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]}},
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {"7": COHORT_ACME},
}

INGEST_PATHS = ["/batch/", "/i/v0/e/", "/capture/", "/e/", "/track/"]


def new_uuid() -> str:
    return str(uuid.uuid4())


def event(name: str = "pageview", distinct_id: str = "user-1", **extra: Any) -> Dict[str, Any]:
    body: Dict[str, Any] = {"event": name, "distinct_id": distinct_id, "uuid": new_uuid(),
                            "properties": {"path": "/home"},
                            "timestamp": "2026-11-23T10:00:00.123456+00:00"}
    body.update(extra)
    return body


def make_server(**kwargs: Any) -> DevServer:
    kwargs.setdefault("definitions", DEFINITIONS)
    kwargs.setdefault("personal_api_key", PERSONAL_KEY)
    return DevServer(host="127.0.0.1", port=0, **kwargs).start()


@pytest.fixture
def server() -> Iterator[DevServer]:
    srv = make_server()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def secured() -> Iterator[DevServer]:
    srv = make_server(project_api_key=PROJECT_KEY)
    try:
        yield srv
    finally:
        srv.stop()


def post(srv: DevServer, path: str, body: Any = None, *, data: Optional[bytes] = None,
         headers: Optional[Dict[str, str]] = None) -> requests.Response:
    if data is None:
        data = json.dumps(body).encode()
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(srv.url + path, data=data, headers=all_headers, timeout=10)


def flags(srv: DevServer, body: Dict[str, Any], version: str = "2") -> Dict[str, Any]:
    response = post(srv, f"/flags/?v={version}", {"api_key": "phc_any", **body})
    assert response.status_code == 200, response.text
    return response.json()


# --------------------------------------------------------------------------------- ingestion


@pytest.mark.parametrize("path", INGEST_PATHS)
def test_each_ingestion_path_stores_a_batch(server: DevServer, path: str) -> None:
    events = [event("signup", "ada"), event("pageview", "ada")]
    response = post(server, path, {"api_key": "phc_any", "batch": events})
    assert response.status_code == 200
    assert response.json() == {"status": 1, "received": 2, "stored": 2, "duplicates": 0,
                               "discarded": 0}
    stored = server.store.events()
    assert [e["uuid"] for e in stored] == [events[1]["uuid"], events[0]["uuid"]]  # newest first
    assert stored[1]["event"] == "signup"
    assert stored[1]["properties"] == {"path": "/home"}
    assert stored[1]["timestamp"] == "2026-11-23T10:00:00.123456+00:00"


@pytest.mark.parametrize("path", INGEST_PATHS)
def test_each_ingestion_path_stores_a_single_event(server: DevServer, path: str) -> None:
    single = {**event("click", "bob"), "token": "phc_any"}
    response = post(server, path, single)
    assert response.status_code == 200
    assert response.json()["stored"] == 1
    assert server.store.events()[0]["uuid"] == single["uuid"]
    assert server.store.count() == 1


def test_a_list_of_events_and_a_missing_uuid_are_accepted(server: DevServer) -> None:
    no_uuid = event("a")
    del no_uuid["uuid"]
    response = post(server, "/e/", [no_uuid, event("b")])
    assert response.status_code == 200
    stored = server.store.events()
    assert len(stored) == 2
    uuid.UUID(stored[1]["uuid"])  # generated by the server


@pytest.mark.parametrize("where", ["batch_api_key", "batch_token", "event_api_key",
                                   "properties_token"])
def test_token_is_read_from_each_place(secured: DevServer, where: str) -> None:
    ev = event()
    if where == "batch_api_key":
        body: Any = {"api_key": PROJECT_KEY, "batch": [ev]}
    elif where == "batch_token":
        body = {"token": PROJECT_KEY, "batch": [ev]}
    elif where == "event_api_key":
        body = {"batch": [{**ev, "api_key": PROJECT_KEY}]}
    else:
        body = {**ev, "properties": {"token": PROJECT_KEY}}
    assert post(secured, "/batch/", body).status_code == 200
    assert secured.store.count() == 1


def test_gzip_body(server: DevServer) -> None:
    events = [event(f"e{i}") for i in range(50)]
    data = gzip.compress(json.dumps({"api_key": "phc_any", "batch": events}).encode())
    response = post(server, "/batch/", data=data, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    assert server.store.count() == 50


def test_gzip_named_in_the_query_string_as_posthog_js_does(server: DevServer) -> None:
    data = gzip.compress(json.dumps([event()]).encode())
    response = post(server, "/e/?compression=gzip-js", data=data,
                    headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert server.store.count() == 1


def test_a_productos_client_batch_is_stored(server: DevServer) -> None:
    client = productos.Client("phc_x", host=server.url, flush_interval=0.05, gzip=True)
    try:
        ids = [client.capture("step", distinct_id="cli", properties={"n": i}) for i in range(5)]
        assert client.flush(10)
    finally:
        client.shutdown(5)
    stored = {e["uuid"]: e for e in server.store.events()}
    assert set(ids) <= set(stored)
    assert stored[ids[0]]["properties"]["$lib"] == "productos-python"


def test_a_resent_uuid_is_stored_once(server: DevServer) -> None:
    events = [event("a"), event("b")]
    body = {"api_key": "phc_any", "batch": events}
    assert post(server, "/batch/", body).json()["stored"] == 2
    again = post(server, "/batch/", body).json()
    assert again == {"status": 1, "received": 2, "stored": 0, "duplicates": 2,
                     "discarded": 0}
    # Same uuid twice in one batch, plus the retried event under another path.
    twice = event("c")
    response = post(server, "/batch/", {"batch": [twice, twice, events[0]]}).json()
    assert response["stored"] == 1 and response["duplicates"] == 2
    assert post(server, "/capture/", events[1]).json()["duplicates"] == 1
    assert server.store.count() == 3
    assert server.store.counts_by_event() == {"a": 1, "b": 1, "c": 1}


def test_a_resent_person_update_does_not_apply_twice(server: DevServer) -> None:
    first = event("$set", "p", **{"$set": {"plan": "free"}})
    post(server, "/batch/", {"batch": [first]})
    post(server, "/batch/", {"batch": [event("$set", "p", **{"$set": {"plan": "pro"}})]})
    post(server, "/batch/", {"batch": [first]})  # a late retry of the first must not win
    assert server.store.person_properties("p") == {"plan": "pro"}


# ------------------------------------------------------------------------------- bad input


def assert_error(response: requests.Response, status: int) -> Dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["detail"] and body["code"] and body["type"]
    return body


@pytest.mark.parametrize("data, fragment", [
    (b"{not json", "not valid JSON"),
    (b"", "empty"),
    (b"\xff\xfe{}", "UTF-8"),
    (b'{"batch": [{"event": "x", "distinct_id": "a", "properties": {"v": NaN}}]}', "JSON"),
    (b'"just a string"', "event"),
    (b'{"batch": {"event": "x"}}', "list"),
    (b"[" * 100_000 + b"]" * 100_000, "nested"),
])
def test_malformed_json_is_400_and_stores_nothing(server: DevServer, data: bytes,
                                                  fragment: str) -> None:
    body = assert_error(post(server, "/batch/", data=data), 400)
    assert fragment in body["detail"]
    assert server.store.count() == 0


@pytest.mark.parametrize("bad, fragment", [
    ({"distinct_id": "a", "properties": {}}, "no event name"),
    ({"event": "", "distinct_id": "a"}, "no event name"),
    ({"event": "x", "properties": {}}, "no distinct_id"),
    ({"event": "x", "distinct_id": "", "properties": {}}, "no distinct_id"),
    ({"event": "x", "distinct_id": "   ", "properties": {}}, "no distinct_id"),
    ({"event": "x", "distinct_id": "\t\n"}, "no distinct_id"),
    ({"event": "x", "distinct_id": {"id": 1}}, "no distinct_id"),
])
def test_an_event_without_name_or_distinct_id_is_discarded_alone(
        server: DevServer, bad: Any, fragment: str) -> None:
    # As PostHog's ingestion does: that event is dropped (with a warning), the rest is kept.
    answer = post(server, "/batch/", {"batch": [event("good"), bad, event("after")]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["received"] == 3 and body["stored"] == 2 and body["discarded"] == 1
    assert len(body["warnings"]) == 1
    assert fragment in body["warnings"][0] and "#1" in body["warnings"][0]
    assert sorted(e["event"] for e in server.store.events()) == ["after", "good"]


@pytest.mark.parametrize("bad, fragment", [
    ({"event": "x", "distinct_id": "a", "properties": [1]}, "properties must be an object"),
    ({"event": "x", "distinct_id": "a", "uuid": "not-a-uuid"}, "invalid uuid"),
    ({"event": "x", "distinct_id": "a", "timestamp": 12}, "timestamp"),
    ({"event": "x", "distinct_id": "a", "$set": [1]}, "$set must be an object"),
    ("not an event", "not a JSON object"),
])
def test_one_invalid_event_rejects_the_whole_batch(server: DevServer, bad: Any,
                                                   fragment: str) -> None:
    body = assert_error(post(server, "/batch/", {"batch": [event("good"), bad]}), 400)
    assert fragment in body["detail"]
    assert "#1" in body["detail"]
    assert server.store.count() == 0  # the valid first event was not written either


@pytest.mark.parametrize("bad, attr", [
    ({"event": "\ud800"}, "batch[1].event"),
    ({"distinct_id": "user-\udfff"}, "batch[1].distinct_id"),
    ({"properties": {"title": "half an emoji \ud83d"}}, "batch[1].properties.title"),
    ({"properties": {"tags": ["ok", "\udc00"]}}, "batch[1].properties.tags[1]"),
    ({"properties": {"k\ud800": 1}}, "batch[1].properties['k\\ud800']"),
    ({"$set": {"name": "\ud800"}}, "batch[1].$set.name"),
])
def test_a_lone_surrogate_is_400_naming_the_field(server: DevServer, bad: Dict[str, Any],
                                                  attr: str) -> None:
    data = json.dumps({"batch": [event("good"), event("bad", **bad)]}).encode()  # ASCII escapes
    assert b"\\u" in data
    body = assert_error(post(server, "/batch/", data=data), 400)
    assert body["code"] == "invalid_string"
    assert body["attr"] == attr
    assert attr in body["detail"] and "surrogate" in body["detail"]
    assert server.store.count() == 0
    assert post(server, "/batch/", [event()]).status_code == 200  # the server carries on


def test_a_surrogate_pair_is_one_character_and_accepted(server: DevServer) -> None:
    data = json.dumps([event("smile \U0001f600", properties={"e": "\U0001f600"})]).encode()
    assert b"\\ud83d\\ude00" in data
    assert post(server, "/batch/", data=data).status_code == 200
    [stored] = server.store.events()
    assert stored["event"] == "smile \U0001f600" and stored["properties"]["e"] == "\U0001f600"


def test_a_lone_surrogate_in_a_flags_request_is_400(server: DevServer) -> None:
    body = {"api_key": "phc_any", "distinct_id": "u", "person_properties": {"plan": "\ud800"}}
    answer = assert_error(post(server, "/flags/?v=2", data=json.dumps(body).encode()), 400)
    assert answer["attr"] == "person_properties.plan"


@pytest.mark.parametrize("data", [
    b"definitely not gzip",
    gzip.compress(json.dumps([event()]).encode())[:-12],  # truncated
])
def test_malformed_gzip_is_400(server: DevServer, data: bytes) -> None:
    response = post(server, "/batch/", data=data, headers={"Content-Encoding": "gzip"})
    assert_error(response, 400)
    assert server.store.count() == 0


def test_unknown_content_encoding_is_415(server: DevServer) -> None:
    response = post(server, "/batch/", data=b"xx", headers={"Content-Encoding": "br"})
    assert_error(response, 415)


def test_body_over_20_mib_is_413(server: DevServer) -> None:
    data = b" " * (20 * 1024 * 1024 + 1)
    body = assert_error(post(server, "/batch/", data=data), 413)
    assert "exceeds" in body["detail"]
    assert server.store.count() == 0
    assert post(server, "/batch/", [event()]).status_code == 200  # still serving


def test_body_of_exactly_20_mib_is_accepted(server: DevServer) -> None:
    payload = json.dumps([event()]).encode()
    data = payload + b" " * (20 * 1024 * 1024 - len(payload))
    assert post(server, "/batch/", data=data).status_code == 200


def test_gzip_that_expands_past_the_cap_is_413() -> None:
    srv = make_server(max_body_bytes=1024 * 1024)
    try:
        bomb = gzip.compress(b"[" + b" " * (2 * 1024 * 1024) + b"]")
        assert len(bomb) < 1024 * 1024
        response = post(srv, "/batch/", data=bomb, headers={"Content-Encoding": "gzip"})
        assert_error(response, 413)
        assert srv.store.count() == 0
    finally:
        srv.stop()


@pytest.mark.parametrize("body", [
    {"batch": [event()]},  # missing
    {"api_key": "phc_wrong", "batch": [event()]},
    {"api_key": 12, "batch": [event()]},
    {"batch": [{**event(), "api_key": PROJECT_KEY}, event()]},  # one event without
    event(),  # single event, no token
])
def test_wrong_or_missing_token_is_401(secured: DevServer, body: Any) -> None:
    response = assert_error(post(secured, "/batch/", body), 401)
    assert response["type"] == "authentication_error"
    assert PROJECT_KEY not in json.dumps(response)  # the expected key is never echoed
    assert secured.store.count() == 0


def test_any_token_is_accepted_without_a_project_key(server: DevServer) -> None:
    assert post(server, "/batch/", {"batch": [event()]}).status_code == 200
    assert post(server, "/batch/", {"api_key": "phc_whatever", "batch": [event()]}).ok


@pytest.mark.parametrize("method, path", [
    ("GET", "/nope"), ("POST", "/nope"), ("POST", "/decide/"), ("GET", "/api/unknown"),
])
def test_unknown_path_is_404(server: DevServer, method: str, path: str) -> None:
    response = requests.request(method, server.url + path, data=b"{}", timeout=10)
    assert_error(response, 404)


def test_wrong_method_is_405(server: DevServer) -> None:
    response = requests.get(server.url + "/batch/", timeout=10)
    assert_error(response, 405)
    assert "POST" in response.headers["Allow"]
    assert requests.post(server.url + "/api/events", timeout=10).status_code == 405


def test_cors_preflight_for_browser_sdks(server: DevServer) -> None:
    response = requests.options(server.url + "/e/", timeout=10)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def raw_exchange(srv: DevServer, data: bytes) -> bytes:
    with socket.create_connection((srv.host, srv.port), timeout=10) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        for _ in range(1000):  # bounded: the server closes after answering
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("data, status", [
    (b"\x00\x01\x02 garbage\r\n\r\n", b"400"),
    (b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", b"400"),
    (b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"short\"", b"400"),
    (b"POST /batch/ HTTP/1.1\r\nHost: x\r\n\r\n", b"411"),
    (b"POST /batch/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
    (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"414"),
])
def test_broken_http_gets_an_answer_and_the_server_survives(server: DevServer, data: bytes,
                                                           status: bytes) -> None:
    answer = raw_exchange(server, data)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert post(server, "/batch/", [event()]).status_code == 200


@pytest.mark.parametrize("second", [b"5", b"%d"], ids=["conflicting", "identical"])
def test_two_content_length_headers_are_400(server: DevServer, second: bytes) -> None:
    payload = json.dumps([event()]).encode()
    length = b"%d" % len(payload)
    request = (b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
               + b"\r\nContent-Length: " + (second % len(payload) if b"%" in second else second)
               + b"\r\n\r\n" + payload)
    answer = raw_exchange(server, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"400", answer[:300]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["attr"] == "Content-Length"
    assert answer.count(b"HTTP/1.1 ") == 1  # the body was not read as a second request
    assert server.store.count() == 0
    assert post(server, "/batch/", [event()]).status_code == 200


def test_chunked_body_is_read(server: DevServer) -> None:
    def chunks() -> Iterator[bytes]:
        payload = json.dumps([event(), event()]).encode()
        yield payload[:10]
        yield payload[10:]

    response = requests.post(server.url + "/batch/", data=chunks(), timeout=10)
    assert response.status_code == 200, response.text
    assert server.store.count() == 2


def test_keep_alive_connection_survives_errors(server: DevServer) -> None:
    with requests.Session() as session:
        for i in range(3):
            assert session.post(server.url + "/batch/", data=b"{bad", timeout=10).status_code == 400
            good = session.post(server.url + "/batch/", json=[event(f"e{i}")], timeout=10)
            assert good.status_code == 200
    assert server.store.count() == 3


# ------------------------------------------------------------------------------ concurrency


def test_concurrent_writers(server: DevServer) -> None:
    threads_n, requests_n, per_batch = 8, 15, 20
    shared = [event("shared", f"s{i}") for i in range(per_batch)]  # every thread resends these
    failures: List[str] = []

    def writer(index: int) -> None:
        with requests.Session() as session:
            for n in range(requests_n):
                batch = [event("load", f"t{index}-{n}-{k}") for k in range(per_batch)]
                if n % 5 == 0:
                    batch += shared
                response = session.post(server.url + "/batch/", json={"batch": batch},
                                        timeout=30)
                if response.status_code != 200:
                    failures.append(response.text)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert not any(t.is_alive() for t in threads)
    assert server.store.counts_by_event() == {"load": threads_n * requests_n * per_batch,
                                              "shared": per_batch}


def test_concurrent_person_updates_all_land(server: DevServer) -> None:
    def writer(index: int) -> None:
        for n in range(10):
            body = {"batch": [event("$set", "same-person", **{"$set": {f"k{index}_{n}": n}})]}
            assert post(server, "/batch/", body).status_code == 200

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(server.store.person_properties("same-person")) == 60


# ------------------------------------------------------------------------------------ flags

CONTEXTS = [
    {"distinct_id": "user-1"},
    {"distinct_id": "user-2", "person_properties": {"plan": "pro"}},
    {"distinct_id": "user-3", "person_properties": {"plan": "free", "email": "x@other.io"}},
    {"distinct_id": "user-4", "person_properties": {"plan": "pro", "email": "a@ACME.com"}},
    {"distinct_id": "user-5", "groups": {"company": "c1"},
     "group_properties": {"company": {"employees": 50}}},
    {"distinct_id": "user-6", "groups": {"company": "c2"},
     "group_properties": {"company": {"employees": 3}}},
] + [{"distinct_id": f"bucket-{i}", "person_properties": {"plan": "pro", "email": "e@x.y"}}
     for i in range(30)]


def local_results(ctx: Dict[str, Any]) -> Dict[str, Any]:
    return Definitions(DEFINITIONS).evaluate_all(EvaluationContext(
        distinct_id=ctx["distinct_id"], groups=ctx.get("groups", {}),
        person_properties=ctx.get("person_properties", {}),
        group_properties=ctx.get("group_properties", {})))


@pytest.mark.parametrize("ctx", CONTEXTS, ids=lambda c: c["distinct_id"])
def test_flags_equal_local_evaluation(server: DevServer, ctx: Dict[str, Any]) -> None:
    answer = flags(server, ctx)
    assert set(answer) >= {"flags", "errorsWhileComputingFlags", "requestId"}
    uuid.UUID(answer["requestId"])
    compared = 0
    for key, local in local_results(ctx).items():
        if local.value is None:
            continue  # inconclusive locally: the server decides (see the tests below)
        entry = answer["flags"][key]
        assert entry["key"] == key
        assert entry["enabled"] is local.enabled, key
        assert entry["variant"] == (local.variant if local.enabled else None), key
        assert entry["metadata"]["id"] == local.flag_id
        assert entry["metadata"]["version"] == local.flag_version
        payload = entry["metadata"]["payload"]
        assert (None if payload is None else json.loads(payload)) == local.payload, key
        assert entry["reason"]["condition_index"] == local.reason.condition_index
        assert entry["reason"]["description"] == local.reason.description
        compared += 1
    assert compared >= 5


def test_flags_v2_shape_and_reason_codes(server: DevServer) -> None:
    answer = flags(server, {"distinct_id": "user-2", "person_properties": {"plan": "pro"}})
    assert answer["errorsWhileComputingFlags"] is False
    assert answer["quotaLimited"] == []
    beta = answer["flags"]["beta"]
    assert beta == {
        "key": "beta", "enabled": True, "variant": None,
        "reason": {"code": "condition_match", "condition_index": 0,
                   "description": "Matched condition 0."},
        "metadata": {"id": 2, "version": 1, "payload": '{"color":"blue"}'},
    }
    assert answer["flags"]["off"]["reason"]["code"] == "flag_disabled"
    assert answer["flags"]["big-company"]["reason"]["code"] == "no_group_type"
    assert answer["flags"]["multi"]["variant"] in ("control", "test")


def test_flags_v1_shape_without_version(server: DevServer) -> None:
    response = post(server, "/flags/", {"api_key": "x", "distinct_id": "user-2",
                                        "person_properties": {"plan": "pro"}})
    body = response.json()
    assert body["featureFlags"]["beta"] is True
    assert body["featureFlags"]["multi"] in ("control", "test")
    assert body["featureFlagPayloads"]["beta"] == '{"color":"blue"}'
    assert "flags" not in body


def test_flag_keys_to_evaluate(server: DevServer) -> None:
    keys = ["simple", "beta-dependent", "nope"]
    answer = flags(server, {"distinct_id": "u", "flag_keys_to_evaluate": keys})
    assert set(answer["flags"]) == {"simple", "beta-dependent"}
    assert answer["flags"]["beta-dependent"]["enabled"] is False  # dependency still evaluated


def test_server_decides_what_local_evaluation_cannot(server: DevServer) -> None:
    ctx = {"distinct_id": "nobody"}  # no properties at all
    local = local_results(ctx)
    for key in ("beta", "acme", "no-email", "continuity", "static-cohort", "beta-dependent"):
        assert local[key].value is None, key  # inconclusive locally ...
    answer = flags(server, ctx)["flags"]
    # ... decided the way PostHog's server does: a missing property fails its filter,
    # is_not_set passes, continuity is ignored, an unknown (static) cohort has no members.
    assert answer["beta"]["enabled"] is False
    assert answer["acme"]["enabled"] is False
    assert answer["no-email"]["enabled"] is True
    assert answer["continuity"]["enabled"] is True
    assert answer["static-cohort"]["enabled"] is False
    assert answer["beta-dependent"]["enabled"] is False


def test_a_flag_nobody_can_evaluate_is_left_out_with_an_error_flag(server: DevServer) -> None:
    unknown_group = {"id": 50, "key": "unknown-group", "version": 1, "active": True,
                     "filters": {"aggregation_group_type_index": 5,
                                 "groups": [{"properties": [], "rollout_percentage": 100}]}}
    server.set_definitions({**DEFINITIONS, "flags": [*DEFINITIONS["flags"], unknown_group]})
    answer = flags(server, {"distinct_id": "u", "groups": {"company": "c"}})
    assert "unknown-group" not in answer["flags"]
    assert answer["errorsWhileComputingFlags"] is True
    assert answer["flags"]["simple"]["enabled"] is True
    v1 = post(server, "/flags/", {"distinct_id": "u"}).json()
    assert "unknown-group" not in v1["featureFlags"] and v1["errorsWhileComputingFlags"] is True


def test_cohorts_and_dependencies_come_from_the_evaluator(server: DevServer) -> None:
    acme = flags(server, {"distinct_id": "a", "person_properties": {"email": "x@acme.com"}})
    assert acme["flags"]["acme"]["enabled"] is True
    assert acme["flags"]["no-email"]["enabled"] is False
    pro = flags(server, {"distinct_id": "a", "person_properties": {"plan": "pro"}})
    assert pro["flags"]["beta-dependent"]["enabled"] is True


def test_stored_person_properties_target_flags(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [
        event("$set", "ada", **{"$set": {"plan": "pro"}, "$set_once": {"email": "ada@acme.com"}}),
        event("$set", "ada", **{"$set_once": {"email": "other@x.io"}}),  # once: ignored
    ]})
    assert server.store.person_properties("ada") == {"plan": "pro", "email": "ada@acme.com"}
    answer = flags(server, {"distinct_id": "ada"})["flags"]
    assert answer["beta"]["enabled"] is True
    assert answer["acme"]["enabled"] is True
    # The request's properties win over stored ones.
    override = flags(server, {"distinct_id": "ada", "person_properties": {"plan": "free"}})
    assert override["flags"]["beta"]["enabled"] is False


def test_set_inside_properties_and_unset(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [
        event("pageview", "bo", properties={"$set": {"plan": "pro", "tmp": 1},
                                             "$set_once": {"first": "yes"}}),
        event("pageview", "bo", properties={"$unset": ["tmp"]}),
    ]})
    assert server.store.person_properties("bo") == {"plan": "pro", "first": "yes"}


def test_aliases_share_person_properties(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [
        event("$set", "anon-1", **{"$set": {"plan": "pro"}}),
        event("$create_alias", "anon-1", properties={"distinct_id": "anon-1", "alias": "ada"}),
        event("$set", "ada", **{"$set": {"email": "ada@acme.com"}}),
    ]})
    assert server.store.person_properties("anon-1") == {"plan": "pro", "email": "ada@acme.com"}
    assert flags(server, {"distinct_id": "ada"})["flags"]["beta"]["enabled"] is True
    person = requests.get(server.url + "/api/person", params={"distinct_id": "ada"},
                          timeout=10).json()
    assert person["distinct_ids"] == ["ada", "anon-1"]


def test_identify_merges_two_persons(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [
        event("$set", "anon", **{"$set": {"plan": "free", "seen": True}}),
        event("$set", "user", **{"$set": {"plan": "pro"}}),
        event("$identify", "user", properties={"$anon_distinct_id": "anon"}),
    ]})
    assert server.store.person_properties("anon") == {"plan": "pro", "seen": True}
    assert server.store.summary()["persons"] == 1


def test_personless_events_create_no_person(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [event("x", "ghost", properties={
        "$process_person_profile": False, "$set": {"plan": "pro"}})]})
    assert server.store.person_properties("ghost") == {}
    assert server.store.count() == 1


def test_group_properties_from_groupidentify(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [event("$groupidentify", "$company_c9", properties={
        "$group_type": "company", "$group_key": "c9", "$group_set": {"employees": 500}})]})
    answer = flags(server, {"distinct_id": "u", "groups": {"company": "c9"}})["flags"]
    assert answer["big-company"]["enabled"] is True
    override = flags(server, {"distinct_id": "u", "groups": {"company": "c9"},
                              "group_properties": {"company": {"employees": 1}}})
    assert override["flags"]["big-company"]["enabled"] is False


@pytest.mark.parametrize("body, status", [
    ({"api_key": "x"}, 400),
    ({"api_key": "x", "distinct_id": "u", "groups": ["a"]}, 400),
    ({"api_key": "x", "distinct_id": "u", "person_properties": "plan"}, 400),
    ({"api_key": "x", "distinct_id": "u", "group_properties": {"company": 1}}, 400),
    ({"api_key": "x", "distinct_id": "u", "flag_keys_to_evaluate": "beta"}, 400),
    (["not", "an", "object"], 400),
])
def test_bad_flags_requests(server: DevServer, body: Any, status: int) -> None:
    assert_error(post(server, "/flags/?v=2", body), status)


def test_flags_requires_the_project_key_when_set(secured: DevServer) -> None:
    assert_error(post(secured, "/flags/?v=2", {"distinct_id": "u"}), 401)
    assert_error(post(secured, "/flags/?v=2", {"api_key": "phc_no", "distinct_id": "u"}), 401)
    ok = post(secured, "/flags/?v=2", {"api_key": PROJECT_KEY, "distinct_id": "u"})
    assert ok.status_code == 200


def test_flags_accepts_gzip(server: DevServer) -> None:
    data = gzip.compress(json.dumps({"api_key": "x", "distinct_id": "u"}).encode())
    response = post(server, "/flags/?v=2", data=data, headers={"Content-Encoding": "gzip"})
    assert response.json()["flags"]["simple"]["enabled"] is True


# ------------------------------------------------------------------------------ definitions


@pytest.mark.parametrize("path", ["/flags/definitions", "/api/feature_flag/local_evaluation/"])
def test_definitions_etag_304_and_401(server: DevServer, path: str) -> None:
    url = server.url + path + "?token=phc_any&send_cohorts"
    auth = {"Authorization": f"Bearer {PERSONAL_KEY}"}
    assert_error(requests.get(url, timeout=10), 401)
    assert_error(requests.get(url, headers={"Authorization": "Bearer phx_wrong"}, timeout=10), 401)
    first = requests.get(url, headers=auth, timeout=10)
    assert first.status_code == 200
    assert first.json() == DEFINITIONS
    etag = first.headers["ETag"]
    cached = requests.get(url, headers={**auth, "If-None-Match": etag}, timeout=10)
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["ETag"] == etag
    stale = requests.get(url, headers={**auth, "If-None-Match": '"0-old"'}, timeout=10)
    assert stale.status_code == 200
    server.set_definitions({"flags": DEFINITIONS["flags"][:1]})
    changed = requests.get(url, headers={**auth, "If-None-Match": etag}, timeout=10)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    assert [f["key"] for f in changed.json()["flags"]] == ["simple"]
    assert changed.json()["cohorts"] == {} and changed.json()["group_type_mapping"] == {}


def test_definitions_reject_a_wrong_project_token(secured: DevServer) -> None:
    auth = {"Authorization": f"Bearer {PERSONAL_KEY}"}
    url = secured.url + "/flags/definitions"
    assert_error(requests.get(url, params={"token": "phc_wrong"}, headers=auth, timeout=10), 401)
    assert requests.get(url, params={"token": PROJECT_KEY}, headers=auth, timeout=10).ok


def test_set_definitions_rejects_malformed_documents(server: DevServer) -> None:
    for bad in ({"flags": {}}, {"flags": [{"id": 1}]}, "nope", {"flags": [], "cohorts": []}):
        with pytest.raises(ValueError):
            server.set_definitions(bad)  # type: ignore[arg-type]
    assert flags(server, {"distinct_id": "u"})["flags"]["simple"]["enabled"] is True


def test_flags_file_is_loaded_and_reloaded_when_it_changes(tmp_path: Any) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(DEFINITIONS))
    srv = make_server(definitions=None, flags_path=str(path))
    try:
        auth = {"Authorization": f"Bearer {PERSONAL_KEY}"}
        first = requests.get(srv.url + "/flags/definitions", headers=auth, timeout=10)
        assert len(first.json()["flags"]) == len(DEFINITIONS["flags"])
        path.write_text(json.dumps({"flags": DEFINITIONS["flags"][:2]}))
        os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        second = requests.get(srv.url + "/flags/definitions", headers=auth, timeout=10)
        assert second.headers["ETag"] != first.headers["ETag"]
        assert len(second.json()["flags"]) == 2
        path.write_text("{broken")  # a bad edit keeps the last good flags
        os.utime(path, ns=(time.time_ns() + 2 * 10**9, time.time_ns() + 2 * 10**9))
        third = requests.get(srv.url + "/api/flags", timeout=10).json()
        assert len(third["flags"]) == 2
        assert "not valid JSON" in third["reload_error"]
    finally:
        srv.stop()


def test_bad_flags_file_fails_at_construction(tmp_path: Any) -> None:
    path = tmp_path / "flags.json"
    path.write_text("{nope")
    with pytest.raises(ValueError, match=r"flags\.json"):
        DevServer(port=0, flags_path=str(path))
    with pytest.raises(ValueError, match="cannot read"):
        DevServer(port=0, flags_path=str(tmp_path / "missing.json"))


# ---------------------------------------------------------------------------- end to end


def test_client_capture_is_visible_in_api_events(server: DevServer) -> None:
    client = productos.Client("phc_x", host=server.url, flush_interval=0.05)
    try:
        event_id = client.capture("checkout", distinct_id="e2e-user",
                                  properties={"amount": 12.5})
        client.set(distinct_id="e2e-user", properties={"plan": "pro"})
        assert client.flush(10)
    finally:
        client.shutdown(5)
    listed = requests.get(server.url + "/api/events", params={"event": "checkout"},
                          timeout=10).json()
    assert [e["uuid"] for e in listed["events"]] == [event_id]
    assert listed["events"][0]["properties"]["amount"] == 12.5
    assert listed["events"][0]["distinct_id"] == "e2e-user"
    assert server.store.person_properties("e2e-user") == {"plan": "pro"}


def test_client_local_evaluation_equals_server_flags(server: DevServer) -> None:
    client = productos.Client("phc_x", host=server.url, personal_api_key=PERSONAL_KEY,
                              flush_interval=0.05, poll_interval=60)
    try:
        assert client.load_feature_flags()
        checked = 0
        for ctx in CONTEXTS:
            answer = flags(server, ctx)["flags"]
            for key in ("simple", "beta", "multi", "half", "acme", "beta-dependent",
                        "big-company", "off"):
                result = client.get_feature_flag_result(
                    key, ctx["distinct_id"], groups=ctx.get("groups"),
                    person_properties=ctx.get("person_properties"),
                    group_properties=ctx.get("group_properties"),
                    only_evaluate_locally=True, send_feature_flag_events=False)
                assert result is not None
                if result.value is None:
                    continue
                assert result.locally_evaluated
                server_value = answer[key]["variant"] or answer[key]["enabled"]
                assert result.value == server_value, (key, ctx)
                checked += 1
        assert checked > 100
        # A flag local data cannot decide goes to the dev server, which answers it.
        assert client.get_feature_flag("continuity", "someone",
                                       send_feature_flag_events=False) is True
    finally:
        client.shutdown(5)


def test_client_remote_flags_use_stored_person_properties(server: DevServer) -> None:
    client = productos.Client("phc_x", host=server.url, flush_interval=0.05,
                              enable_local_evaluation=False)
    try:
        client.set(distinct_id="remote-user", properties={"plan": "pro"})
        assert client.flush(10)
        assert client.get_feature_flag("beta", "remote-user",
                                       send_feature_flag_events=False) is True
        assert client.get_feature_flag("beta", "someone-else",
                                       send_feature_flag_events=False) is False
    finally:
        client.shutdown(5)


# ------------------------------------------------------------------------------ JSON API


def test_api_events_filters_and_limit(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [event("a", "x"), event("b", "x"), event("a", "y")]})
    get = lambda **params: requests.get(server.url + "/api/events", params=params,  # noqa: E731
                                        timeout=10)
    assert [e["event"] for e in get().json()["events"]] == ["a", "b", "a"]
    assert [e["distinct_id"] for e in get(event="a").json()["events"]] == ["y", "x"]
    assert [e["event"] for e in get(distinct_id="x").json()["events"]] == ["b", "a"]
    assert len(get(limit=1).json()["events"]) == 1
    last = get().json()["last_seq"]
    assert get(after=last).json()["events"] == []
    for bad in ("0", "-1", "abc", "100000"):
        assert_error(get(limit=bad), 400)


def test_api_stats_and_flags(server: DevServer) -> None:
    post(server, "/batch/", {"batch": [event("a"), event("a"), event("b")]})
    stats = requests.get(server.url + "/api/stats", timeout=10).json()
    assert stats["events"] == 3
    assert stats["by_event"] == {"a": 2, "b": 1}
    assert stats["flags"] == len(DEFINITIONS["flags"])
    listing = requests.get(server.url + "/api/flags", timeout=10).json()
    by_key = {f["key"]: f for f in listing["flags"]}
    assert by_key["beta"]["conditions"][0]["summary"] == "100% of users where plan = pro"
    assert by_key["half"]["conditions"][0]["rollout_percentage"] == 50
    assert by_key["multi"]["variants"][0] == {"key": "control", "rollout_percentage": 50}
    assert by_key["big-company"]["aggregation"] == "company groups"
    assert by_key["static-cohort"]["local_evaluation"] is False
    assert by_key["static-cohort"]["local_evaluation_problem"]
    assert by_key["simple"]["local_evaluation"] is True
    assert by_key["off"]["active"] is False
    evaluated = requests.get(server.url + "/api/flags", params={"distinct_id": "z"},
                             timeout=10).json()
    assert {f["key"]: f["value"] for f in evaluated["flags"]}["simple"] is True


def test_page_is_self_contained(server: DevServer) -> None:
    page = requests.get(server.url + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "/api/events" in html and "<script>" in html and "<style>" in html
    assert "http://" not in html and "https://" not in html  # no CDN, nothing external
    assert requests.get(server.url + "/_health", timeout=10).json()["status"] == "ok"


def test_api_person_404(server: DevServer) -> None:
    assert_error(requests.get(server.url + "/api/person", params={"distinct_id": "no"},
                              timeout=10), 404)
    assert_error(requests.get(server.url + "/api/person", timeout=10), 400)


# --------------------------------------------------------------------- storage and export


def test_database_persists_across_restarts(tmp_path: Any) -> None:
    db = str(tmp_path / "dev.sqlite3")
    first = make_server(db_path=db)
    try:
        post(first, "/batch/", {"batch": [event("kept", "p", **{"$set": {"plan": "pro"}})]})
    finally:
        first.stop()
    second = make_server(db_path=db)
    try:
        assert second.store.count() == 1
        assert second.store.person_properties("p") == {"plan": "pro"}
    finally:
        second.stop()


def test_temporary_database_is_removed_on_stop() -> None:
    srv = make_server()
    path = srv.db_path
    assert os.path.exists(path)
    srv.stop()
    srv.stop()  # idempotent
    assert not os.path.exists(path)


def test_a_non_database_file_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"hello, I am not SQLite" * 100)
    with pytest.raises(ValueError, match="not a usable"):
        DevServer(port=0, db_path=str(path))


@pytest.fixture
def filled(tmp_path: Any) -> Iterator[DevServer]:
    srv = make_server(db_path=str(tmp_path / "events.sqlite3"))
    try:
        post(srv, "/batch/", {"batch": [
            event("signup", "ada", properties={"plan": "pro", "note": 'comma, "quote"'}),
            event("pageview", "ada"),
            event("$set", "bob", **{"$set": {"plan": "free"}}),
        ]})
        yield srv
    finally:
        srv.stop()


def test_export_ndjson(filled: DevServer) -> None:
    out = io.StringIO()
    assert export_events(filled.db_path, "ndjson", out=out) == 3
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["event"] for e in lines] == ["signup", "pageview", "$set"]  # oldest first
    assert lines[0]["properties"] == {"plan": "pro", "note": 'comma, "quote"'}
    assert lines[2]["$set"] == {"plan": "free"}
    assert {"uuid", "distinct_id", "timestamp", "received_at", "seq"} <= set(lines[0])
    limited = io.StringIO()
    assert export_events(filled.db_path, "ndjson", out=limited, limit=2) == 2
    assert [json.loads(x)["event"] for x in limited.getvalue().splitlines()] == ["pageview", "$set"]
    only = io.StringIO()
    assert export_events(filled.db_path, "ndjson", out=only, event="pageview") == 1


def test_export_csv(filled: DevServer) -> None:
    out = io.StringIO()
    assert export_events(filled.db_path, "csv", out=out) == 3
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["event"] for r in rows] == ["signup", "pageview", "$set"]
    assert json.loads(rows[0]["properties"]) == {"plan": "pro", "note": 'comma, "quote"'}
    assert json.loads(rows[2]["set"]) == {"plan": "free"}
    assert rows[0]["set"] == ""
    assert rows[0]["distinct_id"] == "ada" and rows[0]["uuid"]


def test_export_errors(tmp_path: Any, filled: DevServer) -> None:
    with pytest.raises(FileNotFoundError):
        export_events(str(tmp_path / "missing.sqlite3"), "ndjson", out=io.StringIO())
    with pytest.raises(ValueError, match="format"):
        export_events(filled.db_path, "xml", out=io.StringIO())
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"junk" * 1000)
    with pytest.raises(ValueError):
        export_events(str(junk), "ndjson", out=io.StringIO())


def test_export_pages_through_many_events(server: DevServer) -> None:
    batch = [event("bulk", f"u{i}") for i in range(2500)]
    post(server, "/batch/", {"batch": batch})
    out = io.StringIO()
    assert export_events(server.db_path, "ndjson", out=out) == 2500
    assert [json.loads(x)["uuid"] for x in out.getvalue().splitlines()] == [
        e["uuid"] for e in batch]


def test_tail_events(filled: DevServer) -> None:
    last_two = list(tail_events(filled.db_path, limit=2))
    assert [e["event"] for e in last_two] == ["pageview", "$set"]
    stop = threading.Event()
    following = threading.Event()
    seen: List[str] = []

    def follow() -> None:
        # limit=1: the newest stored event comes first, which tells the test that the
        # follower has read where the table ends and waits for what comes after.
        for ev in tail_events(filled.db_path, follow=True, limit=1, poll_interval=0.05,
                              timeout=20, stop=stop):
            seen.append(ev["event"])
            following.set()
            if ev["event"] == "later":
                stop.set()

    thread = threading.Thread(target=follow)
    thread.start()
    assert following.wait(10)
    post(filled, "/batch/", {"batch": [event("later")]})
    thread.join(25)
    assert not thread.is_alive()
    assert seen == ["$set", "later"]


def test_tail_follow_ends_at_its_timeout(filled: DevServer) -> None:
    started = time.monotonic()
    events = list(tail_events(filled.db_path, follow=True, limit=1, poll_interval=0.05,
                              timeout=0.3))
    assert [e["event"] for e in events] == ["$set"]
    assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------ lifecycle


def test_serve_forever_stops_from_another_thread() -> None:
    srv = DevServer(host="127.0.0.1", port=0)
    thread = threading.Thread(target=srv.serve_forever)
    thread.start()
    assert wait_until(lambda: srv.port != 0)  # bound: the port it got is known
    assert wait_until(lambda: requests.get(srv.url + "/_health", timeout=5).ok)
    srv.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_port_in_use_raises_oserror(server: DevServer) -> None:
    other = DevServer(host="127.0.0.1", port=server.port)
    try:
        with pytest.raises(OSError):
            other.start()
    finally:
        other.stop()


def test_deflate_and_identity_encodings(server: DevServer) -> None:
    data = zlib.compress(json.dumps([event()]).encode())
    assert post(server, "/batch/", data=data, headers={"Content-Encoding": "deflate"}).ok
    raw = json.dumps([event()]).encode()
    assert post(server, "/batch/", data=raw, headers={"Content-Encoding": "identity"}).ok
    assert server.store.count() == 2


@pytest.mark.allow_internal_errors
def test_an_internal_error_is_a_500_and_the_server_keeps_serving(
        server: DevServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(events: Any) -> Any:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.store, "ingest", broken)
    body = assert_error(post(server, "/batch/", [event()]), 500)
    assert "disk on fire" not in body["detail"]  # details go to the log, not the client
    monkeypatch.undo()
    assert post(server, "/batch/", [event()]).status_code == 200


def test_responses_are_not_held_back_by_nagles_algorithm(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # Headers and body are two writes; with Nagle on, a kept-alive client waits ~40 ms for the
    # body of every response (the delayed ACK). The accepted socket must have TCP_NODELAY.
    from productos.devserver import plumbing

    seen: List[int] = []
    setup = plumbing.Handler.setup

    def recording_setup(self: Any) -> None:
        setup(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(plumbing.Handler, "setup", recording_setup)
    srv = make_server()
    try:
        with requests.Session() as session:  # one kept-alive connection, three requests
            for _ in range(3):
                answer = session.post(srv.url + "/batch/", json={
                    "api_key": "phc_x", "batch": [event("nagle", "u1")]})
                assert answer.status_code == 200
    finally:
        srv.stop()
    assert len(seen) == 1 and seen[0] != 0
