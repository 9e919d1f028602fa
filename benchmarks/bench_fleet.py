"""One poller per fleet: N processes sharing flag definitions through Redis, against posthog.

Usage (from the repository root)::

    pip install -e '.[redis]' posthog      # and redis-server on the PATH (Debian: redis-server)
    python benchmarks/bench_fleet.py            # 16 processes, 60 s per SDK: about 3 minutes
    python benchmarks/bench_fleet.py --quick    # 4 processes, 15 s per SDK: a smoke test
    python benchmarks/bench_fleet.py --cache dir   # productos shares through a directory

A stdlib HTTP server in this process (127.0.0.1 only) serves about 200 realistic flag
definitions (~100 KB of JSON, with an ETag; ``If-None-Match`` gets a 304) on both definitions
paths (``/flags/definitions``, which both SDKs ask for first, and the legacy
``/api/feature_flag/local_evaluation/``) and records every request. A redis-server without
persistence runs on a free port in a temporary directory.

For each SDK in turn, N worker processes (this script with ``--worker``) build a client with
a personal API key and ``poll_interval=5``: productos with
``flag_definitions_cache="redis://127.0.0.1:PORT/0"`` (one process holds a lease and polls,
the others read what it published), posthog with ``Posthog(key, host=...,
personal_api_key=..., poll_interval=5)`` (every process polls on its own). Once every worker
has its definitions the window starts; each worker reads one flag (``bench-flip``, locally,
no events) every 50 ms. A third of the way in the benchmark flips that flag's rollout from
0 % to 100 % on the server. Measured:

1. definitions requests per interval for the whole fleet, over the window (target: productos
   about 1; posthog makes about N);
2. CPU per process, median: total CPU of the process (``time.process_time()`` at the end:
   interpreter start, imports, the first load, then idle polling and the 50 ms reads), the
   CPU of the window alone, the share of it on background threads (poller, consumer: window
   CPU minus the main thread's, which only reads the flag), and the parse CPU (JSON decoding
   of a definitions body plus the SDK's own work to install it: productos
   ``parse_definitions`` and, for the lease holder, re-serialising and hashing what it
   publishes; posthog ``_hash_flag_definitions``, ``_update_flag_state``,
   ``_warn_unresolvable_flags``; measured with ``time.thread_time()`` around those calls);
   the redis-server's CPU over the window is reported beside it (one server for the fleet);
3. time for the flip to reach every process: the max (and median) over processes of the
   first 50 ms read that saw the new value, from the moment the server served it (target:
   <= 2 intervals);
4. resident memory (VmRSS) per process at the end, median.

The machine is shared (2 cores): the load average before and after is printed and recorded.
Results go to benchmarks/results/fleet.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import hashlib
import importlib.util
import inspect
import json
import os
import platform
import queue
import random
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "fleet.json")

API_KEY = "phc_fleet_bench"
PERSONAL_KEY = "phx_fleet_bench_personal"
FLIP = "bench-flip"
USER = "user-1"
READ_EVERY = 0.05
FLAG_COUNT = 200
DEFINITIONS_PATHS = ("/flags/definitions", "/api/feature_flag/local_evaluation")
BIG_JSON = 8192  # json.loads of at least this many bytes counts as a definitions parse


# --- definitions ------------------------------------------------------------------------------


_COUNTRIES = ("US", "CA", "DE", "FR", "GB", "BR", "IN", "JP", "AU", "ES", "IT", "NL")
_PLANS = ("free", "pro", "enterprise", "team", "trial", "startup")


def _prop(key: str, value: Any, operator: str = "exact", kind: str = "person") -> Dict[str, Any]:
    return {"key": key, "value": value, "operator": operator, "type": kind}


def _flag_filters(i: int, rng: random.Random) -> Dict[str, Any]:
    shape = i % 8
    if shape == 0:  # a plain rollout
        return {"groups": [{"properties": [], "rollout_percentage": rng.choice((5, 25, 50, 100))}]}
    if shape == 1:  # plan and country
        return {"groups": [{"properties": [
            _prop("plan", rng.sample(_PLANS, 2)),
            _prop("country", rng.sample(_COUNTRIES, 4))], "rollout_percentage": 50}]}
    if shape == 2:  # internal people, then a rollout
        return {"groups": [
            {"properties": [_prop("email", "@example.com", "icontains")],
             "rollout_percentage": 100},
            {"properties": [], "rollout_percentage": rng.choice((10, 20, 30))}]}
    if shape == 3:  # multivariate with payloads
        return {"groups": [{"properties": [], "rollout_percentage": 100}],
                "multivariate": {"variants": [
                    {"key": "control", "rollout_percentage": 34},
                    {"key": "test", "rollout_percentage": 33},
                    {"key": "test-2", "rollout_percentage": 33}]},
                "payloads": {"control": json.dumps({"color": "blue", "n": i}),
                             "test": json.dumps({"color": "green", "n": i, "copy": "Try it"}),
                             "test-2": json.dumps({"color": "red", "steps": [1, 2, 3]})}}
    if shape == 4:  # numbers, a regex and a set check
        return {"groups": [{"properties": [
            _prop("seats", rng.randint(2, 50), "gt"),
            _prop("app_version", r"^(4|5)\.[0-9]+\.[0-9]+$", "regex"),
            _prop("beta_opt_in", "is_set", "is_set")], "rollout_percentage": 100}]}
    if shape == 5:  # a group (company) flag
        return {"aggregation_group_type_index": 0,
                "groups": [{"properties": [_prop("industry", ["saas", "fintech"], "exact",
                                                 "group") | {"group_type_index": 0}],
                            "rollout_percentage": 60}]}
    if shape == 6:  # a cohort
        return {"groups": [{"properties": [
            {"key": "id", "value": 1 + i % 5, "type": "cohort"}], "rollout_percentage": 100}]}
    return {"groups": [  # several condition sets, one with a variant override
        {"properties": [_prop("country", ["US", "CA"])], "rollout_percentage": 40},
        {"properties": [_prop("plan", "enterprise")], "rollout_percentage": 100},
        {"properties": [_prop("email", "@competitor.io", "not_icontains")],
         "rollout_percentage": 5}]}


def make_definitions(flip_rollout: int) -> Dict[str, Any]:
    """About 200 flags of the usual shapes, five cohorts and the flag the benchmark flips."""
    rng = random.Random(7)
    flags: List[Dict[str, Any]] = []
    for i in range(FLAG_COUNT - 1):
        flags.append({"id": 1000 + i, "team_id": 1, "name": f"Flag number {i}",
                      "key": f"flag-{i:03d}", "active": i % 23 != 0, "deleted": False,
                      "version": 1 + i % 4, "ensure_experience_continuity": False,
                      "filters": _flag_filters(i, rng)})
    flags.append({"id": 999, "team_id": 1, "name": "Flipped by the benchmark", "key": FLIP,
                  "active": True, "deleted": False, "version": 1 if flip_rollout == 0 else 2,
                  "ensure_experience_continuity": False,
                  "filters": {"groups": [{"properties": [],
                                          "rollout_percentage": flip_rollout}]}})
    cohorts = {str(c): {"type": "OR", "values": [{"type": "AND", "values": [
        _prop("plan", _PLANS[c]), _prop("country", list(_COUNTRIES[c:c + 3]))]}]}
        for c in range(1, 6)}
    return {"flags": flags, "group_type_mapping": {"0": "company"}, "cohorts": cohorts}


# --- the definitions endpoint -----------------------------------------------------------------


class DefinitionsServer:
    """Serves the definitions with an ETag on 127.0.0.1 and records every request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body = b""
        self._etag = ""
        self.requests: List[Tuple[float, str, str, int, str]] = []  # t, method, path, status, ua
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    def set_definitions(self, data: Dict[str, Any]) -> float:
        """Serve new definitions; return the monotonic time from which they are served."""
        body = json.dumps(data, separators=(",", ":")).encode()
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        with self._lock:
            self._body, self._etag = body, etag
            return time.monotonic()

    @property
    def size(self) -> int:
        return len(self._body)

    def start(self) -> DefinitionsServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: Dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if body and self.command != "HEAD":
                    self.wfile.write(body)

            def _record(self, path: str, status: int) -> None:
                with owner._lock:
                    owner.requests.append((time.monotonic(), self.command, path, status,
                                           self.headers.get("User-Agent", "")))

            def do_GET(self) -> None:
                split = urlsplit(self.path)
                path = split.path
                query = parse_qs(split.query, keep_blank_values=True)
                if path.rstrip("/") not in DEFINITIONS_PATHS:
                    self._record(path, 404)
                    self._reply(404, b'{"detail":"not found"}',
                                {"Content-Type": "application/json"})
                    return
                if self.headers.get("Authorization") != f"Bearer {PERSONAL_KEY}" \
                        or query.get("token") != [API_KEY]:
                    self._record(path, 401)
                    self._reply(401, b'{"detail":"bad key"}', {"Content-Type": "application/json"})
                    return
                with owner._lock:
                    body, etag = owner._body, owner._etag
                sent = [t.strip().removeprefix("W/")
                        for t in self.headers.get("If-None-Match", "").split(",")]
                if etag in sent:
                    self._record(path, 304)
                    self._reply(304, b"", {"ETag": etag})
                    return
                self._record(path, 200)
                self._reply(200, body, {"Content-Type": "application/json", "ETag": etag})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                self._record(urlsplit(self.path).path, 200)
                self._reply(200, b'{"status":1}', {"Content-Type": "application/json"})

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="definitions-server")
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def between(self, start: float, end: float) -> List[Tuple[float, str, str, int, str]]:
        with self._lock:
            return [r for r in self.requests if start <= r[0] < end]

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


