"""Flag definitions held by the dev server, and server-side evaluation for ``POST /flags``.

The server answers with productos' own evaluator. Where the evaluator would call a result
inconclusive for lack of data, the dev server *is* the server, so it decides the way PostHog's
does: a property the person (or group) does not have fails its filter (``is_not_set`` passes),
a cohort it does not know (a static cohort) has no members, and experience continuity is
ignored. It does so by rewriting those filters into constant ones and evaluating the rewritten
definitions, so cohorts, dependencies, rollouts and variants all still come from the evaluator.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from productos._flags.definitions import Snapshot, parse_definitions
from productos.flags import EvaluationContext, FlagResult, ReasonCode, evaluate, evaluate_all

__all__ = [
    "FlagDefinitions",
    "flags_response",
    "load_definitions_file",
    "normalise_definitions",
    "server_evaluate",
    "summarise_flags",
]

log = logging.getLogger("productos.devserver")

# A property the dev server adds to every context it evaluates with rewritten definitions, so a
# constant filter ("is set" = always true, "is not set" = always false) has something to test.
KNOWN = "$devserver_known"

# PostHog's /flags reason codes for the evaluator's decisions.
_REASON_CODES = {
    ReasonCode.CONDITION_MATCH: "condition_match",
    ReasonCode.NO_CONDITION_MATCH: "no_condition_match",
    ReasonCode.OUT_OF_ROLLOUT: "out_of_rollout_bound",
    ReasonCode.EARLY_EXIT: "out_of_rollout_bound",
    ReasonCode.DISABLED: "flag_disabled",
    ReasonCode.HOLDOUT: "holdout_condition_value",
    ReasonCode.GROUP_NOT_PASSED: "no_group_type",
    ReasonCode.FEATURE_ENROLLMENT: "super_condition_value",
}


# ---------------------------------------------------------------------------------------------
# Definitions
# ---------------------------------------------------------------------------------------------


def normalise_definitions(document: Any) -> Dict[str, Any]:
    """Check a definitions document (protocol §2 body, or a list of flags); fill defaults."""
    if isinstance(document, list):
        document = {"flags": document}
    if not isinstance(document, Mapping):
        raise ValueError("flag definitions must be a JSON object with a 'flags' list")
    result = copy.deepcopy(dict(document))
    flags = result.setdefault("flags", [])
    if not isinstance(flags, list):
        raise ValueError("'flags' in the flag definitions must be a list")
    for position, flag in enumerate(flags):
        if not isinstance(flag, Mapping) or not isinstance(flag.get("key"), str):
            raise ValueError(f"flag #{position} in the flag definitions has no text 'key'")
    if not isinstance(result.setdefault("group_type_mapping", {}), Mapping):
        raise ValueError("'group_type_mapping' in the flag definitions must be an object")
    if not isinstance(result.setdefault("cohorts", {}), Mapping):
        raise ValueError("'cohorts' in the flag definitions must be an object")
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"flag definitions are not plain JSON: {exc}") from exc
    return result


def load_definitions_file(path: str) -> Dict[str, Any]:
    """Read and check a definitions JSON file; errors name the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read flag definitions {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"flag definitions {path} are not valid JSON: {exc}") from exc
    try:
        return normalise_definitions(document)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def _without_continuity(document: Mapping[str, Any]) -> Dict[str, Any]:
    # Experience continuity only matters for hash-key overrides after an identify, which the
    # dev server does not keep; the server then evaluates the flag normally.
    result = dict(document)
    result["flags"] = [
        {**flag, "ensure_experience_continuity": False} if flag.get("ensure_experience_continuity")
        else flag
        for flag in document.get("flags", [])
    ]
    return result


@dataclass(frozen=True)
class DefinitionsState:
    """One immutable version of the definitions; replaced whole on every change."""

    document: Mapping[str, Any]
    body: bytes  # the definitions endpoint's response body
    etag: str
    version: int
    snapshot: Snapshot  # exactly what a client compiles from ``body``
    server_snapshot: Snapshot  # what /flags evaluates (continuity ignored)
    source: str


