"""Delivery-guarantees benchmark: productos against PostHog's own SDK, side by side.

Usage (from the repository root)::

    pip install -e . posthog
    python benchmarks/bench_delivery.py            # full run, about a minute
    python benchmarks/bench_delivery.py --quick    # smaller counts, a smoke test
    python benchmarks/bench_delivery.py --sdk productos

For each SDK (posthog only when it is installed), with default settings except the host:

1. ``flush``: capture 10k events against an endpoint answering 20 % 503 (seeded), call
   ``flush(10)`` (posthog: ``flush()``) and count the unique uuids the server had stored
   at the moment flush returned;
2. ``shutdown``: the same endpoint, capture 10k, time ``shutdown()``; count what the
   server stored;
3. ``exit``: a process captures 10k against a 200 ms endpoint and returns from main
   without flush or shutdown; count what the server stored once the process is gone;
4. ``tight loop``: 200k ``capture()`` calls in a tight loop against a healthy endpoint,
   then a generous drain; drops = captured - delivered (unique uuids at the server),
   beside what the SDK reports (``capture()`` returning None, and productos' ``stats()``).
   A second productos row with ``on_full="block"`` is labelled as such.

The server is the project's loopback test server (tests/server.py, 127.0.0.1 only), run
in this process; every SDK run is a fresh subprocess given the server's URL. Each event
carries a per-run id, so late arrivals from an earlier run are never counted. The
instant flush/shutdown returns is taken with ``time.monotonic()`` in the child and
compared with the instant the server stored each batch (the same clock on Linux and
macOS). Prints a markdown table and writes every number to
benchmarks/results/delivery.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid as _uuid
from typing import Any, Callable, Dict, List, Optional, Tuple

from _logs import quiet_logger

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_JSON = os.path.join(HERE, "results", "delivery.json")
EVENT = "delivery benchmark"
DISTINCT_ID = "user-42"
API_KEY = "phc_bench_delivery"
WORKER_TIMEOUT = 180.0  # seconds for any one worker subprocess
SETTLE_QUIET = 0.6  # the server is settled when nothing was stored for this long...
SETTLE_MAX = 10.0  # ...or after this many seconds
FAIL_SEED = 1
RESULT_PREFIX = "BENCH-RESULT "


def make_properties(run: str, i: int) -> Dict[str, Any]:
    """A fresh dict per call, tagged with the run id."""
    return {"run": run, "i": i, "plan": "pro", "amount": 12.5, "beta": True}


# --------------------------------------------------------------------------------------
# Worker side: one SDK, one scenario, in a fresh interpreter.
# --------------------------------------------------------------------------------------


class Sdk:
    """A thin, uniform face over one SDK's client."""

    def __init__(self, name: str, host: str, variant: str = "") -> None:
        self.name = name
        self.log = quiet_logger(name)
        if name == "productos":
            import productos

            self.version = productos.__version__
            kwargs: Dict[str, Any] = {}
            if variant == "block":
                kwargs["on_full"] = "block"
            self.client: Any = productos.Client(API_KEY, host=host, **kwargs)
            self.capture: Callable[..., Any] = self.client.capture
        elif name == "posthog":
            import inspect

            import posthog
            from posthog import Posthog

            self.version = getattr(posthog, "VERSION", "?")
            # No personal_api_key: no flag-definition polling; nothing but /batch/.
            self.client = Posthog(API_KEY, host=host)
            params = list(inspect.signature(self.client.capture).parameters)
            if params and params[0] == "distinct_id":  # posthog < 6: capture(distinct_id, event)
                legacy = self.client.capture

                def capture(event: str, distinct_id: Any = None, properties: Any = None) -> Any:
                    return legacy(distinct_id, event, properties=properties)

                self.capture = capture
            else:
                self.capture = self.client.capture
        else:
            raise SystemExit(f"unknown sdk {name!r}")

    def flush(self, timeout: Optional[float] = None) -> Any:
        """productos: flush(timeout or 10); posthog: flush() (or flush(timeout) if given)."""
        if self.name == "productos":
            return self.client.flush(10.0 if timeout is None else timeout)
        if timeout is None:
            return self.client.flush()
        try:
            return self.client.flush(timeout_seconds=timeout)
        except TypeError:  # older posthog: flush() without a timeout
            return self.client.flush()

    def shutdown(self, timeout: Optional[float] = None) -> Any:
        """shutdown() with the SDK's default budget unless a timeout is given (productos)."""
        if self.name == "productos" and timeout is not None:
            return self.client.shutdown(timeout)
        return self.client.shutdown()

    def stats(self) -> Optional[Dict[str, Any]]:
        if self.name == "productos":
            try:
                return dict(self.client.stats())
            except Exception as exc:
                return {"error": repr(exc)}
        return None


