"""Tests of the loopback test server itself, driven with plain `requests`."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

import pytest
import requests

try:
    from tests.server import Delay, Drop, LoopbackServer, Respond, RetryAfter
except ModuleNotFoundError:
    from server import Delay, Drop, LoopbackServer, Respond, RetryAfter  # type: ignore[no-redef]

TOKEN = "phc_test"


def make_event(name: str = "clicked", **extra: Any) -> Dict[str, Any]:
    """A minimal valid event with a fresh uuid."""
    event = {"event": name, "distinct_id": "user-1", "properties": {}, "uuid": str(uuid.uuid4())}
    event.update(extra)
    return event


def post_batch(
    server: LoopbackServer,
    events: List[Dict[str, Any]],
    *,
    gzipped: bool = False,
    path: str = "/batch/",
    timeout: float = 2.0,
    session: Optional[requests.Session] = None,
) -> requests.Response:
    """POST a batch body the way the SDK does."""
    body = json.dumps({"api_key": TOKEN, "batch": events, "historical_migration": False}).encode()
    headers = {"Content-Type": "application/json"}
    if gzipped:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return (session or requests).post(
        server.url + path, data=body, headers=headers, timeout=timeout
    )


# --------------------------------------------------------------------------- lifecycle


def test_context_manager_binds_loopback_and_stops() -> None:
    with LoopbackServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server._httpd is not None
        assert server._httpd.server_address[0] == "127.0.0.1"
        url = server.url
        assert requests.get(url + "/nope", timeout=2).status_code == 404
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/nope", timeout=1)


def test_stop_closes_an_idle_keepalive_connection() -> None:
    server = LoopbackServer().start()
    httpd = server._httpd
    assert httpd is not None
    session = requests.Session()
    assert post_batch(server, [make_event()], session=session).status_code == 200
    with httpd._conns_lock:
        (handler,) = httpd._conns  # the connection stays open, its thread waiting for more
    assert handler.is_alive()
    # The idle timeout is 30 s and stop() waits at most 5: the thread ends only if stop()
    # shut the connection down itself.
    server.stop()
    assert not handler.is_alive()
    assert httpd._conns == {}
    session.close()


def test_keepalive_reuses_one_connection(live_server: LoopbackServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", live_server.port, timeout=2)
    body = json.dumps({"api_key": TOKEN, "batch": [make_event()]})
    for _ in range(3):
        conn.request("POST", "/batch/", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read()) == {"status": 1}
    conn.close()
    assert len(live_server.events) == 3


# --------------------------------------------------------------------------- ingestion


def test_gzip_batch_is_accepted_and_recorded(live_server: LoopbackServer) -> None:
    events = [make_event("a"), make_event("b")]
    resp = post_batch(live_server, events, gzipped=True)
    assert resp.status_code == 200
    assert resp.json() == {"status": 1}
    assert live_server.wait_for_events(2, timeout=1)
    assert live_server.events == events
    assert live_server.uuids() == [e["uuid"] for e in events]
    assert live_server.accepted_batches == [events]
    (req,) = live_server.requests
    assert (req.method, req.path, req.response_status) == ("POST", "/batch/", 200)
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers.get("CONTENT-TYPE") == "application/json"
    assert gzip.decompress(req.raw_body) == req.body
    assert req.json["api_key"] == TOKEN


@pytest.mark.parametrize("path", ["/i/v0/e/", "/capture/", "/e/", "/track/"])
def test_other_ingest_paths_accept_single_event_with_token(
    live_server: LoopbackServer, path: str
) -> None:
    event = make_event(token=TOKEN)
    resp = requests.post(live_server.url + path, json=event, timeout=2)
    assert resp.status_code == 200
    assert live_server.events == [event]


def test_chunked_upload_is_read(live_server: LoopbackServer) -> None:
    body = json.dumps({"api_key": TOKEN, "batch": [make_event()]}).encode()
    resp = requests.post(live_server.url + "/batch/", data=iter([body[:10], body[10:]]), timeout=2)
    assert resp.status_code == 200
    assert len(live_server.events) == 1


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b"{not json", {}, 400),
        (b"not gzip at all", {"Content-Encoding": "gzip"}, 400),
        (b'{"batch": [{"event": "x", "distinct_id": "u"}]}', {}, 401),
        (json.dumps({"api_key": TOKEN, "batch": []}).encode(), {}, 400),
        (json.dumps({"api_key": TOKEN, "batch": [{"distinct_id": "u"}]}).encode(), {}, 400),
        (json.dumps({"api_key": TOKEN, "batch": "nope"}).encode(), {}, 400),
    ],
    ids=["bad-json", "bad-gzip", "no-token", "empty-batch", "no-event-name", "batch-not-list"],
)
def test_bad_ingest_bodies_are_rejected(
    live_server: LoopbackServer, body: bytes, headers: Dict[str, str], status: int
) -> None:
    resp = requests.post(live_server.url + "/batch/", data=body, headers=headers, timeout=2)
    assert resp.status_code == status
    assert live_server.events == []
    assert live_server.requests[0].response_status == status
    assert post_batch(live_server, [make_event()]).status_code == 200  # still alive


def test_max_body_bytes_gives_413(live_server: LoopbackServer) -> None:
    live_server.max_body_bytes = 300
    big = [make_event(properties={"pad": "x" * 400})]
    assert post_batch(live_server, big).status_code == 413
    assert post_batch(live_server, [make_event()]).status_code == 200
    assert len(live_server.events) == 1


# --------------------------------------------------------------------------- behaviours


def test_enqueued_behaviours_are_fifo_and_one_shot(live_server: LoopbackServer) -> None:
    live_server.enqueue(Respond(503), Respond(400, body={"detail": "bad"}), RetryAfter(429, 7))
    first, second, third = (post_batch(live_server, [make_event()]) for _ in range(3))
    assert first.status_code == 503
    assert (second.status_code, second.json()) == (400, {"detail": "bad"})
    assert (third.status_code, third.headers["Retry-After"]) == (429, "7")
    assert live_server.events == []
    assert live_server.pending() == 0
    assert post_batch(live_server, [make_event()]).status_code == 200
    assert [r.response_status for r in live_server.requests] == [503, 400, 429, 200]


def test_respond_store_true_is_a_lost_reply(live_server: LoopbackServer) -> None:
    live_server.enqueue(Respond(500, store=True))
    event = make_event()
    assert post_batch(live_server, [event]).status_code == 500
    assert live_server.uuids() == [event["uuid"]]


def test_delay_then_normal_and_client_timeout(live_server: LoopbackServer) -> None:
    live_server.enqueue(Delay(0.2), Delay(0.5, then=Respond(502)))
    started = time.monotonic()
    assert post_batch(live_server, [make_event()]).status_code == 200
    assert time.monotonic() - started >= 0.2
    with pytest.raises(requests.Timeout):
        post_batch(live_server, [make_event()], timeout=0.1)
    assert len(live_server.events) == 1


def test_drop_resets_connection(live_server: LoopbackServer) -> None:
    live_server.enqueue(Drop(), Drop(store=True))
    with pytest.raises(requests.ConnectionError):
        post_batch(live_server, [make_event()])
    assert live_server.events == []
    event = make_event()
    with pytest.raises(requests.ConnectionError):
        post_batch(live_server, [event])
    assert live_server.uuids() == [event["uuid"]]
    assert [(r.dropped, r.response_status) for r in live_server.requests] == [(True, None)] * 2
    assert post_batch(live_server, [make_event()]).status_code == 200


def test_set_down_then_up(live_server: LoopbackServer) -> None:
    live_server.set_down(True)
    with pytest.raises(requests.ConnectionError):
        post_batch(live_server, [make_event()])
    with pytest.raises(requests.ConnectionError):
        requests.get(live_server.url + "/flags/definitions", timeout=2)
    live_server.set_down(False)
    assert post_batch(live_server, [make_event()]).status_code == 200
    assert len(live_server.requests) == 3


def test_set_delay_slows_every_route(live_server: LoopbackServer) -> None:
    live_server.set_delay(0.15)
    started = time.monotonic()
    assert requests.get(live_server.url + "/unknown", timeout=2).status_code == 404
    assert time.monotonic() - started >= 0.15
    live_server.set_delay(0)


def test_fail_rate_is_seeded_and_deterministic(live_server: LoopbackServer) -> None:
    def run() -> List[requests.Response]:
        live_server.clear()
        live_server.fail_rate(p503=0.3, p429=0.2, retry_after=2, p_store_then_503=0.2, seed=42)
        return [post_batch(live_server, [make_event()]) for _ in range(20)]

    first = run()
    statuses = [r.status_code for r in first]
    stored = len(live_server.accepted_batches)
    assert [r.status_code for r in run()] == statuses
    assert set(statuses) == {200, 429, 503}
    assert all(r.headers["Retry-After"] == "2" for r in first if r.status_code == 429)
    assert statuses.count(200) < stored < statuses.count(200) + statuses.count(503)
    live_server.fail_rate()
    assert post_batch(live_server, [make_event()]).status_code == 200


def test_wait_for_events_timeout_and_wakeup(live_server: LoopbackServer) -> None:
    assert live_server.wait_for_events(1, timeout=0.1) is False
    woke: List[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(live_server.wait_for_events(1, 60)))
    waiter.start()
    assert post_batch(live_server, [make_event()]).status_code == 200
    waiter.join(30)  # far less than its 60 s timeout: only the stored event can end the wait
    assert not waiter.is_alive()
    assert woke == [True]


def test_wait_for_events_returns_when_the_server_stops() -> None:
    server = LoopbackServer().start()
    woke: List[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(server.wait_for_events(1, 60)))
    waiter.start()
    server.stop()
    waiter.join(30)
    assert not waiter.is_alive()
    assert woke == [False]


# --------------------------------------------------------------------------- flags


def test_definitions_auth_etag_and_304(live_server: LoopbackServer) -> None:
    url = live_server.url + "/flags/definitions?token=phc_test&send_cohorts"
    assert requests.get(url, timeout=2).status_code == 401
    bad = {"Authorization": "Bearer phx_wrong"}
    assert requests.get(url, headers=bad, timeout=2).status_code == 401

    auth = {"Authorization": "Bearer phx_test"}
    live_server.set_definitions({"flags": [{"key": "a"}], "group_type_mapping": {}, "cohorts": {}})
    resp = requests.get(url, headers=auth, timeout=2)
    assert resp.status_code == 200
    assert resp.json()["flags"] == [{"key": "a"}]
    etag = resp.headers["ETag"]
    assert etag == live_server.etag

    resp = requests.get(url, headers={**auth, "If-None-Match": etag}, timeout=2)
    assert (resp.status_code, resp.content) == (304, b"")

    live_server.set_definitions({"flags": [{"key": "b"}], "group_type_mapping": {}, "cohorts": {}})
    resp = requests.get(url, headers={**auth, "If-None-Match": etag}, timeout=2)
    assert resp.status_code == 200
    assert resp.headers["ETag"] != etag
    assert live_server.requests[-1].query == {"token": "phc_test", "send_cohorts": ""}


def test_definitions_status_override_and_legacy_fallback(live_server: LoopbackServer) -> None:
    auth = {"Authorization": "Bearer phx_test"}
    new = live_server.url + "/flags/definitions"
    legacy = live_server.url + "/api/feature_flag/local_evaluation/"
    assert requests.get(legacy, headers=auth, timeout=2).status_code == 200
    live_server.definitions_status = 402
    assert requests.get(new, headers=auth, timeout=2).status_code == 402
    live_server.definitions_status = None
    live_server.legacy_only = True
    assert requests.get(new, headers=auth, timeout=2).status_code == 404
    assert requests.get(legacy, headers=auth, timeout=2).status_code == 200


def test_flags_default_handler_and_gzip(live_server: LoopbackServer) -> None:
    url = live_server.url + "/flags/?v=2"
    body = {"api_key": TOKEN, "distinct_id": "u1"}
    resp = requests.post(url, json=body, timeout=2)
    assert resp.json() == {"flags": {}, "errorsWhileComputingFlags": False, "requestId": "test"}
    assert live_server.requests[-1].query == {"v": "2"}

    seen: List[Dict[str, Any]] = []

    def handler(payload: Dict[str, Any]) -> Any:
        seen.append(payload)
        return 200, {"flags": {"f": {"key": "f", "enabled": True}}}

    live_server.flags_handler = handler
    gz = gzip.compress(json.dumps(body).encode())
    resp = requests.post(url, data=gz, headers={"Content-Encoding": "gzip"}, timeout=2)
    assert resp.json()["flags"]["f"]["enabled"] is True
    assert seen == [body]
    assert requests.post(url, json={"distinct_id": "u1"}, timeout=2).status_code == 401


def test_flags_route_queue(live_server: LoopbackServer) -> None:
    live_server.enqueue(Respond(502), Drop(), route="flags")
    url = live_server.url + "/flags/?v=2"
    body = {"api_key": TOKEN, "distinct_id": "u1"}
    assert requests.post(url, json=body, timeout=2).status_code == 502
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=body, timeout=2)
    assert requests.post(url, json=body, timeout=2).status_code == 200
    assert post_batch(live_server, [make_event()]).status_code == 200  # ingest queue untouched


# --------------------------------------------------------------------------- robustness


def test_unknown_path_and_wrong_method(live_server: LoopbackServer) -> None:
    assert requests.post(live_server.url + "/decide/", json={}, timeout=2).status_code == 404
    resp = requests.get(live_server.url + "/batch/", timeout=2)
    assert (resp.status_code, resp.headers["Allow"]) == (405, "POST")


def test_garbage_on_the_wire_does_not_kill_the_server(live_server: LoopbackServer) -> None:
    for raw in (
        b"\x00\x01garbage\r\n\r\n",
        b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /batch/ HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nshort",
    ):
        with socket.create_connection(("127.0.0.1", live_server.port), timeout=2) as sock:
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(1024)
    assert post_batch(live_server, [make_event()]).status_code == 200
