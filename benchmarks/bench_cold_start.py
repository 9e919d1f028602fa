"""Cold-start benchmark: time for the first correct flag answer with 2,000 flag definitions.

Usage (from the repository root)::

    pip install -e . posthog
    python benchmarks/bench_cold_start.py             # 5 runs per SDK and mode, ~30 s
    python benchmarks/bench_cold_start.py --quick     # 1 run each
    python benchmarks/bench_cold_start.py --delay 0.05  # the server answers 50 ms late

The project's loopback server (tests/server.py, 127.0.0.1 only) runs in this process and
serves 2,000 definitions (about 570 KB of JSON) to both SDKs with the personal API key.
Each measurement runs in a fresh worker subprocess, the SDKs alternating, and the median is
reported. The SDK and ``requests`` are imported before the clock starts (productos imports
its HTTP stack only when a client is built, posthog at import: timing from after both
imports treats them alike); the import time is reported apart, and "from import" adds it.
Two modes:

* ``first-call``: ``Client(...)`` then ``get_feature_flag()`` at once, repeated until the
  answer is the right one; the time runs from before the constructor to that answer;
* ``explicit-load``: ``Client(...)``, ``load_feature_flags()``, then ``get_feature_flag()``.

The flag asked about is the last of the 2,000 and has a single variant, so the right answer
(``"v1998"``) cannot be had by chance. After the timed answer the worker checks, untimed, that
all 2,000 flags evaluate locally to the expected values. The target is the **baseline**: one
plain ``requests`` GET of the definitions plus ``json.loads`` plus productos' compilation
of them, timed in its own fresh worker.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from _logs import quiet_logger

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_JSON = os.path.join(HERE, "results", "cold_start.json")
SDKS = ("productos", "posthog")
MODES = ("first-call", "explicit-load")
FLAG_COUNT = 2000
ANSWER_BUDGET = 30.0  # seconds a worker may take to get the right answer before giving up
WORKER_TIMEOUT = 120.0
TIMES = "\u00d7"  # the multiplication sign, for the table
PERSON = {"plan": "pro", "email": "ada@example.com"}
DISTINCT_ID = "user-1"


def make_definitions(count: int = FLAG_COUNT) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Return `count` flag definitions and the value PERSON gets for each."""
    flags: List[Dict[str, Any]] = []
    expected: Dict[str, Any] = {}
    for i in range(count):
        key = f"flag-{i:04d}"
        kind = i % 4
        if kind == 0:
            filters: Dict[str, Any] = {"groups": [{"properties": [
                {"key": "plan", "value": ["pro", "enterprise"], "operator": "exact",
                 "type": "person"}], "rollout_percentage": 100}]}
            expected[key] = True
        elif kind == 1:
            filters = {"groups": [{"properties": [
                {"key": "plan", "value": ["free"], "operator": "exact", "type": "person"}],
                "rollout_percentage": 100}]}
            expected[key] = False
        elif kind == 2:
            filters = {"groups": [{"properties": [
                {"key": "email", "value": "@example.com", "operator": "icontains",
                 "type": "person"}], "rollout_percentage": 100}],
                "multivariate": {"variants": [{"key": f"v{i}", "rollout_percentage": 100}]},
                "payloads": {f"v{i}": json.dumps({"n": i})}}
            expected[key] = f"v{i}"
        else:
            filters = {"groups": [{"properties": [], "rollout_percentage": 0}]}
            expected[key] = False
        flags.append({"id": 1000 + i, "key": key, "name": key, "version": 1, "active": True,
                      "ensure_experience_continuity": False, "filters": filters})
    return {"flags": flags, "group_type_mapping": {}, "cohorts": {}}, expected


def _probe_key(expected: Dict[str, Any]) -> str:
    return max(key for key, value in expected.items() if isinstance(value, str))


# --------------------------------------------------------------------------------------
# Worker side (a fresh interpreter per measurement).
# --------------------------------------------------------------------------------------


def _make_client(sdk: str, host: str, api_key: str, personal_api_key: str) -> Any:
    if sdk == "productos":
        import productos

        return productos.Client(api_key, host=host, personal_api_key=personal_api_key)
    from posthog import Posthog

    return Posthog(api_key, host=host, personal_api_key=personal_api_key)