class FlagDefinitions:
    """The definitions the server serves and evaluates; optionally re-read when the file changes."""

    def __init__(self, document: Optional[Mapping[str, Any]] = None,
                 path: Optional[str] = None) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self.path = path
        self._mtime: Optional[int] = None
        self.reload_error: Optional[str] = None
        if path is not None:
            self._mtime = _mtime(path)
            initial = load_definitions_file(path)
            source = path
        else:
            initial = normalise_definitions(document if document is not None else {"flags": []})
            source = "inline" if document is not None else "none"
        self._state = self._build(initial, source)

    def _build(self, document: Dict[str, Any], source: str) -> DefinitionsState:
        self._version += 1
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        digest = hashlib.sha1(body).hexdigest()[:16]
        return DefinitionsState(
            document=document,
            body=body,
            etag=f'"{self._version}-{digest}"',
            version=self._version,
            snapshot=parse_definitions(document),
            server_snapshot=parse_definitions(_without_continuity(document)),
            source=source,
        )

    def set(self, document: Mapping[str, Any]) -> DefinitionsState:
        """Replace the definitions (raises ValueError for a bad document); the ETag changes."""
        normalised = normalise_definitions(document)
        with self._lock:
            self._state = self._build(normalised, "inline")
            self.path = None  # explicit definitions win over the file from now on
            self.reload_error = None
            return self._state

    def current(self) -> DefinitionsState:
        """The current definitions, re-read first when the file changed on disk."""
        path = self.path
        if path is not None and _mtime(path) != self._mtime:
            with self._lock:
                mtime = _mtime(path)
                if self.path == path and mtime != self._mtime:
                    self._mtime = mtime
                    try:
                        self._state = self._build(load_definitions_file(path), path)
                        self.reload_error = None
                        log.info("productos devserver: reloaded flag definitions from %s", path)
                    except ValueError as exc:
                        # Keep serving the last good definitions, and say why in /api/flags.
                        self.reload_error = str(exc)
                        log.warning("productos devserver: %s (keeping the previous flags)", exc)
        return self._state


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


# ---------------------------------------------------------------------------------------------
# Server-side evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class _Rewrite:
    person_keys: Set[str]
    group_keys: Mapping[str, Set[str]]  # group type -> property keys (passed groups only)
    mapping: Mapping[str, Any]
    cohorts: Mapping[str, Any]
    changed: bool = False
    notes: List[str] = field(default_factory=list)

    def keys_for(self, index: Any) -> Set[str]:
        if index is None:
            return self.person_keys
        group_type = self.mapping.get(str(index))
        return self.group_keys.get(group_type, set()) if isinstance(group_type, str) else set()

    def constant(self, item: Mapping[str, Any], value: bool) -> Dict[str, Any]:
        self.changed = True
        replaced = {"key": KNOWN, "operator": "is_set" if value else "is_not_set",
                    "type": item.get("type") if item.get("type") in ("person", "group")
                    else "person"}
        if "negation" in item:
            replaced["negation"] = item["negation"]
        if "group_type_index" in item:
            replaced["group_type_index"] = item["group_type_index"]
        return replaced

    def filter(self, item: Any, keys: Set[str]) -> Any:
        if not isinstance(item, Mapping):
            return item
        kind = item.get("type")
        operator = item.get("operator") or "exact"
        if kind == "cohort":
            if str(item.get("value")) in self.cohorts:
                return item
            # A cohort missing from the definitions is static: the dev server has no members.
            return self.constant(item, operator == "not_in")
        if kind == "flag":
            return item
        key = item.get("key")
        if isinstance(key, str) and key not in keys:
            return self.constant(item, operator == "is_not_set")
        return item

    def group(self, raw: Any, keys: Set[str]) -> Any:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("values"), list):
            return raw
        values = []
        for item in raw["values"]:
            nested = isinstance(item, Mapping) and (
                "values" in item or item.get("type") in ("AND", "OR"))
            if nested:
                values.append(self.group(item, keys))
            else:
                values.append(self.filter(item, keys))
        return {**raw, "values": values}


