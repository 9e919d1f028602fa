"""Compile property, cohort and dependency filters, and cohorts, from definitions JSON.

A :class:`FilterCompiler` holds the snapshot-wide facts filters depend on (the property matching
version, the flag keys, the raw cohorts) while one definitions document is compiled. A filter
this SDK cannot use is compiled all the same, with a ``problem`` saying why.
"""

from __future__ import annotations

import math
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Set, Tuple, Union

from productos._flags.dates import parse_date_filter
from productos._flags.filters import (
    EXACT_EMPTY_LIST,
    EXACT_EQUALS,
    EXACT_IN,
    EXACT_TRUTHINESS,
    CohortFilter,
    DateFilter,
    ExactFilter,
    FilterSpec,
    FlagDependencyFilter,
    NumericFilter,
    PresenceFilter,
    PropertyGroup,
    RegexFilter,
    SemverFilter,
    TextFilter,
    UnknownOperatorFilter,
)
from productos._flags.regex_dialect import INVALID, RegexSpec, compile_regex
from productos._flags.semver import parse_semver, semver_bounds
from productos._flags.values import ascii_lower, parse_number, stringify, truthy, truthy_or_falsy

__all__ = ["DEPENDENCY_OPERATOR", "FilterCompiler", "Malformed", "is_number"]

DEPENDENCY_OPERATOR = "flag_evaluates_to"

COHORT_OPERATORS = ("exact", "in", "not_in")
_TEXT_OPERATORS = {
    "icontains": ("contains", False),
    "not_icontains": ("contains", True),
    "starts_with": ("prefix", False),
    "not_starts_with": ("prefix", True),
    "ends_with": ("suffix", False),
    "not_ends_with": ("suffix", True),
}
_NUMERIC_OPERATORS = ("gt", "gte", "lt", "lte")
_SEMVER_COMPARISONS = (
    "semver_eq",
    "semver_neq",
    "semver_gt",
    "semver_gte",
    "semver_lt",
    "semver_lte",
)
_SEMVER_RANGES = ("semver_tilde", "semver_caret", "semver_wildcard")


class Malformed(Exception):
    """Internal: a definition cannot be compiled; carries the sentence for ``malformed``."""


