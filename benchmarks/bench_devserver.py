"""Dev server workbench benchmark: ingest rate through /batch/, funnel and trend query times.

Usage (from the repository root)::

    python benchmarks/bench_devserver.py            # 100k and 1M stored events (a few minutes)
    python benchmarks/bench_devserver.py --quick    # 20k and 100k, a smoke test

1. ``ingest``: the dev server runs in its own process (``python -m productos.devserver``);
   this process POSTs ready-made ``/batch/`` bodies of 1,000 events (gzip, as the SDK sends
   them) from 2 threads and times from the first request to the last answer. Events look like
   a Python SDK's: ~15 properties, time-ordered (v7) uuids, 5,000 distinct ids, aliases and
   $identify among them.
2. ``funnel`` / ``trend``: a database of N events (written with the store's own ingest, the
   same code path as /batch/) is served by a fresh dev server process, and this process times
   ``GET /api/funnel?steps=visit,signup,purchase&window=86400`` (3 steps, 1 day) and
   ``GET /api/trends?event=visit&interval=day`` end to end over HTTP: best and median of
   REPEAT runs after one warm-up.

Targets (issue 16): ingest >= 20,000 events/s; a 3-step funnel over 1,000,000 events < 2 s.
Prints a markdown table and writes the numbers to benchmarks/results/devserver.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from productos.devserver import EventStore  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "devserver.json"
BATCH = 1000
REPEAT = 5
START = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
NAMES = ["$pageview"] * 5 + ["visit"] * 3 + ["click"] * 3 + ["signup", "purchase", "search",
                                                              "$feature_flag_called"]


def uuid7(rng: random.Random, ms: int) -> str:
    """A version-7 uuid (time-ordered), as productos and PostHog's SDKs send."""
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) \
        | rng.getrandbits(62)
    return str(uuid.UUID(int=value))


def make_events(count: int, persons: int, seed: int = 7) -> Iterator[Dict[str, Any]]:
    """Events as the SDK sends them, spread over 30 days; ~1 in 50 persons aliases."""
    rng = random.Random(seed)
    sent_ms = int(time.time() * 1000) - count  # capture order: one millisecond apart
    for index in range(count):
        who = rng.randrange(persons)
        name = rng.choice(NAMES)
        moment = START + _dt.timedelta(seconds=rng.randrange(30 * 86400))
        properties: Dict[str, Any] = {
            "$lib": "productos", "$lib_version": "1.0.0", "$current_url":
            f"https://example.com/p/{rng.randrange(50)}", "$session_id": f"s-{who}-{index // 50}",
            "source": rng.choice(["ads", "organic", "email"]), "plan": rng.choice(["free", "pro"]),
            "amount": rng.randrange(100), "$geoip_disable": True, "path": "/checkout",
            "referrer": "https://search.example/", "browser": "Firefox", "os": "Linux",
            "screen": "1920x1080", "locale": "en-GB",
        }
        distinct_id = f"user-{who}"
        if who % 50 == 0 and rng.random() < 0.05:
            name = "$create_alias"
            properties["alias"] = f"anon-{who}"
        elif who % 50 == 1 and rng.random() < 0.05:
            name = "$identify"
            properties["$anon_distinct_id"] = f"anon-{who}"
        yield {"event": name, "distinct_id": distinct_id, "uuid": uuid7(rng, sent_ms + index),
               "timestamp": moment.isoformat(), "properties": properties}


def start_server(db: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "productos", "--json", "devserver", "--port",
                             "0", "--db", db], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, cwd=str(REPO))
    assert proc.stdout is not None
    url = json.loads(proc.stdout.readline())["url"]
    return proc, url


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def bench_ingest(count: int) -> Dict[str, Any]:
    bodies: List[bytes] = []
    events = list(make_events(count, 5000, seed=1))
    for i in range(0, count, BATCH):
        body = json.dumps({"api_key": "phc_bench", "batch": events[i:i + BATCH]}).encode()
        bodies.append(gzip.compress(body, 6))
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(os.path.join(tmp, "ingest.db"))
        try:
            work = list(bodies)
            lock = threading.Lock()
            failures: List[str] = []

            def sender() -> None:
                session = requests.Session()
                while True:
                    with lock:
                        if not work:
                            return
                        body = work.pop()
                    answer = session.post(url + "/batch/", data=body, timeout=120, headers={
                        "Content-Type": "application/json", "Content-Encoding": "gzip"})
                    if answer.status_code != 200:
                        failures.append(answer.text[:200])

            threads = [threading.Thread(target=sender) for _ in range(2)]
            began = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - began
            stored = requests.get(url + "/api/stats", timeout=60).json()["events"]
        finally:
            stop_server(proc)
    return {"events": count, "seconds": round(elapsed, 3), "stored": stored,
            "events_per_second": round(count / elapsed), "failures": len(failures)}


def build_db(path: str, count: int) -> float:
    store = EventStore(path)
    began = time.perf_counter()
    try:
        chunk: List[Dict[str, Any]] = []
        for event in make_events(count, max(1000, count // 20)):
            event = dict(event)
            event["properties"] = dict(event["properties"])
            chunk.append(event)
            if len(chunk) == 5000:
                store.ingest(chunk)
                chunk = []
        if chunk:
            store.ingest(chunk)
    finally:
        store.close()
    return time.perf_counter() - began


def timed(url: str, params: Dict[str, Any]) -> tuple[List[float], Dict[str, Any]]:
    session = requests.Session()
    answer = session.get(url, params=params, timeout=600).json()  # warm-up
    times = []
    for _ in range(REPEAT):
        began = time.perf_counter()
        response = session.get(url, params=params, timeout=600)
        times.append(time.perf_counter() - began)
        assert response.status_code == 200, response.text
    return times, answer


def bench_queries(count: int) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "query.db")
        load = build_db(db, count)
        proc, url = start_server(db)
        try:
            funnel_times, funnel = timed(url + "/api/funnel", {
                "steps": "visit,signup,purchase", "window": 86400})
            trend_times, trend = timed(url + "/api/trends", {"event": "visit",
                                                             "interval": "day"})
        finally:
            stop_server(proc)
    return {
        "events": count, "load_seconds": round(load, 1),
        "load_events_per_second": round(count / load),
        "funnel_best_s": round(min(funnel_times), 3),
        "funnel_median_s": round(statistics.median(funnel_times), 3),
        "funnel_counts": [s["count"] for s in funnel["steps"]],
        "trend_best_s": round(min(trend_times), 3),
        "trend_median_s": round(statistics.median(trend_times), 3),
        "trend_buckets": len(trend["series"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes = [20_000, 100_000] if args.quick else [100_000, 1_000_000]
    ingest = bench_ingest(50_000 if args.quick else 100_000)
    queries = [bench_queries(size) for size in sizes]
    results = {"when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
               "python": platform.python_version(), "cpus": os.cpu_count(),
               "ingest": ingest, "queries": queries}
    print(f"ingest through /batch/: {ingest['events_per_second']:,} events/s "
          f"({ingest['events']:,} events in {ingest['seconds']} s, {ingest['failures']} failed)")
    print()
    print("| stored events | 3-step funnel (best / median) | trend per day (best / median) |"
          " load (store.ingest) |")
    print("|---:|---:|---:|---:|")
    for row in queries:
        print(f"| {row['events']:,} | {row['funnel_best_s']} s / {row['funnel_median_s']} s |"
              f" {row['trend_best_s']} s / {row['trend_median_s']} s |"
              f" {row['load_events_per_second']:,} events/s |")
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
