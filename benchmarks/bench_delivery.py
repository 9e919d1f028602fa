"""Delivery-guarantees benchmark: productos against PostHog's own SDK, side by side.

Usage (from the repository root)::

    pip install -e . posthog
    python benchmarks/bench_delivery.py            # full run, a few minutes
    python benchmarks/bench_delivery.py --quick    # smaller counts, a smoke test
    python benchmarks/bench_delivery.py --sdk productos
    python benchmarks/bench_delivery.py --scenario spool_kill   # one scenario (repeatable)

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
5. ``spool_outage``: a 30k-event burst in a tight loop with the endpoint down (a 127.0.0.1
   port with nothing listening: connection refused), productos with ``spool_path`` set.
   OUTAGE_WAIT (2 s) after the burst ended, this process counts the rows of the run in the
   child's SQLite file while the child is still running; the child reports what it still
   holds only in memory (posthog, which has no spool: its queue's ``qsize()``);
6. ``spool_kill``: the same burst paced over about 3 s; the child logs each admitted uuid
   with its ``time.monotonic()`` instant (unbuffered, so the log survives the kill) and
   this process sends it ``SIGKILL`` at a seeded moment of the burst, then compares the log
   with the rows on disk: events lost, and events lost among those admitted more than
   ``flush_interval`` before the kill (the target: none). Worst of 3 seeded moments;
7. ``cold_start``: runs benchmarks/bench_cold_start.py (first correct flag answer with
   2,000 flags, against one plain fetch plus parse) and takes its medians;
8. ``regex``: runs benchmarks/bench_regex.py (worst ``feature_enabled()`` time over
   pathological regexes) when it is there; otherwise the row says "not measured";
9. ``burst``: delivered events per second for a 20,000-event burst with no drops: a tight
   capture loop, then flush, timed from the first capture until the sink holds every
   admitted event. It runs against benchmarks/sink.py (the sink bench_core.py uses: it
   counts events and answers at once) rather than the test server, the SDKs alternating,
   BURST_REPEAT runs each; the median run is reported.

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
import queue
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid as _uuid
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

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
MARK_PREFIX = "BENCH-MARK "
OUTAGE_WAIT = 2.0  # rows on disk are counted this long after the burst ends
BURST = 30_000  # events in the spool scenarios' burst
KILL_BURST_SECONDS = 3.0  # the kill scenario paces its burst over about this long
KILL_SEED = 7  # the kill moments: a seeded fraction of the burst, one per repetition
KILL_WINDOW = (0.15, 0.85)  # ...between these fractions of the planned burst
KILL_WAIT = 60.0  # a kill worker that was not killed exits after this
DEFAULT_FLUSH_INTERVAL = 0.5  # productos' default, the kill target's window
EXTERNAL_TIMEOUT = 900.0  # seconds for bench_cold_start.py / bench_regex.py
REGEX_TARGET_MS = 1.0  # worst feature_enabled() time over pathological regexes
BURST_EVENTS = 20_000  # the throughput burst
BURST_REPEAT = 5  # runs per SDK of the burst; the median is reported
BURST_TARGET = 10.0  # productos' delivered events/s, as a multiple of posthog's
SINK = os.path.join(HERE, "sink.py")


def make_properties(run: str, i: int) -> Dict[str, Any]:
    """A fresh dict per call, tagged with the run id."""
    return {"run": run, "i": i, "plan": "pro", "amount": 12.5, "beta": True}


# --------------------------------------------------------------------------------------
# Worker side: one SDK, one scenario, in a fresh interpreter.
# --------------------------------------------------------------------------------------


class Sdk:
    """A thin, uniform face over one SDK's client."""

    def __init__(self, name: str, host: str, variant: str = "",
                 spool_path: Optional[str] = None, api_key: str = API_KEY) -> None:
        self.name = name
        self.log = quiet_logger(name)
        if name == "productos":
            import productos

            self.version = productos.__version__
            kwargs: Dict[str, Any] = {}
            if variant == "block":
                kwargs["on_full"] = "block"
            if spool_path:
                kwargs["spool_path"] = spool_path
            self.client: Any = productos.Client(api_key, host=host, **kwargs)
            self.capture: Callable[..., Any] = self.client.capture
        elif name == "posthog":
            import inspect

            import posthog
            from posthog import Posthog

            self.version = getattr(posthog, "VERSION", "?")
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


def _mark(name: str, **fields: Any) -> None:
    """Tell the parent, at once, that a moment was reached (it acts on it while we run)."""
    sys.stdout.write(f"{MARK_PREFIX}{name} " + json.dumps(fields) + "\n")
    sys.stdout.flush()