# --- redis-server -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server without persistence on a free port, its files in ``directory``."""

    def __init__(self, binary: str, directory: str) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: Optional[subprocess.Popen[bytes]] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self.directory, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _redis_ping(self.port):
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def cpu_seconds(self) -> Optional[float]:
        return None if self.process is None else _proc_cpu(self.process.pid)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _proc_cpu(pid: int) -> Optional[float]:
    """User + system CPU seconds of another process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# --- the worker (a subprocess: this script with --worker) ---------------------------------------


class CpuTimer:
    """Thread CPU spent inside wrapped calls (the outermost call only), with timestamps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.events: List[Tuple[float, float]] = []  # (monotonic at the end, CPU seconds)
        self.hooked: List[str] = []

    def wrap(self, fn: Callable[..., Any], only: Optional[Callable[..., bool]] = None
             ) -> Callable[..., Any]:
        timer = self

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if getattr(timer._local, "depth", 0) or (only is not None and not only(*args)):
                return fn(*args, **kwargs)
            timer._local.depth = 1
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - started
                timer._local.depth = 0
                with timer._lock:
                    timer.events.append((time.monotonic(), spent))
        return timed

    def patch(self, owner: Any, name: str, only: Optional[Callable[..., bool]] = None) -> None:
        """Wrap ``owner.name`` (a module function or a class's method) if it exists."""
        try:
            original = inspect.getattr_static(owner, name)
        except AttributeError:
            return
        if isinstance(original, staticmethod):
            setattr(owner, name, staticmethod(self.wrap(original.__func__, only)))
        else:
            setattr(owner, name, self.wrap(getattr(owner, name), only))
        self.hooked.append(f"{getattr(owner, '__name__', owner)}.{name}")

    def since(self, start: float) -> float:
        with self._lock:
            return sum(spent for at, spent in self.events if at >= start)


