"""asyncio benchmark: productos' AsyncClient against posthog's AsyncPosthog, where both can.

Usage (from the repository root)::

    pip install -e . posthog httpx     # httpx: posthog's async client needs it
    python benchmarks/bench_async.py [--quick]

A loopback server (tests/server.py, 127.0.0.1) answers ``/flags`` after 1 s. Measured:

1. event-loop lag while N=8 remote flag reads are in flight: a 5 ms ticker task records how
   late each wake-up is (p50/p99/max ms); productos ``await get_feature_flag`` (local data
   cannot decide, so it asks the server), posthog ``await evaluate_flags`` (remote only);
2. wall time of N concurrent remote reads, N = 8 and 32 (one round trip = 1 s);
3. ``await get_feature_flag`` answered locally vs the sync ``Client.get_feature_flag``:
   ns per call, best of many alternating rounds, and instructions per call under callgrind
   when valgrind is installed (posthog's async client has no local evaluation);
4. ``capture()`` inside a running loop: ns per call, productos vs posthog's async client;
5. ``await evaluate_flags`` against a /flags server answering at once (no definitions, so
   remote): productos vs posthog's ``AsyncPosthog.evaluate_flags``, when productos' AsyncClient
   has evaluate_flags (else the row says so);
6. ``await evaluate_flags`` answered locally, definitions loaded from the loopback server
   (tests/data/sample_definitions.json less its static-cohort flag, so all 5 flags decide
   locally; person and group properties given): ns per call, best of alternating rounds,
   productos ``await AsyncClient.evaluate_flags`` against its sync ``Client.evaluate_flags``
   and against posthog's sync ``Posthog.evaluate_flags`` (posthog's async client has no
   local evaluation); /flags requests during the timed rounds are counted (should be 0).

Ratios are productos / posthog (or async / sync for 3 and 6). The machine is shared: absolute
numbers are noise, ratios and the lag bound are what count. Results go to
benchmarks/results/async.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from server import LoopbackServer  # noqa: E402

import productos  # noqa: E402

RESULTS = os.path.join(HERE, "results", "async.json")
ROUND_TRIP = 1.0
TICK = 0.005
DEFINITIONS = os.path.join(ROOT, "tests", "data", "sample_definitions.json")

try:
    from posthog.async_client import AsyncPosthog
except ImportError:  # posthog (with httpx) is for benchmarks only
    AsyncPosthog = None
try:
    from posthog import Posthog
except ImportError:
    Posthog = None


def flags_answer(delay: float) -> Callable[[Dict[str, Any]], Tuple[int, Dict[str, Any]]]:
    def answer(body: Dict[str, Any]) -> Tuple[int, Dict[str, Any]]:
        if delay:
            time.sleep(delay)
        return 200, {"flags": {"remote": {
            "key": "remote", "enabled": True, "variant": None,
            "reason": {"code": "condition_match"}, "metadata": {"id": 1, "version": 1}}},
            "errorsWhileComputingFlags": False, "requestId": "r"}
    return answer


async def with_ticker(work: Awaitable[Any]) -> Tuple[Any, List[float]]:
    lateness: List[float] = []
    stop = False

    async def tick() -> None:
        while not stop:
            due = time.perf_counter() + TICK
            await asyncio.sleep(TICK)
            lateness.append(time.perf_counter() - due)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(TICK * 2)
    try:
        result = await work
    finally:
        stop = True
        await ticker
    return result, lateness


def pct(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the SDKs' remote reads ----------------------------------------------------------------------


def productos_reader(url: str) -> Tuple[Callable[[str], Awaitable[Any]],
                                        Callable[[], Awaitable[Any]]]:
    client = productos.AsyncClient("phc_bench", host=url, flush_interval=60,
                                   feature_flags_request_timeout_seconds=10)

    async def read(user: str) -> Any:
        return await client.get_feature_flag("remote", user, send_feature_flag_events=False)
    return read, client.shutdown


def posthog_reader(url: str) -> Tuple[Callable[[str], Awaitable[Any]],
                                      Callable[[], Awaitable[Any]]]:
    assert AsyncPosthog is not None
    client = AsyncPosthog("phc_bench", host=url, flush_interval=60,
                          feature_flags_request_timeout_seconds=10)

    async def read(user: str) -> Any:
        evaluations = await client.evaluate_flags(user)
        return evaluations.get_flag("remote")
    return read, client.shutdown


def remote_reads(server: LoopbackServer, make: Callable[..., Any], n: int) -> Dict[str, Any]:
    server.flags_handler = flags_answer(ROUND_TRIP)

    async def main() -> Dict[str, Any]:
        read, close = make(server.url)
        try:
            started = time.perf_counter()
            values, lateness = await with_ticker(
                asyncio.gather(*(read(f"user-{i}") for i in range(n))))
            wall = time.perf_counter() - started
        finally:
            await close()
        ok = sum(1 for v in values if v is True)
        return {"n": n, "wall_s": round(wall, 3), "answered": ok,
                "lag_p50_ms": round(pct(lateness, 0.5) * 1000, 2),
                "lag_p99_ms": round(pct(lateness, 0.99) * 1000, 2),
                "lag_max_ms": round(max(lateness) * 1000, 2), "ticks": len(lateness)}
    return asyncio.run(main())


def idle_loop_lag() -> Dict[str, Any]:
    """The ticker's lateness with nothing else running: the floor the machine allows."""
    async def main() -> List[float]:
        return (await with_ticker(asyncio.sleep(ROUND_TRIP)))[1]
    lateness = asyncio.run(main())
    return {"lag_p50_ms": round(pct(lateness, 0.5) * 1000, 2),
            "lag_p99_ms": round(pct(lateness, 0.99) * 1000, 2),
            "lag_max_ms": round(max(lateness) * 1000, 2)}


