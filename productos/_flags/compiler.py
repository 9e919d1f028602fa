"""Compile the JSON of ``GET /flags/definitions`` into an immutable, evaluation-ready snapshot.

Everything that does not depend on who is being evaluated is done here, once per flag (on
the flag's first read, see :mod:`productos._flags.lazy`): regexes are checked against the
server's dialect and compiled, numbers, dates and semvers are parsed, variant range tables,
hash prefixes and evaluation plans are built and dependency chains are checked. The evaluator
(:mod:`productos._flags.evaluator`) then only reads them.

Nothing here performs I/O or logs. A definition this module cannot use is kept as a compiled
flag that explains why it cannot be evaluated locally. An internal error while compiling one
flag or cohort is confined to it (it then goes to the server) and listed in
``Snapshot.errors``; one outside them propagates, so the caller keeps the definitions it had.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple, cast

from productos._flags.filter_compiler import FilterCompiler, Malformed, is_number
from productos._flags.filters import CohortFilter, FilterSpec, FlagDependencyFilter, PropertyGroup
from productos._flags.hashing import digests_where, key_hasher
from productos._flags.lazy import LazyFlags, LoadedOnce
from productos._flags.payloads import Payload, decode_payload
from productos._flags.results import InconclusiveReason
from productos._flags.snapshot import EMPTY, CompiledFlag, Condition, Holdout, Snapshot, Variant
from productos._flags.values import parse_number

__all__ = ["parse_definitions"]

# Properties the evaluator supplies when the caller's dict lacks them.
_IMPLICIT_KEYS = frozenset({"distinct_id", "$group_key"})


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class Compiler(FilterCompiler):
    """Compiles the flags of one definitions document (filters and cohorts: the base class)."""

    def compile_flag(self, key: str, raw: Mapping[str, Any]) -> CompiledFlag:
        """One flag; a definition it cannot use becomes a flag that says why."""
        return self._flag(key, raw, None)

    def compile_flag_after_error(
        self, key: str, raw: Mapping[str, Any], error: BaseException
    ) -> CompiledFlag:
        """The flag for a definition whose compilation failed: left to the server."""
        return self._flag(key, raw, f"internal error while compiling it ({error!r})")

    def _flag(self, key: str, raw: Mapping[str, Any], failure: Optional[str]) -> CompiledFlag:
        hasher = key_hasher(key)
        active = bool(raw.get("active"))
        continuity = bool(raw.get("ensure_experience_continuity", False))
        fields: Dict[str, Any] = {
            "key": key,
            "id": _int_or_none(raw.get("id")),
            "version": _int_or_none(raw.get("version")),
            "active": active,
            "ensure_experience_continuity": continuity,
            # A read-only view, not a copy: the body is the compiler's own (decoded JSON).
            "raw": raw if isinstance(raw, MappingProxyType) else MappingProxyType(raw),
            "hasher": hasher,
        }
        try:
            if failure is not None:
                raise Malformed(failure)
            fields.update(self._compile_filters(key, raw))
            fields["malformed"] = None
        except Malformed as exc:
            fields.update(
                bucket_by_device=False, aggregation_index=None, group_type=None,
                feature_enrollment=False, early_exit=False, holdout=None, conditions=(),
                variants=(), payloads=EMPTY, malformed=str(exc),
            )  # fmt: skip
        reason, problem = self._local_problem(fields)
        reads = self._implicit_reads(fields["conditions"])
        return CompiledFlag(
            **fields,
            local_reason=reason,
            local_problem=problem,
            reads_distinct_id="distinct_id" in reads,
            reads_group_key="$group_key" in reads,
        )

    def _implicit_reads(self, conditions: Tuple[Condition, ...]) -> Set[str]:
        """Which of the evaluator's implicit property keys any filter of these conditions reads."""
        found: Set[str] = set()
        seen: Set[str] = set()
        pending: List[Any] = [spec for cond in conditions for spec in cond.filters]
        while pending:
            node = pending.pop()
            if isinstance(node, PropertyGroup):
                pending.extend(entry for _, entry in node.entries)
            elif isinstance(node, CohortFilter):
                if node.cohort_id not in seen and node.cohort_id in self.cohorts:
                    seen.add(node.cohort_id)
                    pending.append(self.cohorts[node.cohort_id])
            elif not isinstance(node, FlagDependencyFilter):
                key = node.key
                if isinstance(key, str) and key in _IMPLICIT_KEYS:
                    found.add(key)
        return found

    def _compile_filters(self, key: str, raw: Mapping[str, Any]) -> Dict[str, Any]:
        filters = raw.get("filters") or {}
        if not isinstance(filters, dict):
            raise Malformed("'filters' is not an object")
        identifier = raw.get("bucketing_identifier") or filters.get("bucketing_identifier")
        aggregation = filters.get("aggregation_group_type_index")
        group_type = self.group_types.get(str(aggregation)) if aggregation is not None else None

        variants = self._variants(filters.get("multivariate"))
        variant_keys = {v.key for v in variants}
        raw_conditions = filters.get("groups") or []
        if not isinstance(raw_conditions, list):
            raise Malformed("'filters.groups' is not a list")
        conditions = tuple(
            self._condition(i, c, aggregation, variant_keys) for i, c in enumerate(raw_conditions)
        )
        return {
            "bucket_by_device": identifier == "device_id",
            "aggregation_index": aggregation,
            "group_type": group_type,
            "feature_enrollment": filters.get("feature_enrollment") is True,
            "early_exit": bool(filters.get("early_exit")),
            "holdout": self._holdout(filters.get("holdout")),
            "conditions": conditions,
            "variants": variants,
            "payloads": self._payloads(filters.get("payloads")),
        }

    def _variants(self, multivariate: Any) -> Tuple[Variant, ...]:
        if not multivariate:
            return ()
        if not isinstance(multivariate, dict):
            raise Malformed("'multivariate' is not an object")
        raw_variants = multivariate.get("variants") or []
        if not isinstance(raw_variants, list):
            raise Malformed("'multivariate.variants' is not a list")
        table: List[Variant] = []
        start: float = 0
        for item in raw_variants:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise Malformed("a variant has no text key")
            raw_percentage = item.get("rollout_percentage")
            if not is_number(raw_percentage):
                raise Malformed(f"variant {item['key']!r} has no numeric rollout_percentage")
            percentage = cast(float, raw_percentage)
            # Same arithmetic, in the same order, as the server, so the edges agree bit for bit.
            end = start + percentage / 100
            table.append(Variant(item["key"], percentage, start, end))
            start = end
        return tuple(table)

    def _condition(
        self, index: int, raw: Any, flag_aggregation: Any, variant_keys: Set[str]
    ) -> Condition:
        if not isinstance(raw, dict):
            raise Malformed(f"condition {index} is not an object")
        raw_filters = raw.get("properties") or []
        if not isinstance(raw_filters, list):
            raise Malformed(f"condition {index} 'properties' is not a list")
        filters: List[FilterSpec] = []
        for item in raw_filters:
            spec = self.compile_filter(item)
            if isinstance(spec, CohortFilter):
                spec = self.finish_cohort_filter(spec)
            filters.append(spec)
        rollout = raw.get("rollout_percentage")
        if rollout is not None and not is_number(rollout):
            raise Malformed(f"condition {index} rollout_percentage is not a number")
        requested = raw.get("variant")
        override = requested if isinstance(requested, str) and requested in variant_keys else None
        aggregation = raw.get("aggregation_group_type_index", flag_aggregation)
        switches = aggregation != flag_aggregation
        group_type = None
        if switches and aggregation is not None:
            group_type = self.group_types.get(str(aggregation))
        return Condition(
            index=index,
            filters=tuple(filters),
            rollout_percentage=rollout,
            threshold=None if rollout is None else rollout / 100,
            variant=override,
            requested_variant=requested,
            switches_group=switches,
            aggregation_index=aggregation,
            group_type=group_type,
            description=f"Matched condition {index}.",
        )

    def _holdout(self, raw: Any) -> Optional[Holdout]:
        if not raw:
            return None
        if not isinstance(raw, dict):
            raise Malformed("'holdout' is not an object")
        percentage = raw.get("exclusion_percentage")
        holdout_id = raw.get("id")
        if percentage is None or holdout_id is None:
            return None
        number = parse_number(percentage) if not isinstance(percentage, bool) else float(percentage)
        if number is None:
            raise Malformed("holdout exclusion_percentage is not a number")
        # The server clamps rather than rejects out-of-range percentages.
        clamped = min(max(number, 0.0), 100.0)
        fraction = clamped / 100
        return Holdout(
            holdout_id, clamped, fraction, clamped == 100.0, f"holdout-{holdout_id}",
            digests_where("!<=", fraction),  # held out: bucket <= fraction
        )

    def _payloads(self, raw: Any) -> Mapping[str, Payload]:
        if not isinstance(raw, dict):
            return EMPTY
        out: Dict[str, Payload] = {}
        for name, payload in raw.items():
            decoded = decode_payload(payload)
            if decoded is not None:
                out[str(name)] = decoded
        return MappingProxyType(out)

    def _local_problem(
        self, fields: Mapping[str, Any]
    ) -> Tuple[Optional[InconclusiveReason], Optional[str]]:
        if not fields["active"]:
            return None, None
        if fields["ensure_experience_continuity"]:
            return (
                InconclusiveReason.EXPERIENCE_CONTINUITY,
                "experience continuity is on: only the server can evaluate it",
            )
        if fields["malformed"] is not None:
            problem = f"the definition is malformed: {fields['malformed']}"
            return InconclusiveReason.UNSUPPORTED_DEFINITION, problem
        aggregation = fields["aggregation_index"]
        if aggregation is not None and fields["group_type"] is None:
            return (
                InconclusiveReason.UNSUPPORTED_DEFINITION,
                f"group type index {aggregation!r} is not in group_type_mapping",
            )
        for condition in fields["conditions"]:
            for spec in condition.filters:
                if self.filter_unsupported(spec, set()):
                    return InconclusiveReason.UNSUPPORTED_DEFINITION, _describe_problem(self, spec)
        return None, None


