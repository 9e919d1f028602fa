"""posthog 7.91's flag API, run as posthog and as productos against the same local server.

Each scenario is a script written for posthog (tests/migration.py runs it once with posthog
and once with the import switched to productos); return values, the ``/flags`` request bodies
and the events on the wire are compared field by field.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

try:
    from tests.migration import differences, run_both
except ModuleNotFoundError:  # pragma: no cover - rootdir-relative imports
    from migration import differences, run_both  # type: ignore[no-redef]

pytest.importorskip("posthog")

DATA = Path(__file__).parent / "data" / "sample_definitions.json"
DEFINITIONS = json.loads(DATA.read_text())

REMOTE_ANSWER = {
    "flags": {
        "beta": {"key": "beta", "enabled": True, "variant": None,
                 "reason": {"code": "condition_match", "description": "Matched condition set 1",
                            "condition_index": 0},
                 "metadata": {"id": 2, "version": 3, "payload": "{\"color\": \"red\"}"}},
        "multi": {"key": "multi", "enabled": True, "variant": "test",
                  "reason": {"code": "condition_match", "description": "Matched condition set 1",
                             "condition_index": 0},
                  "metadata": {"id": 3, "version": 1, "payload": "{\"x\": 1}"}},
        "off": {"key": "off", "enabled": False, "variant": None,
                "reason": {"code": "no_condition_match", "description": "No matching condition"},
                "metadata": {"id": 5, "version": 1}},
    },
    "requestId": "req-42",
}


def _answer(body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
    answer = copy.deepcopy(REMOTE_ANSWER)
    keys = body.get("flag_keys_to_evaluate")
    if keys:
        answer["flags"] = {k: v for k, v in answer["flags"].items() if k in keys}
    return 200, answer


@pytest.fixture
def server(live_server):
    live_server.set_definitions(copy.deepcopy(DEFINITIONS))
    live_server.flags_handler = _answer
    return live_server


def _same(runs: Any) -> None:
    diffs = differences(runs)
    assert diffs == [], "\n".join(diffs)


def _geoip(runs: Any) -> List[Any]:
    bodies = {sdk: [(b.get("geoip_disable"), b.get("flag_keys_to_evaluate"))
                    for b in run.flags_bodies] for sdk, run in runs.items()}
    assert bodies["posthog"] == bodies["productos"]
    return bodies["productos"]


REMOTE_CALLS = """
client = Posthog("phc_compat", host=HOST, flush_interval=0.05, disable_geoip=True)
OUT["enabled"] = client.feature_enabled("beta", "u1", disable_geoip=False)
OUT["flag"] = client.get_feature_flag("multi", "u1", disable_geoip=True)
OUT["payload"] = client.get_feature_flag_payload("beta", "u1", disable_geoip=False)
result = client.get_feature_flag_result("multi", "u1", disable_geoip=False)
OUT["result"] = [result.key, result.enabled, result.variant, result.payload, result.get_value()]
OUT["all"] = client.get_all_flags("u1", disable_geoip=False)
OUT["all_keys"] = client.get_all_flags("u1", flag_keys_to_evaluate=["beta", "off"])
OUT["both"] = client.get_all_flags_and_payloads("u1", disable_geoip=False,
                                                flag_keys_to_evaluate=["beta", "multi"])
OUT["default"] = client.get_feature_flag("off", "u2")
flags = client.evaluate_flags("u3", disable_geoip=False, flag_keys=["beta", "multi"])
OUT["keys"] = sorted(flags.keys)
OUT["snapshot"] = [flags.is_enabled("beta"), flags.get_flag("multi"),
                   flags.get_flag_payload("multi"), flags.get_flag("nope")]
