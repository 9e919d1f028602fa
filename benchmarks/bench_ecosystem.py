"""What the ecosystem layers cost on a flag read: OpenFeature, and hooks with OpenTelemetry.

Usage (from the repository root)::

    pip install -e '.[openfeature,opentelemetry]' opentelemetry-sdk
    python benchmarks/bench_ecosystem.py            # about half a minute
    python benchmarks/bench_ecosystem.py --quick    # smaller counts, for a smoke test
    python benchmarks/bench_ecosystem.py --instructions  # callgrind instruction counts

Each case reads the same locally evaluated flags (offline definitions, 20 users x 5 flags,
``$feature_flag_called`` events on and already deduplicated, as in a warm server process):

1. ``direct``: ``client.get_feature_flag(key, user, person_properties=...)``;
2. ``openfeature``: ``of_client.get_boolean_value(key, False, context)`` through the real
   OpenFeature SDK client and ``ProductosProvider`` (target: <= 1.5x direct);
3. ``direct_in_span``: the direct read inside an active, recording OpenTelemetry span (one
   span per 100 reads, opentelemetry-sdk's TracerProvider, nothing exported);
4. ``otel_hook_in_span``: the same, on a client with ``hooks=[OpenTelemetryHook()]``, which
   adds a ``feature_flag.evaluation`` event per read (target: <= 2x direct);
5. the shares: ``provider_only`` (``ProductosProvider.resolve_boolean_details`` called without
   the OpenFeature client) and ``noop_hook_in_span`` (a hook that does nothing: the cost of
   the hook machinery itself).

Every case is timed as the best of several repetitions (the machine is shared: the minimum is
the least disturbed), or, with ``--instructions``, counted in instructions per read under
valgrind's callgrind (two runs, N and 2N passes; the difference cancels start-up and set-up).
Results are printed as markdown and written to benchmarks/results/ecosystem.json; the ratios
are what count.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
DEFAULT_JSON = os.path.join(HERE, "results", "ecosystem.json")

import productos  # noqa: E402
from productos.testing import FlagDefinitionsBuilder, person_condition  # noqa: E402

FLAGS = ("everyone", "half", "pros", "pricing", "off")
USERS = [f"user-{i}" for i in range(20)]
PROPERTIES = {"plan": "pro", "email": "ada@example.com"}
SPAN_READS = 100  # reads per span in the span cases
TARGETS = {"openfeature": 1.5, "otel_hook_in_span": 2.0}


def definitions() -> Dict[str, Any]:
    return (FlagDefinitionsBuilder()
            .flag("everyone")
            .flag("half", rollout=50)
            .flag("pros", conditions=[person_condition("plan", "pro")])
            .flag("pricing", variants={"control": 50, "test": 50})
            .flag("off", active=False)
            .build())


def make_client(**kwargs: Any) -> productos.Client:
    return productos.Client("phc_bench", flag_definitions=definitions(), send=False, **kwargs)


def reads() -> List[tuple]:
    return [(key, user) for user in USERS for key in FLAGS]


def best_of(run: Callable[[], None], count: int, repeat: int) -> float:
    """Best time per read, in microseconds, of `repeat` runs of `run` (which does `count`)."""
    run()  # warm: caches, the event deduplicator, the SDK's registries
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


def case_direct(loops: int) -> Callable[[], None]:
    client = make_client()
    work = reads() * loops

    def run() -> None:
        get = client.get_feature_flag
        for key, user in work:
            get(key, user, person_properties=PROPERTIES)
    return run


def case_openfeature(loops: int) -> Callable[[], None]:
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext

    from productos.openfeature import ProductosProvider

    api.set_provider_and_wait(ProductosProvider(make_client()), "bench")
    of_client = api.get_client("bench")
    contexts = {user: EvaluationContext(user, dict(PROPERTIES)) for user in USERS}
    work = [(key, contexts[user]) for key, user in reads()] * loops

    def run() -> None:
        get = of_client.get_boolean_value
        for key, context in work:
            get(key, False, context)
    return run


def _tracer() -> Any:
    from opentelemetry.sdk.trace import TracerProvider

    return TracerProvider().get_tracer("bench")


def case_in_span(loops: int, hooks: List[Any]) -> Callable[[], None]:
    client = make_client(hooks=hooks)
    tracer = _tracer()
    work = reads() * loops
    chunks = [work[i:i + SPAN_READS] for i in range(0, len(work), SPAN_READS)]

    def run() -> None:
        get = client.get_feature_flag
        for chunk in chunks:
            with tracer.start_as_current_span("request"):
                for key, user in chunk:
                    get(key, user, person_properties=PROPERTIES)
    return run


def case_provider_only(loops: int) -> Callable[[], None]:
    """The provider's own share: ProductosProvider.resolve_boolean_details, no SDK client."""
    from openfeature.evaluation_context import EvaluationContext

    from productos.openfeature import ProductosProvider

    provider = ProductosProvider(make_client())
    contexts = {user: EvaluationContext(user, dict(PROPERTIES)) for user in USERS}
    work = [(key, contexts[user]) for key, user in reads()] * loops

    def run() -> None:
        resolve = provider.resolve_boolean_details
        for key, context in work:
            resolve(key, False, context)
    return run