def _describe_problem(compiler: Compiler, spec: FilterSpec) -> str:
    if spec.problem is not None or not isinstance(spec, CohortFilter):
        return f"filter {spec.type} {spec.key!r} {spec.operator}: {spec.problem}"
    reason = compiler.cohort_server_reason(spec.cohort_id)
    if reason is not None:
        return f"cohort {spec.cohort_id}: {reason}"
    return f"cohort {spec.cohort_id} contains a filter local evaluation cannot use"


def _dependencies(spec: Any, cohorts: Mapping[str, PropertyGroup], seen: Set[str]) -> List[str]:
    """Flag keys a filter (or cohort group) may evaluate, following cohort references."""
    if isinstance(spec, FlagDependencyFilter):
        return list(spec.chain) if spec.problem is None and not spec.malformed else []
    if isinstance(spec, CohortFilter):
        if spec.cohort_id in seen or spec.cohort_id not in cohorts:
            return []
        seen.add(spec.cohort_id)
        return _dependencies(cohorts[spec.cohort_id], cohorts, seen)
    if isinstance(spec, PropertyGroup):
        found: List[str] = []
        for _, node in spec.entries:
            found.extend(_dependencies(node, cohorts, seen))
        return found
    return []


def _dependency_edges(
    flags: Mapping[str, CompiledFlag], cohorts: Mapping[str, PropertyGroup]
) -> Dict[str, List[str]]:
    """For every active flag, the flags its filters may evaluate."""
    edges: Dict[str, List[str]] = {}
    for key, compiled in flags.items():
        if not compiled.active:
            continue  # an inactive flag is false without looking at its dependencies
        targets: List[str] = []
        for cond in compiled.conditions:
            for spec in cond.filters:
                targets.extend(_dependencies(spec, cohorts, set()))
        edges[key] = targets
    return edges


