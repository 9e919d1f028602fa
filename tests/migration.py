"""Run a script written for posthog 7.91 twice, as written and with productos, and compare.

A scenario is the body of a script that uses posthog's API (``import posthog``, ``from posthog
import Posthog``). :func:`run_both` runs it in a subprocess with posthog, then with the
imports switched to productos (``import productos as posthog``) — the one-line migration —
against the same recording server, and returns what each run returned and sent. Events are
normalised first: uuids, timestamps and ``$lib*`` differ by design, and a few properties
only one SDK sends are documented differences (see POSTHOG_ONLY / PRODUCTOS_ONLY).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

try:
    from tests.server import LoopbackServer
except ModuleNotFoundError:  # pragma: no cover - rootdir-relative imports
    from server import LoopbackServer  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent

# Server-side markers posthog adds that productos does not send (test_wire_examples.py says why).
POSTHOG_ONLY = ("$is_server", "$os_distro")
IGNORED = ("$lib", "$lib_version")
# What productos sends and posthog does not: how an exception was captured (protocol §6).
PRODUCTOS_ONLY = ("$exception_source",)

PRELUDE = """\
import datetime, json, sys, uuid
import posthog
from posthog import Posthog

HOST = sys.argv[1]
OUT = {}
UTC = datetime.timezone.utc


def show(value):
    # uuids differ between runs: keep their shape, and what they name on the wire.
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return "<uuid>"
    return value

"""

EPILOGUE = """
print("RESULT=" + json.dumps(OUT, default=repr, sort_keys=True))
"""


def switched(source: str) -> str:
    """Return a posthog script as it reads after switching to productos."""
    return (source.replace("import posthog\n", "import productos as posthog\n")
            .replace("from posthog import", "from productos import")
            .replace("posthog.integrations.", "productos.integrations."))


@dataclass
class Run:
    """What one run of a scenario returned and sent."""

    returned: Dict[str, Any]
    events: List[Dict[str, Any]]
    raw_events: List[Dict[str, Any]]
    flags_bodies: List[Dict[str, Any]]
    stderr: str


def run_script(source: str, server: LoopbackServer, tmp: Path, name: str,
               timeout: float = 60.0) -> Run:
    """Run one script against the server (cleared first); return its results."""
    server.clear()
    path = tmp / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for variable in ("PRODUCTOS_API_KEY", "PRODUCTOS_HOST", "PRODUCTOS_PERSONAL_API_KEY",
                     "POSTHOG_CAPTURE_MODE", "POSTHOG_CAPTURE_COMPRESSION",
                     "POSTHOG_RELEASE_ID"):
        env.pop(variable, None)
    proc = subprocess.run([sys.executable, str(path), server.url], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT=")]
    assert proc.returncode == 0 and lines, (
        f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    raw = [dict(event) for event in server.events]
    flags_bodies = [r.json for r in server.requests if r.path.rstrip("/") == "/flags"]
    return Run(json.loads(lines[-1][len("RESULT="):]), normalised(raw), raw, flags_bodies,
               proc.stderr)


def run_both(body: str, server: LoopbackServer, tmp: Path, name: str) -> Dict[str, Run]:
    """Run a scenario with posthog, then with productos; return both runs by SDK name."""
    source = PRELUDE + textwrap.dedent(body) + EPILOGUE
    return {
        "posthog": run_script(source, server, tmp, f"{name}_posthog"),
        "productos": run_script(switched(source), server, tmp, f"{name}_productos"),
    }


def normalised(events: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Return the events without what differs by design, in a stable order."""
    out = []
    for event in events:
        event = json.loads(json.dumps(event))
        for key in ("uuid", "timestamp", "api_key", "token", "type", "library",
                    "library_version", "messageId", "sent_at"):
            event.pop(key, None)
        props = event.get("properties") or {}
        for key in IGNORED + POSTHOG_ONLY + PRODUCTOS_ONLY:
            props.pop(key, None)
        if props.get("$process_person_profile") is False:
            event["distinct_id"] = "<personless>"  # a fresh random id in each run
        if event.get("event") == "$groupidentify" and _group_owner(event, props):
            # Without a distinct_id posthog 7.91 sends a random (personful) id each time and
            # productos the group's own "$<type>_<key>" (documented): both name no user.
            event["distinct_id"] = "<group>"
        if "$exception_list" in props:
            props["$exception_list"] = [exception_summary(e) for e in props["$exception_list"]]
        event["properties"] = props
        out.append(event)
    return sorted(out, key=lambda e: json.dumps(e, sort_keys=True))


def _group_owner(event: Dict[str, Any], props: Dict[str, Any]) -> bool:
    owner = str(event.get("distinct_id"))
    own = f"${props.get('$group_type')}_{props.get('$group_key')}"
    return owner == own or (len(owner) == 36 and owner.count("-") == 4)


def exception_summary(entry: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of an ``$exception_list`` entry a user sees: type, value, how, and where."""
    frames = (entry.get("stacktrace") or {}).get("frames") or []
    return {
        "type": entry.get("type"),
        "value": entry.get("value"),
        "handled": (entry.get("mechanism") or {}).get("handled"),
        "frames": [(f.get("function"), f.get("lineno"), f.get("in_app")) for f in frames
                   if str(f.get("abs_path", "")).endswith(".py")
                   and "site-packages" not in str(f.get("abs_path"))],
    }


def differences(runs: Dict[str, Run],
                ignore: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None,
                improved: Tuple[str, ...] = ()) -> List[str]:
    """Say, field by field, where the two runs differ (return values, then events).

    ``improved`` names returned values where posthog gives None and productos a bool (flush
    and shutdown say whether everything was sent): documented, and checked to be True.
    """
    ph, pr = runs["posthog"], runs["productos"]
    out = []
    for key in sorted(set(ph.returned) | set(pr.returned)):
        a, b = ph.returned.get(key, "<missing>"), pr.returned.get(key, "<missing>")
        if key in improved and a is None and b is True:
            continue
        if a != b:
            out.append(f"returned[{key}]: posthog {a!r} != productos {b!r}")
    events_a = [ignore(e) if ignore else e for e in ph.events]
    events_b = [ignore(e) if ignore else e for e in pr.events]
    if len(events_a) != len(events_b):
        out.append(f"{len(events_a)} posthog events != {len(events_b)} productos events: "
                   f"{[e.get('event') for e in events_a]} vs "
                   f"{[e.get('event') for e in events_b]}")
    for a, b in zip(events_a, events_b):
        for key in sorted(set(a) | set(b)):
            if key == "properties":
                continue
            if a.get(key) != b.get(key):
                out.append(f"{a.get('event')}.{key}: {a.get(key)!r} != {b.get(key)!r}")
        pa, pb = a.get("properties", {}), b.get("properties", {})
        for key in sorted(set(pa) | set(pb)):
            if pa.get(key, "<missing>") != pb.get(key, "<missing>"):
                out.append(f"{a.get('event')}.properties[{key}]: "
                           f"{pa.get(key, '<missing>')!r} != {pb.get(key, '<missing>')!r}")
    return out