def _capture_n(sdk: Sdk, run: str, n: int) -> Tuple[int, float]:
    """Capture n events; return how many capture() refused (returned None) and the time."""
    capture = sdk.capture
    refused = 0
    t0 = time.perf_counter()
    for i in range(n):
        if capture(EVENT, distinct_id=DISTINCT_ID, properties=make_properties(run, i)) is None:
            refused += 1
    return refused, time.perf_counter() - t0


def _emit(result: Dict[str, Any]) -> None:
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def work_flush(args: argparse.Namespace) -> None:
    sdk = Sdk(args.sdk, args.url, args.variant)
    refused, capture_s = _capture_n(sdk, args.run, args.events)
    t0 = time.monotonic()
    returned = sdk.flush()
    t1 = time.monotonic()
    _emit({"refused": refused, "capture_s": capture_s, "flush_s": t1 - t0,
           "returned_at": t1, "flush_returned": returned, "stats": sdk.stats(),
           "log_records": sdk.log.count, "version": sdk.version})
    os._exit(0)  # measured; skip the SDKs' exit drains


def work_shutdown(args: argparse.Namespace) -> None:
    sdk = Sdk(args.sdk, args.url, args.variant)
    refused, capture_s = _capture_n(sdk, args.run, args.events)
    t0 = time.monotonic()
    returned = sdk.shutdown()
    t1 = time.monotonic()
    _emit({"refused": refused, "capture_s": capture_s, "shutdown_s": t1 - t0,
           "returned_at": t1, "shutdown_returned": returned, "stats": sdk.stats(),
           "log_records": sdk.log.count, "version": sdk.version})
    os._exit(0)


def work_exit(args: argparse.Namespace) -> None:
    """Capture and return from main: no flush, no shutdown; the SDK's exit hook decides."""
    sdk = Sdk(args.sdk, args.url, args.variant)
    refused, capture_s = _capture_n(sdk, args.run, args.events)
    _emit({"refused": refused, "capture_s": capture_s, "main_returned_at": time.monotonic(),
           "stats": sdk.stats(), "version": sdk.version})


def work_loop(args: argparse.Namespace) -> None:
    sdk = Sdk(args.sdk, args.url, args.variant)
    refused, capture_s = _capture_n(sdk, args.run, args.loop)
    before = sdk.stats()
    t0 = time.monotonic()
    if sdk.name == "productos":
        sdk.shutdown(120.0)
    else:
        sdk.flush(120.0)
        sdk.shutdown()
    _emit({"refused": refused, "capture_s": capture_s, "drain_s": time.monotonic() - t0,
           "stats_before_drain": before, "stats": sdk.stats(), "log_records": sdk.log.count,
           "version": sdk.version})
    os._exit(0)


WORKERS = {"flush": work_flush, "shutdown": work_shutdown, "exit": work_exit,
           "loop": work_loop}
SCENARIOS = ("flush", "shutdown", "exit", "loop")


# --------------------------------------------------------------------------------------
# Parent side: the server, the runs, the table.
# --------------------------------------------------------------------------------------


class Server:
    """The project's LoopbackServer, plus the instant each batch was stored."""

    def __init__(self) -> None:
        if ROOT not in sys.path:
            sys.path.insert(0, ROOT)
        from tests.server import LoopbackServer

        # Clients that hang up mid-request (the exit scenario) make the server log a
        # traceback; count those records instead of printing them.
        self.log = quiet_logger("productos.tests.server")
        self.srv = LoopbackServer().start()
        self.url = self.srv.url
        self._lock = threading.Lock()
        self._stored: List[Tuple[float, List[Dict[str, Any]]]] = []
        original = self.srv._store

        def store(rec: Any, events: List[Dict[str, Any]], status: Optional[int]) -> None:
            original(rec, events, status)
            with self._lock:
                self._stored.append((time.monotonic(), list(events)))

        self.srv._store = store  # type: ignore[method-assign]

    def reset(self, p503: float = 0.0, delay: float = 0.0) -> None:
        self.srv.clear()
        with self._lock:
            self._stored.clear()
        self.srv.fail_rate(p503=p503, seed=FAIL_SEED)
        self.srv.set_delay(delay)

    def status_counts(self) -> Dict[str, int]:
        """Ingestion requests since the last reset, by response status ("none": no reply)."""
        counts: Dict[str, int] = {}
        for r in self.srv.requests:
            key = "none" if r.response_status is None else str(r.response_status)
            counts[key] = counts.get(key, 0) + 1
        return counts

    def stored_count(self) -> int:
        with self._lock:
            return sum(len(b) for _, b in self._stored)

    def delivered(self, run: str, before: Optional[float] = None) -> Tuple[int, int]:
        """Unique uuids and total events of `run` stored (at or before `before`)."""
        with self._lock:
            batches = list(self._stored)
        seen = set()
        total = 0
        for t, events in batches:
            if before is not None and t > before:
                continue
            for e in events:
                if (e.get("properties") or {}).get("run") == run:
                    total += 1
                    seen.add(e.get("uuid"))
        return len(seen), total

    def settle(self) -> float:
        """Wait until nothing new is stored for SETTLE_QUIET seconds (bounded)."""
        start = time.monotonic()
        last, last_change = -1, start
        while True:
            now = time.monotonic()
            count = self.stored_count()
            if count != last:
                last, last_change = count, now
            if now - last_change >= SETTLE_QUIET or now - start >= SETTLE_MAX:
                return now - start
            time.sleep(0.05)

    def stop(self) -> None:
        self.srv.stop()


