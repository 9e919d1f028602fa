"""Regex-filter benchmark: the worst ``feature_enabled()`` time over pathological regexes.

Usage (from the repository root)::

    pip install -e '.[re2]' posthog
    python benchmarks/bench_regex.py            # about two minutes (posthog's timeouts dominate)
    python benchmarks/bench_regex.py --quick    # fewer repetitions, shorter posthog timeout

One flag, on for everyone whose ``email`` matches a regex, is evaluated locally
(``only_evaluate_locally=True``, no events) for each pattern of a set of catastrophic ones
(nested quantifiers, overlapping alternatives under a quantifier, chains of ``.*``), of
polynomial ones and of common safe ones, on values built to make a backtracking engine fail
slowly, 25 to 10,000 characters long, plus a value exactly at the length limit productos
computed for the pattern when it has one. Each case is timed on a fresh ``Client``
(``flag_definitions=``, the median of a few calls) and reports where the answer came from:
Python's re, re2, or nowhere (inconclusive: the server decides).

productos is measured with both of its engines: ``re`` (Python's re behind the compile-time
checks; what an install without the ``re2`` extra does) and ``re2`` (when google-re2 is
installed). PostHog's SDK evaluates regexes locally with Python's re and no checks, so it is
measured in a subprocess per case with a timeout, on the 25-character value and on the
10,000-character one for the patterns that are not exponential: a case that does not finish
is reported as "> N s". The target is a worst productos time of at most 1 ms.

The table is printed as markdown and everything is written to benchmarks/results/regex.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from _logs import quiet_logger

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
DEFAULT_JSON = os.path.join(HERE, "results", "regex.json")
FLAG = "regex-flag"
TARGET_MS = 1.0
STARTUP_TIMEOUT = 60.0  # seconds for a posthog worker to load the flag and warm up
LENGTHS = (25, 1_000, 10_000)

def _fill(unit: str, n: int, tail: str = "") -> str:
    """``unit`` repeated, then ``tail``: exactly ``n`` characters."""
    return (unit * n)[: n - len(tail)] + tail


# (pattern, kind, value maker): the maker builds a value of exactly n characters on which a
# backtracking engine fails slowly.
CASES: List[Tuple[str, str, Callable[[int], str]]] = [
    ("(a|a)*$", "exponential", lambda n: _fill("a", n, "!")),
    ("^(a|a)*$", "exponential", lambda n: _fill("a", n, "!")),
    ("(a+)+$", "exponential", lambda n: _fill("a", n, "!")),
    ("(a*)*$", "exponential", lambda n: _fill("a", n, "!")),
    ("(a|aa)*c", "exponential", lambda n: _fill("a", n)),
    ("^(\\w+\\s?)*$", "exponential", lambda n: _fill("ab ", n, "!")),
    ("(.*a){20}", "exponential", lambda n: _fill("a", 15) + _fill("b", n - 15)),
    ("^(([a-z])+.)+[A-Z]([a-z])+$", "exponential", lambda n: _fill("a", n, "!")),
    ("(x+x+)+y", "exponential", lambda n: _fill("x", n)),
    ("^(\\d+)*$", "exponential", lambda n: _fill("1", n, "x")),
    (".*.*.*=x$", "polynomial", lambda n: _fill("=", n)),
    ("\\d*\\d*x", "polynomial", lambda n: _fill("1", n)),
    ("(a|ab)*c", "polynomial", lambda n: _fill("ab", n)),
    ("[a-z]+@[a-z]+\\.com", "polynomial", lambda n: _fill("a", n)),
    ("\\d+x", "polynomial", lambda n: _fill("1", n)),
    (".*@example\\.com$", "polynomial", lambda n: _fill("a@", n)),
    ("\\s+$", "polynomial", lambda n: _fill(" ", n, "!")),
    ("^.*@example\\.com$", "common", lambda n: _fill("a@", n)),
    ("^[a-z0-9._%+-]+@[a-z0-9.-]+\\.[a-z]{2,}$", "common", lambda n: _fill("a.", n, "@")),
    ("(\\d{1,3}\\.){3}\\d{1,3}", "common", lambda n: _fill("1.", n)),
    ("^(foo|bar)$", "common", lambda n: _fill("foo", n)),
]


def definitions(pattern: str) -> Dict[str, Any]:
    """One flag, on for everyone whose email matches ``pattern``."""
    return {
        "flags": [{
            "id": 1, "key": FLAG, "active": True,
            "filters": {"groups": [{
                "properties": [{"key": "email", "type": "person", "operator": "regex",
                                "value": pattern}],
                "rollout_percentage": 100,
            }]},
        }],
        "group_type_mapping": {},
        "cohorts": {},
    }


# --------------------------------------------------------------------------------------
# productos, in this process.
# --------------------------------------------------------------------------------------


def _where(client: Any, value: str) -> str:
    result = client.get_feature_flag_result(FLAG, "u", person_properties={"email": value},
                                            only_evaluate_locally=True,
                                            send_feature_flag_events=False)
    if result is None or result.value is None:
        return "server"
    spec = result.reason.trace[0].filters[0].filter.spec
    if spec is not None and spec.python_limit is not None and spec.linear is not None and (
            len(value) > spec.python_limit):
        return "re2"
    return "re"


def measure_productos(engine: str, repeat: int) -> List[Dict[str, Any]]:
    """Time feature_enabled() for every case with one engine; one row per (pattern, length)."""
    import productos
    from productos._flags.regex_engine import set_regex_engine
    from productos._flags.regex_safety import analyse_pattern

    previous = set_regex_engine(engine)
    rows = []
    try:
        for pattern, kind, make in CASES:
            limit = analyse_pattern(pattern).python_limit
            lengths = sorted({*LENGTHS, *([limit] if limit else [])})
            started = time.perf_counter()
            client = productos.Client("phc_bench_regex", flag_definitions=definitions(pattern),
                                      send=False)
            compile_s = time.perf_counter() - started  # includes Client() itself
            try:
                for length in lengths:
                    value = make(length)
                    times = []
                    answer: Any = None
                    for _ in range(repeat):
                        t0 = time.perf_counter()
                        answer = client.feature_enabled(FLAG, "u",
                                                        person_properties={"email": value},
                                                        only_evaluate_locally=True,
                                                        send_feature_flag_events=False)
                        times.append(time.perf_counter() - t0)
                    rows.append({"pattern": pattern, "kind": kind, "engine": engine,
                                 "length": len(value), "python_limit": limit,
                                 "median_ms": statistics.median(times) * 1000,
                                 "max_ms": max(times) * 1000, "answer": answer,
                                 "path": _where(client, value),
                                 "client_and_compile_ms": compile_s * 1000})
            finally:
                client.shutdown(1)
    finally:
        set_regex_engine(previous)
    return rows


# --------------------------------------------------------------------------------------
# posthog, one subprocess per case.
# --------------------------------------------------------------------------------------


def posthog_worker(args: argparse.Namespace) -> int:
    """Load the one flag from the loopback server and time one feature_enabled() call."""
    import posthog
    from posthog import Posthog

    quiet_logger("posthog")
    client = Posthog("phc_bench_regex", host=args.host, personal_api_key=args.personal_api_key)
    client.load_feature_flags()
    client.feature_enabled(FLAG, "u", person_properties={"email": "warm-up"},
                           only_evaluate_locally=True, send_feature_flag_events=False)
    value = _value_from(args)
    print("ready", flush=True)  # the parent's timeout starts now
    t0 = time.perf_counter()
    answer = client.feature_enabled(FLAG, "u", person_properties={"email": value},
                                    only_evaluate_locally=True, send_feature_flag_events=False)
    elapsed = time.perf_counter() - t0
    print(json.dumps({"seconds": elapsed, "answer": answer,
                      "version": getattr(posthog, "VERSION", "?")}))
    client.shutdown()
    return 0


def _value_from(args: argparse.Namespace) -> str:
    for pattern, _, make in CASES:
        if pattern == args.pattern:
            return make(args.length)
    raise SystemExit(f"unknown pattern {args.pattern!r}")


def _run_posthog_worker(cmd: List[str], timeout: float) -> Optional[Dict[str, Any]]:
    """Run one worker; None when its timed call is still running ``timeout`` s after "ready"."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    try:
        lines: List[str] = []
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            wait = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([proc.stdout], [], [], wait)
            if not ready:
                return None  # still starting, or still in the timed call
            line = proc.stdout.readline()
            if not line:
                _, err = proc.communicate(timeout=5)
                raise SystemExit(f"posthog worker failed ({proc.returncode}):\n{err[-3000:]}")
            lines.append(line)
            if line.strip() == "ready":
                deadline = time.monotonic() + timeout
            elif line.startswith("{"):
                data: Dict[str, Any] = json.loads(line)
                return data
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()


