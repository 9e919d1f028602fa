"""Compile the JSON of ``GET /flags/definitions`` into an immutable, evaluation-ready snapshot.

Everything that does not depend on who is being evaluated is done here, once per definitions
update: regexes are checked against the server's dialect and compiled, numbers, dates and semvers
are parsed, variant range tables and hash prefixes are built and dependency chains are checked.
The evaluator in :mod:`productos.flags` then only reads these objects.

Nothing here performs I/O, logs or raises: a definition this module cannot use is kept as a
compiled object that explains why it cannot be evaluated locally.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as _dt
import hashlib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    ClassVar,
    Dict,
    FrozenSet,
    List,
    Mapping,
    Optional,
    Set,
    Tuple,
    Union,
    cast,
)

from productos._flags.regex_safety import Searcher, analyse_pattern, compile_linear, linear_engine

__all__ = [
    "DEPENDENCY_OPERATOR",
    "MISSING_CONTEXT",
    "UNRESOLVED_DEPENDENCY",
    "UNSUPPORTED_DEFINITION",
    "CohortFilter",
    "CompiledFlag",
    "Condition",
    "DateFilter",
    "ExactFilter",
    "FilterSpec",
    "FlagDependencyFilter",
    "Holdout",
    "NumericFilter",
    "Payload",
    "PresenceFilter",
    "PropertyGroup",
    "RegexFilter",
    "RegexSpec",
    "RelativeDate",
    "SemverFilter",
    "Snapshot",
    "TextFilter",
    "UnknownOperatorFilter",
    "Variant",
    "YearOnlyDate",
    "parse_date_value",
    "parse_definitions",
    "parse_number",
    "parse_semver",
    "stringify",
]

# Reason codes shared with the evaluator. They are plain strings here so that this module does
# not import the evaluator; productos.flags.InconclusiveReason uses the same values.
EXPERIENCE_CONTINUITY = "experience_continuity"
UNSUPPORTED_DEFINITION = "unsupported_definition"
UNRESOLVED_DEPENDENCY = "unresolved_dependency"
MISSING_CONTEXT = "missing_context"

DEPENDENCY_OPERATOR = "flag_evaluates_to"

# Properties the evaluator supplies when the caller's dict lacks them.
_IMPLICIT_KEYS = frozenset({"distinct_id", "$group_key"})

_COHORT_OPERATORS = ("exact", "in", "not_in")
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


# ---------------------------------------------------------------------------------------------
# Value helpers shared by compilation (filter values) and evaluation (property values)
# ---------------------------------------------------------------------------------------------

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case only A-Z, as the server's string operators do."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _json_float(value: float) -> Optional[str]:
    # The flags service prints floats the way JavaScript does for the exponent, but keeps
    # Python's repr otherwise (323.0 stays "323.0"): the vectors pin both behaviours.
    if not math.isfinite(value):
        return None
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent_text = text.split("e")
    exponent = int(exponent_text)
    if -6 < exponent < 0:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if exponent >= 0 else ''}{exponent}"


def _json_text(value: Any) -> Optional[str]:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, list):
        parts = []
        for item in value:
            text = _json_text(item)
            if text is None:
                return None
            parts.append(text)
        return "[" + ",".join(parts) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return None
        parts = []
        for k in sorted(value):
            text = _json_text(value[k])
            if text is None:
                return None
            parts.append(json.dumps(k, ensure_ascii=False) + ":" + text)
        return "{" + ",".join(parts) + "}"
    return None


def stringify(value: Any) -> Optional[str]:
    """Text the server compares: strings as-is, other JSON values as compact JSON, else None."""
    if isinstance(value, str):
        return value
    try:
        return _json_text(value)
    except RecursionError:
        return None


_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_number(value: Any) -> Optional[float]:
    """Finite number from a JSON number or a plain decimal string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if _NUMBER_RE.fullmatch(value) is None:
            return None
    elif not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _truthy_or_falsy(value: Any) -> bool:
    # Matching version 1 treats a filter made only of booleans (or "true"/"false") as a
    # truthiness test rather than a string comparison.
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.lower() in ("true", "false")
    if isinstance(value, list):
        return all(_truthy_or_falsy(item) for item in value)
    return False