def _sdk_flush_interval(sdk: Sdk) -> Optional[float]:
    if sdk.name == "productos":
        return float(sdk.client.options.flush_interval)
    return None


def work_spool_outage(args: argparse.Namespace) -> None:
    """A tight burst against a refused endpoint, then report what is still only in memory."""
    sdk = Sdk(args.sdk, args.url, args.variant, spool_path=args.spool)
    refused, capture_s = _capture_n(sdk, args.run, args.burst)
    ended = time.monotonic()
    _mark("burst_end", t=ended)
    # The parent counts the rows on disk at ended + OUTAGE_WAIT; look at memory then too.
    time.sleep(max(0.0, ended + OUTAGE_WAIT - time.monotonic()))
    memory: Optional[int] = None
    if sdk.name == "posthog":
        try:
            memory = int(sdk.client.queue.qsize())
        except Exception:  # a posthog without a readable queue: reported as n/a
            memory = None
    st = sdk.stats()
    if isinstance(st, dict) and "queued" in st:
        memory = int(st.get("queued", 0)) + int(st.get("in_flight", 0))
    _emit({"refused": refused, "capture_s": capture_s, "burst_end": ended,
           "looked_at": time.monotonic(), "in_memory": memory, "stats": st,
           "flush_interval": _sdk_flush_interval(sdk), "log_records": sdk.log.count,
           "version": sdk.version})
    os._exit(0)  # the rows stay on disk; no exit drain