client.capture("bought", distinct_id="u3", flags=flags)
client.capture("viewed", distinct_id="u3", flags=flags.only_accessed().only(["beta"]))
client.shutdown()
"""


def test_disable_geoip_and_flag_keys_reach_the_flags_request_as_posthog_sends_them(
        server, tmp_path):
    runs = run_both(REMOTE_CALLS, server, tmp_path, "remote_flag_calls")
    bodies = _geoip(runs)
    # Per call: False sends false, True sends true, None the client's setting (True here).
    assert [geoip for geoip, _ in bodies] == [False, True, False, False, False, True, False,
                                               True, False]
    assert bodies[5][1] == ["beta", "off"] and bodies[6][1] == ["beta", "multi"]
    _same(runs)
    returned = runs["productos"].returned
    assert returned["result"] == ["multi", True, "test", {"x": 1}, "test"]
    # As posthog returns them: the payload text the server sent, not decoded.
    assert returned["both"]["featureFlagPayloads"] == {"beta": "{\"color\": \"red\"}",
                                                       "multi": "{\"x\": 1}"}
    assert returned["snapshot"] == [True, "test", {"x": 1}, None]
    called = [e for e in runs["productos"].raw_events if e["event"] == "$feature_flag_called"
              and e["distinct_id"] == "u3"]
    by_flag = {e["properties"]["$feature_flag"]: e["properties"] for e in called}
    assert by_flag["nope"]["$feature_flag_error"] == "flag_missing"
    assert by_flag["multi"]["$feature_flag_request_id"] == "req-42"
    assert by_flag["multi"]["$feature_flag_reason"] == "Matched condition set 1"


LOCAL_CALLS = """
client = Posthog("phc_compat", host=HOST, personal_api_key="phx_test", flush_interval=0.05)
client.load_feature_flags()
OUT["definitions"] = [f["key"] for f in client.feature_flags]
flags = client.evaluate_flags("u1", person_properties={"plan": "pro"},
                              groups={"company": "acme"}, only_evaluate_locally=True)
OUT["keys"] = sorted(flags.keys)
OUT["unresolved"] = sorted(flags.unresolved_flags)
OUT["reads"] = [flags.is_enabled("beta"), flags.is_enabled("off", True), flags.get_flag("multi"),
                flags.get_flag_payload("beta"), flags.is_enabled("missing", True),
                flags.get_flag("simple", send_feature_flag_events=False)]
OUT["accessed"] = sorted(flags.only_accessed().keys)
OUT["only"] = sorted(flags.only(["beta", "nope"]).keys)
client.capture("page", distinct_id="u1", flags=flags)
client.capture("narrow", distinct_id="u1", flags=flags.only(["beta", "off"]))
OUT["bulk"] = client.get_all_flags_and_payloads("u1", person_properties={"plan": "pro"},
                                                only_evaluate_locally=True)
OUT["some"] = client.get_all_flags("u1", person_properties={"plan": "pro"},
                                   only_evaluate_locally=True,
                                   flag_keys_to_evaluate=["beta", "off", "nope"])
client.capture("tagged", distinct_id="u1", send_feature_flags={
    "only_evaluate_locally": True, "person_properties": {"plan": "pro"},
    "flag_keys_filter": ["beta", "off", "simple"]})
result = client.get_feature_flag_result("beta", "u1", person_properties={"plan": "pro"},
                                        send_feature_flag_events=False)