def measure_posthog(timeout: float) -> List[Dict[str, Any]]:
    """Time posthog on each pattern: 25 characters, and 10,000 unless it is exponential."""
    from tests.server import LoopbackServer

    rows = []
    server = LoopbackServer().start()
    try:
        for pattern, kind, _ in CASES:
            server.set_definitions(definitions(pattern))
            for length in (25,) if kind == "exponential" else (25, 10_000):
                cmd = [sys.executable, os.path.abspath(__file__), "--posthog-worker",
                       "--host", server.url, "--personal-api-key", server.personal_api_key,
                       "--pattern", pattern, "--length", str(length)]
                row: Dict[str, Any] = {"pattern": pattern, "kind": kind, "length": length}
                data = _run_posthog_worker(cmd, timeout)
                if data is None:
                    row.update(timed_out=True, seconds=None)
                else:
                    row.update(timed_out=data["seconds"] > timeout, seconds=data["seconds"],
                               answer=data["answer"], version=data["version"])
                rows.append(row)
                print(f"  posthog {pattern!r} x{length}: "
                      + (f"> {timeout:g} s" if row["timed_out"] else
                         f"{row['seconds'] * 1000:.3f} ms"), flush=True)
    finally:
        server.stop()
    return rows


# --------------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------------


def _ms(value: Optional[float]) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if value < 10 else f"{value:,.0f}"


