"""Feature-flag benchmark: productos against PostHog's own SDK, on the same definitions.

Usage (from the repository root)::

    pip install -e . posthog
    python benchmarks/bench_flags.py            # full run, about a minute
    python benchmarks/bench_flags.py --quick    # smaller counts, for a smoke test
    python benchmarks/bench_flags.py --profile  # cProfile of productos' flag paths, then stop

Both SDKs fetch the same 20 flag definitions over HTTP (personal API key) from the
project's loopback server (tests/server.py, 127.0.0.1 only), which runs in this process;
each measurement runs in a fresh worker subprocess, the SDKs alternating. It measures:

1. local ``get_feature_flag`` without ``$feature_flag_called`` events: evals/s and
   p50/p99 µs per call, over 2,000 users x 20 flags (every call timed, clock cost subtracted);
2. the same with events on, on users never evaluated before, so every call produces an
   event; the events are delivered to the loopback server and counted there;
3. ``get_all_flags`` over the 20 flags: users/s and p50/p99 µs per user;
4. a digest: sha256 of the sorted (flag, distinct_id, value) list of pass 1, which must be
   identical for both SDKs (and to the digest of their ``get_all_flags`` answers);
5. how costs grow (benchmarks/flag_scale.py; ``--no-scale`` skips it): a 10,000-value list,
   fetch + parse of 2,000 flags, ``get_all_flags`` over them, and the memory they take.

Every call passes ``only_evaluate_locally=True``; no definition needs the server. The table
is printed as markdown and everything is written to benchmarks/results/flags.json. On a
shared machine absolute numbers are noise; the ratios (productos / posthog) are what count.
benchmarks/flag_instructions.py counts the instructions of the same calls under callgrind,
which a loaded machine does not disturb.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import hashlib
import importlib.util
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import flag_scale
from _logs import quiet_logger

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_JSON = os.path.join(HERE, "results", "flags.json")
SDKS = ("productos", "posthog")
WORKER_TIMEOUT = 600.0  # seconds for any one worker subprocess
PHASE_BUDGET = 120.0  # seconds any one timed loop may run before it stops early
FLUSH_TIMEOUT = 30.0  # seconds to deliver one segment of $feature_flag_called events
TIMES = "\u00d7"  # the multiplication sign, for the table
SEGMENT_USERS = 400  # events pass: users per segment (x 20 flags < both SDKs' 10k queue)

# (metric key, label, unit, better, target ratio or None)
ROWS = (
    ("plain_evals_per_s", "`get_feature_flag` evals/s, no events", "evals/s", "higher", 5.0),
    ("plain_p50_us", "`get_feature_flag` p50, no events", "µs", "lower", None),
    ("plain_p99_us", "`get_feature_flag` p99, no events", "µs", "lower", None),
    ("events_evals_per_s", "`get_feature_flag` evals/s, with events", "evals/s", "higher", 6.0),
    ("events_p50_us", "`get_feature_flag` p50, with events", "µs", "lower", None),
    ("events_p99_us", "`get_feature_flag` p99, with events", "µs", "lower", None),
    ("all_users_per_s", "`get_all_flags` (20 flags) users/s", "users/s", "higher", 8.0),
    ("all_p50_us", "`get_all_flags` p50 per user", "µs", "lower", None),
)


# --------------------------------------------------------------------------------------
# The definitions and the users: one source for both SDKs.
# --------------------------------------------------------------------------------------


def _person(key: str, value: Any, operator: str = "exact") -> Dict[str, Any]:
    return {"key": key, "value": value, "operator": operator, "type": "person"}


def _flag(fid: int, key: str, groups: List[Dict[str, Any]], **filters: Any) -> Dict[str, Any]:
    active = filters.pop("active", True)
    return {"id": fid, "key": key, "name": key, "version": 1, "active": active,
            "ensure_experience_continuity": False,
            "filters": {"groups": groups, **filters}}


def _variants(*pairs: Tuple[str, int]) -> Dict[str, Any]:
    return {"variants": [{"key": k, "rollout_percentage": p} for k, p in pairs]}


def make_definitions() -> Dict[str, Any]:
    """20 flags of the kinds apps use; nothing needs the server (no static cohort,
    no experience continuity), absolute dates only (no clock dependence)."""
    flags = [
        _flag(101, "new-dashboard", [{"properties": [], "rollout_percentage": 30}]),
        _flag(102, "everyone", [{"properties": [], "rollout_percentage": None}],
              payloads={"true": '{"banner": "hello"}'}),
        _flag(103, "paid-plans",
              [{"properties": [_person("plan", ["pro", "enterprise"])],
                "rollout_percentage": 100}],
              payloads={"true": '{"limit": 1000}'}),
        _flag(104, "internal-users",
              [{"properties": [_person("email", "@acme.io", "icontains")],
                "rollout_percentage": 100},
               {"properties": [_person("email", "@example.com", "ends_with")],
                "rollout_percentage": 50}]),
        _flag(105, "power-buyers",
              [{"properties": [_person("purchases", 10, "gt"), _person("age", "60", "lt")],
                "rollout_percentage": 80}]),
        _flag(106, "beta-opt-in",
              [{"properties": [_person("beta_opt_in", ["true"])],
                "rollout_percentage": 100}]),
        _flag(107, "email-regex",
              [{"properties": [_person("email", r"^[a-z]+[0-9]*@(example|test)\.(com|org)$",
                                       "regex")],
                "rollout_percentage": 100}]),
        _flag(108, "min-app-version",
              [{"properties": [_person("app_version", "2.1.0", "semver_gte")],
                "rollout_percentage": 100}]),
        _flag(109, "app-v1-caret",
              [{"properties": [_person("app_version", "1.4.0", "semver_caret")],
                "rollout_percentage": 100},
               {"properties": [_person("app_version", "2.2.*", "semver_wildcard")],
                "rollout_percentage": 100}]),
        _flag(110, "checkout-experiment", [{"properties": [], "rollout_percentage": 80}],
              multivariate=_variants(("control", 34), ("fast", 33), ("one-page", 33)),
              payloads={"control": '{"steps": 3}', "fast": '{"steps": 2}',
                        "one-page": '{"steps": 1}'}),
        _flag(111, "pricing-page",
              [{"properties": [_person("country", ["US"])], "rollout_percentage": 100,
                "variant": "usd"},
               {"properties": [], "rollout_percentage": 100}],
              multivariate=_variants(("usd", 20), ("eur", 40), ("gbp", 40)),
              payloads={"usd": '{"currency": "USD"}', "eur": '{"currency": "EUR"}'}),
        _flag(112, "company-analytics",
              [{"properties": [{"key": "employees", "value": 100, "operator": "gte",
                                "type": "group", "group_type_index": 0}],
                "rollout_percentage": 50}],
              aggregation_group_type_index=0),
        _flag(113, "onboarding-experiment", [{"properties": [], "rollout_percentage": 100}],
              multivariate=_variants(("control", 50), ("test", 50)),
              holdout={"id": 42, "exclusion_percentage": 10},
              payloads={"test": '{"tour": true}'}),
        _flag(114, "non-north-america",
              [{"properties": [_person("country", ["US", "CA"], "is_not"),
                               _person("email", "gmail", "not_icontains")],
                "rollout_percentage": 100}]),
        _flag(115, "recent-signups",
              [{"properties": [_person("signup_date", "2024-06-01T00:00:00Z",
                                       "is_date_after")],
                "rollout_percentage": 100}]),
        _flag(116, "free-or-germany",
              [{"properties": [_person("plan", "free")], "rollout_percentage": 20},
               {"properties": [_person("country", "DE")], "rollout_percentage": 100}]),
        _flag(117, "retired-flag", [{"properties": [], "rollout_percentage": 100}],
              active=False),
        _flag(118, "vip-cohort",
              [{"properties": [{"key": "id", "value": 7, "type": "cohort"}],
                "rollout_percentage": 100}]),
        _flag(119, "paid-beta",
              [{"properties": [{"key": "paid-plans", "operator": "flag_evaluates_to",
                                "value": True, "type": "flag",
                                "dependency_chain": ["paid-plans"]}],
                "rollout_percentage": 60}]),
        _flag(120, "no-company-size",
              [{"properties": [_person("company_size", "", "is_not_set"),
                               _person("plan", "t", "starts_with")],
                "rollout_percentage": 100},
               {"properties": [_person("company_size", "", "is_set")],
                "rollout_percentage": 25}]),
    ]
    cohorts = {"7": {"type": "OR", "values": [
        {"type": "AND", "values": [_person("plan", ["enterprise"]),
                                   _person("purchases", 20, "gte")]},
        {"type": "AND", "values": [_person("country", ["GB", "FR"]),
                                   _person("age", 30, "lt")]},
    ]}}
    return {"flags": flags, "group_type_mapping": {"0": "company"}, "cohorts": cohorts}


FLAG_KEYS = [f["key"] for f in make_definitions()["flags"]]

_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
_DOMAINS = ("acme.io", "example.com", "test.org", "gmail.com", "Example.COM", "corp.net")
_PLANS = ("free", "pro", "enterprise", "Pro", "trial", "team")
_COUNTRIES = ("US", "CA", "DE", "FR", "GB", "us", "BR", "IN")
_VERSIONS = ("2.3.1", "1.9.0", "2.1.0", "1.4.7", "1.5.0", "v2.2.0", "2.2.13", "3.0.0",
             "2.1", "0.9.12", "2.0.9", "1.4.0")


def make_user(prefix: str, i: int) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    """(distinct_id, kwargs for get_feature_flag) for user i; deterministic, varied, with
    some properties missing (inconclusive -> None for both SDKs) or of unusual types."""
    rng = random.Random(f"{prefix}-{i}")
    distinct_id = f"{prefix}-{i}"
    props: Dict[str, Any] = {}

    def maybe(key: str, value: Any, p_missing: float = 0.05) -> None:
        if rng.random() >= p_missing:
            props[key] = value

    maybe("email", f"{rng.choice(_NAMES)}{rng.randrange(100)}@{rng.choice(_DOMAINS)}")
    maybe("plan", rng.choice(_PLANS))
    maybe("country", rng.choice(_COUNTRIES))
    purchases = rng.randrange(40)
    maybe("purchases", rng.choice((purchases, purchases, str(purchases), purchases + 0.5)))
    maybe("age", rng.randrange(18, 80))
    maybe("app_version", rng.choice(_VERSIONS), 0.1)
    maybe("beta_opt_in", rng.choice((True, False, "true", "false")), 0.2)
    day = _dt.date(2023, 1, 1) + _dt.timedelta(days=rng.randrange(3 * 365))
    maybe("signup_date", rng.choice((day.isoformat(), f"{day.isoformat()}T12:30:00Z")), 0.1)
    if rng.random() < 0.3:
        props["company_size"] = rng.choice((10, 250, "50-100"))
    kwargs: Dict[str, Any] = {"person_properties": props}
    if rng.random() < 0.7:
        company = f"co-{rng.randrange(97)}"
        crng = random.Random(company)
        company_props: Dict[str, Any] = {"industry": crng.choice(("saas", "retail", "fintech"))}
        if crng.random() < 0.9:
            company_props["employees"] = crng.choice((5, 50, 100, 120, 1000, 5000))
        kwargs["groups"] = {"company": company}
        kwargs["group_properties"] = {"company": company_props}
    return distinct_id, kwargs


def digest_of(values: Dict[str, str]) -> str:
    """sha256 over the sorted "flag<TAB>distinct_id<TAB>json(value)" lines."""
    h = hashlib.sha256()
    for key in sorted(values):
        h.update(f"{key}\t{values[key]}\n".encode())
    return h.hexdigest()


def _enc(value: Any) -> str:
    return json.dumps(value)


# --------------------------------------------------------------------------------------
# Worker side: one SDK, every measurement, in a fresh interpreter.
# --------------------------------------------------------------------------------------


class Sdk:
    """One SDK's client with flag definitions loaded from the loopback server."""

    def __init__(self, name: str, host: str, api_key: str, personal_api_key: str) -> None:
        self.name = name
        self.log = quiet_logger(name)
        if name == "productos":
            import productos

            self.version = productos.__version__
            self.client: Any = productos.Client(api_key, host=host,
                                                personal_api_key=personal_api_key)
            loaded = self.client.load_feature_flags()
        elif name == "posthog":
            import posthog
            from posthog import Posthog

            self.version = getattr(posthog, "VERSION", "?")
            self.client = Posthog(api_key, host=host, personal_api_key=personal_api_key)
            self.client.load_feature_flags()
            loaded = bool(getattr(self.client, "feature_flags", None))
        else:
            raise SystemExit(f"unknown sdk {name!r}")
        if not loaded:
            raise SystemExit(f"{name}: flag definitions did not load from {host}")
        self.get_feature_flag: Callable[..., Any] = self.client.get_feature_flag
        self.get_all_flags: Callable[..., Any] = self.client.get_all_flags

    def flush(self, timeout: float) -> None:
        if self.name == "productos":
            self.client.flush(timeout)
        else:
            try:
                self.client.flush(timeout_seconds=timeout)
            except TypeError:  # older posthog: flush() without a timeout
                self.client.flush()

    def shutdown(self) -> None:
        if self.name == "productos":
            self.client.shutdown(5.0)
        else:
            self.client.shutdown()


