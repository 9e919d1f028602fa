"""Flags in words for the viewer's ``/api/flags``: rollout, conditions, variants, local use."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping

from productos.devserver.definitions import DefinitionsState

__all__ = ["summarise_flags"]



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
        raw_multivariate = filters.get("multivariate")
        multivariate: Mapping[str, Any] = (
            raw_multivariate if isinstance(raw_multivariate, Mapping) else {})
        variants = [
            {"key": v.get("key"), "rollout_percentage": v.get("rollout_percentage")}
            for v in multivariate.get("variants") or [] if isinstance(v, Mapping)
        ]
        compiled = state.definitions.flag(flag["key"])
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