def _is_big(data: Any, *_: Any) -> bool:
    return isinstance(data, (str, bytes, bytearray)) and len(data) >= BIG_JSON


def _rss_mb() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(settings: Dict[str, Any]) -> None:
    """One process of the fleet: load, say ready, read the flag every 50 ms until told to stop."""
    import logging
    import resource

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    hard_deadline = time.monotonic() + settings["max_seconds"]
    timer = CpuTimer()
    timer.patch(json, "loads", only=_is_big)
    sdk = settings["sdk"]
    client: Any
    if sdk == "productos":
        import productos
        from productos._flags import definitions_setup, shared_cache

        timer.patch(definitions_setup, "parse_definitions")
        timer.patch(shared_cache, "canonical_body")
        timer.patch(shared_cache, "content_version")
        client = productos.Client(API_KEY, host=settings["host"],
                                  personal_api_key=PERSONAL_KEY,
                                  poll_interval=settings["interval"],
                                  flag_definitions_cache=settings["cache"])
    else:
        from posthog import Posthog
        from posthog.client import Client as PosthogClient

        for name in ("_hash_flag_definitions", "_update_flag_state", "_warn_unresolvable_flags"):
            timer.patch(PosthogClient, name)
        client = Posthog(API_KEY, host=settings["host"], personal_api_key=PERSONAL_KEY,
                         poll_interval=settings["interval"])
        client.load_feature_flags()

    def read() -> Any:
        return client.get_feature_flag(FLIP, USER, only_evaluate_locally=True,
                                       send_feature_flag_events=False)

    value = read()
    while value is None and time.monotonic() < hard_deadline:
        time.sleep(READ_EVERY)
        value = read()
    ready = {"value": value, "cpu": time.process_time(), "rss_mb": round(_rss_mb(), 1)}
    print("ready " + json.dumps(ready), flush=True)

    stdin = sys.stdin
    if stdin.readline().strip() != "start":
        client.shutdown()
        return
    start = time.monotonic()
    cpu_start, main_start = time.process_time(), time.thread_time()
    old, new = settings["old"], settings["new"]
    seen_at: Optional[float] = None
    reads = unexpected = 0
    next_read = start
    while time.monotonic() < hard_deadline:
        wait = max(0.0, next_read - time.monotonic())
        ready_fds, _, _ = select.select([stdin], [], [], wait)
        if ready_fds:
            break  # "stop" (or the benchmark went away)
        next_read += READ_EVERY
        value = read()
        reads += 1
        if value == new:
            if seen_at is None:
                seen_at = time.monotonic()
                print(f"seen {seen_at!r}", flush=True)
        elif value != old:
            unexpected += 1
    end = time.monotonic()
    cpu_end, main_end = time.process_time(), time.thread_time()
    report: Dict[str, Any] = {
        "pid": os.getpid(), "sdk": sdk, "seen_at": seen_at, "reads": reads,
        "unexpected_values": unexpected, "window_s": round(end - start, 3),
        "cpu_total_s": cpu_end, "cpu_at_ready_s": ready["cpu"],
        "cpu_window_s": cpu_end - cpu_start, "cpu_main_window_s": main_end - main_start,
        "cpu_background_window_s": (cpu_end - cpu_start) - (main_end - main_start),
        "parse_cpu_total_s": timer.since(0.0), "parse_cpu_window_s": timer.since(start),
        "parse_calls": len(timer.events), "parse_hooks": timer.hooked,
        "rss_mb": round(_rss_mb(), 1), "rss_at_ready_mb": ready["rss_mb"],
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": threading.active_count(),
    }
    if sdk == "productos":
        status = client.flag_definitions_status()
        if status is not None:
            report.update(source=status.source, polls=status.polls, cache=status.cache,
                          state=status.state.value)
    print("report " + json.dumps(report), flush=True)
    if sdk == "productos":
        client.shutdown(timeout=2)
    else:
        client.shutdown()