def work_spool_kill(args: argparse.Namespace) -> None:
    """A paced burst, each admitted uuid logged with its instant, until the parent kills us."""
    sdk = Sdk(args.sdk, args.url, args.variant, spool_path=args.spool)
    capture = sdk.capture
    # Unbuffered writes to a file: what capture() admitted before the kill is on record.
    fd = os.open(args.admitted, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    rate = args.burst / args.burst_seconds
    start = time.monotonic()
    _mark("burst_start", t=start, flush_interval=_sdk_flush_interval(sdk),
          version=sdk.version)
    for i in range(args.burst):
        uid = capture(EVENT, distinct_id=DISTINCT_ID, properties=make_properties(args.run, i))
        if uid is not None:
            os.write(fd, f"{uid} {time.monotonic():.6f}\n".encode())
        if i % 100 == 99:
            ahead = start + (i + 1) / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    _mark("burst_end", t=time.monotonic())
    time.sleep(KILL_WAIT)  # the parent kills us long before this
    _emit({"not_killed": True, "version": sdk.version})
    os._exit(0)


def _sink_events(url: str, api_key: str) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{url}/_sink/stats", timeout=5) as response:
        return int(json.loads(response.read())["events"].get(api_key, 0))


def work_burst(args: argparse.Namespace) -> None:
    """A tight burst to the sink, then flush; events/s until the sink holds them all."""
    key = f"phc_burst_{args.sdk}_{os.getpid()}"
    sdk = Sdk(args.sdk, args.url, api_key=key)
    t0 = time.perf_counter()
    refused, capture_s = _capture_n(sdk, args.run, args.burst_events)
    flush_started = time.perf_counter()
    sdk.flush(120.0)
    flushed = time.perf_counter()
    admitted = args.burst_events - refused
    # Poll the sink until it holds every admitted event, or nothing arrives for 3 s.
    delivered, last, last_change, done = 0, -1, flushed, None
    while time.perf_counter() - flushed < 30.0:
        delivered = _sink_events(args.url, key)
        now = time.perf_counter()
        if delivered >= admitted:
            done = now
            break
        if delivered != last:
            last, last_change = delivered, now
        elif now - last_change > 3.0:
            break
        time.sleep(0.005)
    elapsed = (done if done is not None else flushed) - t0
    _emit({"events": args.burst_events, "refused": refused, "delivered": delivered,
           "all_delivered": done is not None and delivered == args.burst_events,
           "capture_s": capture_s, "flush_s": flushed - flush_started, "elapsed_s": elapsed,
           "events_per_s": delivered / elapsed if elapsed > 0 else 0.0,
           "stats": sdk.stats(), "log_records": sdk.log.count, "version": sdk.version})
    os._exit(0)  # measured; skip the SDKs' exit drains


WORKERS = {"flush": work_flush, "shutdown": work_shutdown, "exit": work_exit,
           "loop": work_loop, "spool_outage": work_spool_outage,
           "spool_kill": work_spool_kill, "burst": work_burst}
SCENARIOS = ("flush", "shutdown", "exit", "loop", "spool_outage", "spool_kill", "cold_start",
             "regex", "burst")


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


class LiveWorker:
    """A worker subprocess the parent acts on while it runs (reads its marks, may kill it)."""

    def __init__(self, scenario: str, sdk: str, url: str, args: argparse.Namespace,
                 extra: List[str]) -> None:
        self.scenario, self.sdk = scenario, sdk
        self.run = _uuid.uuid4().hex[:12]
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", scenario, "--sdk", sdk,
               "--url", url, "--run", self.run, *extra]
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        # A file, not a pipe: a chatty child never blocks. Closed by close().
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=self._stderr, text=True, bufsize=1)
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        self.marks: Dict[str, Dict[str, Any]] = {}
        self.result: Optional[Dict[str, Any]] = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _take(self, line: str) -> None:
        if line.startswith(MARK_PREFIX):
            name, _, body = line[len(MARK_PREFIX):].partition(" ")
            self.marks[name] = json.loads(body)
        elif line.startswith(RESULT_PREFIX):
            self.result = json.loads(line[len(RESULT_PREFIX):])

    def _pump(self, timeout: float) -> bool:
        """Take one line (waiting up to timeout); False once the child's output ended."""
        try:
            line = self._lines.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return True
        if line is None:
            self._lines.put(None)  # keep reporting the end to later callers
            return False
        self._take(line)
        return True

    def wait_mark(self, name: str, timeout: float) -> Dict[str, Any]:
        """Return the fields of mark `name`, waiting up to timeout for the child to reach it."""
        deadline = time.monotonic() + timeout
        while name not in self.marks:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._pump(remaining):
                self.fail(f"no {name!r} mark within {timeout:.0f} s")
        return self.marks[name]

    def poll_marks(self) -> None:
        """Take whatever the child printed so far, without waiting."""
        while not self._lines.empty() and self._pump(0):
            pass

    def kill(self) -> float:
        """kill -9 the child; return the instant just before the signal."""
        at = time.monotonic()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        return at

    def finish(self, timeout: float = WORKER_TIMEOUT) -> Dict[str, Any]:
        """Wait for the child to exit and return its result line."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"did not exit within {timeout:.0f} s")
        while self._pump(5.0):
            pass
        if self.result is None:
            self.fail("no result line")
        result = dict(self.result or {})
        result["returncode"] = self.proc.returncode
        result["stderr_tail"] = self.stderr()[-2000:]
        return result

    def stderr(self) -> str:
        """What the child wrote to stderr so far."""
        if self._stderr.closed:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def close(self) -> None:
        """Release the stderr file (after finish() or kill())."""
        self._stderr.close()

    def fail(self, why: str) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        raise SystemExit(f"{self.scenario}/{self.sdk}: worker {why} "
                         f"(rc={self.proc.returncode})\n{self.stderr()[-3000:]}")


def refused_url() -> str:
    """A 127.0.0.1 URL whose port has nothing listening: connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def still_refused(url: str) -> bool:
    """Whether connecting to url's port is still refused (nobody took the port meanwhile)."""
    port = int(url.rsplit(":", 1)[1])
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def _spool_query(path: str, sql: str, run: str) -> List[Tuple[Any, ...]]:
    """Run one query over the rows of `run` in the spool file, read from this process."""
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(path, timeout=10.0)
    try:
        return db.execute(sql, (run.encode(),)).fetchall()
    finally:
        db.close()


def spool_count(path: str, run: str) -> int:
    """Rows in the spool whose event body carries the run id."""
    rows = _spool_query(path, "SELECT COUNT(*) FROM events WHERE instr(body, ?) > 0", run)
    return int(rows[0][0]) if rows else 0


def spool_uuids(path: str, run: str) -> Set[str]:
    """The uuids of the run's events on disk."""
    found: Set[str] = set()
    for (body,) in _spool_query(path, "SELECT body FROM events WHERE instr(body, ?) > 0", run):
        try:
            event = json.loads(bytes(body))
        except ValueError:
            continue
        if (event.get("properties") or {}).get("run") == run:
            found.add(event.get("uuid"))
    return found