def run_worker(server: Server, scenario: str, sdk: str, args: argparse.Namespace,
               variant: str = "") -> Dict[str, Any]:
    """Run one scenario in a fresh interpreter; return its result plus the server's view."""
    run = _uuid.uuid4().hex[:12]
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", scenario, "--sdk", sdk,
           "--url", server.url, "--run", run, "--events", str(args.events),
           "--loop", str(args.loop)]
    if variant:
        cmd += ["--variant", variant]
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise SystemExit(
            f"{scenario}/{sdk}: worker timed out after {WORKER_TIMEOUT}s\n{err}"
        ) from None
    exited_at = time.monotonic()
    lines = [ln for ln in out.splitlines() if ln.startswith(RESULT_PREFIX)]
    if not lines:
        raise SystemExit(f"{scenario}/{sdk}: worker failed (rc={proc.returncode})\n{out}\n{err}")
    result: Dict[str, Any] = json.loads(lines[-1][len(RESULT_PREFIX):])
    result["returncode"] = proc.returncode
    result["stderr_tail"] = err[-2000:]
    result["exited_at"] = exited_at
    result["settle_s"] = server.settle()
    result["delivered_unique"], result["delivered_total"] = server.delivered(run)
    result["server_requests"] = server.status_counts()
    if "returned_at" in result:
        result["delivered_at_return"] = server.delivered(run, result["returned_at"])[0]
    if "main_returned_at" in result:
        result["exit_s"] = exited_at - result["main_returned_at"]
        result["delivered_at_exit"] = server.delivered(run, exited_at)[0]
    return result


def _posthog_available() -> bool:
    return importlib.util.find_spec("posthog") is not None