def _worst(rows: List[Dict[str, Any]], pattern: str) -> Optional[Dict[str, Any]]:
    mine = [r for r in rows if r["pattern"] == pattern]
    return max(mine, key=lambda r: r["median_ms"]) if mine else None


def _posthog_cell(rows: List[Dict[str, Any]], pattern: str, length: int, timeout: float) -> str:
    for r in rows:
        if r["pattern"] == pattern and r["length"] == length:
            if r["timed_out"]:
                return f"> {timeout:g} s"
            # None: posthog's own dialect check left it to the server
            return f"{_ms(r['seconds'] * 1000)} ({r['answer']})"
    return "—"


def report(args: argparse.Namespace, productos_rows: Dict[str, List[Dict[str, Any]]],
           posthog_rows: List[Dict[str, Any]], started: float) -> int:
    import productos

    engines = list(productos_rows)
    head = ["pattern", "kind", "re: limit"]
    head += [f"productos {e}: worst ms (len, path)" for e in engines]
    if posthog_rows:
        head += ["posthog, 25 chars: ms (answer)", "posthog, 10,000 chars: ms (answer)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for pattern, kind, _ in CASES:
        limit = next(r["python_limit"] for r in productos_rows[engines[0]]
                     if r["pattern"] == pattern)
        cells = [f"`{pattern}`", kind,
                 "refused" if limit == 0 else ("none" if limit is None else f"{limit:,}")]
        for engine in engines:
            w = _worst(productos_rows[engine], pattern)
            cells.append("—" if w is None else
                         f"{_ms(w['median_ms'])} ({w['length']:,}, {w['path']})")
        if posthog_rows:
            cells.append(_posthog_cell(posthog_rows, pattern, 25, args.posthog_timeout))
            cells.append(_posthog_cell(posthog_rows, pattern, 10_000, args.posthog_timeout))
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)

    summary = {}
    for engine in engines:
        rows = productos_rows[engine]
        worst = max(rows, key=lambda r: r["median_ms"])
        summary[engine] = {
            "worst_median_ms": worst["median_ms"], "worst_pattern": worst["pattern"],
            "worst_length": worst["length"], "worst_path": worst["path"],
            "worst_single_call_ms": max(r["max_ms"] for r in rows),
            "met": worst["median_ms"] <= TARGET_MS,
            "cases": len(rows),
            "answered_locally": sum(r["path"] != "server" for r in rows),
            "longest_client_and_compile_ms": max(r["client_and_compile_ms"] for r in rows),
        }
    posthog_summary = None
    if posthog_rows:
        finished = [r for r in posthog_rows if not r["timed_out"]]
        posthog_summary = {
            "timed_out": sum(r["timed_out"] for r in posthog_rows),
            "cases": len(posthog_rows),
            "worst_finished_ms": max((r["seconds"] * 1000 for r in finished), default=None),
            "timeout_s": args.posthog_timeout,
            "version": next((r.get("version") for r in finished), None),
        }

    print()
    print(f"## Regex filters: worst `feature_enabled()` time, productos {productos.__version__}"
          + (f" vs posthog {posthog_summary['version']}" if posthog_summary else "")
          + f" — {platform.python_implementation()} {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    print()
    print(table)
    print()
    for engine, s in summary.items():
        print(f"- productos, engine {engine}: worst {s['worst_median_ms']:.3f} ms "
              f"(median of {args.repeat}; `{s['worst_pattern']}` on {s['worst_length']:,} "
              f"characters, answered by {s['worst_path']}); slowest single call "
              f"{s['worst_single_call_ms']:.3f} ms; target ≤ {TARGET_MS:g} ms: "
              f"{'met' if s['met'] else '**not met**'}; {s['answered_locally']} of "
              f"{s['cases']} cases answered locally, the rest left to the server")
    if posthog_summary:
        print(f"- posthog: {posthog_summary['timed_out']} of {posthog_summary['cases']} cases "
              f"did not finish within {args.posthog_timeout:g} s; worst finished "
              f"{_ms(posthog_summary['worst_finished_ms'])} ms")

    doc = {
        "benchmark": "regex",
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "machine": {"python": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "platform": platform.platform(), "cpus": os.cpu_count()},
        "config": {"repeat": args.repeat, "lengths": list(LENGTHS),
                   "posthog_timeout_s": args.posthog_timeout, "target_ms": TARGET_MS},
        "summary": {"productos": summary, "posthog": posthog_summary},
        "table_markdown": table,
        "productos": productos_rows,
        "posthog": posthog_rows,
    }
    out = args.json
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    print(f"\nwrote {os.path.relpath(out, ROOT)}")
    return 0 if all(s["met"] for s in summary.values()) else 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions and a 2 s posthog timeout")
    parser.add_argument("--repeat", type=int, default=7, help="calls per case (median reported)")
    parser.add_argument("--posthog-timeout", type=float, default=10.0,
                        help="seconds a posthog call may take before it is reported as '> N s'")
    parser.add_argument("--no-posthog", action="store_true", help="measure productos alone")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    # worker-only
    parser.add_argument("--posthog-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--personal-api-key", help=argparse.SUPPRESS)
    parser.add_argument("--pattern", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.posthog_worker:
        return posthog_worker(args)
    if args.quick:
        args.repeat, args.posthog_timeout = 3, 2.0
    args.repeat = max(1, min(args.repeat, 50))
    started = time.time()

    from productos._flags.regex_engine import set_regex_engine

    engines = ["re"]
    try:
        set_regex_engine(set_regex_engine("re2"))
        engines.append("re2")
    except ValueError:
        print("google-re2 is not installed (pip install -e '.[re2]'): engine re only")
    productos_rows = {}
    for engine in engines:
        print(f"productos, engine {engine} ...", flush=True)
        productos_rows[engine] = measure_productos(engine, args.repeat)
    posthog_rows: List[Dict[str, Any]] = []
    if not args.no_posthog:
        if importlib.util.find_spec("posthog") is None:
            print("posthog is not installed (pip install posthog): measuring productos alone")
        else:
            print(f"posthog, one subprocess per case, {args.posthog_timeout:g} s timeout ...",
                  flush=True)
            posthog_rows = measure_posthog(args.posthog_timeout)
    return report(args, productos_rows, posthog_rows, started)


if __name__ == "__main__":
    sys.exit(main())