# --- the benchmark side ----------------------------------------------------------------------


class Worker:
    """A worker process; its stdout lines go to a shared queue as (index, line)."""

    def __init__(self, index: int, settings: Dict[str, Any], lines: queue.Queue,
                 log_dir: str) -> None:
        self.index = index
        self.stderr_path = os.path.join(log_dir, f"{settings['sdk']}-{index}.stderr")
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(settings)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
            text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._reader.start()

    def _read(self, lines: queue.Queue) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            lines.put((self.index, line.rstrip("\n")))
        lines.put((self.index, None))

    def send(self, line: str) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def stderr_tail(self, limit: int = 1500) -> str:
        try:
            with open(self.stderr_path, "rb") as handle:
                return handle.read()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self._stderr.close()


def collect(lines: queue.Queue, workers: List[Worker], prefix: str, deadline: float,
            also: Optional[Callable[[int, str], None]] = None) -> Dict[int, str]:
    """Wait (until deadline) for one line starting with ``prefix`` from every worker."""
    got: Dict[int, str] = {}
    gone: set = set()
    while len(set(got) | gone) < len(workers) and time.monotonic() < deadline:
        try:
            index, line = lines.get(timeout=max(0.01, min(0.5, deadline - time.monotonic())))
        except queue.Empty:
            continue
        if line is None:
            gone.add(index)
        elif line.startswith(prefix + " "):
            got[index] = line[len(prefix) + 1:]
        elif also is not None:
            also(index, line)
    return got


