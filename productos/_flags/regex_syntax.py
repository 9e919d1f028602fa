"""Flag regexes as a tree: the parser and character sets :mod:`regex_safety` analyses.

Only patterns the dialect scanner (:mod:`productos._flags.regex_dialect`) accepted and Python's re
compiled reach :class:`Parser`; a shape it does not know raises :class:`Unparsable`, and the
pattern is then refused rather than guessed about.
"""

from __future__ import annotations

import re
import string
from typing import FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

__all__ = [
    "END",
    "NOTHING",
    "Alt",
    "Atom",
    "Chars",
    "Empty",
    "Node",
    "Parser",
    "Repeat",
    "Seq",
    "Start",
    "Unparsable",
    "overlaps",
    "union",
]

_MAX_NODES = 5_000  # patterns with more parts than this are not analysed (refused)


# --- character sets --------------------------------------------------------------------------


class Chars(NamedTuple):
    """A set of characters, exact on ASCII and conservative (may be larger) beyond it."""

    ascii: int  # bit i: code point i; bit 128: the end of the text (only in follow sets)
    wide: FrozenSet[str]  # non-ASCII kinds it may hold: "any", or the shorthands "dDsSwW"
    extra: FrozenSet[str]  # non-ASCII characters known to be in the set


_NONE: FrozenSet[str] = frozenset()
NOTHING = Chars(0, _NONE, _NONE)
_ALL_ASCII = (1 << 128) - 1
END = Chars(1 << 128, _NONE, _NONE)
# Shorthand kinds that share no character (Python's \d is within \w; \w and \s are apart).
_APART = frozenset(
    frozenset(pair) for pair in ("dD", "wW", "sS", "dW", "ds", "ws")
)
_KIND_RE = {kind: re.compile("\\" + kind) for kind in "dDsSwW"}


def _mask(chars: str) -> int:
    bits = 0
    for ch in chars:
        bits |= 1 << ord(ch)
    return bits


_DIGIT = _mask(string.digits)
_WORD = _mask(string.ascii_letters + string.digits + "_")
_SPACE = _mask("\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f")  # Python's \s; the server's lacks \x1c-\x1f
_SHORTHANDS = {
    "d": Chars(_DIGIT, frozenset("d"), _NONE),
    "D": Chars(_ALL_ASCII & ~_DIGIT, frozenset("D"), _NONE),
    "w": Chars(_WORD, frozenset("w"), _NONE),
    "W": Chars(_ALL_ASCII & ~_WORD, frozenset("W"), _NONE),
    "s": Chars(_SPACE, frozenset("s"), _NONE),
    "S": Chars(_ALL_ASCII & ~_SPACE, frozenset("S"), _NONE),
}
_ANY_WIDE = frozenset(("any",))
_DOT = Chars(_ALL_ASCII & ~_mask("\n"), _ANY_WIDE, _NONE)
_ESCAPED_CHARS = {"f": "\f", "n": "\n", "r": "\r", "t": "\t", "b": "\b"}


def union(a: Chars, b: Chars) -> Chars:
    return Chars(a.ascii | b.ascii, a.wide | b.wide, a.extra | b.extra)


def _kinds_overlap(one: FrozenSet[str], other: FrozenSet[str]) -> bool:
    for x in one:
        for y in other:
            if x == "any" or y == "any" or x == y or frozenset((x, y)) not in _APART:
                return True
    return False


def _kind_holds(kinds: FrozenSet[str], chars: FrozenSet[str]) -> bool:
    return any(
        kind == "any" or _KIND_RE[kind].match(ch) is not None for kind in kinds for ch in chars
    )


def overlaps(a: Chars, b: Chars) -> bool:
    return (
        bool(a.ascii & b.ascii)
        or bool(a.extra & b.extra)
        or _kinds_overlap(a.wide, b.wide)
        or _kind_holds(a.wide, b.extra)
        or _kind_holds(b.wide, a.extra)
    )


def _char(ch: str) -> Chars:
    if ord(ch) < 128:
        return Chars(1 << ord(ch), _NONE, _NONE)
    return Chars(0, _NONE, frozenset((ch,)))


def _char_range(low: str, high: str) -> Chars:
    lo, hi = ord(low), ord(high)
    bits = 0
    for code in range(lo, min(hi, 127) + 1):
        bits |= 1 << code
    if hi < 128:
        return Chars(bits, _NONE, _NONE)
    start = max(lo, 128)
    if hi - start < 512:
        return Chars(bits, _NONE, frozenset(chr(c) for c in range(start, hi + 1)))
    return Chars(bits, _ANY_WIDE, _NONE)


# --- the pattern as a tree -------------------------------------------------------------------


class Node:
    """A part of a pattern; ``offset``: where it (or its quantifier) is in the pattern's source."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset


class Atom(Node):
    """One character out of ``chars`` (``$`` is the pseudo character end-of-text)."""

    __slots__ = ("chars",)

    def __init__(self, offset: int, chars: Chars) -> None:
        super().__init__(offset)
        self.chars = chars


class Start(Node):
    """``^``: the start of the text."""

    __slots__ = ()


class Empty(Node):
    """Matches the empty string."""

    __slots__ = ()


class Seq(Node):
    """Items one after the other."""

    __slots__ = ("items",)

    def __init__(self, offset: int, items: Sequence[Node]) -> None:
        super().__init__(offset)
        self.items = tuple(items)


class Alt(Node):
    """Alternatives, tried in order; ``offset`` is that of the first ``|``."""

    __slots__ = ("branches",)

    def __init__(self, offset: int, branches: Sequence[Node]) -> None:
        super().__init__(offset)
        self.branches = tuple(branches)


class Repeat(Node):
    """``body`` repeated lo..hi times (hi None: unbounded); ``offset`` is the quantifier's."""

    __slots__ = ("body", "hi", "lo", "simple")

    def __init__(
        self, offset: int, body: Node, lo: int, hi: Optional[int], captured: bool = False
    ) -> None:
        super().__init__(offset)
        self.body = body
        self.lo = lo
        self.hi = hi
        # sre runs a loop over one character (not in a capturing group) in a fast inner loop.
        self.simple = isinstance(body, Atom) and not captured