def _flags_on_dependency_cycles(
    flags: Mapping[str, CompiledFlag], edges: Mapping[str, List[str]]
) -> List[str]:
    # Iterative three-colour DFS: a key reached again while still on the path closes a cycle.
    on_cycle: Set[str] = set()
    state: Dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for root in edges:
        if root in state:
            continue
        path: List[str] = [root]
        iters = [iter(edges.get(root, ()))]
        state[root] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                on_cycle.update(path[path.index(nxt) :])
            elif nxt not in state and nxt in edges:
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(edges[nxt]))
    return [key for key in flags if key in on_cycle]


def _mark_malformed(compiled: CompiledFlag, problem: str) -> CompiledFlag:
    return dataclasses.replace(
        compiled,
        malformed=problem,
        local_reason=InconclusiveReason.UNSUPPORTED_DEFINITION,
        local_problem=f"the definition is malformed: {problem}",
    )


def _matching_version(raw: Any) -> int:
    # Only the integer 2 selects version 2; anything else (absent, "2", true) means version 1.
    return 2 if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw == 2 else 1


def parse_definitions(raw: Any) -> Snapshot:
    """Compile a definitions response body into a Snapshot.

    Bad data never raises: a body that is not an object gives an empty, unloaded snapshot, and
    problems stay with the flag or section they concern. An internal error in compiling one flag
    or cohort is listed in ``errors`` and leaves that flag to the server; any other internal
    error raises, so the caller keeps the definitions it had.
    """
    if not isinstance(raw, Mapping):
        return Snapshot.empty()
    problems: List[str] = []

    raw_mapping = raw.get("group_type_mapping") or {}
    group_types: Dict[str, str] = {}
    if isinstance(raw_mapping, Mapping):
        for index, name in raw_mapping.items():
            if isinstance(name, str) and name:
                group_types[str(index)] = name
    else:
        problems.append("group_type_mapping is not an object")

    raw_flags = raw.get("flags") or []
    if not isinstance(raw_flags, list):
        problems.append("flags is not a list")
        raw_flags = []
    by_key: Dict[str, Mapping[str, Any]] = {}
    for position, item in enumerate(raw_flags):
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            problems.append(f"flag #{position} has no text key and was skipped")
            continue
        by_key[item["key"]] = item  # a repeated key: the later definition wins, as in the reference

    raw_cohorts = raw.get("cohorts") or {}
    if not isinstance(raw_cohorts, Mapping):
        problems.append("cohorts is not an object")
        raw_cohorts = {}
    cohort_sources = {str(k): v for k, v in raw_cohorts.items()}

    compiler = Compiler(
        _matching_version(raw.get("property_matching_version", 1)),
        group_types,
        frozenset(by_key),
        cohort_sources,
    )
    cohorts = _Cohorts(compiler, cohort_sources)

    def compile_one(key: str, item: Mapping[str, Any]) -> Tuple[CompiledFlag, Optional[str]]:
        cohorts.ensure()  # flags read the compiled cohorts while they compile
        try:
            return compiler.compile_flag(key, item), None
        except Exception as exc:  # a compiler bug: only this flag goes to the server
            return compiler.compile_flag_after_error(key, item, exc), f"flag {key!r}: {exc!r}"

    # Only the flags that may read other flags are compiled now: dependency cycles must be
    # known before anything is evaluated. Every other flag is compiled on first read
    # (productos._flags.lazy says why that keeps the snapshot immutable).
    cohorts_reading_flags = _cohorts_reading_flags(cohort_sources)
    compiled: Dict[str, CompiledFlag] = {}
    flag_errors: Dict[str, str] = {}
    for key, item in by_key.items():
        if _may_read_flags(item, cohorts_reading_flags):
            compiled[key], error = compile_one(key, item)
            if error is not None:
                flag_errors[key] = error
    shared_cohorts: LoadedOnce[PropertyGroup] = LoadedOnce(cohorts.ensure)
    edges = _dependency_edges(compiled, shared_cohorts)
    for key in _flags_on_dependency_cycles(compiled, edges):
        # The server refuses circular dependencies (it sends an empty chain for them), so a loop
        # hidden in non-empty chains is malformed data; without this, answers would depend on
        # which flag of the loop was evaluated first.
        compiled[key] = _mark_malformed(compiled[key], "circular flag dependency")
    return Snapshot(
        flags=LazyFlags(by_key, compile_one, compiled, flag_errors, cohorts.errors),
        group_type_mapping=MappingProxyType(group_types),
        cohorts=shared_cohorts,
        property_matching_version=compiler.matching_version,
        raw=MappingProxyType(dict(raw)),
        loaded=True,
        problems=tuple(problems),
        depended_on=frozenset(target for targets in edges.values() for target in targets),
    )