def work_sdk(args: argparse.Namespace) -> Dict[str, Any]:
    """Time Client() to the first right answer for one SDK and mode."""
    log = quiet_logger(args.worker)
    imported = time.perf_counter()
    if args.worker == "productos":
        import productos
        version = productos.__version__
    else:
        import posthog
        version = getattr(posthog, "VERSION", "?")
    import requests  # noqa: F401  (both SDKs send with it; see the module docstring)
    import_ms = (time.perf_counter() - imported) * 1000
    _, expected = make_definitions()
    key = _probe_key(expected)
    calls = 0
    value: Any = None
    first_value: Any = "<no call>"
    started = time.perf_counter()
    client = _make_client(args.worker, args.host, args.api_key, args.personal_api_key)
    if args.mode == "explicit-load":
        client.load_feature_flags()
    deadline = started + ANSWER_BUDGET
    while time.perf_counter() < deadline:
        value = client.get_feature_flag(key, DISTINCT_ID, person_properties=PERSON,
                                        send_feature_flag_events=False)
        calls += 1
        if calls == 1:
            first_value = value
        if value == expected[key]:
            break
    elapsed = time.perf_counter() - started
    correct = value == expected[key]
    values = client.get_all_flags(DISTINCT_ID, person_properties=PERSON,
                                  only_evaluate_locally=True) or {}
    all_correct = sum(1 for k, v in expected.items() if values.get(k) == v)
    client.shutdown()
    return {"sdk": args.worker, "version": version, "mode": args.mode,
            "first_correct_ms": elapsed * 1000 if correct else None, "import_ms": import_ms,
            "from_import_ms": import_ms + elapsed * 1000 if correct else None,
            "calls": calls, "first_call_correct": first_value == expected[key],
            "first_value": repr(first_value), "all_flags_correct": all_correct,
            "log_records": log.count, "log_first": log.first}


def work_baseline(args: argparse.Namespace) -> Dict[str, Any]:
    """Time one plain GET of the definitions, json.loads, and productos' compilation."""
    import requests

    from productos.flags import parse_definitions

    started = time.perf_counter()
    response = requests.get(f"{args.host}/flags/definitions",
                            params={"token": args.api_key, "send_cohorts": ""},
                            headers={"Authorization": f"Bearer {args.personal_api_key}"},
                            timeout=30)
    fetched = time.perf_counter()
    data = json.loads(response.content)
    decoded = time.perf_counter()
    snapshot = parse_definitions(data)
    parsed = time.perf_counter()
    if response.status_code != 200 or len(snapshot.flags) != FLAG_COUNT:
        raise SystemExit(f"baseline: status {response.status_code}, "
                         f"{len(snapshot.flags)} flags")
    return {"sdk": "baseline", "mode": "fetch+parse", "bytes": len(response.content),
            "fetch_ms": (fetched - started) * 1000, "json_ms": (decoded - fetched) * 1000,
            "compile_ms": (parsed - decoded) * 1000,
            "first_correct_ms": (parsed - started) * 1000}


# --------------------------------------------------------------------------------------
# Orchestrator side.
# --------------------------------------------------------------------------------------


def _start_server(delay: float) -> Any:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tests.server import LoopbackServer

    server = LoopbackServer().start()
    server.set_definitions(make_definitions()[0])
    server.set_delay(delay)
    return server