def _clock_overhead() -> int:
    """Median cost, in ns, of the two clock reads around each timed call."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(5000):
        t0 = clock()
        samples.append(clock() - t0)
    return int(statistics.median(samples))


def _percentile(sorted_ns: List[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def _summary(samples: List[int], overhead: int, unit_count: int) -> Dict[str, Any]:
    """Per-call samples (ns) -> throughput and percentiles, with the clock cost removed."""
    corrected = sorted(max(0, s - overhead) for s in samples)
    total = sum(corrected)
    return {"calls": len(samples), "units": unit_count, "seconds": total / 1e9,
            "per_s": unit_count / (total / 1e9) if total else float("nan"),
            "p50_us": _percentile(corrected, 0.50), "p99_us": _percentile(corrected, 0.99),
            "mean_us": total / len(corrected) / 1000.0 if corrected else float("nan")}


def _timed_flag_calls(sdk: Sdk, users: List[Tuple[str, Dict[str, Any]]], send_events: bool,
                      overhead: int, values: Optional[Dict[str, str]],
                      deadline: float) -> List[int]:
    """Every (user, flag) once, users outer; each call timed on its own."""
    clock = time.perf_counter_ns
    call = sdk.get_feature_flag
    samples: List[int] = []
    append = samples.append
    for n, (distinct_id, kwargs) in enumerate(users):
        if n % 50 == 0 and time.perf_counter() > deadline:
            break
        for key in FLAG_KEYS:
            t0 = clock()
            value = call(key, distinct_id, only_evaluate_locally=True,
                         send_feature_flag_events=send_events, **kwargs)
            append(clock() - t0)
            if values is not None:
                values[f"{key}\t{distinct_id}"] = _enc(value)
    return samples


def _users(prefix: str, count: int) -> List[Tuple[str, Dict[str, Any]]]:
    return [make_user(prefix, i) for i in range(count)]


def work(args: argparse.Namespace) -> Dict[str, Any]:
    """All measurements for one SDK; returns a JSON-able dict."""
    sdk = Sdk(args.sdk, args.host, args.api_key, args.personal_api_key)
    overhead = _clock_overhead()
    out: Dict[str, Any] = {"sdk": args.sdk, "version": sdk.version, "pid": os.getpid(),
                           "clock_overhead_ns": overhead, "truncated": []}
    users = _users("user", args.users)

    # Warm-up on other users (no events), then the measured, digested pass.
    _timed_flag_calls(sdk, _users("warm", args.warmup_users), False, overhead, None,
                      time.perf_counter() + PHASE_BUDGET)
    gc.collect()
    values: Dict[str, str] = {}
    samples = _timed_flag_calls(sdk, users, False, overhead, values,
                                time.perf_counter() + PHASE_BUDGET)
    if len(samples) < len(users) * len(FLAG_KEYS):
        out["truncated"].append("plain")
    out["plain"] = _summary(samples, overhead, len(samples))
    out["digest"] = digest_of(values)
    out["inconclusive"] = sum(1 for v in values.values() if v == "null")
    if args.with_values:
        out["values"] = values

    # With events: users never seen before (the dedupe cache can't swallow a call), in
    # segments small enough for both SDKs' default queue; delivered between segments.
    gc.collect()
    samples = []
    deadline = time.perf_counter() + PHASE_BUDGET
    segments = max(1, -(-args.event_users // SEGMENT_USERS))
    for seg in range(segments):
        count = min(SEGMENT_USERS, args.event_users - seg * SEGMENT_USERS)
        seg_users = [make_user("ev", seg * SEGMENT_USERS + i) for i in range(count)]
        samples += _timed_flag_calls(sdk, seg_users, True, overhead, None, deadline)
        sdk.flush(FLUSH_TIMEOUT)
        if time.perf_counter() > deadline:
            break
    if len(samples) < args.event_users * len(FLAG_KEYS):
        out["truncated"].append("events")
    out["events"] = _summary(samples, overhead, len(samples))

    # get_all_flags, the digest users again.
    gc.collect()
    clock = time.perf_counter_ns
    all_flags = sdk.get_all_flags
    samples = []
    all_values: Dict[str, str] = {}
    deadline = time.perf_counter() + PHASE_BUDGET
    for n, (distinct_id, kwargs) in enumerate(users):
        if n % 50 == 0 and time.perf_counter() > deadline:
            out["truncated"].append("all_flags")
            break
        t0 = clock()
        answer = all_flags(distinct_id, only_evaluate_locally=True, **kwargs)
        samples.append(clock() - t0)
        for key, value in (answer or {}).items():
            all_values[f"{key}\t{distinct_id}"] = _enc(value)
    out["all_flags"] = _summary(samples, overhead, len(samples))
    out["all_flags_digest"] = digest_of(all_values)
    # What get_all_flags should give: the per-flag answers minus the unknown ones.
    known = {k: v for k, v in values.items() if v != "null"}
    out["all_flags_digest_expected"] = digest_of(known)

    sdk.flush(FLUSH_TIMEOUT)
    sdk.shutdown()
    out["log_records"] = sdk.log.count
    out["log_first"] = sdk.log.first
    return out


def profile(args: argparse.Namespace) -> None:
    """cProfile productos' three paths against the loopback server, print the hot spots."""
    import cProfile
    import pstats

    server = _start_server()
    try:
        sdk = Sdk("productos", server.url, "phc_bench_profile", server.personal_api_key)
        overhead = _clock_overhead()
        users = _users("user", min(args.users, 1000))
        far = time.perf_counter() + PHASE_BUDGET
        _timed_flag_calls(sdk, _users("warm", 50), False, overhead, None, far)
        runs: List[Tuple[str, Callable[[], Any]]] = [
            ("get_feature_flag, no events",
             lambda: _timed_flag_calls(sdk, users, False, overhead, None, far)),
            ("get_feature_flag, with events",
             lambda: _timed_flag_calls(sdk, _users("pev", 300), True, overhead, None, far)),
            ("get_all_flags",
             lambda: [sdk.get_all_flags(d, only_evaluate_locally=True, **kw)
                      for d, kw in users]),
        ]
        for title, fn in runs:
            prof = cProfile.Profile()
            prof.enable()
            fn()
            prof.disable()
            print(f"\n### productos: {title}\n")
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
            sdk.flush(FLUSH_TIMEOUT)
        sdk.shutdown()
    finally:
        server.stop()


