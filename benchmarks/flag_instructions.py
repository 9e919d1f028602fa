"""Instruction counts of the flag hot paths, productos against posthog (for callgrind).

Usage (from the repository root)::

    python benchmarks/flag_instructions.py --compare          # both SDKs, N and 2N calls each
    python benchmarks/flag_instructions.py SDK CASE N P       # one run (what callgrind runs)
    python benchmarks/flag_instructions.py --timing           # best-of-many wall-clock ratios

A loaded, shared machine makes wall-clock ratios noisy; the number of instructions a call
executes is not. ``--compare`` runs every (SDK, case) under ``valgrind --tool=callgrind``
twice: both runs build two passes of N calls (different users), one runs the first pass, the
other both; (I(2) - I(1)) / N is the instructions of one call, with start-up, definition
loading and building the users cancelled out. Both SDKs evaluate the same 20
definitions of bench_flags.py for the same users, locally, with nothing sent
(``send=False``), so only evaluation, arguments and (for ``events``) building the
``$feature_flag_called`` event are counted.

Cases: ``plain`` (get_feature_flag, no events), ``events`` (get_feature_flag, every call a
new event), ``all`` (get_all_flags over the 20 flags; counted per user).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _logs import quiet_logger  # noqa: E402
from bench_flags import FLAG_KEYS, make_definitions, make_user  # noqa: E402

CASES = ("plain", "events", "all")
SDKS = ("productos", "posthog")


def client_for(sdk: str) -> Any:
    """A client of sdk with the 20 definitions loaded in memory (no HTTP, nothing sent)."""
    definitions = make_definitions()
    if sdk == "productos":
        import productos

        quiet_logger("productos")
        return productos.Client("phc_instr", flag_definitions=definitions, send=False)
    import warnings

    from posthog import Posthog

    warnings.simplefilter("ignore", DeprecationWarning)
    quiet_logger("posthog")
    client = Posthog("phc_instr", personal_api_key="phx_instr", send=False,
                     host="http://127.0.0.1:9")
    client.group_type_mapping = definitions["group_type_mapping"]
    client.cohorts = definitions["cohorts"]
    client.feature_flags = definitions["flags"]
    return client


def workload(sdk: str, case: str, count: int, client: Any = None,
             prefix: str = "") -> Callable[[], None]:
    """A function doing count calls of case (users are built beforehand)."""
    client = client or client_for(sdk)
    if case == "all":
        users = [make_user(prefix + "all", i) for i in range(count)]

        def run_all() -> None:
            get_all = client.get_all_flags
            for distinct_id, kwargs in users:
                get_all(distinct_id, only_evaluate_locally=True, **kwargs)
        return run_all
    events = case == "events"
    calls: List[Tuple[str, str, Dict[str, Any]]] = []
    n = 0
    while len(calls) < count:
        distinct_id, kwargs = make_user(prefix + ("ev" if events else "pl"), n)
        n += 1
        calls.extend((key, distinct_id, kwargs) for key in FLAG_KEYS)
    del calls[count:]

    def run_flags() -> None:
        get = client.get_feature_flag
        for key, distinct_id, kwargs in calls:
            get(key, distinct_id, only_evaluate_locally=True,
                send_feature_flag_events=events, **kwargs)
    return run_flags


def one_run(sdk: str, case: str, count: int, passes: int) -> None:
    """Build two passes of count calls (other users each), run the first ``passes``.

    Everything but the calls of the second pass is the same for passes=1 and passes=2, so
    the difference of the two counts is exactly one pass.
    """
    client = client_for(sdk)
    workload(sdk, case, 40, client, "warm")()  # first-call costs (imports, caches)
    runs = [workload(sdk, case, count, client, f"p{n}-") for n in range(2)]
    for run in runs[:passes]:
        run()
    os._exit(0)  # no shutdown work in the counts (both SDKs queue nothing: send=False)


def _instructions(sdk: str, case: str, count: int, passes: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, os.path.abspath(__file__), sdk, case, str(count), str(passes)],
            capture_output=True, text=True, check=False,
            # String hashing is randomised per process, which moves dict-heavy counts by a few
            # per cent between runs: a fixed seed makes the counts repeatable.
            env=dict(os.environ, PYTHONHASHSEED="0"))
        match = re.search(r"Collected\s*:\s*(\d+)", proc.stderr)
        if proc.returncode != 0 or match is None:
            raise SystemExit(f"callgrind failed for {sdk} {case}:\n{proc.stderr[-2000:]}")
        return int(match.group(1))


def compare(count: int, sdks: Tuple[str, ...] = SDKS) -> None:
    rows = []
    for case in CASES:
        n = max(1, count // 20) if case == "all" else count
        per: Dict[str, float] = {"productos": float("nan"), "posthog": float("nan")}
        for sdk in sdks:
            low = _instructions(sdk, case, n, 1)
            high = _instructions(sdk, case, n, 2)
            per[sdk] = (high - low) / n
        rows.append((case, per["productos"], per["posthog"]))
    print("| case | productos instr/call | posthog instr/call | posthog / productos |")
    print("| --- | ---: | ---: | ---: |")
    for case, mine, theirs in rows:
        print(f"| {case} | {mine:,.0f} | {theirs:,.0f} | {theirs / mine:.2f}x |")


def timing(count: int, rounds: int) -> None:
    """Best-of-rounds wall clock per call, both SDKs in this process, interleaved."""
    runs = {(sdk, case): workload(sdk, case, count if case != "all" else count // 20)
            for sdk in SDKS for case in CASES}
    for run in runs.values():
        run()  # warm-up (events: later rounds meet the dedupe caches of both SDKs)
    best: Dict[Tuple[str, str], float] = {}
    for _ in range(rounds):
        for key, run in runs.items():
            t0 = time.perf_counter()
            run()
            elapsed = time.perf_counter() - t0
            best[key] = min(best.get(key, float("inf")), elapsed)
    print("| case | productos µs/call | posthog µs/call | speed-up (posthog / productos) |")
    print("| --- | ---: | ---: | ---: |")
    for case in CASES:
        n = count if case != "all" else count // 20
        mine = best[("productos", case)] / n * 1e6
        theirs = best[("posthog", case)] / n * 1e6
        print(f"| {case} | {mine:.2f} | {theirs:.2f} | {theirs / mine:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", nargs="*", help="SDK CASE N PASSES: one run (for callgrind)")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--sdk", choices=SDKS, help="--compare: count one SDK only")
    parser.add_argument("--timing", action="store_true")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    if args.compare:
        compare(args.count, (args.sdk,) if args.sdk else SDKS)
    elif args.timing:
        timing(args.count, args.rounds)
    elif len(args.run) == 4:
        one_run(args.run[0], args.run[1], int(args.run[2]), int(args.run[3]))
    else:
        parser.error("give --compare, --timing, or SDK CASE N PASSES")


if __name__ == "__main__":
    main()