class Unparsable(Exception):
    """The pattern has a shape this parser does not know (it is then refused, never guessed)."""


class Parser:
    """Reads a pattern the dialect scanner accepted (and Python's re compiled) into a tree."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.at = 0
        self.nodes = 0
        self.shorthand = False

    def parse(self) -> Node:
        node = self._alternation()
        if self.at != len(self.source):
            raise Unparsable(f"unexpected {self.source[self.at]!r} at offset {self.at}")
        return node

    def _count(self) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise Unparsable("too many parts")

    def _alternation(self) -> Node:
        branches = [self._sequence()]
        bar = self.at
        while self.source.startswith("|", self.at):
            self.at += 1
            branches.append(self._sequence())
        self._count()
        return branches[0] if len(branches) == 1 else Alt(bar, branches)

    def _sequence(self) -> Node:
        start = self.at
        items: List[Node] = []
        source = self.source
        while self.at < len(source) and source[self.at] not in "|)":
            captured = source.startswith("(", self.at) and not source.startswith("(?:", self.at)
            item = self._atom()
            while self.at < len(source) and source[self.at] in "*+?{":
                item = self._quantifier(item, captured)
            items.append(item)
        self._count()
        if not items:
            return Empty(start)
        return items[0] if len(items) == 1 else Seq(start, items)

    def _quantifier(self, body: Node, captured: bool) -> Node:
        source, at = self.source, self.at
        ch = source[at]
        hi: Optional[int]
        if ch == "{":
            end = source.find("}", at)
            if end < 0:
                raise Unparsable(f"unterminated repetition at offset {at}")
            low_text, comma, high_text = source[at + 1 : end].partition(",")
            if not low_text.isdigit() or (high_text and not high_text.isdigit()):
                raise Unparsable(f"unknown repetition at offset {at}")
            lo = int(low_text)
            hi = int(high_text) if high_text else (None if comma else lo)
            self.at = end + 1
        else:
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
            self.at = at + 1
        if self.at < len(source) and source[self.at] == "?":
            self.at += 1  # lazy: explores the same paths in another order
        self._count()
        return Repeat(at, body, lo, hi, captured)

    def _atom(self) -> Node:
        source, at = self.source, self.at
        ch = source[at]
        self._count()
        if ch == "(":
            self.at = at + 3 if source.startswith("(?:", at) else at + 1
            inner = self._alternation()
            if not source.startswith(")", self.at):
                raise Unparsable(f"unclosed group at offset {at}")
            self.at += 1
            return inner
        if ch == "[":
            return Atom(at, self._char_class())
        self.at = at + 1
        if ch == "\\":
            return Atom(at, self._escape())
        if ch == ".":
            return Atom(at, _DOT)
        if ch == "^":
            return Start(at)
        if ch == "$":
            return Atom(at, END)
        if ch in "*+?{)":
            raise Unparsable(f"unexpected {ch!r} at offset {at}")
        return Atom(at, _char(ch))

    def _escape(self) -> Chars:
        # self.at is just past the backslash
        source = self.source
        if self.at >= len(source):
            raise Unparsable("dangling escape")
        esc = source[self.at]
        self.at += 1
        if esc in _SHORTHANDS:
            self.shorthand = True
            return _SHORTHANDS[esc]
        if esc == "x":
            digits = source[self.at : self.at + 2]
            self.at += 2
            try:
                return _char(chr(int(digits, 16)))
            except ValueError:
                raise Unparsable("bad hex escape") from None
        if esc in _ESCAPED_CHARS:
            return _char(_ESCAPED_CHARS[esc])
        if esc.isalnum():
            raise Unparsable(f"unknown escape \\{esc}")
        return _char(esc)

    def _class_item(self) -> Tuple[Chars, Optional[str]]:
        """One member of a bracketed class: its set, and its character when it is a single one."""
        source = self.source
        ch = source[self.at]
        self.at += 1
        if ch != "\\":
            return _char(ch), ch
        esc = source[self.at] if self.at < len(source) else ""
        chars = self._escape()
        if esc in _SHORTHANDS:
            return chars, None
        if esc == "x":
            return chars, chr(int(source[self.at - 2 : self.at], 16))
        return chars, _ESCAPED_CHARS.get(esc, esc)

    def _char_class(self) -> Chars:
        source = self.source
        start = self.at
        self.at += 1
        negated = source.startswith("^", self.at)
        if negated:
            self.at += 1
        chars = NOTHING
        first = True
        while True:
            if self.at >= len(source):
                raise Unparsable(f"unclosed class at offset {start}")
            if source[self.at] == "]" and not first:
                self.at += 1
                break
            first = False
            item, single = self._class_item()
            ranged = source.startswith("-", self.at) and not source.startswith("-]", self.at)
            if ranged and single is not None and self.at + 1 < len(source):
                self.at += 1
                _, high = self._class_item()
                if high is None or ord(high) < ord(single):
                    raise Unparsable(f"odd range at offset {self.at}")
                item = _char_range(single, high)
            chars = union(chars, item)
        if negated:
            return Chars(_ALL_ASCII & ~chars.ascii, _ANY_WIDE, _NONE)
        return chars
