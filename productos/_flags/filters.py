"""Compiled filters: what a definition's property, cohort and flag filters become once parsed.

Each filter keeps what the definition said (``type``, ``key``, ``operator``, ``value``) and, in
``problem``, why local evaluation can never use it. The operator-specific fields hold the filter
value already parsed, so evaluation only compares. Instances are immutable and shared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, FrozenSet, Optional, Tuple, Union

from productos._flags.dates import DateSpec
from productos._flags.semver import SemverTuple

if TYPE_CHECKING:  # the regex analysis is part of the compiler, loaded on first parse
    from productos._flags.regex_dialect import RegexSpec
from productos._runtime.records import record

__all__ = [
    "EXACT_EMPTY_LIST",
    "EXACT_EQUALS",
    "EXACT_IN",
    "EXACT_TRUTHINESS",
    "CohortFilter",
    "DateFilter",
    "ExactFilter",
    "FilterSpec",
    "FlagDependencyFilter",
    "NumericFilter",
    "PresenceFilter",
    "PropertyGroup",
    "RegexFilter",
    "SemverFilter",
    "TextFilter",
    "UnknownOperatorFilter",
]


@record(frozen=True, slots=True)
class FilterSpec:
    """Common part of every compiled filter: what the definition said, and why it is unusable."""

    type: str
    key: Any
    operator: str
    value: Any
    problem: Optional[
        str
    ]  # why local evaluation can never use this filter (unsupported_definition)


@record(frozen=True, slots=True)
class UnknownOperatorFilter(FilterSpec):
    """A filter whose operator this SDK does not know: always unsupported."""


@record(frozen=True, slots=True)
class PresenceFilter(FilterSpec):
    """is_set / is_not_set."""

    want_set: bool


EXACT_EMPTY_LIST = 0  # filter [] : the property must be truthy
EXACT_TRUTHINESS = 1  # matching version 1 boolean-looking filter: compare truthiness
EXACT_IN = 2  # list filter: membership of the lower-cased text
EXACT_EQUALS = 3  # scalar filter: equality of the lower-cased text


@record(frozen=True, slots=True)
class ExactFilter(FilterSpec):
    """exact / is_not, compiled for the snapshot's property matching version."""

    negate: bool
    mode: int
    want_truthy: bool
    texts: FrozenSet[str]
    text: str


@record(frozen=True, slots=True)
class TextFilter(FilterSpec):
    """icontains / starts_with / ends_with and their not_ forms (ASCII case-insensitive)."""

    how: str  # "contains", "prefix" or "suffix"
    negate: bool
    needle: str


@record(frozen=True, slots=True)
class RegexFilter(FilterSpec):
    """regex / not_regex."""

    negate: bool
    always: bool  # empty pattern: matches everything
    spec: Optional[RegexSpec]  # None: invalid pattern, which matches nothing for both operators


@record(frozen=True, slots=True)
class NumericFilter(FilterSpec):
    """gt / gte / lt / lte against a finite number."""

    number: Optional[float]


@record(frozen=True, slots=True)
class DateFilter(FilterSpec):
    """is_date_before / is_date_after; relative dates are resolved at evaluation time."""

    before: bool
    date: Optional[DateSpec]


@record(frozen=True, slots=True)
class SemverFilter(FilterSpec):
    """semver_* operators; ranges are kept as [lower, upper) bounds."""

    version: Optional[SemverTuple]
    lower: Optional[SemverTuple]
    upper: Optional[SemverTuple]


@record(frozen=True, slots=True)
class CohortFilter(FilterSpec):
    """Membership of a cohort (operator exact/in = member, not_in = not a member)."""

    cohort_id: str
    negate: bool
    missing: bool  # not in the snapshot's cohorts: a static cohort only the server knows
    requires_server: Optional[str]  # why evaluating the cohort would need the server


@record(frozen=True, slots=True)
class FlagDependencyFilter(FilterSpec):
    """``flag_evaluates_to``: another flag's value, evaluated through ``chain`` first."""

    malformed: bool  # wrong operator or missing key/value: a definite non-match, as on the server
    chain: Tuple[str, ...]


@record(frozen=True, slots=True)
class PropertyGroup:
    """A cohort's AND/OR tree. ``entries`` are (negated, group-or-filter) pairs."""

    is_and: bool
    entries: Tuple[Tuple[bool, Union[PropertyGroup, FilterSpec]], ...]
    problem: Optional[str]  # structurally unusable: only the server can evaluate it
    short_circuit: bool  # no entry can ask for the server at evaluation time