def measure_spool_outage(sdks: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    """A tight burst with the endpoint refusing; rows on disk OUTAGE_WAIT s after it ended."""
    out: Dict[str, Any] = {}
    for sdk in sdks:
        print(f"[{sdk}] {args.burst} events with the endpoint refusing"
              f"{', spool on' if sdk == 'productos' else ' (posthog has no spool)'} ...",
              flush=True)
        tmp = tempfile.mkdtemp(prefix="bench-spool-")
        try:
            spool = os.path.join(tmp, "spool.sqlite3")
            url = refused_url()
            extra = ["--burst", str(args.burst)]
            if sdk == "productos":
                extra += ["--spool", spool]
            worker = LiveWorker("spool_outage", sdk, url, args, extra)
            ended = float(worker.wait_mark("burst_end", WORKER_TIMEOUT)["t"])
            time.sleep(max(0.0, ended + OUTAGE_WAIT - time.monotonic()))
            counted_at = time.monotonic()
            rows = spool_count(spool, worker.run) if sdk == "productos" else 0
            count_s = time.monotonic() - counted_at
            result = worker.finish()
            worker.close()
            result.update({"rows_on_disk": rows, "counted_after_s": counted_at - ended,
                           "count_query_s": count_s, "endpoint_refused": still_refused(url),
                           "spool": sdk == "productos", "burst": args.burst})
            out[sdk] = result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _read_admitted(path: str) -> Dict[str, float]:
    """uuid -> instant capture() returned, from a kill worker's log (a torn last line skipped)."""
    admitted: Dict[str, float] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 2 and line.endswith("\n"):
                    try:
                        admitted[parts[0]] = float(parts[1])
                    except ValueError:
                        continue
    except FileNotFoundError:
        pass
    return admitted


def _closed_stderr(worker: LiveWorker) -> str:
    tail = worker.stderr()[-2000:]
    worker.close()
    return tail


def _kill_once(sdk: str, fraction: float, args: argparse.Namespace) -> Dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="bench-kill-")
    try:
        spool = os.path.join(tmp, "spool.sqlite3")
        log_path = os.path.join(tmp, "admitted.txt")
        url = refused_url()
        extra = ["--burst", str(args.burst), "--burst-seconds", str(args.burst_seconds),
                 "--admitted", log_path]
        if sdk == "productos":
            extra += ["--spool", spool]
        worker = LiveWorker("spool_kill", sdk, url, args, extra)
        start = worker.wait_mark("burst_start", WORKER_TIMEOUT)
        began = float(start["t"])
        time.sleep(max(0.0, began + fraction * args.burst_seconds - time.monotonic()))
        killed_at = worker.kill()
        worker.poll_marks()
        admitted = _read_admitted(log_path)
        on_disk = spool_uuids(spool, worker.run) if sdk == "productos" else set()
        # The target's window is productos' flush_interval; posthog is judged on the same one.
        window = float(start.get("flush_interval") or DEFAULT_FLUSH_INTERVAL)
        older = {u for u, t in admitted.items() if t <= killed_at - window}
        lost = [u for u in admitted if u not in on_disk]
        lost_older = [u for u in older if u not in on_disk]
        return {"version": start.get("version"), "fraction": fraction,
                "killed_after_s": killed_at - began, "window_s": window,
                "burst_finished_before_kill": "burst_end" in worker.marks,
                "admitted": len(admitted), "admitted_in_window": len(admitted) - len(older),
                "rows_on_disk": len(on_disk),
                "on_disk_not_logged": len(on_disk - set(admitted)),
                "lost": len(lost), "lost_older": len(lost_older),
                "last_admitted_before_kill_s": (killed_at - max(admitted.values())
                                                if admitted else None),
                "endpoint_refused": still_refused(url), "spool": sdk == "productos",
                "returncode": worker.proc.returncode,
                "stderr_tail": _closed_stderr(worker)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_spool_kill(sdks: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    """kill -9 at seeded moments of a paced burst; the worst repetition per SDK, all kept."""
    reps: Dict[str, List[Dict[str, Any]]] = {sdk: [] for sdk in sdks}
    for rep in range(args.kill_repeat):
        fraction = random.Random(KILL_SEED + rep).uniform(*KILL_WINDOW)
        for sdk in sdks:
            print(f"[{sdk}] kill -9 at {fraction * args.burst_seconds:.2f} s into a "
                  f"{args.burst}-event burst paced over {args.burst_seconds:.1f} s, run "
                  f"{rep + 1}/{args.kill_repeat} ...", flush=True)
            reps[sdk].append(_kill_once(sdk, fraction, args))
    out: Dict[str, Any] = {}
    for sdk, results in reps.items():
        worst = dict(max(results, key=lambda r: (r["lost_older"], r["lost"])))
        worst["repetitions"] = [{k: v for k, v in r.items() if k != "stderr_tail"}
                                for r in results]
        out[sdk] = worst
    return out


def _run_json_benchmark(script: str, args: argparse.Namespace,
                        extra: List[str]) -> Tuple[Optional[Dict[str, Any]], str]:
    """Run another benchmark script writing its JSON to a temporary file; (doc, problem)."""
    path = os.path.join(HERE, script)
    if not os.path.exists(path):
        return None, f"benchmarks/{script} is not there: not measured"
    fd, out = tempfile.mkstemp(suffix=".json", prefix="bench-")
    os.close(fd)
    cmd = [sys.executable, path, "--json", out, *extra] + (["--quick"] if args.quick else [])
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=EXTERNAL_TIMEOUT, check=False)
        # A script may exit 1 for a missed target after writing its results: use them.
        if os.path.getsize(out) == 0:
            tail = (proc.stderr or proc.stdout)[-600:].strip()
            return None, f"benchmarks/{script} failed (exit {proc.returncode}): {tail}"
        with open(out, encoding="utf-8") as fh:
            doc: Dict[str, Any] = json.load(fh)
        doc["_exit_code"] = proc.returncode
        return doc, ""
    except subprocess.TimeoutExpired:
        return None, f"benchmarks/{script} took over {EXTERNAL_TIMEOUT:.0f} s: not measured"
    except (OSError, ValueError) as exc:
        return None, f"benchmarks/{script}: unreadable results ({exc}): not measured"
    finally:
        try:
            os.unlink(out)
        except OSError:
            pass


def measure_cold_start(sdks: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    """Run bench_cold_start.py; keep the medians per SDK and mode beside the target."""
    print("[both] cold start with 2,000 flags (benchmarks/bench_cold_start.py) ...", flush=True)
    extra: List[str] = [] if len(sdks) > 1 else ["--sdk", sdks[0]]
    doc, problem = _run_json_benchmark("bench_cold_start.py", args, extra)
    if doc is None:
        print(f"  {problem}", flush=True)
        return {sdk: {"error": problem} for sdk in sdks}
    summary = doc.get("summary") or {}
    baseline = (doc.get("runs") or {}).get("baseline") or []
    parts = {}
    for part in ("fetch_ms", "json_ms", "compile_ms"):
        values = sorted(r[part] for r in baseline if isinstance(r.get(part), (int, float)))
        parts[f"target_{part}"] = values[(len(values) - 1) // 2] if values else None
    out: Dict[str, Any] = {}
    for sdk in sdks:
        first = summary.get(f"{sdk}/first-call") or {}
        load = summary.get(f"{sdk}/explicit-load") or {}
        out[sdk] = {"version": first.get("version"), "flags": doc.get("flags"),
                    "repeat": doc.get("repeat"),
                    "target_ms": doc.get("target_fetch_plus_parse_ms"),
                    "first_call_ms": first.get("median_ms"),
                    "first_call_min_ms": first.get("min_ms"),
                    "first_call_correct": first.get("first_call_correct"),
                    "explicit_load_ms": load.get("median_ms"),
                    "explicit_load_min_ms": load.get("min_ms"),
                    "all_flags_correct_min": first.get("all_flags_correct_min"), **parts}
    return out


def measure_regex(sdks: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    """Run bench_regex.py (when present); keep the worst feature_enabled() time per SDK."""
    print("[both] pathological regexes (benchmarks/bench_regex.py) ...", flush=True)
    doc, problem = _run_json_benchmark("bench_regex.py", args, [])
    if doc is None:
        print(f"  {problem}", flush=True)
        return {sdk: {"error": problem} for sdk in sdks}
    out: Dict[str, Any] = {}
    for sdk in sdks:
        out[sdk] = _regex_summary(doc, sdk)
    return out


def _regex_summary(doc: Dict[str, Any], sdk: str) -> Dict[str, Any]:
    """One SDK's figures out of bench_regex.py's summary (productos: one entry per engine)."""
    found = (doc.get("summary") or {}).get(sdk)
    if sdk == "productos" and isinstance(found, dict) and found:
        engines = {name: dict(v) for name, v in found.items() if isinstance(v, dict)
                   and isinstance(v.get("worst_median_ms"), (int, float))}
        if engines:
            return {"engines": engines, "repeat": (doc.get("config") or {}).get("repeat")}
    if sdk == "posthog" and isinstance(found, dict):
        return dict(found)
    if sdk == "posthog" and found is None:
        return {"error": "bench_regex.py did not measure posthog"}
    return {"error": f"bench_regex.py results name no usable {sdk!r} summary "
                     f"(keys {sorted(doc)[:12]}): not measured"}


def measure_burst(sdks: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    """The 20k burst against the sink, the SDKs alternating; the median run of each."""
    sink = subprocess.Popen([sys.executable, SINK, "--port", "0"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    runs: Dict[str, List[Dict[str, Any]]] = {sdk: [] for sdk in sdks}
    try:
        assert sink.stdout is not None
        url = f"http://127.0.0.1:{int(sink.stdout.readline().split()[1])}"
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        for rep in range(args.burst_repeat):
            for sdk in sdks:
                print(f"[{sdk}] {args.burst_events}-event burst to the sink, run "
                      f"{rep + 1}/{args.burst_repeat} ...", flush=True)
                cmd = [sys.executable, os.path.abspath(__file__), "--worker", "burst",
                       "--sdk", sdk, "--url", url, "--run", _uuid.uuid4().hex[:12],
                       "--burst-events", str(args.burst_events)]
                proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                      timeout=WORKER_TIMEOUT, check=False)
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_PREFIX)]
                if not lines:
                    raise SystemExit(f"burst/{sdk}: worker failed (rc={proc.returncode})\n"
                                     f"{proc.stdout}\n{proc.stderr}")
                runs[sdk].append(json.loads(lines[-1][len(RESULT_PREFIX):]))
    finally:
        if sink.stdin is not None:
            sink.stdin.close()  # the sink stops at end of input
        sink.wait(10)
    out: Dict[str, Any] = {}
    for sdk, results in runs.items():
        ordered = sorted(results, key=lambda r: r["events_per_s"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["repetitions"] = [
            {k: r[k] for k in ("events_per_s", "capture_s", "flush_s", "delivered",
                               "all_delivered")} for r in results]
        # Runs that flush-and-poll counted in full; a run with drops does not meet the target.
        median["all_runs_delivered"] = all(r["all_delivered"] for r in results)
        out[sdk] = median
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
        others = {"spool_outage": measure_spool_outage, "spool_kill": measure_spool_kill,
                  "cold_start": measure_cold_start, "regex": measure_regex,
                  "burst": measure_burst}
        plan += [(name, name, {}) for name in others]
        for scenario, label, setup in plan:
            if scenario not in args.scenario:
                continue
            if scenario == "loop":
                runs["loop"] = measure_loop(server, sdks, args)
                continue
            if scenario in others:
                runs[scenario] = others[scenario](sdks, args)
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
    _spool_rows(runs, args, row)
    _external_rows(runs, row)
    _burst_rows(runs, args, row)
    return rows


Row = Callable[..., None]


def _spool_rows(runs: Dict[str, Any], args: argparse.Namespace, row: Row) -> None:
    """5. the spool under an outage, 6. kill -9 during a burst."""
    burst = args.burst
    out = runs.get("spool_outage")
    if out is not None:
        pr, hr = out.get("productos"), out.get("posthog")
        p = None if pr is None else pr["rows_on_disk"]
        h = None if hr is None else 0  # posthog has no spool: nothing is ever persisted
        row(f"events on disk {OUTAGE_WAIT:.0f} s after a {burst}-event burst, endpoint "
            "refusing, spool on (posthog: no spool)", "events", p, h, f"all {burst}",
            None if p is None else p == burst, ratio=False)
        row(f"events held only in memory {OUTAGE_WAIT:.0f} s after the burst (info)", "events",
            None if pr is None else pr.get("in_memory"),
            None if hr is None else hr.get("in_memory"), "", None, ratio=False)
        row("events refused by capture() during the burst (info)", "events",
            None if pr is None else pr["refused"], None if hr is None else hr["refused"], "",
            None, ratio=False)
    kill = runs.get("spool_kill")
    if kill is not None:
        pr, hr = kill.get("productos"), kill.get("posthog")
        reps = args.kill_repeat
        window = (pr or hr or {}).get("window_s", DEFAULT_FLUSH_INTERVAL)
        met = None
        if pr is not None:
            met = all(r["lost"] <= r["admitted_in_window"] for r in pr["repetitions"])
        row(f"events lost by kill -9 during a {burst}-event burst paced over "
            f"{args.burst_seconds:g} s, endpoint refusing (admitted - on disk), worst of "
            f"{reps}", "events", None if pr is None else pr["lost"],
            None if hr is None else hr["lost"],
            f"<= admitted in the last {window:g} s", met)
        row(f"...of them admitted more than flush_interval ({window:g} s) before the kill",
            "events", None if pr is None else pr["lost_older"],
            None if hr is None else hr["lost_older"], "0",
            None if pr is None else all(r["lost_older"] == 0 for r in pr["repetitions"]))


def _external_rows(runs: Dict[str, Any], row: Row) -> None:
    """7. cold start with 2,000 flags, 8. pathological regexes (from the other scripts)."""
    cold = runs.get("cold_start")
    if cold is not None:
        pr, hr = cold.get("productos") or {}, cold.get("posthog") or {}
        target = pr.get("target_ms") or hr.get("target_ms")
        repeat = pr.get("repeat") or hr.get("repeat")
        goal = "<= fetch+parse" + ("" if target is None else f" ({target:.1f} ms)")
        for key, how in (("first_call_ms", "Client() then get_feature_flag()"),
                         ("explicit_load_ms", "after load_feature_flags()")):
            p, h = pr.get(key), hr.get(key)
            met = None
            if key == "first_call_ms":
                met = None if p is None or target is None else p <= target
            label = (f"first correct flag answer, 2,000 flags, {how}"
                     + ("" if repeat is None else f", median of {repeat}"))
            if p is None and pr.get("error"):
                label += " (not measured)"
            row(label, "ms", p, h, goal if key == "first_call_ms" else "(info)", met)
    rx = runs.get("regex")
    if rx is not None:
        pr, hr = rx.get("productos") or {}, rx.get("posthog") or {}
        h = _posthog_regex_cell(hr)
        label = "worst feature_enabled() time over pathological regexes"
        engines = pr.get("engines") or {}
        if not engines:
            row(label + " (not measured)", "ms", None, h, f"<= {REGEX_TARGET_MS:g} ms", None)
        for engine, figures in engines.items():
            how = ("Python re behind compile-time checks, no extra" if engine == "re"
                   else f"{engine} extra installed" if engine == "re2" else engine)
            p = figures["worst_median_ms"]
            row(f"{label}, 25-10,000 chars, productos engine {engine} ({how})", "ms", p, h,
                f"<= {REGEX_TARGET_MS:g} ms", p <= REGEX_TARGET_MS)


def _burst_rows(runs: Dict[str, Any], args: argparse.Namespace, row: Row) -> None:
    """9. delivered events/s for a burst, with no drops."""
    burst = runs.get("burst")
    if burst is None:
        return
    pr, hr = burst.get("productos"), burst.get("posthog")
    p = None if pr is None else pr["events_per_s"]
    h = None if hr is None else hr["events_per_s"]
    met = None
    if pr is not None:
        met = pr["all_runs_delivered"] and (h is None or p >= BURST_TARGET * h)
    row(f"delivered events/s, {args.burst_events}-event burst to a sink, no drops, median of "
        f"{args.burst_repeat}", "events/s", p, h, f">= {BURST_TARGET:g}x, none dropped", met)


def _posthog_regex_cell(hr: Dict[str, Any]) -> Any:
    """posthog's worst regex time: a number, or "> N s" when some cases never finished."""
    if hr.get("error") or not hr:
        return None
    if hr.get("timed_out"):
        return (f"> {hr['timeout_s']:g} s ({hr['timed_out']} of {hr['cases']} cases "
                "did not finish)")
    return hr.get("worst_finished_ms")


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if unit == "%":
        return f"{v:.2f} %"
    if unit == "s":
        return f"{v:.3f} s"
    if unit == "ms":
        return f"{v:.3f} ms" if v < 1 else f"{v:.1f} ms"
    if unit == "events/s":
        return f"{v:,.0f}".replace(",", " ")
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
        if scenario in EXTRA_NOTES:
            lines.extend(EXTRA_NOTES[scenario](by_sdk))
            continue
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


def _loadavg() -> Optional[List[float]]:
    """The 1, 5 and 15 min load averages (the machine is shared), where the OS tells."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _outage_notes(by_sdk: Dict[str, Any]) -> List[str]:
    lines = []
    for sdk, r in by_sdk.items():
        bits = [f"spool_outage/{sdk}: burst of {r['burst']} took {r['capture_s']:.3f} s",
                f"capture() refused {r['refused']}"]
        if r["spool"]:
            bits.append(f"{r['rows_on_disk']} rows on disk, counted "
                        f"{r['counted_after_s']:.3f} s after the burst")
        bits.append(f"in memory then: {r.get('in_memory', 'n/a')}")
        st = r.get("stats")
        if isinstance(st, dict):
            bits.append(f"stats spooled {st.get('spooled')} dropped {st.get('dropped_total')}")
        if not r["endpoint_refused"]:
            bits.append("**the port was taken by something else meanwhile**")
        lines.append("; ".join(bits))
    return lines


def _kill_notes(by_sdk: Dict[str, Any]) -> List[str]:
    lines = []
    for sdk, r in by_sdk.items():
        for i, x in enumerate(r["repetitions"], 1):
            bits = [f"spool_kill/{sdk} run {i}: killed {x['killed_after_s']:.2f} s into the "
                    f"burst", f"admitted {x['admitted']}",
                    f"{x['admitted_in_window']} in the last {x['window_s']:g} s",
                    f"on disk {x['rows_on_disk']}", f"lost {x['lost']}",
                    f"lost among older {x['lost_older']}"]
            if x["on_disk_not_logged"]:
                bits.append(f"{x['on_disk_not_logged']} on disk whose log line the kill beat")
            if x["burst_finished_before_kill"]:
                bits.append("the burst had finished before the kill")
            if not x["endpoint_refused"]:
                bits.append("**the port was taken by something else meanwhile**")
            lines.append("; ".join(bits))
    return lines


def _external_notes(by_sdk: Dict[str, Any]) -> List[str]:
    lines = []
    for sdk, r in by_sdk.items():
        if r.get("error"):
            lines.append(f"{sdk}: {r['error']}")
        elif r.get("engines"):
            for engine, x in r["engines"].items():
                lines.append(
                    f"{sdk} engine {engine}: worst {x['worst_median_ms']:.3f} ms (median of "
                    f"{r.get('repeat')}) on `{x['worst_pattern']}` x{x['worst_length']} "
                    f"answered by {x['worst_path']}; slowest single call "
                    f"{x['worst_single_call_ms']:.3f} ms; {x['answered_locally']} of "
                    f"{x['cases']} cases answered locally, the rest left to the server")
        else:
            shown = {k: v for k, v in r.items() if v is not None and k != "version"}
            lines.append(f"{sdk}: " + ", ".join(
                f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in shown.items()))
    return lines


def _burst_notes(by_sdk: Dict[str, Any]) -> List[str]:
    lines = []
    for sdk, r in by_sdk.items():
        per_run = ", ".join(f"{x['events_per_s']:,.0f}" for x in r["repetitions"])
        lines.append(f"burst/{sdk}: events/s per run {per_run}; the median run: capture loop "
                     f"{r['capture_s'] * 1000:.0f} ms, flush {r['flush_s'] * 1000:.0f} ms, "
                     f"delivered {r['delivered']} of {r['events']}"
                     + ("" if r["all_runs_delivered"] else "; **some run lost events**"))
    return lines


EXTRA_NOTES: Dict[str, Callable[[Dict[str, Any]], List[str]]] = {
    "spool_outage": _outage_notes, "spool_kill": _kill_notes,
    "cold_start": lambda by: ["cold_start/" + x for x in _external_notes(by)],
    "regex": lambda by: ["regex/" + x for x in _external_notes(by)],
    "burst": _burst_notes,
}


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
    parser.add_argument("--burst", type=int, default=BURST,
                        help=f"events in the spool scenarios' burst (default {BURST})")
    parser.add_argument("--burst-seconds", type=float, default=KILL_BURST_SECONDS,
                        help="how long the kill scenario's paced burst lasts")
    parser.add_argument("--kill-repeat", type=int, default=3,
                        help="kill -9 runs per SDK, each at its own seeded moment (default 3)")
    parser.add_argument("--burst-events", type=int, default=BURST_EVENTS,
                        help=f"events in the throughput burst (default {BURST_EVENTS})")
    parser.add_argument("--burst-repeat", type=int, default=BURST_REPEAT,
                        help=f"throughput burst runs per SDK (default {BURST_REPEAT})")
    parser.add_argument("--quick", action="store_true",
                        help="2k events, 20k loop, 5k burst, one run each")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--no-json", action="store_true", help="do not write the JSON file")
    # worker-side arguments
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    parser.add_argument("--spool", help=argparse.SUPPRESS)
    parser.add_argument("--admitted", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        args.sdk = args.sdk[0]
        WORKERS[args.worker](args)
        return 0

    if args.quick:
        args.events, args.loop, args.loop_repeat = 2_000, 20_000, 1
        args.burst, args.burst_seconds, args.kill_repeat = 5_000, 1.5, 1
        args.burst_repeat = 3
    args.sdk = args.sdk or ["productos", "posthog"]
    args.scenario = args.scenario or list(SCENARIOS)
    started = time.time()
    load: Dict[str, Any] = {"before": _loadavg()}
    runs = measure(args)
    load["after"] = _loadavg()
    rows = build_rows(runs, args)
    print()
    print(table(rows))
    print()
    for line in notes(runs, args):
        print("- " + line)
    versions = {sdk: r["version"] for by in runs.values() for sdk, r in by.items()
                if r.get("version")}
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
                         "fail_seed": FAIL_SEED, "slow_endpoint_s": 0.2,
                         "burst": args.burst, "outage_wait_s": OUTAGE_WAIT,
                         "kill_burst_seconds": args.burst_seconds,
                         "kill_repeat": args.kill_repeat, "kill_seed": KILL_SEED,
                         "kill_window": list(KILL_WINDOW),
                         "burst_events": args.burst_events,
                         "burst_repeat": args.burst_repeat},
            "load_average": load,
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