# --------------------------------------------------------------------------------------
# Orchestrator side.
# --------------------------------------------------------------------------------------


def _start_server() -> Any:
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tests.server import LoopbackServer

    server = LoopbackServer().start()
    server.set_definitions(make_definitions())
    return server


def run_worker(sdk: str, server: Any, args: argparse.Namespace,
               with_values: bool) -> Dict[str, Any]:
    api_key = f"phc_bench_flags_{sdk}"
    server.clear()
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tmp:
        path = tmp.name
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", sdk,
           "--host", server.url, "--api-key", api_key,
           "--personal-api-key", server.personal_api_key, "--out", path,
           "--users", str(args.users), "--warmup-users", str(args.warmup_users),
           "--event-users", str(args.event_users)]
    if with_values:
        cmd.append("--with-values")
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=WORKER_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{sdk} worker failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(path, encoding="utf-8") as fh:
            result = json.load(fh)
    finally:
        os.unlink(path)
    events = [e for e in server.events if e.get("event") == "$feature_flag_called"]
    result["events_received"] = len(events)
    result["events_received_distinct"] = len({
        (e.get("distinct_id"), (e.get("properties") or {}).get("$feature_flag"))
        for e in events})
    result["remote_flag_requests"] = len(server.requests_for("/flags/"))
    server.clear()
    return result


