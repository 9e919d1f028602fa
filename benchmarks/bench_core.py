"""Core benchmark: productos against PostHog's own SDK, side by side, on one local sink.

Usage (from the repository root)::

    pip install -e . posthog
    python benchmarks/bench_core.py            # full run, a few minutes
    python benchmarks/bench_core.py --quick    # smaller counts, for a smoke test
    python benchmarks/bench_core.py --profile  # cProfile of productos' capture and delivery

It measures, for each SDK (posthog only when it is installed):

1. ``capture()``: mean and p99 time per call, 5 properties, distinct_id given, with the
   SDK's consumer thread alive and sending to the sink, after a warm-up;
2. delivery: events per second *received by the sink* for 200k captures, from the first
   capture until the sink holds every admitted event (or flush returns), with the
   delivered count beside it, so an SDK that drops events cannot look fast;
3. ``import`` time: median over fresh interpreters;
4. peak RSS growth (``ru_maxrss`` after 100k captures and a flush, minus once the client exists).

Every measurement runs in a fresh subprocess; all of them talk to one sink subprocess
(benchmarks/sink.py, 127.0.0.1 only) that stops by itself. Each SDK runs with its default
settings except the host. The table is printed as markdown and the numbers are written
to benchmarks/results/core.json. On a shared 2-core machine absolute times are noise;
the ratios (productos / posthog) are what count.
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
import time
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Tuple

from _logs import quiet_logger

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SINK = os.path.join(HERE, "sink.py")
DEFAULT_JSON = os.path.join(HERE, "results", "core.json")
SDKS = ("productos", "posthog")
EVENT = "benchmark event"
DISTINCT_ID = "user-42"
WORKER_TIMEOUT = 600.0  # seconds for any one worker subprocess
SETTLE_TIMEOUT = 15.0  # seconds to wait, after flush, for the sink to hold every event

# (metric key, label, unit, better, target ratio) -- better: "lower" or "higher"
ROWS = (
    ("capture_mean_us", "capture() mean", "µs/call", "lower", 0.1),
    ("capture_p99_us", "capture() p99", "µs/call", "lower", 0.1),
    ("events_per_s", "delivered events/s, {events} events", "events/s", "higher", 10.0),
    ("import_ms", "import time, median", "ms", "lower", 0.5),
    ("rss_mib", "peak RSS growth, {rss_events} events", "MiB", "lower", 0.5),
)


def make_properties(i: int) -> Dict[str, Any]:
    """The same 5 properties for both SDKs; a fresh dict per call, as an app would pass."""
    return {"plan": "pro", "amount": 12.5, "items": 3, "beta": True, "path": "/checkout"}


# --------------------------------------------------------------------------------------
# Worker side: one SDK, one measurement, in a fresh interpreter.
# --------------------------------------------------------------------------------------


class Sdk:
    """A thin, uniform face over one SDK's client: make, capture, flush, shutdown."""

    def __init__(self, name: str, host: str, api_key: str) -> None:
        self.name = name
        self.log = quiet_logger(name)
        if name == "productos":
            import productos

            self.version = productos.__version__
            self.module_file = productos.__file__
            self.client: Any = productos.Client(api_key, host=host)
            self.capture: Callable[..., Any] = self.client.capture
        elif name == "posthog":
            import inspect

            import posthog
            from posthog import Posthog

            self.version = getattr(posthog, "VERSION", "?")
            self.module_file = posthog.__file__
            # No personal_api_key: no flag-definition polling; nothing but /batch/.
            self.client = Posthog(api_key, host=host)
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

    def flush(self, timeout: float) -> None:
        if self.name == "productos":
            self.client.flush(timeout)
        else:
            try:
                self.client.flush(timeout_seconds=timeout)
            except TypeError:  # older posthog: flush() without a timeout
                self.client.flush()

    def shutdown(self, timeout: float) -> None:
        if self.name == "productos":
            self.client.shutdown(timeout)
        else:
            self.client.shutdown()

    def stats(self) -> Optional[Dict[str, Any]]:
        if self.name == "productos":
            try:
                return dict(self.client.stats())
            except Exception as exc:
                return {"error": repr(exc)}
        return None


def sink_stats(port: int) -> Dict[str, Any]:
    url = f"http://127.0.0.1:{port}/_sink/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def sink_events(port: int, api_key: str) -> int:
    return int(sink_stats(port)["events"].get(api_key, 0))


