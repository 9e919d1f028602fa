"""The public diagnostics API (probes, definitions, one-event sends) on the loopback server, and
the rule it exists for: the CLI, the dev server and the integrations import no private module."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path
from typing import Any, Dict, List

import pytest

import productos
from productos import diagnostics, errors
from productos.diagnostics import Definitions
from productos.flags import EvaluationContext

try:
    from tests.server import LoopbackServer, Respond
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from server import LoopbackServer, Respond  # type: ignore[no-redef]

PACKAGE = Path(productos.__file__).resolve().parent
PROJECT_KEY = "phc_diagnosticsProject1"
PERSONAL_KEY = "phx_diagnosticsPersonal2"

DEFINITIONS: Dict[str, Any] = {
    "flags": [
        {"id": 1, "key": "beta", "version": 2, "active": True,
         "filters": {"groups": [
             {"properties": [{"key": "plan", "type": "person", "operator": "exact",
                              "value": ["pro"]}], "rollout_percentage": 100},
             {"properties": [], "rollout_percentage": 20, "variant": "b"}],
             "multivariate": {"variants": [{"key": "a", "rollout_percentage": 60},
                                           {"key": "b", "rollout_percentage": 40}]},
             "holdout": {"id": 9, "exclusion_percentage": 10}}},
        {"id": 2, "key": "per-company", "version": 1, "active": False,
         "filters": {"aggregation_group_type_index": 0,
                     "groups": [{"properties": [], "rollout_percentage": None}]}},
        {"id": 3, "key": "sticky", "version": 1, "active": True,
         "ensure_experience_continuity": True,
         "filters": {"groups": [{"properties": [], "rollout_percentage": 50}]}},
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {},
}


def dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------------- probes


def test_check_host_reports_the_answer_its_time_and_the_clock(
        live_server: LoopbackServer) -> None:
    probe = diagnostics.check_host(live_server.url, timeout=5)
    assert probe.answered and probe.error is None
    assert probe.status == 404  # the loopback server has no root page; it answered all the same
    assert probe.elapsed > 0
    assert probe.clock_skew is not None and abs(probe.clock_skew) < 5


def test_check_host_reports_an_unreachable_host_without_raising() -> None:
    probe = diagnostics.check_host(dead_url(), timeout=5)
    assert not probe.answered and probe.status is None
    assert isinstance(probe.error, errors.ConnectError)
    assert probe.clock_skew is None


def test_check_project_key_asks_flags_with_that_key(live_server: LoopbackServer) -> None:
    accepted = diagnostics.check_project_key(PROJECT_KEY, live_server.url, timeout=5)
    assert accepted.status == 200 and isinstance(accepted.body, dict)
    [sent] = live_server.requests_for("/flags/")
    assert sent.json["api_key"] == PROJECT_KEY
    assert sent.json["distinct_id"] == diagnostics.PROBE_DISTINCT_ID
    live_server.enqueue(Respond(401, body={"detail": "Project API key invalid"}), route="flags")
    refused = diagnostics.check_project_key(PROJECT_KEY, live_server.url, timeout=5)
    assert refused.status == 401 and refused.message == "Project API key invalid"
    assert refused.error is None  # an answer, not a failure to get one


# ---------------------------------------------------------------------------- definitions


def test_fetch_definitions_with_the_personal_key(live_server: LoopbackServer) -> None:
    live_server.personal_api_key = PERSONAL_KEY
    live_server.set_definitions(DEFINITIONS)
    report = diagnostics.fetch_definitions(PROJECT_KEY, PERSONAL_KEY, live_server.url, timeout=5)
    assert report.ok and report.outcome == "ok" and report.error is None
    assert report.definitions is not None
    assert [f.key for f in report.definitions.flags] == ["beta", "per-company", "sticky"]
    [request] = live_server.requests_for("/flags/definitions")
    assert request.headers["Authorization"] == f"Bearer {PERSONAL_KEY}"
    assert request.query["token"] == PROJECT_KEY


def test_fetch_definitions_reports_a_refused_key(live_server: LoopbackServer) -> None:
    live_server.personal_api_key = PERSONAL_KEY
    report = diagnostics.fetch_definitions(PROJECT_KEY, "phx_wrongKey", live_server.url,
                                           timeout=5)
    assert not report.ok and report.definitions is None
    assert report.outcome == "unauthorized"
    assert isinstance(report.error, errors.AuthenticationError)
    assert "phx_wrongKey" not in str(report.error)


def test_fetch_definitions_reports_an_unreachable_host() -> None:
    report = diagnostics.fetch_definitions(PROJECT_KEY, PERSONAL_KEY, dead_url(), timeout=5)
    assert report.outcome == "error" and isinstance(report.error, errors.ConnectError)


def test_definitions_describe_each_flag_as_compiled() -> None:
    definitions = Definitions(DEFINITIONS)
    assert len(definitions) == 3 and "beta" in definitions and "nope" not in definitions
    assert definitions.problems == ()
    beta = definitions.flag("beta")
    assert beta is not None
    assert (beta.id, beta.version, beta.active, beta.is_group_flag) == (1, 2, True, False)
    assert [v.key for v in beta.variants] == ["a", "b"]
    assert [v.rollout_percentage for v in beta.variants] == [60, 40]
    assert beta.holdout_percentage == 10
    first, second = beta.conditions
    assert [(f.type, f.key, f.operator) for f in first.filters] == [("person", "plan", "exact")]
    assert first.rollout_percentage == 100 and first.variant is None
    assert second.filters == () and second.rollout_percentage == 20 and second.variant == "b"
    assert beta.evaluable_locally and beta.local_problem is None and beta.malformed is None
    company = definitions.flag("per-company")
    assert company is not None and company.is_group_flag and company.group_type == "company"
    assert not company.active
    sticky = definitions.flag("sticky")
    assert sticky is not None and not sticky.evaluable_locally
    assert sticky.local_problem and "continuity" in sticky.local_problem


def test_definitions_evaluate_locally_with_reasons() -> None:
    definitions = Definitions(DEFINITIONS)
    ctx = EvaluationContext(distinct_id="ada", person_properties={"plan": "pro"})
    result = definitions.evaluate("per-company", ctx)
    assert result.value is False and result.locally_evaluated
    every = definitions.evaluate_all(ctx)
    assert set(every) == {"beta", "per-company", "sticky"}
    assert every["sticky"].value is None  # continuity: only the server can say
    assert definitions.evaluate("beta", ctx).value == every["beta"].value


def test_definitions_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(DEFINITIONS))
    assert [f.key for f in Definitions.from_file(str(path)).flags] == [
        "beta", "per-company", "sticky"]
    with pytest.raises(errors.ConfigurationError, match=r"missing\.json"):
        Definitions.from_file(str(tmp_path / "missing.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a flag definitions document"):
        Definitions.from_file(str(tmp_path / "list.json"))


# ------------------------------------------------------------------------------ one event


def test_send_one_reports_the_servers_answer(live_server: LoopbackServer) -> None:
    report = diagnostics.send_one(
        lambda client: client.capture("probe", distinct_id="u-1", properties={"n": 1}),
        PROJECT_KEY, live_server.url, timeout=5)
    assert report.delivered and report.reason is None and report.error is None
    assert report.status == 200 and isinstance(report.response, dict)
    [event] = live_server.events
    assert event["event"] == "probe" and event["uuid"] == report.uuid


def test_send_one_reports_a_refusal_with_its_status(live_server: LoopbackServer) -> None:
    live_server.enqueue(Respond(401, body={"detail": "Project API key invalid"}))
    report = diagnostics.send_one(lambda client: client.capture("x", distinct_id="u"),
                                  PROJECT_KEY, live_server.url, timeout=5)
    assert not report.delivered and report.status == 401
    assert report.reason == "rejected"
    assert isinstance(report.error, errors.AuthenticationError)
    assert report.response == {"detail": "Project API key invalid"}
    assert live_server.events == []


def test_send_one_retries_then_reports_the_last_answer(live_server: LoopbackServer) -> None:
    live_server.enqueue(Respond(503), Respond(503), Respond(503))
    report = diagnostics.send_one(lambda client: client.capture("x", distinct_id="u"),
                                  PROJECT_KEY, live_server.url, timeout=5, retries=1)
    assert not report.delivered and report.status == 503
    assert report.reason == "retries_exhausted"
    assert live_server.pending() == 1  # one attempt and one retry, no more


def test_send_one_reports_an_event_the_client_refused(live_server: LoopbackServer) -> None:
    report = diagnostics.send_one(lambda client: client.capture("", distinct_id="u"),
                                  PROJECT_KEY, live_server.url, timeout=5)
    assert report.uuid is None and not report.delivered
    assert report.status is None and report.reason is not None
    assert isinstance(report.error, errors.EventError)
    assert live_server.requests == []


def test_redact_removes_keys() -> None:
    assert diagnostics.redact(f"key={PROJECT_KEY} and {PERSONAL_KEY}.") == (
        "key=ph*_[redacted] and ph*_[redacted].")


# --------------------------------------------------------------- outer layers: public only


def _imports(path: Path) -> List[str]:
    """Every module path.py imports, at any depth (module level, functions, TYPE_CHECKING)."""
    names: List[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("package", ["cli", "devserver", "integrations"])
def test_outer_layers_import_no_private_module(package: str) -> None:
    files = sorted((PACKAGE / package).glob("*.py"))
    assert len(files) >= 5
    private = {
        f"{path.name}: {name}"
        for path in files for name in _imports(path)
        if name.startswith("productos.")
        and any(part.startswith("_") for part in name.split(".")[1:2])
        and not name.startswith(f"productos.{package}.")
    }
    assert private == set()


def test_the_cli_parser_does_not_import_its_package() -> None:
    assert not [name for name in _imports(PACKAGE / "cli" / "_parser.py")
                if name == "productos.cli"]
