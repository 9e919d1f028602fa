"""The productos command line: in-process against the loopback server, and in subprocesses
against the real dev server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from productos import cli
from productos.cli import SAMPLE_DEFINITIONS, CLIError, main, parse_assignment
from productos.diagnostics import Definitions

try:
    from tests.server import LoopbackServer, Respond
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from server import LoopbackServer, Respond  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parent.parent
PROJECT_KEY = "phc_cliTestProjectKey123"
PERSONAL_KEY = "phx_cliTestPersonalKey456"
KEYS = (PROJECT_KEY, PERSONAL_KEY, "phx_wrongPersonalKey789")


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (cli.ENV_HOST, cli.ENV_API_KEY, cli.ENV_PERSONAL_API_KEY):
        monkeypatch.delenv(name, raising=False)


def run(*argv: str, timeout: float = 60, env: Optional[Dict[str, str]] = None
        ) -> subprocess.CompletedProcess:
    """Run ``python -m productos ARGV`` in a subprocess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCTOS_")}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "productos", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd=str(REPO), env=full_env)


@contextlib.contextmanager
def background(*argv: str) -> Iterator[subprocess.Popen]:
    """Run ``python -m productos ARGV`` in the background; SIGTERM it and close its pipes after."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODUCTOS_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    with subprocess.Popen([sys.executable, "-m", "productos", *argv], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO)) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()


def assert_no_keys(*texts: str) -> None:
    for text in texts:
        for key in KEYS:
            assert key not in text


def assert_one_error_line(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("productos: error: ")
    assert "Traceback" not in stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


# --------------------------------------------------------------------------- pure helpers


def test_assignments_are_text_or_json() -> None:
    assert parse_assignment("plan=pro", "--prop") == ("plan", "pro")
    assert parse_assignment("zip=02139", "--prop") == ("zip", "02139")
    assert parse_assignment("seats:=250", "--prop") == ("seats", 250)
    assert parse_assignment("tags:=[\"a\"]", "--prop") == ("tags", ["a"])
    assert parse_assignment("eq=a=b", "--prop") == ("eq", "a=b")
    for bad in ("novalue", "=x", "n:=notjson"):
        with pytest.raises(CLIError) as info:
            parse_assignment(bad, "--prop")
        assert info.value.code == cli.EXIT_USAGE


def test_props_json_merges_under_props() -> None:
    props = cli.collect_properties(["a=2", "c:=true"], '{"a": 1, "b": [1]}')
    assert props == {"a": "2", "b": [1], "c": True}
    with pytest.raises(CLIError):
        cli.collect_properties(None, "[1, 2]")


def test_sample_definitions_are_all_understood() -> None:
    definitions = Definitions(SAMPLE_DEFINITIONS)
    assert not definitions.problems
    assert len(definitions.flags) == 7
    assert all(f.malformed is None for f in definitions.flags)
    not_local = [f.key for f in definitions.flags if not f.evaluable_locally]
    assert not_local == ["sticky-onboarding"]


# --------------------------------------------------------------------------- parser


def test_help_documents_commands_env_and_exit_codes() -> None:
    proc = run("--help", timeout=30)
    assert proc.returncode == 0
    for word in ("demo", "capture", "set", "alias", "group", "flags", "doctor", "devserver",
                 "events", "PRODUCTOS_HOST", "PRODUCTOS_API_KEY", "PRODUCTOS_PERSONAL_API_KEY",
                 "exit status", "connection or configuration problem"):
        assert word in proc.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from productos.version import VERSION

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"productos {VERSION}"


def test_usage_errors_exit_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture", "signup"]) == cli.EXIT_USAGE  # no --distinct-id
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--distinct-id" in err
    assert main(["nosuchcommand"]) == cli.EXIT_USAGE
    assert main(["capture", "x", "--distinct-id", "u", "--prop", "broken"]) == cli.EXIT_USAGE
    assert "KEY=VALUE" in capsys.readouterr().err


def test_global_options_work_after_the_command(live_server: LoopbackServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["capture", "after", "--distinct-id", "u", "--host", live_server.url,
                 "--api-key", PROJECT_KEY, "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["delivered"] is True


def test_environment_supplies_host_and_keys(live_server: LoopbackServer,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(cli.ENV_HOST, live_server.url)
    monkeypatch.setenv(cli.ENV_API_KEY, PROJECT_KEY)
    assert main(["capture", "from-env", "--distinct-id", "u"]) == 0
    assert live_server.events[-1]["event"] == "from-env"
    assert_no_keys(*capsys.readouterr())


# --------------------------------------------------------------------------- sending (loopback)


def base(server: LoopbackServer) -> List[str]:
    return ["--host", server.url, "--api-key", PROJECT_KEY]


def test_capture_prints_uuid_and_server_answer(live_server: LoopbackServer,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*base(live_server), "capture", "signed up", "--distinct-id", "u-1",
                 "--prop", "plan=pro", "--prop", "seats:=3", "--props-json", '{"ok": true}',
                 "--group", "company=acme"])
    out, err = capsys.readouterr()
    assert code == 0, err
    event = live_server.events[-1]
    assert event["event"] == "signed up" and event["distinct_id"] == "u-1"
    assert event["properties"]["plan"] == "pro" and event["properties"]["seats"] == 3
    assert event["properties"]["ok"] is True
    assert event["properties"]["$groups"] == {"company": "acme"}
    assert event["uuid"] in out and "HTTP 200" in out
    assert_no_keys(out, err)


def test_set_alias_group_send_the_reserved_events(live_server: LoopbackServer,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    given = "0b7d7f4e-9a37-4c33-8b6a-5f8f1f1e2a10"
    assert main([*base(live_server), "set", "--distinct-id", "u", "--prop", "plan=pro",
                 "--uuid", given]) == 0
    assert main([*base(live_server), "set", "--once", "--distinct-id", "u",
                 "--prop", "first=yes"]) == 0
    assert main([*base(live_server), "alias", "--previous-id", "old", "--distinct-id",
                 "new"]) == 0
    assert main([*base(live_server), "group", "company", "acme", "--prop", "seats:=250"]) == 0
    capsys.readouterr()
    set_, once, alias, group = live_server.events[-4:]
    assert set_["event"] == "$set" and set_["$set"] == {"plan": "pro"} and set_["uuid"] == given
    assert once["event"] == "$set_once" and once["$set_once"] == {"first": "yes"}
    assert alias["event"] == "$create_alias" and alias["distinct_id"] == "old"
    assert alias["properties"]["alias"] == "new"
    assert group["event"] == "$groupidentify" and group["distinct_id"] == "$company_acme"
    assert group["properties"]["$group_set"] == {"seats": 250}


def test_set_needs_properties(live_server: LoopbackServer,
                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*base(live_server), "set", "--distinct-id", "u"]) == cli.EXIT_USAGE
    assert_one_error_line(capsys.readouterr().err)


def test_capture_json_output(live_server: LoopbackServer,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*base(live_server), "--json", "capture", "x", "--distinct-id", "u"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["delivered"] is True and data["status"] == 200
    assert data["uuid"] == live_server.events[-1]["uuid"]


def test_rejected_key_exits_3_with_the_reason(live_server: LoopbackServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    live_server.enqueue(Respond(401, body={"detail": "Project API key invalid"}))
    code = main([*base(live_server), "--json", "capture", "x", "--distinct-id", "u"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_CONFIG
    data = json.loads(out)
    assert data["delivered"] is False and data["reason"] == "rejected"
    assert "401" in err and "Project API key invalid" in err
    assert_one_error_line(err)
    assert_no_keys(out, err)


def test_bad_request_exits_1(live_server: LoopbackServer,
                             capsys: pytest.CaptureFixture[str]) -> None:
    live_server.enqueue(Respond(400, body={"detail": "bad batch"}))
    assert main([*base(live_server), "capture", "x", "--distinct-id", "u"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "not delivered" in err and "bad batch" in err


def test_server_errors_are_retried_then_reported(live_server: LoopbackServer,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    live_server.enqueue(Respond(503), Respond(503), Respond(503))
    code = main([*base(live_server), "capture", "x", "--distinct-id", "u", "--retries", "1"])
    assert code == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "HTTP 503" in err
    assert live_server.pending() == 1  # one attempt and one retry
    live_server.enqueue(Respond(503))
    assert main([*base(live_server), "capture", "y", "--distinct-id", "u"]) == 0
    assert live_server.events[-1]["event"] == "y"


def test_unreachable_host_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--host", dead_url(), "--api-key", PROJECT_KEY, "capture", "x",
                 "--distinct-id", "u", "--retries", "0"])
    assert code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "Connection refused" in err or "failed" in err


def test_missing_project_key_exits_3(live_server: LoopbackServer,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", live_server.url, "capture", "x", "--distinct-id", "u"]) == 3
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "PRODUCTOS_API_KEY" in err


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def broken(args: Any) -> int:
        raise RuntimeError("something broke")

    monkeypatch.setattr(cli, "cmd_doctor", broken)
    assert main(["doctor"]) == cli.EXIT_FAILURE
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "RuntimeError: something broke" in err and "--debug" in err
    assert main(["doctor", "--debug"]) == cli.EXIT_FAILURE
    assert "Traceback" in capsys.readouterr().err


def test_debug_logs_never_show_keys(live_server: LoopbackServer,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    live_server.personal_api_key = PERSONAL_KEY
    live_server.set_definitions(SAMPLE_DEFINITIONS)
    assert main([*base(live_server), "--personal-api-key", PERSONAL_KEY, "--debug",
                 "flags", "eval", "pro-analytics", "--distinct-id", "u",
                 "--person-prop", "plan=pro"]) == 0
    out, err = capsys.readouterr()
    assert "DEBUG" in err  # the logs are shown...
    assert_no_keys(out, err)  # ...with keys redacted


def test_json_errors_are_json_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "--host", dead_url(), "flags", "list"]) == cli.EXIT_CONFIG
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["exit_code"] == 3 and data["error"]


# --------------------------------------------------------------------------- flags (loopback)


@pytest.fixture
def flag_server(live_server: LoopbackServer) -> LoopbackServer:
    live_server.personal_api_key = PERSONAL_KEY
    live_server.set_definitions(SAMPLE_DEFINITIONS)
    return live_server


def flag_args(server: LoopbackServer) -> List[str]:
    return [*base(server), "--personal-api-key", PERSONAL_KEY]


def test_flags_list(flag_server: LoopbackServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*flag_args(flag_server), "flags", "list"]) == 0
    out, err = capsys.readouterr()
    assert "7 flag(s)" in out and "1 cannot be evaluated locally" in out
    lines = {line.split()[0]: line for line in out.splitlines()[2:] if line.startswith("  ")
             and line.split()[0] in {f["key"] for f in SAMPLE_DEFINITIONS["flags"]}}
    assert "variants control 50%, one-page 50%" in lines["checkout-experiment"]
    assert "per company" in lines["enterprise-reports"]
    assert lines["legacy-export"].split()[1] == "no"  # inactive
    assert "why not local: experience continuity" in out
    assert_no_keys(out, err)


def test_flags_list_json(flag_server: LoopbackServer,
                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*flag_args(flag_server), "--json", "flags", "list"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == 7 and data["not_evaluable_locally"] == ["sticky-onboarding"]
    by_key = {f["key"]: f for f in data["flags"]}
    assert by_key["new-dashboard"]["conditions"][1] == {
        "filters": [], "rollout_percentage": 30, "variant": None}
    assert by_key["sticky-onboarding"]["local_problem"].startswith("experience continuity")


def test_flags_list_needs_the_personal_key(flag_server: LoopbackServer,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*base(flag_server), "flags", "list"]) == cli.EXIT_CONFIG
    assert "personal API key" in capsys.readouterr().err
    code = main([*base(flag_server), "--personal-api-key", "phx_wrongPersonalKey789",
                 "flags", "list"])
    assert code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert_one_error_line(err)
    assert "refused" in err
    assert_no_keys(err)


def test_flags_list_from_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(SAMPLE_DEFINITIONS))
    assert main(["flags", "list", "--file", str(path)]) == 0
    assert "7 flag(s) from" in capsys.readouterr().out
    assert main(["flags", "list", "--file", str(tmp_path / "missing.json")]) == 3


def test_flags_eval_value_and_explanation(flag_server: LoopbackServer,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*flag_args(flag_server), "flags", "eval", "checkout-experiment",
            "--distinct-id", "alice", "--person-prop", "country=US"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("checkout-experiment: ")
    value = out.splitlines()[0].split(": ", 1)[1]
    assert value in ("control", "one-page")
    assert "condition_match" in out and "(locally)" in out
    assert main([*argv, "--explain"]) == 0
    explained = capsys.readouterr().out
    assert "Flag 'checkout-experiment' (id 2, version 1)" in explained
    assert "[PASS] person 'country' exact" in explained
    assert "variant bucket" in explained and "rollout:" in explained


def test_flags_eval_json_trace(flag_server: LoopbackServer,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*flag_args(flag_server), "--json", "flags", "eval", "new-dashboard",
                 "--distinct-id", "bob", "--person-prop", "email=bob@mail.test",
                 "--explain"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["distinct_id"] == "bob" and data["locally_evaluated"] is True
    assert data["value"] in (True, False)
    first = data["trace"][0]
    assert first["outcome"] == "no_match"
    assert first["filters"][0]["outcome"] == "no_match"
    assert first["filters"][0]["actual"] == "bob@mail.test"
    assert data["trace"][1]["threshold"] == pytest.approx(0.3)
    assert "Flag 'new-dashboard'" in data["explanation"]


def test_flags_eval_group_flag(flag_server: LoopbackServer,
                               capsys: pytest.CaptureFixture[str]) -> None:
    argv = [*flag_args(flag_server), "flags", "eval", "enterprise-reports", "--distinct-id",
            "alice", "--group", "company=acme"]
    assert main([*argv, "--group-prop", "company.seats:=250"]) == 0
    assert capsys.readouterr().out.startswith("enterprise-reports: true")
    assert main([*argv, "--group-prop", "company.seats:=12"]) == 0
    assert capsys.readouterr().out.startswith("enterprise-reports: false")
    assert main([*flag_args(flag_server), "flags", "eval", "enterprise-reports",
                 "--distinct-id", "a", "--group-prop", "company.seats:=1"]) == cli.EXIT_USAGE


def test_flags_eval_falls_back_to_the_server(flag_server: LoopbackServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    def answer(body: Dict[str, Any]) -> Dict[str, Any]:
        return {"flags": {"sticky-onboarding": {
            "key": "sticky-onboarding", "enabled": True, "variant": None,
            "reason": {"code": "condition_match", "condition_index": 0,
                       "description": "Matched condition set 1"},
            "metadata": {"id": 6, "version": 1, "payload": None}}},
            "errorsWhileComputingFlags": False, "requestId": "r-1"}

    flag_server.flags_handler = answer
    assert main([*flag_args(flag_server), "flags", "eval", "sticky-onboarding",
                 "--distinct-id", "alice"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sticky-onboarding: true") and "(by the server)" in out
    code = main([*flag_args(flag_server), "flags", "eval", "sticky-onboarding",
                 "--distinct-id", "alice", "--local-only"])
    assert code == cli.EXIT_FAILURE
    captured = capsys.readouterr()
    assert "unknown" in captured.out
    assert_one_error_line(captured.err)


def test_flags_eval_unknown_flag_fails(flag_server: LoopbackServer,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*flag_args(flag_server), "flags", "eval", "no-such-flag", "--distinct-id", "u"])
    assert code == cli.EXIT_FAILURE
    assert "flag_missing" in capsys.readouterr().err


def test_flags_eval_offline_from_a_file(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(SAMPLE_DEFINITIONS))
    assert main(["flags", "eval", "pro-analytics", "--file", str(path), "--distinct-id", "u",
                 "--person-prop", "plan=enterprise"]) == 0
    assert capsys.readouterr().out.startswith("pro-analytics: true")


# --------------------------------------------------------------------------- doctor (loopback)


def doctor_lines(out: str) -> Dict[str, str]:
    lines = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("PASS", "FAIL", "WARN", "SKIP"):
            lines[" ".join(parts[1:3])] = parts[0]
    return lines


def test_doctor_passes(flag_server: LoopbackServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*flag_args(flag_server), "doctor"]) == 0
    out, err = capsys.readouterr()
    status = doctor_lines(out)
    assert status["host reachable"] == "PASS"
    assert status["project API"] == "PASS"
    assert status["personal API"] == "PASS"
    assert status["flag definitions"] == "WARN"  # sticky-onboarding needs the server
    assert status["clock skew"] == "PASS"
    assert "sticky-onboarding" in out
    assert_no_keys(out, err)


def test_doctor_flags_a_bad_personal_key(flag_server: LoopbackServer,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*base(flag_server), "--personal-api-key", "phx_wrongPersonalKey789", "doctor"])
    out, err = capsys.readouterr()
    assert code == cli.EXIT_FAILURE
    assert doctor_lines(out)["personal API"] == "FAIL"
    assert "refused" in out
    assert_one_error_line(err)
    assert_no_keys(out, err)


def test_doctor_flags_a_refused_project_key(flag_server: LoopbackServer,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    flag_server.enqueue(Respond(401, body={"detail": "Project API key invalid"}), route="flags")
    assert main([*base(flag_server), "--json", "doctor"]) == cli.EXIT_FAILURE
    data = json.loads(capsys.readouterr().out)
    checks = {c["name"]: c for c in data["checks"]}
    assert data["ok"] is False
    assert checks["project API key"]["status"] == "FAIL"
    assert checks["personal API key"]["status"] == "SKIP"


def test_doctor_unreachable_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--host", dead_url(), "--api-key", PROJECT_KEY, "doctor"]) == 1
    out = capsys.readouterr().out
    assert doctor_lines(out)["host reachable"] == "FAIL"
    assert doctor_lines(out)["clock skew"] == "SKIP"


def test_clock_skew_check() -> None:
    assert cli._skew_check([0.4]).status == "PASS"
    assert cli._skew_check([30.0]).status == "WARN"
    fail = cli._skew_check([-600.0])
    assert fail.status == "FAIL" and "ahead of" in fail.detail
    assert cli._skew_check([]).status == "SKIP"


# --------------------------------------------------------------------------- real dev server

@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Any]:
    """The real dev server on 127.0.0.1 with the CLI's sample flags."""
    module = pytest.importorskip("productos.devserver")
    server = module.DevServer(host="127.0.0.1", port=0, db_path=str(tmp_path / "dev.db"),
                              definitions=SAMPLE_DEFINITIONS, personal_api_key=PERSONAL_KEY
                              ).start()
    try:
        yield server
    finally:
        server.stop()