def _wait_for_sink(port: int, api_key: str, expected: int,
                   timeout: float = SETTLE_TIMEOUT) -> Tuple[int, Optional[float]]:
    """Poll until the sink holds expected events for api_key (or stops changing).

    Return the count and the perf_counter instant it reached ``expected`` (None if never).
    """
    deadline = time.perf_counter() + timeout
    last, last_change = -1, time.perf_counter()
    while True:
        count = sink_events(port, api_key)
        now = time.perf_counter()
        if count >= expected:
            return count, now
        if count != last:
            last, last_change = count, now
        if now >= deadline or now - last_change > 3.0:
            return count, None
        time.sleep(0.005)


def work_capture(args: argparse.Namespace) -> Dict[str, Any]:
    """capture() latency with the consumer thread alive."""
    host = f"http://127.0.0.1:{args.port}"
    key = f"phc_bench_capture_{args.sdk}_{os.getpid()}"
    sdk = Sdk(args.sdk, host, key)
    capture = sdk.capture
    clock = time.perf_counter_ns
    for i in range(args.warmup):
        capture(EVENT, distinct_id=DISTINCT_ID, properties=make_properties(i))
    sdk.flush(60.0)

    # The cost of the two clock reads around each call, subtracted from every sample.
    overhead = []
    for _ in range(2000):
        t0 = clock()
        t1 = clock()
        overhead.append(t1 - t0)
    timer_ns = statistics.median(overhead)

    n = args.captures
    samples = [0] * n
    admitted = 0
    for i in range(n):
        props = make_properties(i)
        t0 = clock()
        result = capture(EVENT, distinct_id=DISTINCT_ID, properties=props)
        t1 = clock()
        samples[i] = t1 - t0
        if result is not None:
            admitted += 1
    sdk.flush(60.0)
    delivered, _ = _wait_for_sink(args.port, key, args.warmup + admitted, timeout=5.0)
    stats = sdk.stats()
    sdk.shutdown(10.0)
    samples_us = sorted(max(0.0, (s - timer_ns) / 1000.0) for s in samples)
    return {
        "capture_mean_us": statistics.fmean(samples_us),
        "capture_median_us": samples_us[n // 2],
        "capture_p99_us": samples_us[min(n - 1, int(n * 0.99))],
        "capture_max_us": samples_us[-1],
        "calls": n,
        "warmup": args.warmup,
        "admitted": admitted,
        "delivered_incl_warmup": delivered,
        "timer_overhead_ns": timer_ns,
        "sdk_log_records": sdk.log.count,
        "sdk_stats": stats,
        "version": sdk.version,
        "module_file": sdk.module_file,
    }


def work_throughput(args: argparse.Namespace) -> Dict[str, Any]:
    """Events per second actually received by the sink for args.events captures."""
    host = f"http://127.0.0.1:{args.port}"
    key = f"phc_bench_throughput_{args.sdk}_{os.getpid()}"
    sdk = Sdk(args.sdk, host, key)
    capture = sdk.capture
    n = args.events
    admitted = 0
    t0 = time.perf_counter()
    for i in range(n):
        if capture(EVENT, distinct_id=DISTINCT_ID, properties=make_properties(i)) is not None:
            admitted += 1
    t_captured = time.perf_counter()
    sdk.flush(120.0)
    t_flushed = time.perf_counter()
    delivered, t_all = _wait_for_sink(args.port, key, admitted)
    t_end = t_all if t_all is not None else t_flushed
    elapsed = t_end - t0
    stats = sdk.stats()
    sdk.shutdown(30.0)
    after_shutdown = sink_events(args.port, key)
    return {
        "events": n,
        "admitted": admitted,
        "delivered": delivered,
        "delivered_after_shutdown": after_shutdown,
        "all_admitted_delivered": t_all is not None,
        "elapsed_s": elapsed,
        "capture_loop_s": t_captured - t0,
        "flush_s": t_flushed - t_captured,
        "events_per_s": delivered / elapsed if elapsed > 0 else 0.0,
        "sdk_log_records": sdk.log.count,
        "sdk_stats": stats,
        "version": sdk.version,
    }


def _maxrss_kib() -> float:
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024.0 if sys.platform == "darwin" else float(rss)  # macOS: bytes


def work_rss(args: argparse.Namespace) -> Dict[str, Any]:
    """Peak RSS growth for args.rss_events captures plus a flush, over a ready client.

    The baseline is taken once the client exists: what is measured is the memory that
    capturing costs, not when each SDK happens to import its HTTP stack.
    """
    host = f"http://127.0.0.1:{args.port}"
    key = f"phc_bench_rss_{args.sdk}_{os.getpid()}"
    sdk = Sdk(args.sdk, host, key)
    baseline = _maxrss_kib()
    admitted = 0
    for i in range(args.rss_events):
        if sdk.capture(EVENT, distinct_id=DISTINCT_ID, properties=make_properties(i)) is not None:
            admitted += 1
    sdk.flush(120.0)
    peak = _maxrss_kib()
    delivered, _ = _wait_for_sink(args.port, key, admitted, timeout=5.0)
    sdk.shutdown(10.0)
    return {
        "baseline_kib": baseline,
        "peak_kib": peak,
        "rss_mib": (peak - baseline) / 1024.0,
        "events": args.rss_events,
        "admitted": admitted,
        "delivered": delivered,
    }


def work_profile(args: argparse.Namespace) -> Dict[str, Any]:
    """cProfile of productos' capture path (caller thread) and delivery path (worker thread)."""
    import cProfile
    import io
    import pstats
    import threading

    host = f"http://127.0.0.1:{args.port}"
    key = f"phc_bench_profile_{os.getpid()}"

    def report(profiles: List[cProfile.Profile], title: str) -> None:
        if not profiles:
            print(f"\n===== {title}: nothing was profiled =====")
            return
        out = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=out)
        for extra in profiles[1:]:
            stats.add(extra)
        stats.strip_dirs()
        stats.sort_stats("tottime").print_stats(args.profile_lines)
        stats.sort_stats("cumulative").print_stats(args.profile_lines)
        print(f"\n===== {title} =====\n{out.getvalue()}")

    # Before 3.12 cProfile sees only the thread that enables it: a hook enables the
    # delivery profiler inside the consumer thread, which productos starts on first use.
    # From 3.12 on a profiler sees every thread, so the two phases are profiled in turn.
    per_thread = sys.version_info < (3, 12)
    delivery: List[cProfile.Profile] = []  # one per productos worker thread

    def start_profiler(frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        if threading.current_thread().name.startswith("productos"):
            thread_profile = cProfile.Profile()
            delivery.append(thread_profile)
            thread_profile.enable()

    if per_thread:
        threading.setprofile(start_profiler)
    sdk = Sdk("productos", host, key)
    for i in range(args.warmup):
        sdk.capture(EVENT, distinct_id=DISTINCT_ID, properties=make_properties(i))

    capture = sdk.capture
    calls = [make_properties(i) for i in range(args.captures)]
    profile = cProfile.Profile()
    profile.enable()
    for props in calls:
        capture(EVENT, distinct_id=DISTINCT_ID, properties=props)
    profile.disable()
    where = "caller thread" if per_thread else "all threads"
    report([profile], f"productos capture path: {args.captures} calls ({where})")

    if not per_thread:
        delivery.append(cProfile.Profile())
        delivery[0].enable()
    for i in range(args.events):
        capture(EVENT, distinct_id=DISTINCT_ID, properties=make_properties(i))
    sdk.flush(120.0)
    sdk.shutdown(30.0)
    if per_thread:
        threading.setprofile(None)  # type: ignore[arg-type]
        count = (f"{args.warmup + args.captures + args.events} events, "
                 f"{len(delivery)} productos thread(s)")
    else:
        delivery[0].disable()
        count = f"{args.events} events, all threads, capture calls included"
    report(delivery, f"productos delivery path: {count}")
    return {"delivered": sink_events(args.port, key), "sdk_stats": sdk.stats()}


def _start_watchdog(limit_s: float) -> None:
    """End this worker if the driver dies or the time limit passes (wakes once a second)."""
    import threading

    parent = os.getppid()
    deadline = time.monotonic() + limit_s

    def watch() -> None:
        while os.getppid() == parent and time.monotonic() < deadline:
            time.sleep(1.0)
        os._exit(3)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()


WORKERS = {
    "capture": work_capture,
    "throughput": work_throughput,
    "rss": work_rss,
    "profile": work_profile,
}


# --------------------------------------------------------------------------------------
# Driver side: the sink, the subprocesses, the table.
# --------------------------------------------------------------------------------------


class SinkProcess:
    """The sink subprocess; it exits when we close its stdin, or by its own clock."""

    def __init__(self, max_seconds: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SINK, "--max-seconds", str(max_seconds)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("PORT "):
            self.stop()
            raise SystemExit(f"the sink did not start (said {line!r})")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> SinkProcess:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def run_worker(kind: str, sdk: str, port: int, args: argparse.Namespace) -> Dict[str, Any]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--sdk", sdk,
           "--port", str(port), "--captures", str(args.captures), "--warmup", str(args.warmup),
           "--events", str(args.events), "--rss-events", str(args.rss_events),
           "--profile-lines", str(args.profile_lines)]
    started = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT,
                              cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {WORKER_TIMEOUT:.0f}s"}
    if kind == "profile":
        print("\n".join(line for line in done.stdout.splitlines()
                        if not line.startswith("RESULT ")))
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
            result["wall_s"] = round(time.perf_counter() - started, 3)
            return result
    return {"error": f"exit {done.returncode}: {done.stderr.strip()[-2000:]}"}


IMPORT_SNIPPET = (
    "import time; t0 = time.perf_counter(); import {mod}; t1 = time.perf_counter(); "
    "print('IMPORT_S', t1 - t0)"
)


def measure_imports(sdks: List[str], runs: int) -> Dict[str, Dict[str, Any]]:
    """Median import time over fresh interpreters; runs of the SDKs are interleaved.

    Both packages are byte-compiled first, as a wheel install does: with
    PYTHONDONTWRITEBYTECODE set (as on this machine) an editable checkout would otherwise
    be compiled from source on every import while site-packages has its .pyc files.
    """
    import compileall
    import importlib.util

    for name in sdks:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(location, quiet=1)
    times: Dict[str, List[float]] = {name: [] for name in sdks}
    for _ in range(runs):
        for name in sdks:
            done = subprocess.run(
                [sys.executable, "-c", IMPORT_SNIPPET.format(mod=name)],
                capture_output=True, text=True, timeout=120, cwd=ROOT)
            for line in done.stdout.splitlines():
                if line.startswith("IMPORT_S "):
                    times[name].append(float(line.split()[1]) * 1000.0)
    return {
        name: {"import_ms": statistics.median(values), "runs_ms": values}
        if values else {"error": "import failed"}
        for name, values in times.items()
    }


def _count(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def _fmt(value: Optional[float], unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "events/s":
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def build_rows(results: Dict[str, Dict[str, Any]],
               args: argparse.Namespace) -> List[Dict[str, Any]]:
    rows = []
    for key, label, unit, better, target in ROWS:
        label = label.format(events=_count(args.events), rss_events=_count(args.rss_events))
        mine = results.get("productos", {}).get(key)
        theirs = results.get("posthog", {}).get(key)
        ratio = mine / theirs if mine is not None and theirs else None
        met = None
        if ratio is not None:
            met = ratio <= target if better == "lower" else ratio >= target
        rows.append({"metric": key, "label": label, "unit": unit, "productos": mine,
                     "posthog": theirs, "ratio": ratio,
                     "target": f"{'≤' if better == 'lower' else '≥'} {target:g}x", "met": met})
    return rows


def markdown_table(rows: List[Dict[str, Any]], results: Dict[str, Dict[str, Any]]) -> str:
    lines = ["| metric | productos | posthog | productos / posthog | target | met |",
             "| --- | ---: | ---: | ---: | :---: | :---: |"]
    for row in rows:
        ratio = "n/a" if row["ratio"] is None else f"{row['ratio']:.3g}x"
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        lines.append(f"| {row['label']} ({row['unit']}) | {_fmt(row['productos'], row['unit'])} "
                     f"| {_fmt(row['posthog'], row['unit'])} | {ratio} | {row['target']} "
                     f"| {met} |")

    def delivered(name: str, prefix: str, total_key: str) -> str:
        r = results.get(name, {})
        if f"{prefix}delivered" not in r:
            return "n/a"
        return f"{r[f'{prefix}delivered']:,} / {r[total_key]:,}"

    lines.append(f"| delivered / captured, delivery run | "
                 f"{delivered('productos', 'tp_', 'tp_events')} | "
                 f"{delivered('posthog', 'tp_', 'tp_events')} | | all | |")
    lines.append(f"| delivered / captured, RSS run | "
                 f"{delivered('productos', 'rss_', 'rss_events')} | "
                 f"{delivered('posthog', 'rss_', 'rss_events')} | | | |")
    return "\n".join(lines)


def _median_run(runs: List[Dict[str, Any]], key: str) -> Optional[Dict[str, Any]]:
    good = sorted((r for r in runs if "error" not in r), key=lambda r: r[key])
    return good[(len(good) - 1) // 2] if good else None


def collect(args: argparse.Namespace, sdks: List[str], port: int) -> Dict[str, Dict[str, Any]]:
    """Run every measurement; return per-SDK headline numbers plus the raw worker results.

    Each worker measurement runs ``args.repeat`` times per SDK, the SDKs alternating, and
    the run with the median headline number is reported (all runs are kept in "raw").
    """
    results: Dict[str, Dict[str, Any]] = {name: {"raw": {}} for name in sdks}

    if "import" in args.only:
        print(f"import time: {args.import_runs} fresh interpreters per SDK", file=sys.stderr)
        for name, raw in measure_imports(sdks, args.import_runs).items():
            results[name]["raw"]["import"] = raw
            if "import_ms" in raw:
                results[name]["import_ms"] = raw["import_ms"]

    plan = (
        ("capture", "capture_mean_us", f"{args.captures} calls after {args.warmup} warm-up"),
        ("throughput", "events_per_s", f"{args.events} events"),
        ("rss", "rss_mib", f"{args.rss_events} events"),
    )
    for kind, key, what in (step for step in plan if step[0] in args.only):
        runs: Dict[str, List[Dict[str, Any]]] = {name: [] for name in sdks}
        for round_no in range(args.repeat):
            for name in sdks:
                print(f"{kind}: {name}, {what} (run {round_no + 1}/{args.repeat})",
                      file=sys.stderr)
                raw = run_worker(kind, name, port, args)
                if "error" in raw:
                    print(f"  ERROR: {raw['error']}", file=sys.stderr)
                runs[name].append(raw)
        for name in sdks:
            results[name]["raw"][kind] = runs[name]
            best = _median_run(runs[name], key)
            if best is None:
                continue
            if kind == "capture":
                results[name]["capture_mean_us"] = best["capture_mean_us"]
                results[name]["capture_p99_us"] = best["capture_p99_us"]
                results[name]["capture_median_us"] = best["capture_median_us"]
                results[name]["capture_admitted"] = best["admitted"]
                results[name]["version"] = best.get("version")
            elif kind == "throughput":
                results[name]["events_per_s"] = best["events_per_s"]
                results[name]["tp_delivered"] = best["delivered"]
                results[name]["tp_admitted"] = best["admitted"]
                results[name]["tp_events"] = best["events"]
                results[name]["tp_dropped"] = (best.get("sdk_stats") or {}).get("dropped")
            else:
                results[name]["rss_mib"] = best["rss_mib"]
                results[name]["rss_delivered"] = best["delivered"]
                results[name]["rss_events"] = best["events"]
    return results


def notes(results: Dict[str, Dict[str, Any]], args: argparse.Namespace,
          sink_final: Dict[str, Any]) -> List[str]:
    """Plain-language caveats to print under the table."""
    out = []
    other = {path: n for path, n in sink_final["paths"].items() if path != "POST /batch/"}
    if other:
        out.append(f"requests to endpoints other than /batch/: {other}")
    for name, r in results.items():
        admitted = r.get("capture_admitted")
        if admitted is not None and admitted < args.captures:
            out.append(f"{name}: in the reported capture() run, {args.captures - admitted:,} of "
                       f"{args.captures:,} calls were refused (capture() returned None, "
                       "queue full with default settings); those calls are timed too")
        if "tp_admitted" in r and r["tp_admitted"] < r["tp_events"]:
            why = f" ({r['tp_dropped']})" if r.get("tp_dropped") else ""
            refused = r["tp_events"] - r["tp_admitted"]
            out.append(f"{name}: in the reported delivery run, {refused:,}"
                       f" of {r['tp_events']:,} events were refused at capture(){why}; "
                       "events/s counts only what the sink received")
        if "rss_delivered" in r and r["rss_delivered"] < r["rss_events"]:
            out.append(f"{name}: the RSS run delivered {r['rss_delivered']:,} of "
                       f"{r['rss_events']:,} events (the rest were refused: queue full)")
        logs = sum(run.get("sdk_log_records", 0)
                   for kind in ("capture", "throughput")
                   for run in r["raw"].get(kind, []) if isinstance(run, dict))
        if logs:
            out.append(f"{name}: logged {logs:,} records over all runs "
                       "(counted by a handler, not printed)")
    return out


def git_info() -> Dict[str, Any]:
    """The commit measured, and whether productos/ had uncommitted changes."""
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], capture_output=True, text=True, cwd=ROOT,
                              timeout=10)
        return done.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"),
                "productos_dirty": bool(git("status", "--porcelain", "--", "productos"))}
    except (OSError, subprocess.SubprocessError):
        return {}


def machine_info() -> Dict[str, Any]:
    info: Dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    try:
        info["loadavg_at_start"] = os.getloadavg()
    except (AttributeError, OSError):
        pass
    return info


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="productos vs posthog core benchmark")
    parser.add_argument("--captures", type=int, default=20_000,
                        help="timed capture() calls per run (default 20000)")
    parser.add_argument("--warmup", type=int, default=2_000, help="untimed calls first")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each capture/delivery/RSS measurement per SDK; the "
                             "median run is reported (default 3)")
    parser.add_argument("--events", type=int, default=200_000,
                        help="events for the delivery measurement (default 200000)")
    parser.add_argument("--rss-events", type=int, default=100_000,
                        help="events for the peak RSS measurement (default 100000)")
    parser.add_argument("--import-runs", type=int, default=7,
                        help="fresh interpreters per SDK for import time (default 7)")
    parser.add_argument("--sdk", action="append", choices=SDKS,
                        help="measure only this SDK (repeatable); default: both if installed")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts (5k captures, 20k events, 3 imports), a smoke test")
    parser.add_argument("--profile", action="store_true",
                        help="print cProfile of productos' capture and delivery paths, then stop")
    parser.add_argument("--profile-lines", type=int, default=25)
    parser.add_argument("--only", default="import,capture,throughput,rss",
                        help="comma-separated measurements to run (default: all four)")
    parser.add_argument("--max-seconds", type=float, default=1800.0,
                        help="the sink's own lifetime limit")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.only = {kind.strip() for kind in args.only.split(",") if kind.strip()}
    if args.quick:
        args.captures, args.warmup, args.repeat = 5_000, 500, 1
        args.events, args.rss_events, args.import_runs = 20_000, 20_000, 3
    return args


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if args.worker:
        _start_watchdog(WORKER_TIMEOUT + 30.0)
        if ROOT not in sys.path:  # measure the working tree's productos
            sys.path.insert(0, ROOT)
        if args.sdk:
            args.sdk = args.sdk[0]
        result = WORKERS[args.worker](args)
        print("RESULT " + json.dumps(result, default=str), flush=True)
        return 0

    wanted = args.sdk or list(SDKS)
    sdks = []
    for name in wanted:
        found = (importlib.util.find_spec(name) is not None
                 or (name == "productos" and os.path.isdir(os.path.join(ROOT, "productos"))))
        if found:
            sdks.append(name)
        else:
            print(f"{name} is not installed: measuring without it "
                  f"(pip install {name} to compare)", file=sys.stderr)
    if not sdks:
        print("nothing to measure", file=sys.stderr)
        return 1

    with SinkProcess(args.max_seconds) as sink:
        if args.profile:
            result = run_worker("profile", "productos", sink.port, args)
            print(json.dumps(result, indent=2, default=str))
            return 0 if "error" not in result else 1
        started = time.time()
        results = collect(args, sdks, sink.port)
        sink_final = sink_stats(sink.port)

    rows = build_rows(results, args)
    table = markdown_table(rows, results)
    print()
    print(table)
    print()
    caveats = notes(results, args, sink_final)
    for line in caveats:
        print(f"- {line}")
    if caveats:
        print()

    payload = {
        "benchmark": "core",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "machine": machine_info(),
        "git": git_info(),
        "settings": {
            "captures": args.captures, "warmup": args.warmup, "repeat": args.repeat,
            "events": args.events, "rss_events": args.rss_events,
            "import_runs": args.import_runs, "properties": make_properties(0),
            "sdk_settings": "defaults except host",
        },
        "rows": rows,
        "results": results,
        "sink": sink_final,
        "table_markdown": table,
        "notes": caveats,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=str)
        handle.write("\n")
    print(f"results written to {os.path.relpath(args.json, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