def is_number(value: Any) -> bool:
    """True for a finite JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class FilterCompiler:
    """Compiles the filters and cohorts of one definitions document."""

    def __init__(
        self,
        matching_version: int,
        group_types: Mapping[str, str],
        flag_keys: FrozenSet[str],
        raw_cohorts: Mapping[str, Any],
    ) -> None:
        self.matching_version = matching_version
        self.group_types = group_types
        self.flag_keys = flag_keys
        self.raw_cohorts = raw_cohorts
        self.cohorts: Dict[str, PropertyGroup] = {}
        self._text_sets: Dict[Tuple[Optional[str], ...], FrozenSet[str]] = {}
        self._cohort_server_reason: Dict[str, Optional[str]] = {}

    # --- filters ---------------------------------------------------------------------------

    def compile_filter(self, raw: Any) -> FilterSpec:
        """One filter of a condition or cohort; raises Malformed if it is not an object."""
        if not isinstance(raw, dict):
            raise Malformed(f"a property filter is not an object: {raw!r}")
        kind = raw.get("type")
        if kind == "cohort":
            return self._cohort_filter(raw)
        if kind == "flag":
            return self._dependency_filter(raw)
        return self._property_filter(raw)

    def _property_filter(self, raw: Mapping[str, Any]) -> FilterSpec:
        kind = raw.get("type")
        ftype = kind if isinstance(kind, str) else "person"
        key = raw.get("key")
        operator = raw.get("operator") or "exact"
        value = raw.get("value")
        op = operator if isinstance(operator, str) else repr(operator)
        if not _hashable(key):
            return UnknownOperatorFilter(
                ftype, repr(key), op, value, "the property key is not text"
            )
        base = (ftype, key, op, value)
        if op in ("exact", "is_not"):
            return self._exact_filter(base, value, op == "is_not")
        if op in ("is_set", "is_not_set"):
            return PresenceFilter(*base, None, op == "is_set")
        if op in _TEXT_OPERATORS:
            how, negate = _TEXT_OPERATORS[op]
            text = stringify(value)
            problem = None if text is not None else "the filter value cannot be compared as text"
            return TextFilter(*base, problem, how, negate, ascii_lower(text or ""))
        if op in ("regex", "not_regex"):
            source = str(value)
            if source == "":
                return RegexFilter(*base, None, op == "not_regex", True, None)
            spec = compile_regex(source)
            if isinstance(spec, RegexSpec):
                return RegexFilter(*base, None, op == "not_regex", False, spec)
            if spec != INVALID:
                return RegexFilter(*base, spec, op == "not_regex", False, None)
            return RegexFilter(*base, None, op == "not_regex", False, None)
        if op in _NUMERIC_OPERATORS:
            number = parse_number(value)
            problem = None if number is not None else "the filter value is not a finite number"
            return NumericFilter(*base, problem, number)
        if op in ("is_date_before", "is_date_after"):
            date = parse_date_filter(value)
            problem = None if date is not None else "the filter value is not a date"
            return DateFilter(*base, problem, op == "is_date_before", date)
        if op in _SEMVER_COMPARISONS:
            version = parse_semver(value)
            problem = None if version is not None else "the filter value is not a version"
            return SemverFilter(*base, problem, version, None, None)
        if op in _SEMVER_RANGES:
            bounds = semver_bounds(op, value)
            if bounds is None:
                return SemverFilter(
                    *base, "the filter value is not a version range", None, None, None
                )
            return SemverFilter(*base, None, None, bounds[0], bounds[1])
        return UnknownOperatorFilter(*base, f"unknown operator {op!r}")

    def _exact_filter(
        self, base: Tuple[str, Any, str, Any], value: Any, negate: bool
    ) -> ExactFilter:
        if isinstance(value, list) and not value:
            return ExactFilter(*base, None, negate, EXACT_EMPTY_LIST, False, frozenset(), "")
        if self.matching_version != 2 and truthy_or_falsy(value):
            return ExactFilter(
                *base, None, negate, EXACT_TRUTHINESS, truthy(value), frozenset(), ""
            )
        problem = "the filter value cannot be compared as text"
        if isinstance(value, list):
            texts = [stringify(item) for item in value]
            if any(t is None for t in texts):
                return ExactFilter(*base, problem, negate, EXACT_IN, False, frozenset(), "")
            return ExactFilter(*base, None, negate, EXACT_IN, False, self._text_set(texts), "")
        text = stringify(value)
        if text is None:
            return ExactFilter(*base, problem, negate, EXACT_EQUALS, False, frozenset(), "")
        return ExactFilter(*base, None, negate, EXACT_EQUALS, False, frozenset(), text.lower())

    def _text_set(self, texts: List[Optional[str]]) -> FrozenSet[str]:
        """The lower-cased texts of a list filter, shared by every filter with the same list."""
        key = tuple(texts)
        shared = self._text_sets.get(key)
        if shared is None:
            # Most values are lower case already: keep those strings rather than copies.
            shared = self._text_sets[key] = frozenset(
                [t if (low := t.lower()) == t else low for t in texts if t is not None]
            )
        return shared

    def _cohort_filter(self, raw: Mapping[str, Any]) -> CohortFilter:
        value = raw.get("value")
        cohort_id = str(value)
        operator = raw.get("operator") or "exact"
        op = operator if isinstance(operator, str) else repr(operator)
        key = raw.get("key")
        key = key if _hashable(key) else repr(key)
        missing = cohort_id not in self.raw_cohorts
        problem = None
        if missing:
            problem = f"cohort {cohort_id} is not in the local definitions (a static cohort?)"
        elif op not in COHORT_OPERATORS:
            problem = f"unsupported cohort operator {op!r}"
        # requires_server is filled in once every cohort is compiled (cohorts refer to each other).
        return CohortFilter(
            "cohort", key, op, value, problem, cohort_id, op == "not_in", missing, None
        )

    def _dependency_filter(self, raw: Mapping[str, Any]) -> FlagDependencyFilter:
        key = raw.get("key")
        operator = raw.get("operator", "exact")
        value = raw.get("value")
        op = operator if isinstance(operator, str) else repr(operator)
        shown_key = key if _hashable(key) else repr(key)
        if operator != DEPENDENCY_OPERATOR or not key or value is None:
            # The server treats a malformed dependency as "does not match", not as an error.
            return FlagDependencyFilter("flag", shown_key, op, value, None, True, ())
        if not isinstance(key, str):
            return FlagDependencyFilter(
                "flag", shown_key, op, value, "the dependency key is not text", False, ()
            )
        if "dependency_chain" not in raw:
            problem: Optional[str] = "the dependency has no dependency_chain"
            return FlagDependencyFilter("flag", key, op, value, problem, False, ())
        chain = raw["dependency_chain"]
        if not isinstance(chain, list) or not all(isinstance(k, str) for k in chain):
            return FlagDependencyFilter(
                "flag", key, op, value, "the dependency_chain is not a list of flag keys", False, ()
            )
        if not chain:
            problem = "circular flag dependency (empty dependency_chain)"
            return FlagDependencyFilter("flag", key, op, value, problem, False, ())
        absent = [k for k in chain if k not in self.flag_keys]
        if absent:
            problem = f"flag {absent[0]!r} in the dependency chain is not in the definitions"
            return FlagDependencyFilter("flag", key, op, value, problem, False, tuple(chain))
        if key not in chain:
            problem = f"the dependency_chain does not include {key!r}"
            return FlagDependencyFilter("flag", key, op, value, problem, False, tuple(chain))
        return FlagDependencyFilter("flag", key, op, value, None, False, tuple(chain))

    # --- cohorts -----------------------------------------------------------------------------

    def compile_group(self, raw: Any) -> PropertyGroup:
        """A cohort's AND/OR tree (its nested cohort filters are finished later)."""
        if raw == {}:
            return PropertyGroup(True, (), None, True)  # the backend's canonical empty group
        if not isinstance(raw, dict):
            return PropertyGroup(True, (), "a cohort property group is not an object", True)
        kind = raw.get("type")
        values = raw.get("values")
        if kind not in ("AND", "OR"):
            return PropertyGroup(True, (), "a cohort property group type is not AND/OR", True)
        if not isinstance(values, list):
            return PropertyGroup(
                kind == "AND", (), "cohort property group values are not a list", True
            )
        entries: List[Tuple[bool, Union[PropertyGroup, FilterSpec]]] = []
        short_circuit = True
        for item in values:
            if not isinstance(item, dict):
                return PropertyGroup(kind == "AND", (), "a cohort entry is not an object", True)
            if item == {} or "values" in item or item.get("type") in ("AND", "OR"):
                sub = self.compile_group(item)
                if sub.problem is not None:
                    return PropertyGroup(kind == "AND", (), sub.problem, True)
                short_circuit = short_circuit and sub.short_circuit
                entries.append((False, sub))
                continue
            try:
                spec = self.compile_filter(item)
            except Malformed as exc:  # pragma: no cover - item is a dict, so this cannot happen
                return PropertyGroup(kind == "AND", (), str(exc), True)
            if isinstance(spec, (FlagDependencyFilter, CohortFilter)):
                # These can ask for the server at evaluation time, so every entry must be seen.
                short_circuit = False
            entries.append((bool(item.get("negation", False)), spec))
        return PropertyGroup(kind == "AND", tuple(entries), None, short_circuit)

    def cohort_server_reason(self, cohort_id: str, visiting: Tuple[str, ...] = ()) -> Optional[str]:
        """Why this cohort always needs the server (missing cohort, bad shape, cycle), or None."""
        if cohort_id in self._cohort_server_reason:
            return self._cohort_server_reason[cohort_id]
        if cohort_id not in self.cohorts:
            return f"cohort {cohort_id} is not in the local definitions (a static cohort?)"
        if cohort_id in visiting:
            return f"cohort {cohort_id} refers to itself"
        reason = self._group_server_reason(self.cohorts[cohort_id], (*visiting, cohort_id))
        self._cohort_server_reason[cohort_id] = reason
        return reason

    def _group_server_reason(
        self, group: PropertyGroup, visiting: Tuple[str, ...]
    ) -> Optional[str]:
        if group.problem is not None:
            return group.problem
        for _, node in group.entries:
            if isinstance(node, PropertyGroup):
                reason = self._group_server_reason(node, visiting)
            elif isinstance(node, CohortFilter):
                if node.missing:
                    reason = node.problem
                elif node.operator not in COHORT_OPERATORS:
                    reason = None  # evaluation stops at the operator, before the members
                else:
                    reason = self.cohort_server_reason(node.cohort_id, visiting)
            else:
                reason = None
            if reason is not None:
                return reason
        return None

    def finish_cohort_filter(self, spec: CohortFilter) -> CohortFilter:
        """The filter with ``requires_server`` set when its cohort always needs the server."""
        if spec.missing or spec.operator not in COHORT_OPERATORS:
            return spec
        reason = self.cohort_server_reason(spec.cohort_id)
        if reason is None:
            return spec
        return CohortFilter(
            spec.type, spec.key, spec.operator, spec.value, spec.problem, spec.cohort_id,
            spec.negate, spec.missing, reason,
        )  # fmt: skip

    def filter_unsupported(self, spec: FilterSpec, seen: Set[str]) -> bool:
        """Whether the definition alone makes this filter unusable locally."""
        if isinstance(spec, FlagDependencyFilter):
            return spec.problem is not None
        if not isinstance(spec, CohortFilter):
            return spec.problem is not None
        if spec.problem is not None:
            return True
        if spec.cohort_id in seen:
            return False
        seen.add(spec.cohort_id)
        return self._group_unsupported(self.cohorts[spec.cohort_id], seen)

    def _group_unsupported(self, group: PropertyGroup, seen: Set[str]) -> bool:
        if group.problem is not None:
            return True
        for _, node in group.entries:
            if isinstance(node, PropertyGroup):
                if self._group_unsupported(node, seen):
                    return True
            elif self.filter_unsupported(node, seen):
                return True
        return False

    def finish_group(self, group: PropertyGroup) -> PropertyGroup:
        """Attach each nested cohort filter's server requirement now that all cohorts exist."""
        if group.problem is not None or not group.entries:
            return group
        entries: List[Tuple[bool, Union[PropertyGroup, FilterSpec]]] = []
        for negated, node in group.entries:
            if isinstance(node, PropertyGroup):
                entries.append((negated, self.finish_group(node)))
            elif isinstance(node, CohortFilter):
                entries.append((negated, self.finish_cohort_filter(node)))
            else:
                entries.append((negated, node))
        return PropertyGroup(group.is_and, tuple(entries), None, group.short_circuit)