def pump(lines: queue.Queue, until: float, handle: Callable[[int, str], None]) -> None:
    """Hand every line that arrives before ``until`` to ``handle``."""
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return
        try:
            index, line = lines.get(timeout=min(left, 0.5))
        except queue.Empty:
            continue
        if line is not None:
            handle(index, line)


def run_fleet(sdk: str, server: DefinitionsServer, cache: Optional[str], args: argparse.Namespace,
              redis: Optional[RedisServer], log_dir: str) -> Dict[str, Any]:
    """Start the fleet, measure the window with the flip inside it, stop the fleet."""
    interval, count, seconds = args.interval, args.processes, args.seconds
    server.set_definitions(make_definitions(0))
    settings = {"sdk": sdk, "host": server.url, "interval": interval, "cache": cache,
                "old": False, "new": True, "max_seconds": seconds + 6 * interval + 180}
    lines: queue.Queue = queue.Queue()
    workers: List[Worker] = []
    seen: Dict[int, float] = {}

    def on_line(index: int, line: str) -> None:
        if line.startswith("seen "):
            seen[index] = float(line.split()[1])

    try:
        launched = time.monotonic()
        for index in range(count):
            workers.append(Worker(index, settings, lines, log_dir))
        ready = collect(lines, workers, "ready", launched + 60 + 5 * count)
        startup_s = time.monotonic() - launched
        if len(ready) < count:
            failed = [w for w in workers if w.index not in ready]
            raise RuntimeError(f"{sdk}: {len(failed)} of {count} workers never became ready; "
                               f"stderr of the first:\n{failed[0].stderr_tail()}")
        ready_values = [json.loads(ready[i])["value"] for i in sorted(ready)]
        startup_requests = server.between(launched, time.monotonic())
        time.sleep(0.2)
        redis_cpu_start = redis.cpu_seconds() if redis is not None else None
        window_start = time.monotonic()
        for worker in workers:
            worker.send("start")
        window_end = window_start + seconds
        flip_due = window_start + seconds / 3
        pump(lines, flip_due, on_line)
        changed_at = server.set_definitions(make_definitions(100))
        # Run to the end of the window, and on until every worker saw the flip (bounded).
        give_up = max(window_end, changed_at + 3 * interval + 5)
        while time.monotonic() < window_end or (len(seen) < count
                                                and time.monotonic() < give_up):
            pump(lines, time.monotonic() + 0.2, on_line)
        stopped_at = time.monotonic()
        redis_cpu_end = redis.cpu_seconds() if redis is not None else None
        for worker in workers:
            worker.send("stop")
        reports = collect(lines, workers, "report", time.monotonic() + 30, on_line)
        exit_by = time.monotonic() + 15  # let them shut their clients down, then kill
        for worker in workers:
            try:
                worker.process.wait(max(0.0, exit_by - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
    finally:
        for worker in workers:
            worker.kill()
    parsed = [json.loads(reports[i]) for i in sorted(reports)]
    window = server.between(window_start, window_end)
    definitions = [r for r in window if r[2].rstrip("/") in DEFINITIONS_PATHS]
    paths: Dict[str, int] = {}
    for _, method, path, status, agent in server.between(launched, stopped_at + 1):
        key = f"{method} {path} {status} ({agent.split('/')[0] or '?'})"
        paths[key] = paths.get(key, 0) + 1
    latencies = [seen[i] - changed_at for i in sorted(seen)]
    missing = [w.process.pid for w in workers if w.index not in seen]
    result: Dict[str, Any] = {
        "sdk": sdk, "processes": count, "interval_s": interval, "window_s": seconds,
        "cache": cache, "startup_s": round(startup_s, 2),
        "ready_values": sorted({str(v) for v in ready_values}),
        "startup_requests": len(startup_requests),
        "definitions_requests": len(definitions),
        "requests_200": sum(1 for r in definitions if r[3] == 200),
        "requests_304": sum(1 for r in definitions if r[3] == 304),
        "requests_per_interval": round(len(definitions) / (seconds / interval), 2),
        "requests_by_path": paths,
        "flip_after_s": round(changed_at - window_start, 2),
        "ran_s": round(stopped_at - window_start, 2),
        "propagation_max_s": round(max(latencies), 2) if latencies and not missing else None,
        "propagation_median_s": round(statistics.median(latencies), 2) if latencies else None,
        "propagation_all_s": [round(x, 2) for x in latencies],
        "never_saw_change": missing,
        "reports": parsed, "reports_missing": count - len(parsed),
    }
    if redis_cpu_start is not None and redis_cpu_end is not None:
        result["redis_cpu_window_s"] = round(redis_cpu_end - redis_cpu_start, 3)
    for key in ("cpu_total_s", "cpu_at_ready_s", "cpu_window_s", "cpu_main_window_s",
                "cpu_background_window_s", "parse_cpu_total_s", "parse_cpu_window_s",
                "rss_mb", "rss_at_ready_mb", "maxrss_mb"):
        values = [r[key] for r in parsed if r.get(key) is not None]
        result[f"median_{key}"] = round(statistics.median(values), 4) if values else None
        result[f"max_{key}"] = round(max(values), 4) if values else None
    if sdk == "productos":
        roles: Dict[str, int] = {}
        for r in parsed:
            roles[str(r.get("source"))] = roles.get(str(r.get("source")), 0) + 1
        result["roles"] = roles
    return result


# --- the table --------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(results: Dict[str, Any]) -> None:
    p, h = results["sdks"].get("productos"), results["sdks"].get("posthog")
    interval = results["interval_s"]
    count = results["processes"]
    cache_kind = results["cache_kind"]

    def row(label: str, key: str, scale: float = 1.0, digits: int = 2,
            target: Optional[Tuple[str, Callable[[float], bool]]] = None) -> None:
        pv = None if p is None or p.get(key) is None else p[key] * scale
        hv = None if h is None or h.get(key) is None else h[key] * scale
        ratio = f"{pv / hv:.2f}x" if pv is not None and hv else "n/a"
        if target is None:
            goal, met = "—", "—"
        else:
            goal = target[0]
            met = "n/a" if pv is None else ("met" if target[1](pv) else "MISSED")
        print(f"| {label} | {_fmt(pv, digits)} | {_fmt(hv, digits)} | {ratio} | {goal} | {met} |")

    print(f"{count} processes, poll_interval={interval:g} s, {results['seconds']:g} s window, "
          f"{results['flags']} flags ({results['definitions_bytes'] / 1024:.0f} KB); "
          f"productos shares through {cache_kind}")
    print()
    print("| metric | productos | posthog | ratio | target | met |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    row("definitions requests per interval, whole fleet", "requests_per_interval",
        target=("≈ 1 (<= 1.5)", lambda v: v <= 1.5))
    row("total CPU of an idle polling process (start, imports, first load, window, "
        "50 ms reads), median, ms", "median_cpu_total_s", 1000, 0)
    row("CPU during the window, median, ms", "median_cpu_window_s", 1000, 0)
    row("of which background threads (poller, consumer), median, ms",
        "median_cpu_background_window_s", 1000, 1)
    row("parse CPU (JSON decode + install), whole run, median, ms", "median_parse_cpu_total_s",
        1000, 1)
    row("parse CPU during the window (one definitions change), median, ms",
        "median_parse_cpu_window_s", 1000, 1)
    if p is not None and p.get("redis_cpu_window_s") is not None:
        print(f"| redis-server CPU during the window (whole fleet), ms | "
              f"{p['redis_cpu_window_s'] * 1000:.0f} | — | — | — | — |")
    row("flip reaches every process: max over processes, s", "propagation_max_s",
        target=(f"<= 2 intervals ({2 * interval:g} s)", lambda v: v <= 2 * interval))
    row("flip reaches a process: median, s", "propagation_median_s")
    row("RSS per process at the end, median, MB", "median_rss_mb", digits=1)
    print()
    for name, r in results["sdks"].items():
        extra = f"; roles {r['roles']}" if "roles" in r else ""
        print(f"{name}: {r['definitions_requests']} definitions requests in the window "
              f"({r['requests_200']} x 200, {r['requests_304']} x 304), "
              f"{r['startup_requests']} during start-up ({r['startup_s']:.1f} s); flip at "
              f"+{r['flip_after_s']:.1f} s, seen by {r['processes'] - len(r['never_saw_change'])}"
              f"/{r['processes']}{extra}")
        print(f"  requests seen: {r['requests_by_path']}")
        if r["never_saw_change"]:
            print(f"  NEVER SAW THE CHANGE: pids {r['never_saw_change']}")
        if r["reports_missing"]:
            print(f"  {r['reports_missing']} workers did not report")
    before, after = results["loadavg_before"], results["loadavg_after"]
    print(f"load average before: {' '.join(f'{x:.2f}' for x in before)}; "
          f"after: {' '.join(f'{x:.2f}' for x in after)}")


# --- main ------------------------------------------------------------------------------------


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 processes, 15 s: a smoke test")
    parser.add_argument("--processes", type=int, help="processes per fleet (default 16)")
    parser.add_argument("--seconds", type=float, help="window per SDK (default 60)")
    parser.add_argument("--interval", type=float, default=5.0, help="poll_interval (default 5)")
    parser.add_argument("--cache", choices=("redis", "dir"), default="redis",
                        help="what productos shares through (default redis)")
    parser.add_argument("--sdk", choices=("both", "productos", "posthog"), default="both")
    parser.add_argument("--json", default=RESULTS, help="where to write the results")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_worker(json.loads(args.worker))
        return 0
    args.processes = args.processes or (4 if args.quick else 16)
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)

    sdks = ["productos", "posthog"] if args.sdk == "both" else [args.sdk]
    if "posthog" in sdks and importlib.util.find_spec("posthog") is None:
        print("posthog is not installed: measuring productos alone")
        sdks.remove("posthog")
    redis_binary = shutil.which("redis-server")
    if "productos" in sdks and args.cache == "redis":
        if redis_binary is None:
            print("redis-server is not installed (Debian: apt-get install redis-server)")
            return 2
        if importlib.util.find_spec("redis") is None:
            print("redis-py is missing: pip install -e '.[redis]'")
            return 2

    loadavg_before = os.getloadavg()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in loadavg_before)}", flush=True)
    results: Dict[str, Any] = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "productos": _version("productos"),
        "posthog": _version("posthog") if "posthog" in sdks else None,
        "processes": args.processes, "seconds": args.seconds, "interval_s": args.interval,
        "cache_kind": args.cache, "flags": FLAG_COUNT, "quick": args.quick,
        "loadavg_before": list(loadavg_before), "sdks": {},
    }
    server = DefinitionsServer().start()
    results["definitions_bytes"] = len(json.dumps(make_definitions(0), separators=(",", ":")))
    redis: Optional[RedisServer] = None
    tmp = tempfile.mkdtemp(prefix="bench-fleet-")
    try:
        if redis_binary is not None and args.cache == "redis" and "productos" in sdks:
            redis = RedisServer(redis_binary, tmp).start()
            version = subprocess.run([redis_binary, "--version"], capture_output=True,
                                     text=True, timeout=10).stdout.strip()
            results["redis_server"] = version
        for sdk in sdks:
            cache = None
            if sdk == "productos":
                if redis is not None:
                    cache = redis.url
                else:
                    cache = os.path.join(tmp, "flag-cache")
                    os.makedirs(cache, exist_ok=True)
            print(f"{sdk}: {args.processes} processes, {args.seconds:g} s ...", flush=True)
            try:
                results["sdks"][sdk] = run_fleet(sdk, server, cache, args,
                                                 redis if sdk == "productos" else None, tmp)
            except RuntimeError as exc:
                print(f"{sdk} FAILED: {exc}", flush=True)
                results.setdefault("errors", {})[sdk] = str(exc)
    finally:
        server.stop()
        if redis is not None:
            redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    results["loadavg_after"] = list(os.getloadavg())
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