def _metrics(run: Dict[str, Any]) -> Dict[str, float]:
    return {"plain_evals_per_s": run["plain"]["per_s"], "plain_p50_us": run["plain"]["p50_us"],
            "plain_p99_us": run["plain"]["p99_us"],
            "events_evals_per_s": run["events"]["per_s"],
            "events_p50_us": run["events"]["p50_us"], "events_p99_us": run["events"]["p99_us"],
            "all_users_per_s": run["all_flags"]["per_s"],
            "all_p50_us": run["all_flags"]["p50_us"]}


def _fmt(value: Optional[float]) -> str:
    if value is None or value != value:
        return "—"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _diffs(a: Dict[str, str], b: Dict[str, str], limit: int) -> List[Dict[str, Any]]:
    """The first differing (flag, user) cases, with the user's inputs."""
    out = []
    for case in sorted(set(a) | set(b), key=lambda k: (k.split("\t")[1], k)):
        if a.get(case) != b.get(case):
            key, distinct_id = case.split("\t")
            prefix, _, idx = distinct_id.rpartition("-")
            _, kwargs = make_user(prefix, int(idx))
            out.append({"flag": key, "distinct_id": distinct_id, "productos": a.get(case),
                        "posthog": b.get(case), **kwargs})
            if len(out) >= limit:
                break
    return out