def dev_args(server: Any) -> List[str]:
    return ["--host", server.url, "--api-key", PROJECT_KEY, "--personal-api-key", PERSONAL_KEY]


@pytest.mark.slow
def test_demo_runs_end_to_end_and_exits() -> None:
    pytest.importorskip("productos.devserver")
    proc = run("demo", timeout=90)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for text in ("Events sent through productos.Client", "Flags evaluated locally",
                 "Why?", "event viewer: http://127.0.0.1:", "capture_exception",
                 "group_identify", "explain"):
        assert text in out
    assert "gives the same value for 21 of 21" in out
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_demo_json() -> None:
    pytest.importorskip("productos.devserver")
    proc = run("--json", "demo", timeout=90)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["problems"] == []
    assert data["events"]["dropped"] == 0
    assert data["events"]["stored"] >= data["events"]["delivered"] > 10
    assert data["events"]["by_name"]["$exception"] == 1
    assert data["flags"]["alice"]["pro-analytics"] is True
    assert data["flags"]["bob"]["pro-analytics"] is False
    assert data["flags"]["alice"]["legacy-export"] is False
    assert data["server_agrees"]["different"] == []


@pytest.mark.slow
def test_send_commands_reach_the_dev_server(dev: Any) -> None:
    a = dev_args(dev)
    procs = [
        run(*a, "capture", "cli event", "--distinct-id", "dana", "--prop", "n:=1"),
        run(*a, "set", "--distinct-id", "dana", "--prop", "plan=pro"),
        run(*a, "alias", "--previous-id", "dana", "--distinct-id", "dana-2"),
        run(*a, "--json", "group", "company", "acme", "--prop", "seats:=250"),
    ]
    for proc in procs:
        assert proc.returncode == 0, proc.stderr
        assert_no_keys(proc.stdout, proc.stderr)
    uuid = procs[0].stdout.split("uuid:")[1].split()[0]
    group_uuid = json.loads(procs[3].stdout)["uuid"]
    stored = {e["uuid"]: e for e in dev.store.events(limit=100)}
    assert stored[uuid]["event"] == "cli event"
    assert stored[group_uuid]["event"] == "$groupidentify"
    names = {e["event"] for e in stored.values()}
    assert {"cli event", "$set", "$create_alias", "$groupidentify"} <= names


