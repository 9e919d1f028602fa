"""Property filters against one property value: the server's operators, decided or undecided.

Each matcher takes a compiled filter, the property's value (:data:`ABSENT` when the caller did
not pass it) and the evaluation's clock, and returns True, False or an :class:`Undecided` that
says why the filter cannot be decided locally. Matchers are pure and never raise.
"""

from __future__ import annotations

import datetime as _dt
import functools
import math
from typing import Any, Callable, Dict, NamedTuple, Optional, Protocol, Union

from productos._flags.filters import (
    EXACT_EQUALS,
    EXACT_IN,
    EXACT_TRUTHINESS,
    DateFilter,
    ExactFilter,
    FilterSpec,
    NumericFilter,
    PresenceFilter,
    RegexFilter,
    SemverFilter,
    TextFilter,
    UnknownOperatorFilter,
)
from productos._flags.results import RANK, InconclusiveReason
from productos._flags.semver import parse_semver
from productos._flags.values import ascii_lower, parse_number, stringify, truthy

__all__ = [
    "ABSENT",
    "CYCLE",
    "NOT_SUPPLIED",
    "PROPERTY_MATCHERS",
    "CallState",
    "Matcher",
    "Outcome",
    "Undecided",
    "matcher_for",
    "stronger",
    "unsupported",
]

_UNSUPPORTED = InconclusiveReason.UNSUPPORTED_DEFINITION
_MISSING = InconclusiveReason.MISSING_CONTEXT
_isfinite = math.isfinite


class CallState(Protocol):
    """What one evaluation call shares between filters: its time, and dates already parsed."""

    def now(self) -> _dt.datetime:
        """The evaluation time (aware), read once per call."""

    def date_value(self, value: Any) -> Optional[Union[_dt.datetime, _dt.date]]:
        """A property value as a date (see ``parse_date_value``), parsed once per call."""


class Undecided(NamedTuple):
    """A filter or condition that could not be decided; ``server``: stop and ask the server."""

    reason: InconclusiveReason
    server: bool
    detail: str


Outcome = Union[bool, Undecided]

ABSENT: Any = object()  # the value of a property the caller did not pass
NOT_SUPPLIED = Undecided(_MISSING, False, "property not supplied")
_UNUSABLE_VALUE = Undecided(_MISSING, False, "property value cannot be compared as JSON text")
_NOT_A_DATE = Undecided(_MISSING, False, "property is not a date")
_NOT_A_VERSION = Undecided(_MISSING, False, "property is not a version")
_REGEX_VALUE = Undecided(_UNSUPPORTED, False, "the server's regex engine may differ on this value")
_DATE_RANGE = Undecided(_UNSUPPORTED, False, "the relative date falls outside years 1-9999")
CYCLE = Undecided(_UNSUPPORTED, False, "circular flag dependency")


def unsupported(spec: FilterSpec) -> Undecided:
    """The doubt a filter the SDK cannot use raises, with its problem as the detail."""
    return Undecided(_UNSUPPORTED, False, spec.problem or "unsupported filter")


def _absent(spec: FilterSpec) -> Undecided:
    # A filter the SDK cannot use outranks a property the caller did not pass.
    return NOT_SUPPLIED if spec.problem is None else unsupported(spec)


def stronger(current: Optional[Undecided], new: Undecided) -> Undecided:
    """The stronger of two doubts (the current one on a tie)."""
    if current is None or RANK[new.reason] < RANK[current.reason]:
        return new
    return current


# --- property operators (value is the property, or ABSENT) ----------------------------------


def _match_unknown(spec: FilterSpec, value: Any, ev: CallState) -> Outcome:
    return unsupported(spec)


def _match_presence(spec: PresenceFilter, value: Any, ev: CallState) -> Outcome:
    if value is ABSENT:
        return NOT_SUPPLIED  # even is_not_set: an omitted key is not known to be unset
    return spec.want_set


def _match_exact(spec: ExactFilter, value: Any, ev: CallState) -> Outcome:
    if value is ABSENT or spec.problem is not None:
        return _absent(spec)
    text = value if value.__class__ is str else stringify(value)
    if text is None:
        return _UNUSABLE_VALUE
    mode = spec.mode
    if mode == EXACT_EQUALS:
        hit = text.lower() == spec.text
    elif mode == EXACT_IN:
        hit = text.lower() in spec.texts
    elif mode == EXACT_TRUTHINESS:
        hit = truthy(value) == spec.want_truthy
    else:  # EXACT_EMPTY_LIST
        hit = truthy(value)
    return hit != spec.negate