def truthy(value: Any) -> bool:
    """Truthiness as the server's exact operator sees it (lists: every item truthy)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() == "true"
    if isinstance(value, list):
        return all(truthy(item) for item in value)
    return False


# --- semver ----------------------------------------------------------------------------------

SemverTuple = Tuple[int, int, int]


def _semver_part(part: str) -> Optional[int]:
    # Semver forbids leading zeros; str.isdigit() mirrors the reference, int() rejects the
    # few "digits" (superscripts) that Python cannot convert.
    if not part or not part.isdigit() or (len(part) > 1 and part[0] == "0"):
        return None
    try:
        return int(part)
    except ValueError:
        return None


def parse_semver(value: Any) -> Optional[SemverTuple]:
    """(major, minor, patch) from '1.2.3', 'v1.2', ' 1.2.3-rc.1+b5 ', else None."""
    text = str(value).strip().lstrip("vV")
    text = text.split("-")[0].split("+")[0]
    parts = text.split(".")
    if not parts[0]:
        return None
    major = _semver_part(parts[0])
    minor: Optional[int] = 0
    patch: Optional[int] = 0
    if len(parts) > 1 and parts[1]:
        minor = _semver_part(parts[1])
    if len(parts) > 2 and parts[2]:
        patch = _semver_part(parts[2])
    if major is None or minor is None or patch is None:
        return None
    return (major, minor, patch)


def _semver_bounds(operator: str, value: Any) -> Optional[Tuple[SemverTuple, SemverTuple]]:
    if operator == "semver_wildcard":
        # "1.*" covers [1.0.0, 2.0.0), "1.2.*" covers [1.2.0, 1.3.0), "1.2.3" covers one patch.
        cleaned = str(value).strip().lstrip("vV").replace("*", "").rstrip(".")
        parsed = [_semver_part(p) for p in cleaned.split(".") if p][:3]
        if not parsed:
            return None
        numbers = [n for n in parsed if n is not None]
        if len(numbers) != len(parsed):
            return None
        if len(numbers) == 1:
            return (numbers[0], 0, 0), (numbers[0] + 1, 0, 0)
        if len(numbers) == 2:
            return (numbers[0], numbers[1], 0), (numbers[0], numbers[1] + 1, 0)
        return (numbers[0], numbers[1], numbers[2]), (numbers[0], numbers[1], numbers[2] + 1)
    version = parse_semver(value)
    if version is None:
        return None
    major, minor, patch = version
    if operator == "semver_tilde":
        return version, (major, minor + 1, 0)
    # caret: the left-most non-zero component may not change
    if major > 0:
        return version, (major + 1, 0, 0)
    if minor > 0:
        return version, (0, minor + 1, 0)
    return version, (0, 0, patch + 1)


# --- dates -----------------------------------------------------------------------------------

_UTC = _dt.timezone.utc
_RELATIVE_RE = re.compile(r"^-?(?P<amount>[0-9]+)(?P<unit>[a-z])$")
_YEAR_ONLY_RE = re.compile(r"\d{4}")
_SPACED_OFFSET_RE = re.compile(r" ([+-]\d{2}:\d{2})$")

if sys.version_info >= (3, 11):
    _fromisoformat = _dt.datetime.fromisoformat
else:  # pragma: no cover - exercised only on Python < 3.11
    from dateutil.parser import isoparse as _isoparse

    def _fromisoformat(text: str) -> _dt.datetime:
        # Before 3.11 fromisoformat only reads its own output format; dateutil's ISO parser
        # covers the other ISO-8601 shapes 3.11 accepts.
        try:
            return _dt.datetime.fromisoformat(text)
        except ValueError:
            return _isoparse(text)


@dataclass(frozen=True)
class RelativeDate:
    """A filter date like '-7d': ``amount`` ``unit``s (h, d, w, m, y) before the evaluation time."""

    amount: int
    unit: str

    def resolve(self, now: _dt.datetime) -> Optional[_dt.datetime]:
        """The absolute instant for ``now`` (aware), or None when it falls outside years 1-9999."""
        try:
            if self.unit == "h":
                return now - _dt.timedelta(hours=self.amount)
            if self.unit == "d":
                return now - _dt.timedelta(days=self.amount)
            if self.unit == "w":
                return now - _dt.timedelta(weeks=self.amount)
        except OverflowError:
            return None
        if self.unit == "m":
            return _minus_months(now, self.amount)
        return _minus_years(now, self.amount)

    def __str__(self) -> str:
        return f"{self.amount}{self.unit} ago"


@dataclass(frozen=True)
class YearOnlyDate:
    """A bare 'YYYY': that year on the evaluation day's month and day, as the reference reads it."""

    year: int

    def resolve(self, now: _dt.datetime) -> Optional[_dt.datetime]:
        """This year on ``now``'s month and day at midnight UTC; None if that day does not exist."""
        try:
            return _dt.datetime(self.year, now.month, now.day, tzinfo=_UTC)
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"year {self.year}"


