"""Flags compile on first read: parsing only indexes, answers and errors stay the same."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any, Dict, List, Mapping

import pytest

from productos._flags.compiler import Compiler
from productos.flags import EvaluationContext, evaluate, evaluate_all, parse_definitions


def flag(key: str, *properties: Dict[str, Any], rollout: int = 100) -> Dict[str, Any]:
    return {"key": key, "id": 1, "active": True,
            "filters": {"groups": [{"properties": list(properties),
                                    "rollout_percentage": rollout}]}}


def depends(on: str, chain: List[str]) -> Dict[str, Any]:
    return {"key": on, "type": "flag", "value": True, "operator": "flag_evaluates_to",
            "dependency_chain": chain}


BODY = {"flags": [flag("a"), flag("b", rollout=50), flag("c", depends("a", ["a"])),
                  flag("d", {"key": "id", "type": "cohort", "value": 7})],
        "cohorts": {"7": {"type": "OR", "values": [{"type": "AND", "values": [
            {"key": "plan", "type": "person", "value": "pro", "operator": "exact"}]}]}}}


@pytest.fixture
def compiled(monkeypatch: Any) -> List[str]:
    """The keys Compiler.compile_flag was called with, in order."""
    calls: List[str] = []
    original = Compiler.compile_flag

    def counting(self: Compiler, key: str, raw: Mapping[str, Any]) -> Any:
        calls.append(key)
        return original(self, key, raw)

    monkeypatch.setattr(Compiler, "compile_flag", counting)
    return calls


def test_parsing_compiles_only_flags_that_read_other_flags(compiled: List[str]) -> None:
    snapshot = parse_definitions(BODY)
    assert compiled == ["c"]  # its dependency cycles must be known before any evaluation
    assert list(snapshot.flags) == ["a", "b", "c", "d"] and len(snapshot.flags) == 4
    assert "b" in snapshot.flags and "zz" not in snapshot.flags
    assert evaluate(snapshot, "b", EvaluationContext("u1")).value in (True, False)
    assert evaluate(snapshot, "b", EvaluationContext("u2")).value in (True, False)
    assert compiled == ["c", "b"]  # once, on first read
    assert snapshot.lookup("b") is snapshot.flags["b"] and snapshot.lookup("a") is None
    results = evaluate_all(snapshot, EvaluationContext("u1", person_properties={"plan": "pro"}))
    assert list(results) == ["a", "b", "c", "d"]  # definition order, whatever the read order
    assert sorted(compiled) == ["a", "b", "c", "d"]
    assert results["c"].value is True and results["d"].value is True


def test_the_same_answers_as_a_snapshot_compiled_up_front() -> None:
    lazy = parse_definitions(BODY)
    eager = parse_definitions(BODY)
    dict(eager.flags.items())  # compile everything now
    for i in range(200):
        ctx = EvaluationContext(f"user-{i}", person_properties={"plan": "pro" if i % 2 else "x"})
        for key in ("d", "b", "c", "a"):
            assert evaluate(lazy, key, ctx) == evaluate(eager, key, ctx)


def test_concurrent_first_reads_compile_a_flag_once(compiled: List[str]) -> None:
    body = {"flags": [flag(f"f{i}", rollout=i % 100) for i in range(200)]}
    snapshot = parse_definitions(body)
    barrier = threading.Barrier(8)
    seen: List[Dict[str, Any]] = []

    def read() -> None:
        barrier.wait()
        seen.append({key: snapshot.flags[key] for key in reversed(list(snapshot.flags))})

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(seen) == 8
    assert sorted(compiled) == sorted(f"f{i}" for i in range(200))  # each exactly once
    for found in seen[1:]:
        assert all(found[key] is seen[0][key] for key in found)  # the same objects


def test_the_mapping_cannot_be_written() -> None:
    snapshot = parse_definitions(BODY)
    with pytest.raises(TypeError):
        snapshot.flags["a"] = snapshot.flags["b"]  # type: ignore[index]
    with pytest.raises(KeyError):
        snapshot.flags["missing"]
    assert snapshot.flags.get("missing") is None and snapshot.flags.get(3) is None  # type: ignore[call-overload]


def test_cohorts_compile_together_before_the_first_flag(monkeypatch: Any) -> None:
    groups: List[Any] = []
    original = Compiler.compile_group

    def counting(self: Compiler, raw: Any) -> Any:
        groups.append(raw)
        return original(self, raw)

    monkeypatch.setattr(Compiler, "compile_group", counting)
    body = {**BODY, "flags": [f for f in BODY["flags"] if f["key"] != "c"]}
    snapshot = parse_definitions(body)
    assert groups == []  # no flag read yet (a flag that reads flags would compile them now)
    assert evaluate(snapshot, "a", EvaluationContext("u")).value is True
    assert len(groups) == 2  # cohort 7 and its nested group, all at once
    assert "7" in snapshot.cohorts and snapshot.errors == ()


def test_the_compiler_loads_on_the_thread_that_builds_a_polling_client():
    # Not at import (a process with no local evaluation never needs it), and not on the
    # poller's thread (an import there could race a fork: see definitions_setup).
    # It loads after the poller has started, so the import overlaps the first fetch.
    script = textwrap.dedent("""
        import sys, threading
        import productos
        seen = []

        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == "productos._flags.compiler":
                    seen.append((threading.current_thread() is threading.main_thread(),
                                 sorted(t.name for t in threading.enumerate())))
                return None

        sys.meta_path.insert(0, Watch())
        assert "productos._flags.compiler" not in sys.modules
        plain = productos.Client("phc_x", send=False)
        assert "productos._flags.compiler" not in sys.modules
        polling = productos.Client("phc_x", send=False, host="http://127.0.0.1:9",
                                   personal_api_key="phx_y", poll_interval=300)
        assert "productos._flags.compiler" in sys.modules
        on_main, threads = seen[0]
        assert len(seen) == 1 and on_main, seen
        assert "productos-poller" in threads, threads
        polling.shutdown(1)
        plain.shutdown(1)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_constructor_that_fails_to_load_the_compiler_leaves_no_poller_running():
    # The poller starts before the compiler is imported; if that import fails (a broken
    # install, Ctrl-C), the client never existed and nothing may keep polling with the key.
    script = textwrap.dedent("""
        import sys, threading, time
        import productos

        class Broken:
            def find_spec(self, name, path=None, target=None):
                if name == "productos._flags.compiler":
                    raise ImportError("simulated broken install")
                return None

        sys.meta_path.insert(0, Broken())
        try:
            productos.Client("phc_x", send=False, host="http://127.0.0.1:9",
                             personal_api_key="phx_y", poll_interval=300)
        except ImportError as exc:
            print("raised", exc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
                t.name == "productos-poller" for t in threading.enumerate()):
            time.sleep(0.01)
        print("pollers", sum(t.name == "productos-poller" for t in threading.enumerate()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["raised simulated broken install", "pollers 0"], (
        done.stdout, done.stderr[-2000:])