def _subprocess_json(cmd: List[str]) -> Dict[str, Any]:
    """Run this script as a worker with ``cmd`` arguments; return the JSON it wrote."""
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as tmp:
        path = tmp.name
    try:
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), *cmd, "--out", path],
                              cwd=ROOT, capture_output=True, text=True,
                              timeout=WORKER_TIMEOUT, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"worker {cmd[:2]} failed ({proc.returncode}):\n"
                             f"{proc.stderr[-3000:]}")
        with open(path, encoding="utf-8") as fh:
            result: Dict[str, Any] = json.load(fh)
    finally:
        os.unlink(path)
    return result


def _definitions_server(definitions: Dict[str, Any]) -> Any:
    server = _start_server()
    server.set_definitions(definitions)
    # The test server encodes its definitions again for every request (15 ms for the 2,000
    # flags); a real one sends bytes it has stored, so the fetch is timed against those.
    payload = server._definitions_payload()
    server._definitions_payload = lambda: payload
    return server


def run_scale(sdks: List[str], args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
    """The scale cases for each SDK: medians of fresh-process loads, and one scale worker."""
    list_server = _definitions_server(flag_scale.make_big_list_definitions())
    scale_server = _definitions_server(flag_scale.make_scale_definitions())
    out: Dict[str, Dict[str, Any]] = {s: {"loads": []} for s in sdks}
    try:
        common = ["--api-key", "phc_bench_scale", "--personal-api-key",
                  scale_server.personal_api_key]
        for rep in range(args.load_repeat):
            for sdk in sdks:
                print(f"scale load {rep + 1}/{args.load_repeat}: {sdk} ...", flush=True)
                out[sdk]["loads"].append(_subprocess_json(
                    ["--worker-load", sdk, "--host", scale_server.url, *common]))
        for sdk in sdks:
            print(f"scale: {sdk} ...", flush=True)
            out[sdk].update(_subprocess_json(
                ["--worker-scale", sdk, "--host", scale_server.url, "--list-host",
                 list_server.url, "--scale-users", str(args.scale_users), "--list-users",
                 str(args.list_users), *common]))
            out[sdk]["load_ms"] = statistics.median(r["load_ms"] for r in out[sdk]["loads"])
    finally:
        list_server.stop()
        scale_server.stop()
    return out


def _scale_lines(scale: Dict[str, Dict[str, Any]], sdks: List[str]) -> List[str]:
    lines = []
    both = len(sdks) == 2
    for key, label, unit, target in flag_scale.SCALE_ROWS:
        p = scale["productos"][key]
        q = scale["posthog"][key] if both else None
        ratio = p / q if q else None
        met = None if target is None or ratio is None else ratio <= target
        tgt = "—" if target is None else f"≤ {target:g}{TIMES}"
        shown = "—" if ratio is None else (f"{ratio:.4f}{TIMES}" if ratio < 0.01
                                          else f"{ratio:.2f}{TIMES}")
        lines.append(f"| {label} ({unit}) | {_fmt(p)} | {_fmt(q)} | {shown} | {tgt} | "
                     f"{'—' if met is None else ('yes' if met else '**no**')} |")
    if both:
        same = scale["productos"]["digest"] == scale["posthog"]["digest"]
        lines.append(f"| digest of the scale answers | `{scale['productos']['digest'][:12]}` "
                     f"| `{scale['posthog']['digest'][:12]}` "
                     f"| {'identical' if same else '**differ**'} | identical "
                     f"| {'yes' if same else '**no**'} |")
    return lines


def orchestrate(args: argparse.Namespace) -> int:
    sdks = [s for s in SDKS if args.sdk in (None, s)]
    if "posthog" in sdks and importlib.util.find_spec("posthog") is None:
        print("posthog is not installed (pip install posthog): measuring productos alone")
        sdks = ["productos"]
    server = _start_server()
    runs: Dict[str, List[Dict[str, Any]]] = {s: [] for s in sdks}
    started = time.time()
    try:
        for rep in range(args.repeat):
            for sdk in sdks:
                print(f"run {rep + 1}/{args.repeat}: {sdk} ...", flush=True)
                runs[sdk].append(run_worker(sdk, server, args, with_values=(rep == 0)))
    finally:
        server.stop()

    medians = {s: {k: statistics.median(_metrics(r)[k] for r in runs[s]) for k, *_ in ROWS}
               for s in sdks}
    both = len(sdks) == 2
    first = {s: runs[s][0] for s in sdks}
    digests = {s: first[s]["digest"] for s in sdks}
    stable = {s: len({r["digest"] for r in runs[s]}) == 1 for s in sdks}
    match = both and digests["productos"] == digests["posthog"]
    diffs = _diffs(first["productos"]["values"], first["posthog"]["values"], args.show_diffs) \
        if both and not match else []
    all_ok = {s: all(r["all_flags_digest"] == r["all_flags_digest_expected"] for r in runs[s])
              for s in sdks}

    # ---- table
    cases = args.users * len(FLAG_KEYS)
    header = "| metric | productos | posthog | ratio (productos / posthog) | target | met |"
    lines = [header, "| --- | ---: | ---: | ---: | --- | --- |"]
    results_rows = []
    for key, label, unit, better, target in ROWS:
        p = medians["productos"][key]
        q = medians["posthog"][key] if both else None
        ratio = p / q if q else None
        met = None
        if target is not None and ratio is not None:
            met = ratio >= target if better == "higher" else ratio <= target
        tgt = "—" if target is None else (f"≥ {target:g}{TIMES}" if better == "higher"
                                         else f"≤ {target:g}{TIMES}")
        shown = "—" if ratio is None else f"{ratio:.2f}{TIMES}"
        lines.append(f"| {label} ({unit}) | {_fmt(p)} | {_fmt(q)} | {shown} | {tgt} | "
                     f"{'—' if met is None else ('yes' if met else '**no**')} |")
        results_rows.append({"metric": key, "label": label, "unit": unit, "better": better,
                             "productos": p, "posthog": q, "ratio": ratio, "target": target,
                             "met": met})
    lines.append(f"| digest, {args.users:,} users {TIMES} {len(FLAG_KEYS)} flags "
                 f"| `{digests['productos'][:12]}` "
                 f"| {'`' + digests['posthog'][:12] + '`' if both else '—'} "
                 f"| {'identical' if match else ('—' if not both else '**differ**')} "
                 f"| identical | {'—' if not both else ('yes' if match else '**no**')} |")
    scale: Dict[str, Dict[str, Any]] = {}
    if args.scale:
        scale = run_scale(sdks, args)
        lines += _scale_lines(scale, sdks)
    table = "\n".join(lines)

    print()
    print(f"## Feature flags: productos {first['productos']['version']}"
          + (f" vs posthog {first['posthog']['version']}" if both else "")
          + f" — median of {args.repeat} run(s), {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs")
    print()
    print(table)
    print()
    for s in sdks:
        r = first[s]
        print(f"- {s}: {r['inconclusive']:,} of {cases:,} answers unknown (None: missing "
              f"properties, local only); $feature_flag_called received by the server: "
              f"{statistics.median(x['events_received'] for x in runs[s]):,.0f} per run for "
              f"{r['events']['calls']:,} calls; remote /flags requests: "
              f"{sum(x['remote_flag_requests'] for x in runs[s])}; SDK log records: "
              f"{sum(x['log_records'] for x in runs[s])}; get_all_flags agrees with "
              f"get_feature_flag: {'yes' if all_ok[s] else 'NO'}; digest stable across runs: "
              f"{'yes' if stable[s] else 'NO'}"
              + (f"; truncated phases: {r['truncated']}" if r["truncated"] else ""))
        if r["log_first"]:
            print(f"  first log records: {r['log_first']}")
    if both:
        print(f"- digest productos {digests['productos']}\n- digest posthog   "
              f"{digests['posthog']}\n- digests match: {'YES' if match else 'NO'}")
    if diffs:
        print(f"\nFirst {len(diffs)} differing cases (a correctness bug in one SDK):")
        for d in diffs:
            print("  " + json.dumps(d, sort_keys=True))

    # ---- JSON
    for s in sdks:
        for r in runs[s]:
            r.pop("values", None)
    doc = {
        "benchmark": "flags",
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "machine": {"python": platform.python_version(),
                    "implementation": platform.python_implementation(),
                    "platform": platform.platform(), "cpus": os.cpu_count()},
        "versions": {s: first[s]["version"] for s in sdks},
        "config": {"users": args.users, "flags": len(FLAG_KEYS), "event_users": args.event_users,
                   "warmup_users": args.warmup_users, "repeat": args.repeat,
                   "flag_keys": FLAG_KEYS},
        "rows": results_rows,
        "digest": {"productos": digests["productos"],
                   "posthog": digests.get("posthog"), "match": match if both else None,
                   "stable_across_runs": stable, "get_all_flags_consistent": all_ok,
                   "first_differences": diffs},
        "table_markdown": table,
        "scale": scale,
        "runs": runs,
    }
    out = args.json
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=2, sort_keys=False)
        fh.write("\n")
    print(f"\nwrote {os.path.relpath(out, ROOT)}")
    scale_match = not scale or not both or \
        scale["productos"]["digest"] == scale["posthog"]["digest"]
    return 0 if (not both or (match and scale_match)) else 1


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run each")
    parser.add_argument("--sdk", choices=SDKS, help="measure one SDK only")
    parser.add_argument("--repeat", type=int, default=3, help="runs per SDK (median reported)")
    parser.add_argument("--users", type=int, default=2000, help="digest users (x 20 flags)")
    parser.add_argument("--event-users", type=int, default=2000,
                        help="fresh users for the events pass (x 20 flags)")
    parser.add_argument("--warmup-users", type=int, default=100)
    parser.add_argument("--show-diffs", type=int, default=20,
                        help="differing cases to print when the digests differ")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile productos' flag paths and print the hot spots")
    parser.add_argument("--no-scale", dest="scale", action="store_false",
                        help="skip the scale cases (long list, 2,000 flags)")
    parser.add_argument("--load-repeat", type=int, default=5,
                        help="fresh-process loads of the 2,000 flags per SDK (median)")
    parser.add_argument("--scale-users", type=int, default=40,
                        help="users for get_all_flags over the 2,000 flags")
    parser.add_argument("--list-users", type=int, default=100,
                        help="users for the 10,000-value lists (x 2 flags)")
    # worker-only
    parser.add_argument("--worker", choices=SDKS, help=argparse.SUPPRESS)
    parser.add_argument("--host", help=argparse.SUPPRESS)
    parser.add_argument("--api-key", help=argparse.SUPPRESS)
    parser.add_argument("--personal-api-key", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--with-values", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker-load", choices=SDKS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-scale", choices=SDKS, help=argparse.SUPPRESS)
    parser.add_argument("--list-host", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.users, args.event_users, args.warmup_users = 1, 200, 200, 20
        args.load_repeat, args.scale_users, args.list_users = 1, 5, 10
    args.repeat = max(1, min(args.repeat, 20))
    if args.worker_load or args.worker_scale:
        if args.worker_load:
            result = flag_scale.work_load(args.worker_load, args.host, args.api_key,
                                          args.personal_api_key)
        else:
            quiet_logger(args.worker_scale)
            values: Dict[str, str] = {}
            result = flag_scale.work_scale(
                args.worker_scale, args.list_host, args.host, args.api_key,
                args.personal_api_key, args.list_users, args.scale_users, values, _enc)
            result["digest"] = digest_of(values)
            result["answers"] = len(values)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        return 0
    if args.worker:
        args.sdk = args.worker
        result = work(args)
        with open(args.out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
        return 0
    if args.profile:
        profile(args)
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
