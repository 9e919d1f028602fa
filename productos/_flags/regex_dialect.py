"""Flag regexes in the server's dialect: refuse syntax Python's re reads differently, then compile.

The server matches ``regex``/``not_regex`` with Rust's regex crate. A pattern is rewritten for
Python's re only when both engines mean the same thing by it; anything else is left to the
server. :func:`compile_regex` also asks :mod:`productos._flags.regex_safety` how long Python's
re may run on it, and records what each value must be checked for before it is trusted.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any, List, Optional, Tuple, Union

from productos._flags.regex_engine import Searcher, compile_linear, engine_choice, linear_engine
from productos._flags.regex_safety import analyse_pattern
from productos._runtime.records import record

__all__ = ["INVALID", "RegexSpec", "compile_regex"]

INVALID = "invalid"
_DIALECT_PROBLEM = "the regex uses syntax that may behave differently on the server"
_CURRENT_ENGINE: Any = object()  # compile_regex's default: the engine selected process-wide
_SHORTHANDS = ("\\d", "\\D", "\\s", "\\S", "\\w", "\\W")
_REPETITION_RE = re.compile(r"\{([0-9]+)(?:,([0-9]*))?\}")


@record(frozen=True, slots=True)
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


def compile_regex(source: str, engine: Any = _CURRENT_ENGINE) -> Union[RegexSpec, str]:
    """The compiled pattern, ``INVALID``, or why only the server may evaluate it.

    ``engine`` is the re2 module to compile with (None: Python's re only); by default the one
    :func:`productos._flags.regex_engine.set_regex_engine` selects. The answer depends on
    nothing else, so it is kept for the patterns compiled most recently: definitions repeat
    patterns across flags and cohorts, and from one update to the next.
    """
    if engine is _CURRENT_ENGINE:
        return _compile_with_current_engine(source, engine_choice())
    return _compile(source, engine)


@functools.lru_cache(maxsize=1024)
def _compile_with_current_engine(source: str, choice: str) -> Union[RegexSpec, str]:
    # ``choice`` is only part of the key: the same pattern compiles anew after the engine
    # choice changes.
    return _compile(source, _CURRENT_ENGINE)


def _compile(source: str, engine: Any) -> Union[RegexSpec, str]:
    try:
        python_source, word, space, end_anchor, repeats = _scan_regex(source)
    except _Deferred:
        return _DIALECT_PROBLEM
    try:
        compiled = re.compile(python_source)
    except re.error:
        return INVALID
    except Exception:  # e.g. RecursionError/OverflowError on absurd patterns
        return _DIALECT_PROBLEM
    safety = analyse_pattern(source)  # a bug here is the compiler's, reported as such
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