def _rewrite(document: Mapping[str, Any], ctx: EvaluationContext) -> Tuple[Dict[str, Any], bool]:
    mapping = document.get("group_type_mapping") or {}
    cohorts = document.get("cohorts") or {}
    person_keys = {*ctx.person_properties, "distinct_id"}
    group_keys = {
        gtype: {*(ctx.group_properties.get(gtype) or {}), "$group_key"} for gtype in ctx.groups
    }
    rw = _Rewrite(person_keys, group_keys, mapping, cohorts)
    flags = []
    for flag in document.get("flags", []):
        filters = flag.get("filters")
        if not isinstance(filters, Mapping):
            flags.append(flag)
            continue
        new_filters = dict(filters)
        enrollment = f"$feature_enrollment/{flag['key']}"
        if flag.get("feature_enrollment") and enrollment not in person_keys:
            # Not enrolled either way: the server goes on to the release conditions.
            flag = {**flag, "feature_enrollment": False}
            rw.changed = True
        flag_index = filters.get("aggregation_group_type_index")
        conditions = filters.get("groups")
        if isinstance(conditions, list):
            new_conditions = []
            for condition in conditions:
                if not isinstance(condition, Mapping) or not isinstance(
                    condition.get("properties"), list
                ):
                    new_conditions.append(condition)
                    continue
                index = condition.get("aggregation_group_type_index")
                keys = rw.keys_for(flag_index if index is None else index)
                new_conditions.append({
                    **condition,
                    "properties": [rw.filter(item, keys) for item in condition["properties"]],
                })
            new_filters["groups"] = new_conditions
        flags.append({**flag, "filters": new_filters})
    # Cohorts describe persons.
    new_cohorts = {cid: rw.group(group, person_keys) for cid, group in cohorts.items()}
    return {**document, "flags": flags, "cohorts": new_cohorts}, rw.changed


def server_evaluate(
    state: DefinitionsState,
    ctx: EvaluationContext,
    keys: Optional[Sequence[str]] = None,
) -> Dict[str, FlagResult]:
    """Evaluate flags as the server would (see the module docstring); inconclusive = no value."""
    document = _without_continuity(state.document)
    rewritten, changed = _rewrite(document, ctx)
    snapshot = state.server_snapshot
    if changed:
        snapshot = parse_definitions(rewritten)
        ctx = EvaluationContext(
            distinct_id=ctx.distinct_id,
            groups=ctx.groups,
            person_properties={**ctx.person_properties, KNOWN: True},
            group_properties={
                gtype: {**(ctx.group_properties.get(gtype) or {}), KNOWN: True}
                for gtype in ctx.groups
            },
            device_id=ctx.device_id,
            now=ctx.now,
        )
    if keys is None:
        return evaluate_all(snapshot, ctx)
    return {key: evaluate(snapshot, key, ctx) for key in keys if key in snapshot.flags}


def _payload_text(result: FlagResult) -> Optional[str]:
    if result.payload is None:
        return None
    # PostHog sends payloads as JSON text; clients decode them.
    return json.dumps(result.payload, separators=(",", ":"), ensure_ascii=False)


def flags_response(results: Mapping[str, FlagResult], version: int = 2) -> Dict[str, Any]:
    """The ``/flags`` body: v2 (``flags``) or v1 (``featureFlags``); unknown values are left out."""
    errors = any(result.value is None for result in results.values())
    decided = {key: r for key, r in results.items() if r.value is not None}
    body: Dict[str, Any]
    if version >= 2:
        flags = {}
        for key, result in decided.items():
            enabled = result.enabled
            flags[key] = {
                "key": key,
                "enabled": enabled,
                "variant": result.variant if enabled else None,
                "reason": {
                    "code": _REASON_CODES.get(result.reason.code, result.reason.code.value),
                    "condition_index": result.reason.condition_index,
                    "description": result.reason.description,
                },
                "metadata": {
                    "id": result.flag_id,
                    "version": result.flag_version,
                    "payload": _payload_text(result) if enabled else None,
                },
            }
        body = {"flags": flags}
    else:
        body = {
            "featureFlags": {
                key: (r.variant if r.enabled and r.variant else r.enabled)
                for key, r in decided.items()
            },
            "featureFlagPayloads": {
                key: text for key, r in decided.items()
                if r.enabled and (text := _payload_text(r)) is not None
            },
        }
    body["errorsWhileComputingFlags"] = errors
    body["quotaLimited"] = []
    body["requestId"] = str(uuid.uuid4())
    return body