# --- local overhead ------------------------------------------------------------------------------


def local_overhead(rounds: int, calls: int) -> Dict[str, Any]:
    with open(DEFINITIONS, encoding="utf-8") as handle:
        definitions = json.load(handle)
    client = productos.AsyncClient("phc_bench", flag_definitions=definitions, send=False)
    sync = client.sync
    users = [f"user-{i}" for i in range(calls)]

    def sync_round() -> float:
        get = sync.get_feature_flag
        started = time.perf_counter_ns()
        for user in users:
            get("simple", user, send_feature_flag_events=False)
        return (time.perf_counter_ns() - started) / calls

    async def async_round() -> float:
        get = client.get_feature_flag
        started = time.perf_counter_ns()
        for user in users:
            await get("simple", user, send_feature_flag_events=False)
        return (time.perf_counter_ns() - started) / calls

    async def main() -> Tuple[List[float], List[float]]:
        sync_ns: List[float] = []
        async_ns: List[float] = []
        for _ in range(rounds):  # alternating, inside the same running loop
            sync_ns.append(sync_round())
            async_ns.append(await async_round())
        return sync_ns, async_ns

    try:
        sync_ns, async_ns = asyncio.run(main())
    finally:
        sync.shutdown(1)
    best_sync, best_async = min(sync_ns), min(async_ns)
    return {"sync_ns": round(best_sync), "async_ns": round(best_async),
            "ratio": round(best_async / best_sync, 3),
            "answered_inline": getattr(client, "_pool", None) is None}


# Instruction counts (callgrind) are steadier than time on a shared machine: the per-call
# cost is the difference between a run of N_BIG and one of N_SMALL calls, over the difference.
_IR_SCRIPT = """
import asyncio, json, sys
sys.path.insert(0, {root!r})
import productos
client = productos.AsyncClient("phc_bench", flag_definitions=json.load(open({defs!r})),
                               send=False)
users = [f"user-{{i}}" for i in range(int(sys.argv[2]))]
async def main():
    get, sync_get = client.get_feature_flag, client.sync.get_feature_flag
    if sys.argv[1] == "async":
        for user in users:
            await get("simple", user, send_feature_flag_events=False)
    else:
        for user in users:
            sync_get("simple", user, send_feature_flag_events=False)
asyncio.run(main())
client.sync.shutdown(0)
"""
N_SMALL, N_BIG = 1000, 11000