def _minus_months(moment: _dt.datetime, months: int) -> Optional[_dt.datetime]:
    # Step back one month at a time and clamp the day at every step, so 31 March minus two
    # months is 28 January (it passed through February), as the server computes it.
    start = moment.year * 12 + moment.month - 1
    target = start - months
    year, month = divmod(target, 12)
    if not 1 <= year <= 9999:
        return None
    day = moment.day
    index = start - 1
    while index >= target and day > 28:
        day = min(day, calendar.monthrange(index // 12, index % 12 + 1)[1])
        index -= 1
    return moment.replace(year=year, month=month + 1, day=day)


def _minus_years(moment: _dt.datetime, years: int) -> Optional[_dt.datetime]:
    year = moment.year - years
    if not 1 <= year <= 9999:
        return None
    # The year before a leap year is never a leap year, so 29 February clamps on the first step.
    day = 28 if years > 0 and (moment.month, moment.day) == (2, 29) else moment.day
    return moment.replace(year=year, day=day)


DateSpec = Union[_dt.datetime, RelativeDate, YearOnlyDate]


def _parse_absolute(text: str) -> Optional[Union[_dt.datetime, YearOnlyDate]]:
    text = text.strip()
    # The length and space guards only skip work: no character upper-cases to a space, and
    # \d{4} is four characters.
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    elif " " in text and text.upper().endswith(" UTC"):
        text = text[:-4] + "+00:00"
    elif len(text) == 4 and _YEAR_ONLY_RE.fullmatch(text):
        return YearOnlyDate(int(text))
    if " " in text:
        text = _SPACED_OFFSET_RE.sub(r"\1", text)
    try:
        parsed = _fromisoformat(text)
    except (ValueError, TypeError, OverflowError):
        return None
    if parsed.tzinfo is None:
        # The same as parsed.replace(tzinfo=UTC), several times faster (property values are
        # parsed on every evaluation).
        parsed = _dt.datetime.combine(parsed, parsed.time(), _UTC)
    return parsed


def _parse_date_filter(value: Any) -> Optional[DateSpec]:
    text = str(value)
    relative = _RELATIVE_RE.search(text)
    if relative is not None:
        amount = int(relative.group("amount"))
        unit = relative.group("unit")
        # Large amounts are refused (the server guards against overflow the same way).
        if amount < 10_000 and unit in "hdwmy":
            return RelativeDate(amount, unit)
    return _parse_absolute(text)


def parse_date_value(
    value: Any, now: Callable[[], _dt.datetime]
) -> Optional[Union[_dt.datetime, _dt.date]]:
    """A property value as a date: aware datetimes, dates, or ISO-8601 strings; else None."""
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)
    if isinstance(value, _dt.date):
        return value
    if not isinstance(value, str):
        return None
    parsed = _parse_absolute(value)
    if isinstance(parsed, YearOnlyDate):
        return parsed.resolve(now())
    return parsed


# --- regex dialect guard ---------------------------------------------------------------------

_INVALID = "invalid"
_DIALECT_PROBLEM = "the regex uses syntax that may behave differently on the server"
_CURRENT_ENGINE: Any = object()  # _compile_regex's default: the engine selected process-wide
_SHORTHANDS = ("\\d", "\\D", "\\s", "\\S", "\\w", "\\W")
_REPETITION_RE = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")


@dataclass(frozen=True)
class RegexSpec:
    """A compiled pattern plus what the evaluator must check on each value before trusting it.

    ``pattern`` (Python's re) serves values up to ``python_limit`` characters (None: any);
    longer ones go to ``linear`` (re2, when installed) up to ``linear_limit``, and past both the
    filter is inconclusive (see :mod:`productos._flags.regex_safety`).
    """

    pattern: re.Pattern[str]
    uses_word_class: bool
    uses_space_class: bool
    end_anchor_with_repetition: bool
    python_limit: Optional[int] = None
    risk: str = ""  # why Python's re is limited on this pattern
    linear: Optional[Searcher] = None  # the re2 compiled pattern
    linear_limit: Optional[int] = None
    linear_ascii_only: bool = False  # re2 reads \d \s \w as ASCII: only ASCII values go to it

    @property
    def engine(self) -> str:
        """The engine that takes the values Python's re may not: "re2", or "re" if none."""
        return "re" if self.linear is None else "re2"

    def engine_for(self, text: str) -> Union[Searcher, str]:
        """The compiled pattern to search ``text`` with, or why neither engine may take it."""
        size = len(text)
        limit = self.python_limit
        if limit is None or size <= limit:
            return self.pattern
        linear = self.linear
        refusal = ""
        if linear is not None:
            if self.linear_limit is not None and size > self.linear_limit:
                refusal = f"re2 takes at most {self.linear_limit} characters with this regex"
            elif self.linear_ascii_only and not text.isascii():
                refusal = "re2 reads \\d, \\s and \\w as ASCII only, and the value is not ASCII"
            elif self.linear_ascii_only and self.uses_space_class and "\x0b" in text:
                refusal = "re2's \\s leaves out the vertical tab the value holds"
            else:
                return linear
        if limit == 0:
            return f"{self.risk}; {refusal}" if refusal else self.risk
        why = (
            f"the value has {size} characters, more than the {limit} Python's re can take "
            f"safely with this regex: {self.risk}"
        )
        return f"{why}; {refusal}" if refusal else why


class _Deferred(Exception):
    """Internal to the regex scanner: the pattern may behave differently on the server."""


def _scan_regex(source: str) -> Tuple[str, bool, bool, bool, bool]:
    """Rewrite a pattern for Python's re, refusing syntax where Python and Rust's regex differ.

    Returns (python_pattern, uses_word_class, uses_space_class, uses_end_anchor,
    uses_repetition_or_alternation); raises _Deferred when the server must decide.
    """
    out: List[str] = []
    n = len(source)
    i = 0
    class_start: Optional[int] = None
    # What the previous token was, for the quantifier rules: "" (start), "(", "|", "^", "$",
    # "empty group", "quantifier", "literal" or the literal character itself.
    prev = ""
    word = space = end_anchor = repeats = False

    while i < n:
        ch = source[i]
        if "\ud800" <= ch <= "\udfff":
            raise _Deferred
        if class_start is None:
            if ch == "$":
                end_anchor = True
            if ch in "*+?{|":
                repeats = True
            # Nested repetitions are judged by _flags.regex_safety (backtracking cost) and by
            # its estimate of the server's compiled size, not refused here.

        if ch == "\\":
            i += 1
            if i == n:
                out.append("\\")  # a dangling escape: invalid in both engines
                break
            esc = source[i]
            if esc == "x":
                digits = source[i + 1 : i + 3]
                if len(digits) != 2 or any(c not in "0123456789abcdefABCDEF" for c in digits):
                    raise _Deferred
                out.append("\\x" + digits)
                i += 2
            else:
                if esc in "bB<>" and class_start is None:
                    raise _Deferred  # word boundaries differ (Unicode) and are costly server-side
                if esc not in "dDsSwWbfnrt":
                    if not (0x20 <= ord(esc) <= 0x7E and not esc.isalnum()):
                        raise _Deferred  # \A, \z, \1, \p{..}, \u... mean different things
                    if class_start is not None and esc not in "\\-[]^.$*+?(){}|":
                        raise _Deferred
                word = word or esc in "wW"
                space = space or esc in "sS"
                out.append("\\" + esc)
            prev = "literal"
        elif ch == "[":
            if class_start is not None:
                raise _Deferred  # nested sets / POSIX classes are Rust-only syntax
            class_start = i
            out.append(ch)
        elif ch == "]" and class_start is not None:
            first = class_start + (2 if source[class_start + 1 : class_start + 2] == "^" else 1)
            if i == first:
                raise _Deferred  # '[]' and '[^]' open a set in Python but are errors in Rust
            class_start = None
            prev = "literal"
            out.append(ch)
        elif class_start is not None:
            if source[i : i + 2] in ("&&", "--", "~~"):
                raise _Deferred  # Rust set operations
            shorthand_range = source[i + 1 : i + 3] in _SHORTHANDS or (
                i >= 2 and source[i - 2] == "\\" and source[i - 1] in "dDsSwW"
            )
            if ch == "-" and i + 1 < n and source[i + 1] != "]" and shorthand_range:
                raise _Deferred  # ranges with a shorthand endpoint differ between the engines
            out.append(ch)
        elif ch == "(" and source[i + 1 : i + 2] == "?":
            if source[i + 2 : i + 3] != ":":
                raise _Deferred  # look-around, named groups and inline flags
            out.append("(?:")
            i += 2
            prev = "("
        elif ch == "{":
            match = _REPETITION_RE.match(source, i)
            if match is None or prev in ("", "|", "(", "^", "$", "empty group", "quantifier"):
                raise _Deferred  # a literal '{' in Python is a repetition error in Rust
            if any(len(g) > 10 or int(g) > 0xFFFFFFFF for g in match.groups() if g):
                raise _Deferred
            out.append(match.group())
            i = match.end() - 1
            if source[i + 1 : i + 2] in ("+", "{"):
                raise _Deferred
            prev = "quantifier"
        elif ch in "*+?":
            if prev in ("^", "$", "empty group") or source[i + 1 : i + 2] in ("+", "{"):
                raise _Deferred
            prev = "quantifier"
            out.append(ch)
        else:
            prev = "empty group" if ch == ")" and prev in ("(", "empty group") else ch
            # Python's '$' also matches before a final newline; the server's does not.
            out.append("\\Z" if ch == "$" else ch)
        i += 1
    return "".join(out), word, space, end_anchor, repeats


def _compile_regex(source: str, engine: Any = _CURRENT_ENGINE) -> Union[RegexSpec, str]:
    """The compiled pattern, ``_INVALID``, or why only the server may evaluate it.

    ``engine`` is the re2 module to compile with (None: Python's re only); by default the one
    :func:`productos._flags.regex_safety.set_regex_engine` selects.
    """
    try:
        python_source, word, space, end_anchor, repeats = _scan_regex(source)
    except _Deferred:
        return _DIALECT_PROBLEM
    try:
        compiled = re.compile(python_source)
    except re.error:
        return _INVALID
    except Exception:  # e.g. RecursionError/OverflowError on absurd patterns
        return _DIALECT_PROBLEM
    try:
        safety = analyse_pattern(source)
    except Exception as exc:  # a bug in the analyser must not cost the other flags
        return f"the regex could not be checked for catastrophic backtracking ({exc!r})"
    if safety.server_problem is not None:
        return safety.server_problem
    base = RegexSpec(compiled, word, space, end_anchor and repeats)
    if safety.python_limit is None:
        return base
    if engine is _CURRENT_ENGINE:
        engine = linear_engine()
    linear = compile_linear(source, engine)
    risk = safety.risk
    if engine is None:
        risk += "; the re2 extra would evaluate it locally (pip install 'productos[re2]')"
    if safety.python_limit == 0 and linear is None:
        return risk
    return dataclasses.replace(
        base,
        python_limit=safety.python_limit,
        risk=risk,
        linear=linear,
        linear_limit=safety.linear_limit,
        linear_ascii_only=safety.uses_shorthand,
    )


# ---------------------------------------------------------------------------------------------
# Compiled model
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterSpec:
    """Common part of every compiled filter: what the definition said, and why it is unusable."""

    type: str
    key: Any
    operator: str
    value: Any
    problem: Optional[
        str
    ]  # why local evaluation can never use this filter (unsupported_definition)


@dataclass(frozen=True)
class UnknownOperatorFilter(FilterSpec):
    """A filter whose operator this SDK does not know: always unsupported."""


@dataclass(frozen=True)
class PresenceFilter(FilterSpec):
    """is_set / is_not_set."""

    want_set: bool


EXACT_EMPTY_LIST = 0  # filter [] : the property must be truthy
EXACT_TRUTHINESS = 1  # matching version 1 boolean-looking filter: compare truthiness
EXACT_IN = 2  # list filter: membership of the lower-cased text
EXACT_EQUALS = 3  # scalar filter: equality of the lower-cased text


@dataclass(frozen=True)
class ExactFilter(FilterSpec):
    """exact / is_not, compiled for the snapshot's property matching version."""

    negate: bool
    mode: int
    want_truthy: bool
    texts: FrozenSet[str]
    text: str


@dataclass(frozen=True)
class TextFilter(FilterSpec):
    """icontains / starts_with / ends_with and their not_ forms (ASCII case-insensitive)."""

    how: str  # "contains", "prefix" or "suffix"
    negate: bool
    needle: str


@dataclass(frozen=True)
class RegexFilter(FilterSpec):
    """regex / not_regex."""

    negate: bool
    always: bool  # empty pattern: matches everything
    spec: Optional[RegexSpec]  # None: invalid pattern, which matches nothing for both operators


@dataclass(frozen=True)
class NumericFilter(FilterSpec):
    """gt / gte / lt / lte against a finite number."""

    number: Optional[float]


@dataclass(frozen=True)
class DateFilter(FilterSpec):
    """is_date_before / is_date_after; relative dates are resolved at evaluation time."""

    before: bool
    date: Optional[DateSpec]


@dataclass(frozen=True)
class SemverFilter(FilterSpec):
    """semver_* operators; ranges are kept as [lower, upper) bounds."""

    version: Optional[SemverTuple]
    lower: Optional[SemverTuple]
    upper: Optional[SemverTuple]


@dataclass(frozen=True)
class CohortFilter(FilterSpec):
    """Membership of a cohort (operator exact/in = member, not_in = not a member)."""

    cohort_id: str
    negate: bool
    missing: bool  # not in the snapshot's cohorts: a static cohort only the server knows
    requires_server: Optional[str]  # why evaluating the cohort would need the server


@dataclass(frozen=True)
class FlagDependencyFilter(FilterSpec):
    """``flag_evaluates_to``: another flag's value, evaluated through ``chain`` first."""

    malformed: bool  # wrong operator or missing key/value: a definite non-match, as on the server
    chain: Tuple[str, ...]


@dataclass(frozen=True)
class PropertyGroup:
    """A cohort's AND/OR tree. ``entries`` are (negated, group-or-filter) pairs."""

    is_and: bool
    entries: Tuple[Tuple[bool, Union[PropertyGroup, FilterSpec]], ...]
    problem: Optional[str]  # structurally unusable: only the server can evaluate it
    short_circuit: bool  # no entry can ask for the server at evaluation time


@dataclass(frozen=True)
class Variant:
    """One multivariate variant and its bucket range [start, end)."""

    key: str
    rollout_percentage: float
    start: float
    end: float


@dataclass(frozen=True)
class Holdout:
    """A holdout group: buckets at or below ``fraction`` get ``value`` (``holdout-<id>``)."""

    id: Any
    exclusion_percentage: float
    fraction: float
    everyone: bool
    value: str


@dataclass(frozen=True)
class Payload:
    """A decoded payload. Containers are kept as JSON text so every caller gets a fresh copy."""

    value: Any  # the decoded scalar (None for containers, which are rebuilt per call)
    json_text: Optional[str]
    # Not a field: a small container is also kept decoded, as copying it beats json.loads.
    _template: ClassVar[Any]

    def __post_init__(self) -> None:
        template = None
        if self.json_text is not None and len(self.json_text) <= _PAYLOAD_COPY_LIMIT:
            try:
                template = json.loads(self.json_text)
            except (ValueError, RecursionError):
                template = None  # decoded() raises as it always did
            if _containers(template) > _PAYLOAD_COPY_CONTAINERS:
                template = None
        object.__setattr__(self, "_template", template)

    def decoded(self) -> Any:
        """The payload value; a new object for dicts and lists."""
        if self.json_text is not None:
            template = self._template
            if template is not None:
                return _copy_json(template)
            return json.loads(self.json_text)
        return self.value


# Below these sizes a recursive copy of the decoded value beats json.loads (measured: a flat
# 20-byte object copies in a quarter of the time; dozens of nested containers are slower).
_PAYLOAD_COPY_LIMIT = 512
_PAYLOAD_COPY_CONTAINERS = 4


def _containers(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + sum(_containers(item) for item in value.values())
    if isinstance(value, list):
        return 1 + sum(_containers(item) for item in value)
    return 0


def _copy_json(value: Any) -> Any:
    """A fresh copy of a decoded JSON container (its scalars are immutable and shared)."""
    if value.__class__ is dict:
        return {
            k: _copy_json(v) if v.__class__ is dict or v.__class__ is list else v
            for k, v in value.items()
        }
    return [_copy_json(v) if v.__class__ is dict or v.__class__ is list else v for v in value]


@dataclass(frozen=True)
class Condition:
    """One release condition, in definition order."""

    index: int
    filters: Tuple[FilterSpec, ...]
    rollout_percentage: Optional[float]
    threshold: Optional[float]  # rollout_percentage / 100; None means everyone
    variant: Optional[str]  # the override, only when it names a real variant
    requested_variant: Any  # what the definition asked for, for explanations
    switches_group: bool  # its aggregation differs from the flag's (mixed targeting)
    aggregation_index: Any
    group_type: Optional[str]  # the group type switched to, when known
    description: str = ""  # "Matched condition <index>.", for reasons


@dataclass(frozen=True, eq=False)  # identity equality: cheap, and hashable despite the mappings
class CompiledFlag:
    """A flag ready for evaluation. ``local_problem`` says why it cannot be decided locally."""

    key: str
    id: Optional[int]
    version: Optional[int]
    active: bool
    ensure_experience_continuity: bool
    bucket_by_device: bool
    aggregation_index: Any
    group_type: Optional[str]
    feature_enrollment: bool
    early_exit: bool
    holdout: Optional[Holdout]
    conditions: Tuple[Condition, ...]
    variants: Tuple[Variant, ...]
    payloads: Mapping[str, Payload]
    malformed: Optional[str]  # the definition could not be compiled at all
    local_reason: Optional[str]  # the inconclusive reason the definition alone implies
    local_problem: Optional[str]  # human sentence for local_reason
    raw: Mapping[str, Any]
    hasher: Any = field(repr=False)  # sha1 already fed f"{key}." (copied per bucket, never mutated)
    # Whether a filter of the flag (or of a cohort it uses) reads the implicit property
    # "distinct_id" / "$group_key": only then does the evaluator add it to the caller's dict.
    reads_distinct_id: bool = True
    reads_group_key: bool = True
    # Not a field: the evaluator's private cache of what it derives from this immutable
    # definition (the constant results of value-only evaluations); empty in every new object.
    memo: ClassVar[Dict[Any, Any]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "memo", {})

    @property
    def is_group_flag(self) -> bool:
        """True when the flag aggregates by a group type instead of by person."""
        return self.aggregation_index is not None

    @property
    def evaluable_locally(self) -> bool:
        """True when nothing in the definition forces a server round-trip."""
        return self.local_reason is None


_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, eq=False)  # identity equality: "same snapshot" means the same object
class Snapshot:
    """Immutable compiled definitions; swap the whole object to update."""

    flags: Mapping[str, CompiledFlag]
    group_type_mapping: Mapping[str, str]
    cohorts: Mapping[str, PropertyGroup]
    property_matching_version: int
    raw: Mapping[str, Any]
    loaded: bool = True
    problems: Tuple[str, ...] = ()

    @classmethod
    def empty(cls) -> Snapshot:
        """A snapshot for 'no definitions loaded yet'."""
        return cls(
            flags=_EMPTY,
            group_type_mapping=_EMPTY,
            cohorts=_EMPTY,
            property_matching_version=1,
            raw=_EMPTY,
            loaded=False,
        )


# ---------------------------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------------------------


class _Malformed(Exception):
    """Internal: a definition cannot be compiled; carries the sentence for ``malformed``."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_or_none(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


class _Compiler:
    """Holds snapshot-wide facts while flags and cohorts are compiled."""

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
        self._cohort_server_reason: Dict[str, Optional[str]] = {}
        self._cohort_unsupported: Dict[str, bool] = {}

    # --- filters ---------------------------------------------------------------------------

    def compile_filter(self, raw: Any) -> FilterSpec:
        if not isinstance(raw, dict):
            raise _Malformed(f"a property filter is not an object: {raw!r}")
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
            spec = _compile_regex(source)
            if isinstance(spec, RegexSpec):
                return RegexFilter(*base, None, op == "not_regex", False, spec)
            if spec != _INVALID:
                return RegexFilter(*base, spec, op == "not_regex", False, None)
            return RegexFilter(*base, None, op == "not_regex", False, None)
        if op in _NUMERIC_OPERATORS:
            number = parse_number(value)
            problem = None if number is not None else "the filter value is not a finite number"
            return NumericFilter(*base, problem, number)
        if op in ("is_date_before", "is_date_after"):
            date = _parse_date_filter(value)
            problem = None if date is not None else "the filter value is not a date"
            return DateFilter(*base, problem, op == "is_date_before", date)
        if op in _SEMVER_COMPARISONS:
            version = parse_semver(value)
            problem = None if version is not None else "the filter value is not a version"
            return SemverFilter(*base, problem, version, None, None)
        if op in _SEMVER_RANGES:
            bounds = _semver_bounds(op, value)
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
        if self.matching_version != 2 and _truthy_or_falsy(value):
            return ExactFilter(
                *base, None, negate, EXACT_TRUTHINESS, truthy(value), frozenset(), ""
            )
        problem = "the filter value cannot be compared as text"
        if isinstance(value, list):
            texts = [stringify(item) for item in value]
            if any(t is None for t in texts):
                return ExactFilter(*base, problem, negate, EXACT_IN, False, frozenset(), "")
            lowered = frozenset(t.lower() for t in texts if t is not None)
            return ExactFilter(*base, None, negate, EXACT_IN, False, lowered, "")
        text = stringify(value)
        if text is None:
            return ExactFilter(*base, problem, negate, EXACT_EQUALS, False, frozenset(), "")
        return ExactFilter(*base, None, negate, EXACT_EQUALS, False, frozenset(), text.lower())

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
        elif op not in _COHORT_OPERATORS:
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
            except _Malformed as exc:  # pragma: no cover - item is a dict, so this cannot happen
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
                elif node.operator not in _COHORT_OPERATORS:
                    reason = None  # evaluation stops at the operator, before the members
                else:
                    reason = self.cohort_server_reason(node.cohort_id, visiting)
            else:
                reason = None
            if reason is not None:
                return reason
        return None

    def finish_cohort_filter(self, spec: CohortFilter) -> CohortFilter:
        if spec.missing or spec.operator not in _COHORT_OPERATORS:
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

    # --- flags -------------------------------------------------------------------------------

    def compile_flag(self, key: str, raw: Mapping[str, Any]) -> CompiledFlag:
        hasher = hashlib.sha1(f"{key}.".encode())
        active = bool(raw.get("active"))
        continuity = bool(raw.get("ensure_experience_continuity", False))
        fields: Dict[str, Any] = {
            "key": key,
            "id": _int_or_none(raw.get("id")),
            "version": _int_or_none(raw.get("version")),
            "active": active,
            "ensure_experience_continuity": continuity,
            "raw": MappingProxyType(dict(raw)),
            "hasher": hasher,
        }
        try:
            fields.update(self._compile_filters(key, raw))
            fields["malformed"] = None
        except _Malformed as exc:
            fields.update(
                bucket_by_device=False, aggregation_index=None, group_type=None,
                feature_enrollment=False, early_exit=False, holdout=None, conditions=(),
                variants=(), payloads=_EMPTY, malformed=str(exc),
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
            raise _Malformed("'filters' is not an object")
        identifier = raw.get("bucketing_identifier") or filters.get("bucketing_identifier")
        aggregation = filters.get("aggregation_group_type_index")
        group_type = self.group_types.get(str(aggregation)) if aggregation is not None else None

        variants = self._variants(filters.get("multivariate"))
        variant_keys = {v.key for v in variants}
        raw_conditions = filters.get("groups") or []
        if not isinstance(raw_conditions, list):
            raise _Malformed("'filters.groups' is not a list")
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
            raise _Malformed("'multivariate' is not an object")
        raw_variants = multivariate.get("variants") or []
        if not isinstance(raw_variants, list):
            raise _Malformed("'multivariate.variants' is not a list")
        table: List[Variant] = []
        start: float = 0
        for item in raw_variants:
            if not isinstance(item, dict) or not isinstance(item.get("key"), str):
                raise _Malformed("a variant has no text key")
            raw_percentage = item.get("rollout_percentage")
            if not _is_number(raw_percentage):
                raise _Malformed(f"variant {item['key']!r} has no numeric rollout_percentage")
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
            raise _Malformed(f"condition {index} is not an object")
        raw_filters = raw.get("properties") or []
        if not isinstance(raw_filters, list):
            raise _Malformed(f"condition {index} 'properties' is not a list")
        filters: List[FilterSpec] = []
        for item in raw_filters:
            spec = self.compile_filter(item)
            if isinstance(spec, CohortFilter):
                spec = self.finish_cohort_filter(spec)
            filters.append(spec)
        rollout = raw.get("rollout_percentage")
        if rollout is not None and not _is_number(rollout):
            raise _Malformed(f"condition {index} rollout_percentage is not a number")
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
            raise _Malformed("'holdout' is not an object")
        percentage = raw.get("exclusion_percentage")
        holdout_id = raw.get("id")
        if percentage is None or holdout_id is None:
            return None
        number = parse_number(percentage) if not isinstance(percentage, bool) else float(percentage)
        if number is None:
            raise _Malformed("holdout exclusion_percentage is not a number")
        # The server clamps rather than rejects out-of-range percentages.
        clamped = min(max(number, 0.0), 100.0)
        return Holdout(
            holdout_id, clamped, clamped / 100, clamped == 100.0, f"holdout-{holdout_id}"
        )

    def _payloads(self, raw: Any) -> Mapping[str, Payload]:
        if not isinstance(raw, dict):
            return _EMPTY
        out: Dict[str, Payload] = {}
        for name, payload in raw.items():
            decoded = _decode_payload(payload)
            if decoded is not None:
                out[str(name)] = decoded
        return MappingProxyType(out)

    def _local_problem(self, fields: Mapping[str, Any]) -> Tuple[Optional[str], Optional[str]]:
        if not fields["active"]:
            return None, None
        if fields["ensure_experience_continuity"]:
            return (
                EXPERIENCE_CONTINUITY,
                "experience continuity is on: only the server can evaluate it",
            )
        if fields["malformed"] is not None:
            return UNSUPPORTED_DEFINITION, f"the definition is malformed: {fields['malformed']}"
        aggregation = fields["aggregation_index"]
        if aggregation is not None and fields["group_type"] is None:
            return (
                UNSUPPORTED_DEFINITION,
                f"group type index {aggregation!r} is not in group_type_mapping",
            )
        for condition in fields["conditions"]:
            for spec in condition.filters:
                if self.filter_unsupported(spec, set()):
                    return UNSUPPORTED_DEFINITION, _describe_problem(self, spec)
        return None, None


def _describe_problem(compiler: _Compiler, spec: FilterSpec) -> str:
    if spec.problem is not None or not isinstance(spec, CohortFilter):
        return f"filter {spec.type} {spec.key!r} {spec.operator}: {spec.problem}"
    reason = compiler.cohort_server_reason(spec.cohort_id)
    if reason is not None:
        return f"cohort {spec.cohort_id}: {reason}"
    return f"cohort {spec.cohort_id} contains a filter local evaluation cannot use"


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _decode_payload(payload: Any) -> Optional[Payload]:
    if isinstance(payload, str):
        try:
            value = json.loads(payload, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return None  # invalid JSON: no payload, as the reference SDK does
    else:
        value = payload
    if value is None:
        return None
    if isinstance(value, (dict, list)):
        try:
            return Payload(None, json.dumps(value, allow_nan=False))
        except (TypeError, ValueError, RecursionError):
            return None
    if isinstance(value, (str, int, float, bool)):
        return Payload(value, None)
    return None


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


def _flags_on_dependency_cycles(
    flags: Mapping[str, CompiledFlag], cohorts: Mapping[str, PropertyGroup]
) -> List[str]:
    edges: Dict[str, List[str]] = {}
    for key, compiled in flags.items():
        if not compiled.active:
            continue  # an inactive flag is false without looking at its dependencies
        targets: List[str] = []
        for cond in compiled.conditions:
            for spec in cond.filters:
                targets.extend(_dependencies(spec, cohorts, set()))
        edges[key] = targets
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
        local_reason=UNSUPPORTED_DEFINITION,
        local_problem=f"the definition is malformed: {problem}",
    )


def _matching_version(raw: Any) -> int:
    # Only the integer 2 selects version 2; anything else (absent, "2", true) means version 1.
    return 2 if isinstance(raw, (int, float)) and not isinstance(raw, bool) and raw == 2 else 1


def parse_definitions(raw: Mapping[str, Any]) -> Snapshot:
    """Compile a definitions response body into a Snapshot; never raises."""
    if not isinstance(raw, Mapping):
        return Snapshot.empty()
    try:
        return _parse(raw)
    except Exception as exc:  # a bug here must not take flag evaluation down with it
        return Snapshot(
            flags=_EMPTY,
            group_type_mapping=_EMPTY,
            cohorts=_EMPTY,
            property_matching_version=1,
            raw=MappingProxyType(dict(raw)),
            loaded=True,
            problems=(f"definitions could not be compiled: {exc!r}",),
        )


def _parse(raw: Mapping[str, Any]) -> Snapshot:
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

    compiler = _Compiler(
        _matching_version(raw.get("property_matching_version", 1)),
        group_types,
        frozenset(by_key),
        cohort_sources,
    )
    for cohort_id, group in cohort_sources.items():
        compiler.cohorts[cohort_id] = compiler.compile_group(group)
    for cohort_id, group in list(compiler.cohorts.items()):
        compiler.cohorts[cohort_id] = compiler.finish_group(group)

    flags = {key: compiler.compile_flag(key, item) for key, item in by_key.items()}
    for key in _flags_on_dependency_cycles(flags, compiler.cohorts):
        # The server refuses circular dependencies (it sends an empty chain for them), so a loop
        # hidden in non-empty chains is malformed data; without this, answers would depend on
        # which flag of the loop was evaluated first.
        flags[key] = _mark_malformed(flags[key], "circular flag dependency")
    return Snapshot(
        flags=MappingProxyType(flags),
        group_type_mapping=MappingProxyType(group_types),
        cohorts=MappingProxyType(dict(compiler.cohorts)),
        property_matching_version=compiler.matching_version,
        raw=MappingProxyType(dict(raw)),
        loaded=True,
        problems=tuple(problems),
    )