def build(name: str, loops: int) -> Callable[[], None]:
    if name == "direct":
        return case_direct(loops)
    if name == "openfeature":
        return case_openfeature(loops)
    if name == "provider_only":
        return case_provider_only(loops)
    if name == "direct_in_span":
        return case_in_span(loops, [])
    if name == "noop_hook_in_span":
        from productos.flag_hooks import FlagHook

        return case_in_span(loops, [FlagHook()])
    from productos.integrations.opentelemetry import OpenTelemetryHook

    return case_in_span(loops, [OpenTelemetryHook()])


CASES = ("direct", "openfeature", "provider_only", "direct_in_span", "noop_hook_in_span",
         "otel_hook_in_span")


def instructions(name: str, loops: int) -> float:
    """Instructions per read under callgrind: (I(2 x loops) - I(loops)) / reads of loops."""
    counts = []
    for n in (loops, 2 * loops):
        out = os.path.join(tempfile.mkdtemp(), "callgrind.out")
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                               sys.executable, __file__, "--one", name, str(n)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode:
            raise SystemExit(f"{name} x {n} failed under callgrind:\n{done.stderr[-3000:]}")
        with open(out) as f:
            summary = next(line for line in f if line.startswith(("summary:", "totals:")))
        counts.append(int(summary.split()[1]))
    return (counts[1] - counts[0]) / (2 * len(reads()) * loops)  # --one runs two passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--instructions", action="store_true",
                        help="count instructions under valgrind's callgrind instead of timing")
    parser.add_argument("--one", nargs=2, metavar=("CASE", "LOOPS"),
                        help="run one case once (what callgrind runs)")
    parser.add_argument("--json", default=DEFAULT_JSON, help="where to write the results")
    args = parser.parse_args()
    if args.one:
        run = build(args.one[0], int(args.one[1]))
        run()  # the first pass emits the $feature_flag_called events; later ones deduplicate
        run()
        return
    loops, repeat = (4, 3) if args.quick else (40, 7)
    count = len(reads()) * loops
    if args.instructions:
        unit = "instructions per read (callgrind, differential)"
        per_read = {name: instructions(name, 1 if args.quick else 3) for name in CASES}
    else:
        unit = f"µs per read (best of {repeat} x {count} reads)"
        per_read = {name: best_of(build(name, loops), count, repeat) for name in CASES}
    micros = per_read
    ratios = {
        "openfeature": micros["openfeature"] / micros["direct"],
        "otel_hook_in_span": micros["otel_hook_in_span"] / micros["direct"],
        "otel_hook_vs_plain_span": micros["otel_hook_in_span"] / micros["direct_in_span"],
        "provider_only": micros["provider_only"] / micros["direct"],
        "noop_hook_in_span": micros["noop_hook_in_span"] / micros["direct_in_span"],
    }
    print(f"| case | {unit} |")
    print("| --- | ---: |")
    for name, value in micros.items():
        print(f"| {name} | {value:,.2f} |")
    print()
    print("| ratio | value | target |")
    print("| --- | ---: | ---: |")
    for name, value in ratios.items():
        target = TARGETS.get(name)
        met = "met" if target is not None and value <= target else "MISSED"
        verdict = "" if target is None else f"<= {target} ({met})"
        print(f"| {name} | {value:.2f}x | {verdict} |")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"when": _dt.datetime.now(_dt.timezone.utc).isoformat(),
                   "python": platform.python_version(), "unit": unit, "reads": count,
                   "repeat": repeat, "per_read": micros, "ratios": ratios, "targets": TARGETS}, f,
                  indent=2)


if __name__ == "__main__":
    main()