@pytest.mark.slow
def test_flags_against_the_dev_server(dev: Any) -> None:
    a = dev_args(dev)
    listed = run(*a, "--json", "flags", "list")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["count"] == 7
    explained = run(*a, "flags", "eval", "pro-analytics", "--distinct-id", "x",
                    "--person-prop", "plan=pro", "--explain")
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.startswith("Flag 'pro-analytics' (id 3, version 2): true")
    assert "[PASS] person 'plan' exact" in explained.stdout
    remote = run(*a, "--json", "flags", "eval", "pro-analytics", "--distinct-id", "x",
                 "--person-prop", "plan=free", "--remote")
    assert remote.returncode == 0, remote.stderr
    data = json.loads(remote.stdout)
    assert data["value"] is False and data["locally_evaluated"] is False


@pytest.mark.slow
def test_doctor_against_the_dev_server(dev: Any) -> None:
    ok = run(*dev_args(dev), "doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "FAIL" not in ok.stdout
    assert_no_keys(ok.stdout, ok.stderr)
    bad = run("--host", dev.url, "--api-key", PROJECT_KEY, "--personal-api-key",
              "phx_wrongPersonalKey789", "doctor")
    assert bad.returncode == 1
    assert doctor_lines(bad.stdout)["personal API"] == "FAIL"
    assert_one_error_line(bad.stderr)
    assert_no_keys(bad.stdout, bad.stderr)


def test_unreachable_host_in_a_subprocess_is_one_line() -> None:
    proc = run("--host", dead_url(), "--api-key", PROJECT_KEY, "capture", "x",
               "--distinct-id", "u", "--retries", "0", timeout=60)
    assert proc.returncode == cli.EXIT_CONFIG
    assert_one_error_line(proc.stderr)
    assert proc.stdout == ""
    doctor = run("--host", dead_url(), "doctor", timeout=60)
    assert doctor.returncode == 1 and "FAIL" in doctor.stdout


@pytest.mark.slow
def test_devserver_command_serves_until_terminated(tmp_path: Path) -> None:
    pytest.importorskip("productos.devserver")
    db = tmp_path / "served.db"
    with background("--json", "devserver", "--port", "0", "--db", str(db),
                    "--personal-api-key", PERSONAL_KEY) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        started = json.loads(proc.stdout.readline())
        url = started["url"]
        assert started["db"] == str(db)
        sent = run("--host", url, "--api-key", PROJECT_KEY, "capture", "served",
                   "--distinct-id", "u")
        assert sent.returncode == 0, sent.stderr
        listed = run("--host", url, "--api-key", PROJECT_KEY, "--personal-api-key",
                     PERSONAL_KEY, "--json", "flags", "list")
        assert listed.returncode == 0, listed.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, proc.stderr.read()

    exported = run("events", "export", "--db", str(db), "--format", "ndjson")
    assert exported.returncode == 0, exported.stderr
    rows = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    assert any(r.get("event") == "served" for r in rows)
    as_csv = run("events", "export", "--db", str(db), "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    assert "served" in as_csv.stdout and "," in as_csv.stdout.splitlines()[0]
    tail = run("events", "tail", "--db", str(db))
    assert tail.returncode == 0, tail.stderr
    assert "served" in tail.stdout


@pytest.mark.slow
def test_events_tail_follows_new_events(dev: Any) -> None:
    with background("events", "tail", "--follow", "--format", "ndjson", "--db",
                    str(dev.db_path), "--event", "followed") as proc:
        sent = run(*dev_args(dev), "capture", "followed", "--distinct-id", "tailer")
        assert sent.returncode == 0, sent.stderr
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["event"] == "followed"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_devserver_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    pytest.importorskip("productos.devserver")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = run("devserver", "--port", str(port), "--db", str(tmp_path / "x.db"),
                   timeout=30)
    assert proc.returncode == cli.EXIT_CONFIG
    assert_one_error_line(proc.stderr)


def test_events_without_database_is_a_config_error(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("productos.devserver")
    assert main(["events", "export", "--db", str(tmp_path / "none.db")]) == cli.EXIT_CONFIG
    assert_one_error_line(capsys.readouterr().err)


def test_doctor_checks_a_shared_definitions_cache(flag_server: LoopbackServer, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "flag-cache"
    cache.mkdir()
    assert main([*flag_args(flag_server), "doctor", "--flag-definitions-cache",
                 str(cache)]) == 0
    out, err = capsys.readouterr()
    line = next(line for line in out.splitlines() if "definitions cache" in line)
    assert line.split()[0] == "PASS", out
    assert "would be holder" in line and "1 poll(s)" in line and "cache: ok" in line
    assert any(cache.iterdir())  # the check published the definitions like a holder would
    assert_no_keys(out, err)


def test_doctor_reports_a_cache_setting_that_cannot_work(
        flag_server: LoopbackServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRODUCTOS_FLAG_DEFINITIONS_CACHE", " ")
    assert main([*flag_args(flag_server), "doctor"]) == 0  # blank: no cache check at all
    assert "definitions cache" not in capsys.readouterr().out
    monkeypatch.setenv("PRODUCTOS_FLAG_DEFINITIONS_CACHE", "redis://127.0.0.1:1/0")
    assert main([*flag_args(flag_server), "--json", "doctor"]) == 0
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["definitions cache"]["status"] == "WARN"  # loaded directly, cache down
    assert "would be direct" in checks["definitions cache"]["detail"]
    assert main([*flag_args(flag_server), "doctor", "--flag-definitions-cache", " "]) == 1
    assert doctor_lines(capsys.readouterr().out)["definitions cache"] == "FAIL"
