"""Dates as the server's is_date_before/is_date_after operators read them."""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import sys
from typing import Any, Callable, Optional, Union

from productos._runtime.records import record

__all__ = [
    "DateSpec",
    "RelativeDate",
    "YearOnlyDate",
    "parse_date_filter",
    "parse_date_value",
]

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


@record(frozen=True)
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


@record(frozen=True)
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


def parse_absolute(text: str) -> Optional[Union[_dt.datetime, YearOnlyDate]]:
    """An ISO-8601 instant (UTC when naive) or a bare year from text, else None."""
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


def parse_date_filter(value: Any) -> Optional[DateSpec]:
    """A filter's date: relative ('-7d'), a bare year or an absolute instant; else None."""
    text = str(value)
    relative = _RELATIVE_RE.search(text)
    if relative is not None:
        amount = int(relative.group("amount"))
        unit = relative.group("unit")
        # Large amounts are refused (the server guards against overflow the same way).
        if amount < 10_000 and unit in "hdwmy":
            return RelativeDate(amount, unit)
    return parse_absolute(text)


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
    parsed = parse_absolute(value)
    if isinstance(parsed, YearOnlyDate):
        return parsed.resolve(now())
    return parsed