def _match_text(spec: TextFilter, value: Any, ev: CallState) -> Outcome:
    if value is ABSENT:
        return _absent(spec)
    text = value if value.__class__ is str else stringify(value)
    if spec.problem is not None:
        return unsupported(spec)
    if text is None:
        return _UNUSABLE_VALUE
    text = text.lower() if text.isascii() else ascii_lower(text)  # ascii_lower, inlined
    how = spec.how
    if how == "contains":
        hit = spec.needle in text
    elif how == "prefix":
        hit = text.startswith(spec.needle)
    else:
        hit = text.endswith(spec.needle)
    return hit != spec.negate


def _match_regex(spec: RegexFilter, value: Any, ev: CallState) -> Outcome:
    if value is ABSENT:
        return _absent(spec)
    if spec.problem is not None:
        return unsupported(spec)
    text = value if value.__class__ is str else stringify(value)
    if text is None:
        return _UNUSABLE_VALUE
    if spec.always:
        return not spec.negate
    regex = spec.spec
    if regex is None:
        return False  # an invalid pattern matches nothing, for regex and not_regex alike
    # Checks where Python's re and the server's engine are known to disagree on the value.
    if regex.end_anchor_with_repetition and text.endswith("\n"):
        return _REGEX_VALUE
    if not text.isascii():
        if any("\ud800" <= c <= "\udfff" for c in text):
            return _REGEX_VALUE
        if regex.uses_word_class and any(
            not c.isascii() and not (c.isalpha() or c.isdecimal()) for c in text
        ):
            return _REGEX_VALUE
    if regex.uses_space_class and any(c in text for c in "\x1c\x1d\x1e\x1f"):
        return _REGEX_VALUE
    # Patterns Python's re may backtrack on for long have a length limit (_flags.regex_safety).
    searcher = regex.pattern if regex.python_limit is None else regex.engine_for(text)
    if isinstance(searcher, str):
        return Undecided(_UNSUPPORTED, False, searcher)
    try:
        hit = searcher.search(text) is not None
    except Exception:  # pragma: no cover - neither engine raises on str input
        return _REGEX_VALUE
    return hit != spec.negate


def _match_numeric(spec: NumericFilter, value: Any, ev: CallState) -> Outcome:
    if value is ABSENT:
        return _absent(spec)
    target = spec.number
    if target is None:
        return unsupported(spec)
    cls = value.__class__
    if cls is float:  # the common JSON numbers first, exactly as parse_number reads them
        number: Optional[float] = value if _isfinite(value) else None
    elif cls is int:
        try:
            number = float(value)
        except OverflowError:
            number = None
    else:
        number = parse_number(value)
    if number is None:
        return False
    op = spec.operator
    if op == "gt":
        return number > target
    if op == "gte":
        return number >= target
    if op == "lt":
        return number < target
    return number <= target


def _match_date(spec: DateFilter, value: Any, ev: CallState) -> Outcome:
    if value is ABSENT:
        if spec.problem is None and _resolve_date(spec, ev) is None:
            return _DATE_RANGE
        return _absent(spec)
    if value is None:
        return False
    if spec.problem is not None:
        return unsupported(spec)
    when = _resolve_date(spec, ev)
    if when is None:
        return _DATE_RANGE
    seen = ev.date_value(value)
    if seen is None:
        return _NOT_A_DATE
    if not isinstance(seen, _dt.datetime):
        return seen < when.date() if spec.before else seen > when.date()
    return seen < when if spec.before else seen > when


def _resolve_date(spec: DateFilter, ev: CallState) -> Optional[_dt.datetime]:
    date = spec.date
    if date is None or isinstance(date, _dt.datetime):
        return date
    return date.resolve(ev.now())


# App versions repeat across calls; parsing is pure, so a small cache saves it on the hot path.
_semver_of_text = functools.lru_cache(maxsize=1024)(parse_semver)


