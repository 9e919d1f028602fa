"""Server-side evaluation for ``POST /flags``, and the response body it answers with.

The server answers with productos' own evaluator. Where the evaluator would call a result
inconclusive for lack of data, the dev server *is* the server, so it decides the way PostHog's
does: a property the person (or group) does not have fails its filter (``is_not_set`` passes),
a cohort it does not know (a static cohort) has no members, and experience continuity is
ignored. It does so by rewriting those filters into constant ones and evaluating the rewritten
definitions, so cohorts, dependencies, rollouts and variants all still come from the evaluator.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from productos.devserver.definitions import DefinitionsState, without_continuity
from productos.diagnostics import Definitions
from productos.flags import EvaluationContext, FlagResult, ReasonCode

__all__ = ["KNOWN", "flags_response", "server_evaluate"]

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
    document = without_continuity(state.document)
    rewritten, changed = _rewrite(document, ctx)
    definitions = state.server_definitions
    if changed:
        definitions = Definitions(rewritten)
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
        return definitions.evaluate_all(ctx)
    return {key: definitions.evaluate(key, ctx) for key in keys if key in definitions}


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