# ---------------------------------------------------------------------------------------------
# Summaries for /api/flags and the page
# ---------------------------------------------------------------------------------------------

_OPERATORS = {
    "exact": "=", "is_not": "≠", "icontains": "contains", "not_icontains": "does not contain",
    "regex": "matches", "not_regex": "does not match", "gt": ">", "gte": "≥", "lt": "<",
    "lte": "≤", "is_set": "is set", "is_not_set": "is not set", "in": "in", "not_in": "not in",
    "is_date_before": "before", "is_date_after": "after",
}


def _describe_value(value: Any) -> str:
    if isinstance(value, list):
        return " or ".join(_describe_value(item) for item in value) or "[]"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _describe_filter(item: Any) -> str:
    if not isinstance(item, Mapping):
        return "?"
    operator = item.get("operator") or "exact"
    kind = item.get("type") or "person"
    if kind == "cohort":
        word = "not in" if operator == "not_in" else "in"
        return f"{word} cohort {item.get('value')}"
    if kind == "flag":
        return f"flag {item.get('key')} is {_describe_value(item.get('value'))}"
    shown = _OPERATORS.get(operator, str(operator).replace("_", " "))
    text = f"{item.get('key')} {shown}"
    if operator not in ("is_set", "is_not_set"):
        text += f" {_describe_value(item.get('value'))}"
    return text


def _percent(value: Any) -> str:
    if value is None:
        return "100%"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}%"
    return f"{value}%"


def _subject(index: Any, mapping: Mapping[str, Any]) -> str:
    if index is None:
        return "users"
    name = mapping.get(str(index))
    return f"{name} groups" if isinstance(name, str) else f"group type {index} (unknown)"


def summarise_flags(state: DefinitionsState) -> List[Dict[str, Any]]:
    """One JSON-ready summary per flag: state, rollout in words, variants, local-evaluability."""
    mapping = state.document.get("group_type_mapping") or {}
    summaries = []
    for flag in state.document.get("flags", []):
        filters = flag.get("filters") if isinstance(flag.get("filters"), Mapping) else {}
        flag_index = filters.get("aggregation_group_type_index")
        conditions = []
        for position, condition in enumerate(filters.get("groups") or []):
            if not isinstance(condition, Mapping):
                continue
            index = condition.get("aggregation_group_type_index")
            index = flag_index if index is None else index
            where = " and ".join(_describe_filter(i) for i in condition.get("properties") or [])
            text = f"{_percent(condition.get('rollout_percentage'))} of {_subject(index, mapping)}"
            if where:
                text += f" where {where}"
            if condition.get("variant"):
                text += f" → {condition['variant']}"
            conditions.append({"index": position, "rollout_percentage":
                               condition.get("rollout_percentage"), "summary": text})
        multivariate = filters.get("multivariate") if isinstance(
            filters.get("multivariate"), Mapping) else {}
        variants = [
            {"key": v.get("key"), "rollout_percentage": v.get("rollout_percentage")}
            for v in multivariate.get("variants") or [] if isinstance(v, Mapping)
        ]
        compiled = state.snapshot.flags.get(flag["key"])
        problem = None
        if compiled is not None:
            problem = compiled.malformed or compiled.local_problem
        summaries.append({
            "key": flag["key"],
            "id": flag.get("id"),
            "version": flag.get("version"),
            "active": bool(flag.get("active")),
            "aggregation": _subject(flag_index, mapping),
            "conditions": conditions,
            "variants": variants,
            "payloads": sorted((filters.get("payloads") or {}).keys()),
            "local_evaluation": compiled is not None and compiled.evaluable_locally
            and compiled.malformed is None,
            "local_evaluation_problem": problem,
        })
    return summaries
