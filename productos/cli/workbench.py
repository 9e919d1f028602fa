"""funnel and trends: ask a running dev server, print a table (or --json)."""

from __future__ import annotations

import argparse
import re
from typing import Any, Dict, List, Optional

from productos.cli._devhttp import dev_host, get_json
from productos.cli._errors import EXIT_OK, EXIT_USAGE, CLIError
from productos.cli._output import print_json, wants_json

__all__ = ["cmd_funnel", "cmd_trends", "parse_duration"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``2w`` → seconds (CLIError when not one)."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) <= 0:
        raise CLIError(f"--window must be a positive duration like 3600, 30m, 2h, 1d or 2w, "
                       f"not {text!r}", EXIT_USAGE)
    return int(match.group(1)) * _UNITS[match.group(2) or "s"]


def _duration_text(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _steps_table(steps: List[Dict[str, Any]], indent: str = "") -> None:
    width = max(len(str(step["event"])) for step in steps)
    print(f"{indent}{'step':<{width + 4}}{'persons':>8}  {'conversion':>10}  "
          f"{'from previous':>13}  {'median time':>11}")
    for number, step in enumerate(steps, 1):
        label = f"{number}. {step['event']}"
        print(f"{indent}{label:<{width + 4}}{step['count']:>8}  {step['conversion']:>10.1%}  "
              f"{step['conversion_from_previous']:>13.1%}  "
              f"{_duration_text(step['median_seconds_from_previous']):>11}")


def cmd_funnel(args: argparse.Namespace) -> int:
    """Print the funnel of the given steps from a running dev server."""
    window = parse_duration(args.window)
    params = {"steps": ",".join(args.steps), "window": window, "breakdown": args.breakdown,
              "from": args.date_from, "to": args.date_to}
    answer = get_json(dev_host(args), "/api/funnel", params, args)
    if wants_json(args):
        print_json(answer)
        return EXIT_OK
    print(f"Funnel, conversion window {_duration_text(window)}:")
    _steps_table(answer["steps"])
    breakdown = answer.get("breakdown")
    if breakdown:
        for group in breakdown["values"]:
            print(f"\n{breakdown['property']} = {group['value']}:")
            _steps_table(group["steps"], "  ")
    return EXIT_OK


def cmd_trends(args: argparse.Namespace) -> int:
    """Print how often an event happened per hour or day, from a running dev server."""
    params = {"event": args.event, "interval": args.interval, "from": args.date_from,
              "to": args.date_to}
    answer = get_json(dev_host(args), "/api/trends", params, args)
    if wants_json(args):
        print_json(answer)
        return EXIT_OK
    print(f"{answer['event']} per {answer['interval']}: {answer['total']} event(s), "
          f"{answer['persons']} person(s)")
    peak = max([row["count"] for row in answer["series"]] or [0]) or 1
    for row in answer["series"]:
        bar = "#" * round(30 * row["count"] / peak)
        print(f"  {row['bucket']}  {row['count']:>7}  {row['persons']:>6} persons  {bar}")
    return EXIT_OK