def _match_semver(spec: SemverFilter, value: Any, ev: CallState) -> Outcome:
    if value is ABSENT:
        return _absent(spec)
    if value is None:
        return False
    if spec.problem is not None:
        return unsupported(spec)
    version = _semver_of_text(value) if value.__class__ is str else parse_semver(value)
    if version is None:
        return _NOT_A_VERSION
    if spec.lower is not None and spec.upper is not None:
        return spec.lower <= version < spec.upper
    target = spec.version
    if target is None:  # pragma: no cover - a filter without a version carries a problem
        return unsupported(spec)
    op = spec.operator
    if op == "semver_eq":
        return version == target
    if op == "semver_neq":
        return version != target
    if op == "semver_gt":
        return version > target
    if op == "semver_gte":
        return version >= target
    if op == "semver_lt":
        return version < target
    return version <= target


# --- the same tests, specialised by the compiler for a usable filter's mode ------------------
# One comparison per call instead of dispatching on the mode; the answers are those above.


def _match_exact_equals(spec: ExactFilter, value: Any, ev: CallState) -> Outcome:
    if value.__class__ is str:
        return (value.lower() == spec.text) != spec.negate
    if value is ABSENT:
        return NOT_SUPPLIED
    text = stringify(value)
    if text is None:
        return _UNUSABLE_VALUE
    return (text.lower() == spec.text) != spec.negate


def _match_exact_in(spec: ExactFilter, value: Any, ev: CallState) -> Outcome:
    if value.__class__ is str:
        return (value.lower() in spec.texts) != spec.negate
    if value is ABSENT:
        return NOT_SUPPLIED
    text = stringify(value)
    if text is None:
        return _UNUSABLE_VALUE
    return (text.lower() in spec.texts) != spec.negate


def _match_contains(spec: TextFilter, value: Any, ev: CallState) -> Outcome:
    if value.__class__ is not str:
        if value is ABSENT:
            return NOT_SUPPLIED
        value = stringify(value)
        if value is None:
            return _UNUSABLE_VALUE
    text = value.lower() if value.isascii() else ascii_lower(value)
    return (spec.needle in text) != spec.negate


def _match_prefix(spec: TextFilter, value: Any, ev: CallState) -> Outcome:
    if value.__class__ is not str:
        if value is ABSENT:
            return NOT_SUPPLIED
        value = stringify(value)
        if value is None:
            return _UNUSABLE_VALUE
    text = value.lower() if value.isascii() else ascii_lower(value)
    return text.startswith(spec.needle) != spec.negate


def _match_suffix(spec: TextFilter, value: Any, ev: CallState) -> Outcome:
    if value.__class__ is not str:
        if value is ABSENT:
            return NOT_SUPPLIED
        value = stringify(value)
        if value is None:
            return _UNUSABLE_VALUE
    text = value.lower() if value.isascii() else ascii_lower(value)
    return text.endswith(spec.needle) != spec.negate


Matcher = Callable[[Any, Any, CallState], Outcome]

_EXACT_MATCHERS: Dict[int, Matcher] = {EXACT_EQUALS: _match_exact_equals, EXACT_IN: _match_exact_in}
_TEXT_MATCHERS: Dict[str, Matcher] = {
    "contains": _match_contains,
    "prefix": _match_prefix,
    "suffix": _match_suffix,
}


def matcher_for(spec: FilterSpec) -> Optional[Matcher]:
    """The test for a property filter (specialised when it is usable), None for the others."""
    if spec.problem is None:
        if isinstance(spec, ExactFilter):
            specialised: Optional[Matcher] = _EXACT_MATCHERS.get(spec.mode)
            return specialised or _match_exact
        if isinstance(spec, TextFilter):
            return _TEXT_MATCHERS[spec.how]
    return PROPERTY_MATCHERS.get(spec.__class__)


# The test for each kind of property filter; cohort and dependency filters are the evaluator's.
PROPERTY_MATCHERS: Dict[type, Matcher] = {
    ExactFilter: _match_exact,
    TextFilter: _match_text,
    RegexFilter: _match_regex,
    NumericFilter: _match_numeric,
    DateFilter: _match_date,
    SemverFilter: _match_semver,
    PresenceFilter: _match_presence,
    UnknownOperatorFilter: _match_unknown,
}