class _Cohorts:
    """A document's cohorts, compiled all together in document order on first need."""

    def __init__(self, compiler: Compiler, sources: Dict[str, Any]) -> None:
        self._compiler = compiler
        self._sources = sources
        self._errors: List[str] = []
        self._ready = False

    def ensure(self) -> Mapping[str, PropertyGroup]:
        """The compiled cohorts (compiled now if need be; callers hold the lazy lock)."""
        compiler = self._compiler
        cohorts = compiler.cohorts
        if self._ready:
            return MappingProxyType(cohorts)
        errors = self._errors
        for cohort_id, group in self._sources.items():
            try:
                cohorts[cohort_id] = compiler.compile_group(group)
            except Exception as exc:  # a compiler bug: only this cohort goes to the server
                errors.append(f"cohort {cohort_id}: {exc!r}")
                cohorts[cohort_id] = _failed_group(exc)
        for cohort_id, group in list(cohorts.items()):
            try:
                cohorts[cohort_id] = compiler.finish_group(group)
            except Exception as exc:
                errors.append(f"cohort {cohort_id}: {exc!r}")
                cohorts[cohort_id] = _failed_group(exc)
        self._ready = True
        return MappingProxyType(cohorts)

    def errors(self) -> List[str]:
        """The cohorts' internal compiler errors (compiles them first)."""
        self.ensure()
        return list(self._errors)