def run_worker(server: Any, worker: str, mode: str) -> Dict[str, Any]:
    api_key = f"phc_bench_cold_{worker}"
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tmp:
        path = tmp.name
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", worker, "--mode", mode,
           "--host", server.url, "--api-key", api_key,
           "--personal-api-key", server.personal_api_key, "--out", path]
    before = len(server.requests_for("/flags/"))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=WORKER_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{worker} worker failed ({proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
        with open(path, encoding="utf-8") as fh:
            result: Dict[str, Any] = json.load(fh)
    finally:
        os.unlink(path)
    result["remote_flag_requests"] = len(server.requests_for("/flags/")) - before
    return result


def _median(runs: List[Dict[str, Any]], field: str) -> Optional[float]:
    values = [r[field] for r in runs if r.get(field) is not None]
    return statistics.median(values) if values else None


def _fmt(value: Optional[float]) -> str:
    return "—" if value is None else f"{value:.1f}"


def orchestrate(args: argparse.Namespace) -> int:
    sdks = [s for s in SDKS if args.sdk in (None, s)]
    if "posthog" in sdks and importlib.util.find_spec("posthog") is None:
        print("posthog is not installed (pip install posthog): measuring productos alone")
        sdks.remove("posthog")
    server = _start_server(args.delay)
    runs: Dict[str, List[Dict[str, Any]]] = {}
    try:
        for _ in range(args.repeat):
            runs.setdefault("baseline", []).append(run_worker(server, "baseline", "fetch+parse"))
            for mode in MODES:
                for sdk in sdks:
                    runs.setdefault(f"{sdk}/{mode}", []).append(run_worker(server, sdk, mode))
    finally:
        server.stop()
    base = runs["baseline"]
    target = _median(base, "first_correct_ms")
    print(f"\n{FLAG_COUNT} flags, {base[0]['bytes']:,} bytes of definitions, server delay "
          f"{args.delay * 1000:.0f} ms, median of {args.repeat} fresh processes\n")
    print(f"baseline (target): fetch {_fmt(_median(base, 'fetch_ms'))} ms + json "
          f"{_fmt(_median(base, 'json_ms'))} ms + compile {_fmt(_median(base, 'compile_ms'))}"
          f" ms = {_fmt(target)} ms\n")
    print("| SDK | mode | first correct answer, ms (median) | min | ratio to fetch+parse "
          "| from import, ms | first call right | calls | all 2,000 right | /flags requests |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    summary: Dict[str, Any] = {}
    for name, group in runs.items():
        if name == "baseline":
            continue
        sdk, mode = name.split("/")
        median = _median(group, "first_correct_ms")
        times = [r["first_correct_ms"] for r in group if r["first_correct_ms"] is not None]
        ratio = None if median is None or not target else median / target
        right_first = sum(1 for r in group if r["first_call_correct"])
        all_right = min(r["all_flags_correct"] for r in group)
        remote = sum(r["remote_flag_requests"] for r in group)
        from_import = _median(group, "from_import_ms")
        summary[name] = {"version": group[0]["version"], "median_ms": median,
                         "from_import_median_ms": from_import,
                         "min_ms": min(times) if times else None, "ratio": ratio,
                         "first_call_correct": f"{right_first}/{len(group)}",
                         "calls_max": max(r["calls"] for r in group),
                         "all_flags_correct_min": all_right, "remote_flag_requests": remote}
        print(f"| {sdk} {group[0]['version']} | {mode} | {_fmt(median)} | "
              f"{_fmt(min(times) if times else None)} | "
              f"{'—' if ratio is None else f'{ratio:.2f}' + TIMES} | {_fmt(from_import)} | "
              f"{right_first}/{len(group)} | "
              f"{max(r['calls'] for r in group)} | {all_right}/{FLAG_COUNT} | {remote} |")
    doc = {"benchmark": "cold_start", "when": _dt.datetime.now(_dt.timezone.utc).isoformat(),
           "machine": {"python": platform.python_version(), "platform": platform.platform(),
                       "cpus": os.cpu_count()},
           "flags": FLAG_COUNT, "server_delay_s": args.delay, "repeat": args.repeat,
           "target_fetch_plus_parse_ms": target, "summary": summary, "runs": runs}
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    print(f"\nwrote {os.path.relpath(args.json, ROOT)}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run per SDK and mode")
    parser.add_argument("--sdk", choices=SDKS, help="measure one SDK only")
    parser.add_argument("--repeat", type=int, default=5, help="runs per SDK and mode")
    parser.add_argument("--delay", type=float, default=0.0,
                        help="seconds the server waits before every answer")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    # worker-only
    parser.add_argument("--worker", choices=(*SDKS, "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--personal-api-key", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 1
    args.repeat = max(1, min(args.repeat, 20))
    if args.worker:
        result = work_baseline(args) if args.worker == "baseline" else work_sdk(args)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