def local_instructions() -> Optional[Dict[str, Any]]:
    import shutil
    import subprocess
    import tempfile

    if shutil.which("valgrind") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "ir.py")
        with open(script, "w", encoding="utf-8") as handle:
            handle.write(_IR_SCRIPT.format(root=ROOT, defs=DEFINITIONS))
        counts: Dict[Tuple[str, int], int] = {}
        for mode in ("sync", "async"):
            for n in (N_SMALL, N_BIG):
                out = os.path.join(tmp, f"cg.{mode}.{n}")
                run = subprocess.run(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                     sys.executable, script, mode, str(n)],
                    capture_output=True, text=True, timeout=600, check=True)
                line = next(x for x in run.stderr.splitlines() if "Collected" in x)
                counts[(mode, n)] = int(line.rsplit(":", 1)[1].strip())
    per = {mode: (counts[(mode, N_BIG)] - counts[(mode, N_SMALL)]) / (N_BIG - N_SMALL)
           for mode in ("sync", "async")}
    return {"sync_instructions": round(per["sync"]), "async_instructions": round(per["async"]),
            "ratio": round(per["async"] / per["sync"], 3)}


# --- capture in a running loop -----------------------------------------------------------------


def capture_cost(server: LoopbackServer, sdk: str, rounds: int, calls: int) -> Dict[str, Any]:
    async def main() -> List[float]:
        if sdk == "productos":
            client: Any = productos.AsyncClient("phc_bench", host=server.url,
                                                flush_interval=60, max_queue_size=10 ** 6)
        else:
            client = AsyncPosthog("phc_bench", host=server.url, flush_interval=60,
                                  max_queue_size=10 ** 6)
        props = {"plan": "pro", "n": 1, "ok": True, "path": "/x", "ms": 1.5}
        per_call: List[float] = []
        try:
            for _ in range(rounds):
                capture = client.capture
                started = time.perf_counter_ns()
                for _ in range(calls):
                    capture("bench", distinct_id="user-1", properties=props)
                per_call.append((time.perf_counter_ns() - started) / calls)
                await asyncio.sleep(0)  # let posthog's consumer tasks take their turn
        finally:
            if sdk == "productos":
                client.sync.shutdown(0)  # the cost of capture, not of delivery
            else:
                await client.shutdown()
        return per_call
    per_call = asyncio.run(main())
    return {"ns_best": round(min(per_call)), "ns_median": round(statistics.median(per_call))}


def evaluate_flags_cost(server: LoopbackServer, sdk: str, calls: int) -> Optional[Dict[str, Any]]:
    server.flags_handler = flags_answer(0.0)

    async def main() -> float:
        if sdk == "productos":
            client: Any = productos.AsyncClient("phc_bench", host=server.url, flush_interval=60)
            if not hasattr(client, "evaluate_flags"):
                client.sync.shutdown(0)
                return -1.0
        else:
            client = AsyncPosthog("phc_bench", host=server.url, flush_interval=60)
        try:
            started = time.perf_counter()
            for i in range(calls):
                await client.evaluate_flags(f"user-{i}")
            return (time.perf_counter() - started) / calls * 1e6
        finally:
            await client.shutdown()
    us = asyncio.run(main())
    return None if us < 0 else {"us_per_call": round(us, 1)}


# --- evaluate_flags answered locally -------------------------------------------------------------

LOCAL_CONTEXT: Dict[str, Any] = {"person_properties": {"plan": "pro"},
                                 "groups": {"company": "acme"}}


def local_definitions() -> Dict[str, Any]:
    """The sample definitions less the flag that needs the server (a static cohort)."""
    with open(DEFINITIONS, encoding="utf-8") as handle:
        definitions = json.load(handle)
    definitions["flags"] = [flag for flag in definitions["flags"]
                            if flag["key"] != "static-cohort"]
    return definitions


def _remote_flag_requests(server: LoopbackServer) -> int:
    return sum(1 for request in server.requests if request.path in ("/flags/", "/flags"))