def _cohorts_reading_flags(cohort_sources: Mapping[str, Any]) -> Set[str]:
    """Ids of the cohorts whose JSON holds a flag filter, directly or through other cohorts.

    A superset of what the compiled cohorts can evaluate: a flag counted here only compiles
    early, which is always correct.
    """
    direct: Dict[str, Set[str]] = {}  # cohort id -> cohort ids it names
    reading: Set[str] = set()
    for cohort_id, raw in cohort_sources.items():
        named: Set[str] = set()
        pending: List[Any] = [raw]
        while pending:
            node = pending.pop()
            if isinstance(node, dict):
                kind = node.get("type")
                if kind == "flag":
                    reading.add(cohort_id)
                elif kind == "cohort":
                    named.add(str(node.get("value")))
                pending.extend(node.values())
            elif isinstance(node, list):
                pending.extend(node)
        direct[cohort_id] = named
    changed = True
    while changed:  # a cohort naming a flag-reading cohort reads flags too
        changed = False
        for cohort_id, named in direct.items():
            if cohort_id not in reading and not named.isdisjoint(reading):
                reading.add(cohort_id)
                changed = True
    return reading


def _may_read_flags(raw: Mapping[str, Any], cohorts_reading_flags: Set[str]) -> bool:
    """Whether a flag's conditions may hold a flag filter (a superset; see above)."""
    filters = raw.get("filters")
    if not isinstance(filters, dict):
        return False
    conditions = filters.get("groups")
    if not isinstance(conditions, list):
        return False
    for condition in conditions:
        if not isinstance(condition, dict):
            continue
        properties = condition.get("properties")
        if not isinstance(properties, list):
            continue
        for item in properties:
            if isinstance(item, dict):
                kind = item.get("type")
                if kind == "flag":
                    return True
                if kind == "cohort" and str(item.get("value")) in cohorts_reading_flags:
                    return True
    return False


def _failed_group(error: BaseException) -> PropertyGroup:
    return PropertyGroup(True, (), f"internal error while compiling the cohort ({error!r})", True)
