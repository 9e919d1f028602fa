"""Parse KEY=VALUE / KEY:=JSON properties and TYPE=KEY groups from the command line."""

from __future__ import annotations

import json
from typing import Any, Dict, Optional, Sequence, Tuple

from productos.cli._errors import EXIT_USAGE, CLIError


def _parse_value(raw: str, typed: bool, option: str) -> Any:
    if not typed:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        raise CLIError(f"{option}: {raw!r} is not JSON (use KEY=VALUE for text)",
                       EXIT_USAGE) from None


def parse_assignment(text: str, option: str) -> Tuple[str, Any]:
    """Parse ``KEY=VALUE`` (a string) or ``KEY:=JSON`` (a typed value) from the command line."""
    key, sep, raw = text.partition("=")
    typed = key.endswith(":")
    if typed:
        key = key[:-1]
    if not sep or not key:
        raise CLIError(f"{option} expects KEY=VALUE or KEY:=JSON, not {text!r}", EXIT_USAGE)
    return key, _parse_value(raw, typed, option)


def collect_properties(pairs: Optional[Sequence[str]], props_json: Optional[str],
                       option: str = "--prop") -> Dict[str, Any]:
    """Merge ``--props-json`` (first) and ``--prop`` assignments (which win) into one dict."""
    props: Dict[str, Any] = {}
    if props_json:
        try:
            loaded = json.loads(props_json)
        except ValueError as exc:
            raise CLIError(f"--props-json is not valid JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(loaded, dict):
            raise CLIError("--props-json must be a JSON object", EXIT_USAGE)
        props.update(loaded)
    for pair in pairs or ():
        key, value = parse_assignment(pair, option)
        props[key] = value
    return props


def parse_groups(pairs: Optional[Sequence[str]]) -> Dict[str, str]:
    """Parse ``--group TYPE=KEY`` options."""
    groups: Dict[str, str] = {}
    for pair in pairs or ():
        gtype, sep, gkey = pair.partition("=")
        if not sep or not gtype or not gkey:
            raise CLIError(f"--group expects TYPE=KEY, not {pair!r}", EXIT_USAGE)
        groups[gtype] = gkey
    return groups


def parse_group_properties(pairs: Optional[Sequence[str]]) -> Dict[str, Dict[str, Any]]:
    """Parse ``--group-prop TYPE.KEY=VALUE`` (or ``TYPE.KEY:=JSON``) options."""
    result: Dict[str, Dict[str, Any]] = {}
    for pair in pairs or ():
        name, value = parse_assignment(pair, "--group-prop")
        gtype, dot, key = name.partition(".")
        if not dot or not gtype or not key:
            raise CLIError(f"--group-prop expects TYPE.KEY=VALUE, not {pair!r}", EXIT_USAGE)
        result.setdefault(gtype, {})[key] = value
    return result