def _posthog_sync(url: str, key: str) -> Any:
    assert Posthog is not None
    try:  # posthog 7.x: secret_key (personal_api_key is deprecated there)
        return Posthog("phc_bench", host=url, secret_key=key, flush_interval=60)
    except TypeError:
        return Posthog("phc_bench", host=url, personal_api_key=key, flush_interval=60)


def evaluate_flags_local(server: LoopbackServer, rounds: int, calls: int) -> Dict[str, Any]:
    server.flags_handler = flags_answer(0.0)
    server.set_definitions(local_definitions())
    users = [f"user-{i}" for i in range(calls)]

    def sync_round(evaluate: Callable[..., Any]) -> float:
        started = time.perf_counter_ns()
        for user in users:
            evaluate(user, **LOCAL_CONTEXT)
        return (time.perf_counter_ns() - started) / calls

    async def main() -> Dict[str, Any]:
        client = productos.AsyncClient("phc_bench", host=server.url, flush_interval=60,
                                       personal_api_key=server.personal_api_key)
        posthog = None if Posthog is None else _posthog_sync(server.url,
                                                              server.personal_api_key)
        try:
            loaded = await client.load_feature_flags()
            if posthog is not None:
                posthog.load_feature_flags()
            # The same values from both SDKs (reading a value queues $feature_flag_called).
            keys = [flag["key"] for flag in local_definitions()["flags"]]
            same: Optional[bool] = None if posthog is None else True
            for user in users[:200] if posthog is not None else ():
                ours = await client.evaluate_flags(user, **LOCAL_CONTEXT)
                theirs = posthog.evaluate_flags(user, **LOCAL_CONTEXT)
                if [ours.get_flag(k) for k in keys] != [theirs.get_flag(k) for k in keys]:
                    same = False
            evaluate = client.evaluate_flags

            async def async_round() -> float:
                started = time.perf_counter_ns()
                for user in users:
                    await evaluate(user, **LOCAL_CONTEXT)
                return (time.perf_counter_ns() - started) / calls

            before = _remote_flag_requests(server)
            async_ns: List[float] = []
            sync_ns: List[float] = []
            posthog_ns: List[float] = []
            for _ in range(rounds):  # alternating, inside the same running loop
                async_ns.append(await async_round())
                sync_ns.append(sync_round(client.sync.evaluate_flags))
                if posthog is not None:
                    posthog_ns.append(sync_round(posthog.evaluate_flags))
            remote = _remote_flag_requests(server) - before
        finally:
            await client.shutdown()
            if posthog is not None:
                posthog.shutdown()
        best_async, best_sync = min(async_ns), min(sync_ns)
        row: Dict[str, Any] = {
            "flags": len(keys), "loaded": loaded, "async_ns": round(best_async),
            "sync_ns": round(best_sync), "ratio_async_sync": round(best_async / best_sync, 3),
            "remote_requests": remote, "same_values_as_posthog": same,
            "posthog_method": None if posthog is None else "Posthog.evaluate_flags (sync)"}
        if posthog_ns:
            row["posthog_ns"] = round(min(posthog_ns))
            row["ratio_vs_posthog"] = round(best_async / min(posthog_ns), 3)
        return row
    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    logging.getLogger("productos").setLevel(logging.ERROR)
    logging.getLogger("posthog").setLevel(logging.ERROR)
    rounds, calls = (5, 2000) if args.quick else (15, 20000)
    results: Dict[str, Any] = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "posthog": AsyncPosthog is not None,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    server = LoopbackServer().start()
    try:
        sdks: List[Tuple[str, Callable[..., Any]]] = [("productos", productos_reader)]
        if AsyncPosthog is not None:
            sdks.append(("posthog", posthog_reader))
        results["idle_loop"] = idle_loop_lag()
        for n in (8, 32):
            for name, make in sdks:
                results[f"remote_{name}_{n}"] = remote_reads(server, make, n)
        results["local"] = local_overhead(rounds * 6, 1000)
        results["local_instructions"] = None if args.quick else local_instructions()
        for name, _ in sdks:
            results[f"capture_{name}"] = capture_cost(server, name, rounds, calls // 4)
            results[f"evaluate_flags_{name}"] = evaluate_flags_cost(server, name,
                                                                    50 if args.quick else 300)
        results["evaluate_flags_local"] = evaluate_flags_local(server, rounds * 2, 500)
    finally:
        server.stop()
    results["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
    print_table(results)
    print(f"\nload average (1/5/15 min) before {results['loadavg_before']}, "
          f"after {results['loadavg_after']}; {results['cpus']} cpus")


def print_table(r: Dict[str, Any]) -> None:
    def remote(name: str, n: int, key: str) -> str:
        row = r.get(f"remote_{name}_{n}")
        if row is None:
            return "n/a"
        if key == "wall_s" and row["answered"] != n:  # a failed read must not look fast
            return f"{row[key]} (answered {row['answered']}/{n})"
        return str(row[key])

    print("| metric | productos | posthog | target |")
    print("| --- | --- | --- | --- |")
    idle = r["idle_loop"]
    print(f"| idle loop (nothing running): lag p99 / max ms | {idle['lag_p99_ms']} / "
          f"{idle['lag_max_ms']} | | (the floor) |")
    for n in (8, 32):
        print(f"| {n} remote reads, 1 s server: wall s | {remote('productos', n, 'wall_s')} | "
              f"{remote('posthog', n, 'wall_s')} | ~1 |")
        print(f"| {n} remote reads: loop lag p99 ms | {remote('productos', n, 'lag_p99_ms')} | "
              f"{remote('posthog', n, 'lag_p99_ms')} | <= 5 |")
        print(f"| {n} remote reads: loop lag max ms | {remote('productos', n, 'lag_max_ms')} | "
              f"{remote('posthog', n, 'lag_max_ms')} | |")
    local = r["local"]
    print(f"| local `await get_feature_flag` / sync call, ns | {local['async_ns']} / "
          f"{local['sync_ns']} = {local['ratio']}x (inline: {local['answered_inline']}) | "
          f"(no local evaluation) | <= 1.2x |")
    ir = r.get("local_instructions")
    if ir:
        print(f"| local `await get_feature_flag` / sync call, instructions (callgrind) | "
              f"{ir['async_instructions']} / {ir['sync_instructions']} = {ir['ratio']}x | "
              f"(no local evaluation) | <= 1.2x |")
    cap_p, cap_h = r.get("capture_productos"), r.get("capture_posthog")
    ratio = "" if not cap_h else f" ({cap_p['ns_best'] / cap_h['ns_best']:.2f}x)"
    print(f"| `capture()` in a running loop, ns (best) | {cap_p['ns_best']}{ratio} | "
          f"{cap_h['ns_best'] if cap_h else 'n/a'} | lower |")
    ev_p, ev_h = r.get("evaluate_flags_productos"), r.get("evaluate_flags_posthog")
    print(f"| `await evaluate_flags`, µs per call (instant server, remote; posthog: "
          f"`AsyncPosthog.evaluate_flags`) | "
          f"{ev_p['us_per_call'] if ev_p else 'not in productos yet'} | "
          f"{ev_h['us_per_call'] if ev_h else 'n/a'} | lower |")
    ev_l = r["evaluate_flags_local"]
    print(f"| local `await evaluate_flags` / sync `Client.evaluate_flags` ({ev_l['flags']} flags), "
          f"ns | {ev_l['async_ns']} / {ev_l['sync_ns']} = {ev_l['ratio_async_sync']}x "
          f"(/flags requests: {ev_l['remote_requests']}) | (no local evaluation) | lower |")
    vs = (f" ({ev_l['ratio_vs_posthog']:.2f}x)" if "posthog_ns" in ev_l else "")
    print(f"| local `await evaluate_flags`, ns; posthog: sync `Posthog.evaluate_flags` "
          f"(same values: {ev_l['same_values_as_posthog']}) | {ev_l['async_ns']}{vs} | "
          f"{ev_l.get('posthog_ns', 'n/a')} | lower |")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