OUT["value"] = result.get_value()
empty = client.evaluate_flags("u1", flag_keys=[])
OUT["empty"] = [empty.keys, empty.get_flag("beta")]
client.shutdown()
"""


def test_evaluate_flags_snapshot_events_and_bulk_shapes_match_posthog(server, tmp_path):
    runs = run_both(LOCAL_CALLS, server, tmp_path, "local_flag_calls")
    _same(runs)
    returned = runs["productos"].returned
    assert returned["reads"] == [True, False, returned["reads"][2], {"color": "blue"}, True,
                                 True]
    assert returned["only"] == ["beta"] and returned["value"] is True
    assert returned["bulk"]["featureFlagPayloads"]["beta"] == "{\"color\": \"blue\"}"
    assert returned["some"] == {"beta": True, "off": False}
    assert returned["empty"] == [[], None]
    events = {e["event"]: e["properties"] for e in runs["productos"].raw_events
              if e["event"] != "$feature_flag_called"}
    assert events["narrow"]["$feature/beta"] is True and events["narrow"]["$feature/off"] is False
    assert events["narrow"]["$active_feature_flags"] == ["beta"]
    assert events["tagged"]["$feature/simple"] is True and "$feature/multi" not in events["tagged"]
    called = [e["properties"] for e in runs["productos"].raw_events
              if e["event"] == "$feature_flag_called"]
    beta = next(p for p in called if p["$feature_flag"] == "beta")
    assert beta["locally_evaluated"] is True and beta["$feature_flag_reason"] == "Evaluated locally"
    assert beta["$feature_flag_payload"] == {"color": "blue"}
    assert not [p for p in called if p["$feature_flag"] == "simple"]  # events=False read


def test_flag_result_reason_prints_as_text_and_stays_typed():
    import productos
    from productos.flags import ReasonCode

    client = productos.Client("phc_test", flag_definitions=copy.deepcopy(DEFINITIONS),
                              send=False)
    try:
        result = client.get_feature_flag_result("beta", "u1", person_properties={"plan": "pro"})
        assert result is not None and result.reason.code is ReasonCode.CONDITION_MATCH
        assert str(result.reason) == result.reason.description and "Reason(" not in str(
            result.reason)
        assert f"{result.reason}".startswith("Matched condition")
        assert result.get_value() is True
        multi = client.get_feature_flag_result("multi", "u1")
        assert multi is not None and multi.get_value() == multi.variant
        off = client.get_feature_flag_result("off", "u1")
        assert off is not None and off.get_value() is False
    finally:
        client.shutdown()


def test_flag_result_without_detail_keeps_value_variant_and_reason_code():
    # detail=False is the value-only evaluation (OpenFeature's boolean and string reads use
    # it): the same answer and reason code, no payload, no explanation.
    import asyncio

    import productos

    client = productos.Client("phc_test", flag_definitions=copy.deepcopy(DEFINITIONS),
                              send=False)
    try:
        compared = 0
        for key in ("beta", "multi", "off", "simple"):
            for user in ("u1", "u2", "u3"):
                args = dict(person_properties={"plan": "pro"}, send_feature_flag_events=False)
                full = client.get_feature_flag_result(key, user, **args)
                bare = client.get_feature_flag_result(key, user, detail=False, **args)
                later = asyncio.run(productos.AsyncClient.wrapping(client)
                                    .get_feature_flag_result(key, user, detail=False, **args))
                assert full is not None and bare is not None
                assert (bare.value, bare.variant, bare.reason.code) == (
                    full.value, full.variant, full.reason.code)
                assert later == bare
                assert bare.payload is None and bare.reason.trace == ()
                compared += 1
        assert compared == 12
        beta = client.get_feature_flag_result("beta", "u1", person_properties={"plan": "pro"})
        assert beta is not None and beta.payload == {"color": "blue"} and beta.reason.trace
    finally:
        client.shutdown()


def test_feature_flags_attribute_is_posthogs_list_and_can_be_assigned():
    import productos

    client = productos.Client("phc_test", flag_definitions=copy.deepcopy(DEFINITIONS),
                              send=False)
    try:
        assert [f["key"] for f in client.feature_flags or []] == [
            f["key"] for f in DEFINITIONS["flags"]]
        client.feature_flags = [{"key": "solo", "active": True, "id": 9,
                                 "filters": {"groups": [{"properties": [],
                                                         "rollout_percentage": 100}]}}]
        assert client.get_feature_flag("solo", "u1") is True
        assert client.get_feature_flag("beta", "u1", only_evaluate_locally=True) is None
    finally:
        client.shutdown()


class _RemoteConfig(http.server.BaseHTTPRequestHandler):
    seen: List[Tuple[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        if self.path.startswith("/api/projects/@current/feature_flags/cfg/remote_config"):
            body, status = json.dumps({"theme": "dark", "n": 2}).encode(), 200
        else:
            body, status = b'{"detail": "not found"}', 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def config_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RemoteConfig)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _RemoteConfig.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_get_remote_config_payload_asks_posthogs_endpoint(config_server: str) -> None:
    import posthog

    import productos

    answers = {}
    clients = {
        "posthog": posthog.Posthog("phc_cfg", host=config_server, secret_key="phx_cfg",
                                   enable_local_evaluation=False),
        "productos": productos.Client("phc_cfg", host=config_server, secret_key="phx_cfg",
                                      enable_local_evaluation=False, send=False),
    }
    for name, client in clients.items():
        answers[name] = [client.get_remote_config_payload("cfg"),
                         client.get_remote_config_payload("nope")]
        client.shutdown()
    assert answers["productos"] == answers["posthog"] == [{"theme": "dark", "n": 2}, None]
    mine = _RemoteConfig.seen[-2:]
    assert mine[0] == ("/api/projects/@current/feature_flags/cfg/remote_config?token=phc_cfg",
                       "Bearer phx_cfg")
    without_key = productos.Client("phc_cfg", host=config_server, send=False)
    try:
        assert without_key.get_remote_config_payload("cfg") is None
    finally:
        without_key.shutdown()


def test_evaluate_flags_never_raises_and_reports_bad_arguments():
    import productos

    errors: List[BaseException] = []
    client = productos.Client("phc_test", flag_definitions=copy.deepcopy(DEFINITIONS),
                              send=False, on_error=lambda exc, batch: errors.append(exc))
    try:
        empty = client.evaluate_flags()  # no distinct id (argument or context): empty
        assert empty.keys == [] and empty.get_flag("simple") is None and errors == []
        bad = client.evaluate_flags("u1", groups=["not", "a", "mapping"])
        assert bad.keys == [] and len(errors) == 1
        flags = client.evaluate_flags("u1", flag_keys=["simple", "off"])
        assert flags.keys == ["simple", "off"] and flags.get_flag("off") is False
    finally:
        client.shutdown()