def measure_loop(server: Server, sdks: List[str],
                 args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    """The tight loop, args.loop_repeat times with the SDKs alternating; the median run.

    posthog's drops here depend on how much CPU its consumer thread gets while the
    caller's loop runs, so they swing widely from run to run on a shared machine.
    """
    variants = [(sdk, sdk, "") for sdk in sdks]
    if "productos" in sdks:
        variants.append(("productos_block", "productos", "block"))
    all_runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name, _, _ in variants}
    for rep in range(args.loop_repeat):
        for name, sdk, variant in variants:
            tag = f"{sdk} on_full=block" if variant else sdk
            print(f"[{tag}] {args.loop} captures in a tight loop, run {rep + 1}/"
                  f"{args.loop_repeat} ...", flush=True)
            server.reset()
            all_runs[name].append(run_worker(server, "loop", sdk, args, variant=variant))
    out: Dict[str, Dict[str, Any]] = {}
    for name, results in all_runs.items():
        ordered = sorted(results, key=lambda r: r["delivered_unique"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["repetitions"] = [
            {"delivered_unique": r["delivered_unique"], "refused": r["refused"],
             "dropped_total": _counted(r), "capture_s": r["capture_s"]}
            for r in results
        ]
        out[name] = median
    return out


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    sdks = [s for s in args.sdk if s != "posthog" or _posthog_available()]
    if "posthog" in args.sdk and "posthog" not in sdks:
        print("posthog is not installed: measuring productos alone (pip install posthog)")
    server = Server()
    runs: Dict[str, Dict[str, Any]] = {}
    try:
        plan = [
            ("flush", "flush under 20 % 503", {"p503": 0.2}),
            ("shutdown", "shutdown under 20 % 503", {"p503": 0.2}),
            ("exit", "exit without shutdown, 200 ms endpoint", {"delay": 0.2}),
            ("loop", f"{args.loop} captures in a tight loop", {}),
        ]
        for scenario, label, setup in plan:
            if scenario not in args.scenario:
                continue
            if scenario == "loop":
                runs["loop"] = measure_loop(server, sdks, args)
                continue
            for sdk in sdks:
                print(f"[{sdk}] {label} ...", flush=True)
                server.reset(**setup)
                runs.setdefault(scenario, {})[sdk] = run_worker(server, scenario, sdk, args)
    finally:
        server.stop()
    return runs


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


def _pct(n: Optional[float], d: int) -> Optional[float]:
    return None if n is None else 100.0 * n / d


def _get(runs: Dict[str, Any], scenario: str, sdk: str, key: str) -> Any:
    return runs.get(scenario, {}).get(sdk, {}).get(key)


def _loop_drops(r: Optional[Dict[str, Any]], loop: int) -> Optional[int]:
    return None if r is None else loop - int(r["delivered_unique"])


def _counted(r: Optional[Dict[str, Any]]) -> Optional[int]:
    """productos: stats()['dropped_total'] after the drain."""
    if r is None or not isinstance(r.get("stats"), dict):
        return None
    return r["stats"].get("dropped_total")


def _all_counted(r: Dict[str, Any], loop: int) -> bool:
    """Whether stats()['dropped_total'] equals captured - delivered in every repetition."""
    reps = r.get("repetitions") or [{"delivered_unique": r["delivered_unique"],
                                      "dropped_total": _counted(r)}]
    return all(x["dropped_total"] == loop - x["delivered_unique"] for x in reps)


def build_rows(runs: Dict[str, Any], args: argparse.Namespace) -> List[Dict[str, Any]]:
    n, loop = args.events, args.loop
    P, H = "productos", "posthog"
    rows: List[Dict[str, Any]] = []

    def row(label: str, unit: str, p: Any, h: Any, target: str, met: Optional[bool],
            ratio: bool = True) -> None:
        r = None
        if ratio and isinstance(p, (int, float)) and isinstance(h, (int, float)) and h:
            r = p / h
        rows.append({"metric": label, "unit": unit, "productos": p, "posthog": h,
                     "ratio": r, "target": target, "met": met})

    # 1. flush under 503
    p = _pct(_get(runs, "flush", P, "delivered_at_return"), n)
    h = _pct(_get(runs, "flush", H, "delivered_at_return"), n)
    row(f"delivered when flush returns, {n} events, 20 % 503", "%", p, h,
        "100 %", None if p is None else p >= 100.0)
    p = _get(runs, "flush", P, "flush_s")
    h = _get(runs, "flush", H, "flush_s")
    row("flush() time, 20 % 503 (info)", "s", p, h, "", None)

    # 2. shutdown under 503
    p = _get(runs, "shutdown", P, "shutdown_s")
    h = _get(runs, "shutdown", H, "shutdown_s")
    met = None
    if isinstance(p, float) and isinstance(h, float):
        met = p <= 0.2 * h
    row(f"shutdown() time after {n} events, 20 % 503", "s", p, h, "<= 0.2x", met)
    p = _pct(_get(runs, "shutdown", P, "delivered_at_return"), n)
    h = _pct(_get(runs, "shutdown", H, "delivered_at_return"), n)
    row("delivered when shutdown returns, 20 % 503", "%", p, h, "100 %",
        None if p is None else p >= 100.0)

    # 3. exit without shutdown
    p = _pct(_get(runs, "exit", P, "delivered_unique"), n)
    h = _pct(_get(runs, "exit", H, "delivered_unique"), n)
    row(f"delivered at exit without shutdown, {n} events, 200 ms endpoint", "%", p, h,
        "≥ 99 %", None if p is None else p >= 99.0)
    p = _get(runs, "exit", P, "exit_s")
    h = _get(runs, "exit", H, "exit_s")
    row("time from main() returning to process exit (info)", "s", p, h, "", None)

    # 4. tight loop
    pr = runs.get("loop", {}).get(P)
    hr = runs.get("loop", {}).get(H)
    br = runs.get("loop", {}).get("productos_block")
    pd, hd = _loop_drops(pr, loop), _loop_drops(hr, loop)
    reps = args.loop_repeat
    met = None
    if pd is not None:
        limit = 0.1 * hd if hd is not None else 0
        met = pd <= limit and _all_counted(pr, loop)
    row(f"drops in a {loop} tight capture loop, defaults (captured - delivered), "
        f"median of {reps}", "events", pd, hd, "<= 0.1x, all counted", met)
    row("drops the SDK reports (capture() returned None)", "events",
        None if pr is None else pr["refused"], None if hr is None else hr["refused"], "",
        None, ratio=False)
    pc = _counted(pr)
    row("productos stats()['dropped_total'] (must equal its drops in every run)", "events",
        pc, None, "= drops", None if pr is None else _all_counted(pr, loop), ratio=False)
    if br is not None:
        bd = _loop_drops(br, loop)
        row(f'productos on_full="block": drops in the {loop} loop, median of {reps}',
            "events", bd, hd, "all counted", _all_counted(br, loop))
    p = None if pr is None else pr["capture_s"]
    h = None if hr is None else hr["capture_s"]
    row(f"{loop} tight-loop capture time, defaults (info)", "s", p, h, "", None)
    return rows


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if unit == "%":
        return f"{v:.2f} %"
    if unit == "s":
        return f"{v:.3f} s"
    if isinstance(v, float):
        return f"{v:.0f}"
    return f"{v:,}".replace(",", " ")


def table(rows: List[Dict[str, Any]]) -> str:
    out = ["| metric | productos | posthog | productos / posthog | target | met |",
           "| --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.3f}x"
        met = "" if r["met"] is None else ("yes" if r["met"] else "**no**")
        out.append(f"| {r['metric']} | {_fmt(r['productos'], r['unit'])} | "
                   f"{_fmt(r['posthog'], r['unit'])} | {ratio} | {r['target']} | {met} |")
    return "\n".join(out)


def notes(runs: Dict[str, Any], args: argparse.Namespace) -> List[str]:
    """Facts worth printing under the table: drop reasons, duplicates, return values."""
    lines = []
    for scenario, by_sdk in runs.items():
        for sdk, r in by_sdk.items():
            dup = r["delivered_total"] - r["delivered_unique"]
            bits = [f"{scenario}/{sdk}: delivered {r['delivered_unique']} unique"]
            if dup:
                bits.append(f"{dup} duplicates")
            if r.get("refused"):
                bits.append(f"capture() refused {r['refused']}")
            st = r.get("stats")
            if isinstance(st, dict) and st.get("dropped"):
                bits.append(f"stats dropped {st['dropped']}")
            for key in ("flush_returned", "shutdown_returned"):
                if key in r:
                    bits.append(f"{key.split('_')[0]}() returned {r[key]!r}")
            if r.get("server_requests"):
                bits.append(f"server replies {r['server_requests']}")
            if r.get("repetitions"):
                drops = [args.loop - x["delivered_unique"] for x in r["repetitions"]]
                bits.append(f"drops per run {drops}")
            if r.get("returncode"):
                bits.append(f"exit code {r['returncode']}")
            lines.append("; ".join(bits))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdk", action="append", choices=("productos", "posthog"),
                        help="measure only this SDK (repeatable); default both")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--loop", type=int, default=200_000)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="run only this scenario (repeatable); default all")
    parser.add_argument("--loop-repeat", type=int, default=3,
                        help="tight-loop runs per SDK; the median is reported (default 3)")
    parser.add_argument("--quick", action="store_true", help="2k events, 20k loop")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    # worker-side arguments
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.sdk = args.sdk[0]
        WORKERS[args.worker](args)
        return 0

    if args.quick:
        args.events, args.loop, args.loop_repeat = 2_000, 20_000, 1
    args.sdk = args.sdk or ["productos", "posthog"]
    args.scenario = args.scenario or list(SCENARIOS)
    started = time.time()
    runs = measure(args)
    rows = build_rows(runs, args)
    print()
    print(table(rows))
    print()
    for line in notes(runs, args):
        print("- " + line)
    versions = {sdk: r.get("version") for by in runs.values() for sdk, r in by.items()}
    if not args.no_json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        doc = {
            "benchmark": "delivery",
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(time.time() - started, 1),
            "machine": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpus": os.cpu_count()},
            "versions": versions,
            "settings": {"events": args.events, "loop": args.loop, "p503": 0.2,
                         "fail_seed": FAIL_SEED, "slow_endpoint_s": 0.2},
            "rows": rows,
            "runs": {sc: {sdk: {k: v for k, v in r.items() if k != "stderr_tail"}
                          for sdk, r in by.items()} for sc, by in runs.items()},
            "table_markdown": table(rows),
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2, sort_keys=False)
            f.write("\n")
        print(f"\nwrote {os.path.relpath(args.json, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
