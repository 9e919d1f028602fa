"""How long Python's re may run on a flag's regex, and the optional linear-time engine (re2).

The server matches ``regex``/``not_regex`` filters with Rust's regex crate, whose time is linear in
the length of the value. Python's re backtracks: on ``(a|a)*$`` it needs seconds for a 25-character
value, on ``.*.*=.*`` time cubic in the length. Local evaluation must stay near a millisecond for
values up to 10,000 characters and must never answer differently from the server, so every pattern
is analysed once, when definitions are compiled (:func:`analyse_pattern`):

* patterns whose backtracking can explode are never run by Python's re;
* patterns whose cost grows faster than linearly get a value-length limit past which Python's re is
  not run (:data:`BUDGET` bounds the estimated work);
* when the ``re2`` extra (google-re2) is installed, the pattern is also compiled for RE2, which runs
  in linear time like the server's engine and takes the values Python's re may not.

A value neither engine may take makes the filter inconclusive: the server decides, so the answer is
never different, only remote. Nothing here performs I/O or logs; everything is pure except the
engine choice (:func:`set_regex_engine`), a process-wide setting read when definitions compile.
"""

from __future__ import annotations

import importlib
import re
import string
from typing import (
    Any,
    Dict,
    FrozenSet,
    List,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    Set,
    Tuple,
)

__all__ = [
    "BUDGET",
    "PatternAnalysis",
    "Searcher",
    "analyse_pattern",
    "compile_linear",
    "linear_engine",
    "regex_engine",
    "set_regex_engine",
]

# Estimated backtracking steps Python's re may spend on one value (a step is a character matched
# by a single-character loop, about 2-4 ns; other steps are weighted below). About a millisecond.
BUDGET = 150_000
# Linear bounds are mostly starts that fail on their first character, which sre checks fast.
_LINEAR_SLACK = 4
# Below this many characters a limit is useless in practice: the pattern is refused outright.
_MIN_LIMIT = 32
# The longest value used to decide whether a linear-cost pattern needs a limit at all.
_REFERENCE_LENGTH = 10_000
# Estimated RE2 work (characters x program size) per value; RE2 falls back from its DFA to its
# NFA, linear with a factor of the program size, when a large program thrashes the DFA cache.
_LINEAR_BUDGET = 4_000_000
# The server's engine refuses programs past a size limit; past this estimate, let it decide.
_SERVER_SIZE_LIMIT = 200_000

_ITERATION = 16  # one iteration of a repeated group costs about this many steps in sre
_SMALL_COUNT = 64  # counted repetitions up to this are costed as constants, larger ones as n
_MAX_DEGREE = 8  # a cost polynomial of higher degree is as good as exponential
_MAX_NODES = 5_000  # patterns with more parts than this are not analysed (refused)
_MAX_VISITS = 50_000  # analysis steps before a pattern is declared too complex to check
_HEAD = 16  # characters compared when telling alternatives apart


class Searcher(Protocol):
    """A compiled pattern of either engine: only whether it matches somewhere is used."""

    def search(self, text: str) -> Any:
        """A match object when the pattern matches somewhere in ``text``, else None."""


# --- character sets --------------------------------------------------------------------------


class _Chars(NamedTuple):
    """A set of characters, exact on ASCII and conservative (may be larger) beyond it."""

    ascii: int  # bit i: code point i; bit 128: the end of the text (only in follow sets)
    wide: FrozenSet[str]  # non-ASCII kinds it may hold: "any", or the shorthands "dDsSwW"
    extra: FrozenSet[str]  # non-ASCII characters known to be in the set


_NONE: FrozenSet[str] = frozenset()
_NOTHING = _Chars(0, _NONE, _NONE)
_ALL_ASCII = (1 << 128) - 1
_END = _Chars(1 << 128, _NONE, _NONE)
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
    "d": _Chars(_DIGIT, frozenset("d"), _NONE),
    "D": _Chars(_ALL_ASCII & ~_DIGIT, frozenset("D"), _NONE),
    "w": _Chars(_WORD, frozenset("w"), _NONE),
    "W": _Chars(_ALL_ASCII & ~_WORD, frozenset("W"), _NONE),
    "s": _Chars(_SPACE, frozenset("s"), _NONE),
    "S": _Chars(_ALL_ASCII & ~_SPACE, frozenset("S"), _NONE),
}
_ANY_WIDE = frozenset(("any",))
_DOT = _Chars(_ALL_ASCII & ~_mask("\n"), _ANY_WIDE, _NONE)
_ESCAPED_CHARS = {"f": "\f", "n": "\n", "r": "\r", "t": "\t", "b": "\b"}


def _union(a: _Chars, b: _Chars) -> _Chars:
    return _Chars(a.ascii | b.ascii, a.wide | b.wide, a.extra | b.extra)


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


def _overlaps(a: _Chars, b: _Chars) -> bool:
    return (
        bool(a.ascii & b.ascii)
        or bool(a.extra & b.extra)
        or _kinds_overlap(a.wide, b.wide)
        or _kind_holds(a.wide, b.extra)
        or _kind_holds(b.wide, a.extra)
    )


def _char(ch: str) -> _Chars:
    if ord(ch) < 128:
        return _Chars(1 << ord(ch), _NONE, _NONE)
    return _Chars(0, _NONE, frozenset((ch,)))


def _char_range(low: str, high: str) -> _Chars:
    lo, hi = ord(low), ord(high)
    bits = 0
    for code in range(lo, min(hi, 127) + 1):
        bits |= 1 << code
    if hi < 128:
        return _Chars(bits, _NONE, _NONE)
    start = max(lo, 128)
    if hi - start < 512:
        return _Chars(bits, _NONE, frozenset(chr(c) for c in range(start, hi + 1)))
    return _Chars(bits, _ANY_WIDE, _NONE)


# --- the pattern as a tree -------------------------------------------------------------------


class _Node:
    """A part of a pattern; ``offset``: where it (or its quantifier) is in the pattern's source."""

    __slots__ = ("offset",)

    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Atom(_Node):
    """One character out of ``chars`` (``$`` is the pseudo character end-of-text)."""

    __slots__ = ("chars",)

    def __init__(self, offset: int, chars: _Chars) -> None:
        super().__init__(offset)
        self.chars = chars


class _Start(_Node):
    """``^``: the start of the text."""

    __slots__ = ()


class _Empty(_Node):
    """Matches the empty string."""

    __slots__ = ()


class _Seq(_Node):
    """Items one after the other."""

    __slots__ = ("items",)

    def __init__(self, offset: int, items: Sequence[_Node]) -> None:
        super().__init__(offset)
        self.items = tuple(items)


class _Alt(_Node):
    """Alternatives, tried in order; ``offset`` is that of the first ``|``."""

    __slots__ = ("branches",)

    def __init__(self, offset: int, branches: Sequence[_Node]) -> None:
        super().__init__(offset)
        self.branches = tuple(branches)


class _Repeat(_Node):
    """``body`` repeated lo..hi times (hi None: unbounded); ``offset`` is the quantifier's."""

    __slots__ = ("body", "hi", "lo", "simple")

    def __init__(
        self, offset: int, body: _Node, lo: int, hi: Optional[int], captured: bool = False
    ) -> None:
        super().__init__(offset)
        self.body = body
        self.lo = lo
        self.hi = hi
        # sre runs a loop over one character (not in a capturing group) in a fast inner loop.
        self.simple = isinstance(body, _Atom) and not captured


class _Unparsable(Exception):
    """The pattern has a shape this parser does not know (it is then refused, never guessed)."""


class _Parser:
    """Reads a pattern the dialect scanner accepted (and Python's re compiled) into a tree."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.at = 0
        self.nodes = 0
        self.shorthand = False

    def parse(self) -> _Node:
        node = self._alternation()
        if self.at != len(self.source):
            raise _Unparsable(f"unexpected {self.source[self.at]!r} at offset {self.at}")
        return node

    def _count(self) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _Unparsable("too many parts")

    def _alternation(self) -> _Node:
        branches = [self._sequence()]
        bar = self.at
        while self.source.startswith("|", self.at):
            self.at += 1
            branches.append(self._sequence())
        self._count()
        return branches[0] if len(branches) == 1 else _Alt(bar, branches)

    def _sequence(self) -> _Node:
        start = self.at
        items: List[_Node] = []
        source = self.source
        while self.at < len(source) and source[self.at] not in "|)":
            captured = source.startswith("(", self.at) and not source.startswith("(?:", self.at)
            item = self._atom()
            while self.at < len(source) and source[self.at] in "*+?{":
                item = self._quantifier(item, captured)
            items.append(item)
        self._count()
        if not items:
            return _Empty(start)
        return items[0] if len(items) == 1 else _Seq(start, items)

    def _quantifier(self, body: _Node, captured: bool) -> _Node:
        source, at = self.source, self.at
        ch = source[at]
        hi: Optional[int]
        if ch == "{":
            end = source.find("}", at)
            if end < 0:
                raise _Unparsable(f"unterminated repetition at offset {at}")
            low_text, comma, high_text = source[at + 1 : end].partition(",")
            if not low_text.isdigit() or (high_text and not high_text.isdigit()):
                raise _Unparsable(f"unknown repetition at offset {at}")
            lo = int(low_text)
            hi = int(high_text) if high_text else (None if comma else lo)
            self.at = end + 1
        else:
            lo, hi = {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
            self.at = at + 1
        if self.at < len(source) and source[self.at] == "?":
            self.at += 1  # lazy: explores the same paths in another order
        self._count()
        return _Repeat(at, body, lo, hi, captured)

    def _atom(self) -> _Node:
        source, at = self.source, self.at
        ch = source[at]
        self._count()
        if ch == "(":
            self.at = at + 3 if source.startswith("(?:", at) else at + 1
            inner = self._alternation()
            if not source.startswith(")", self.at):
                raise _Unparsable(f"unclosed group at offset {at}")
            self.at += 1
            return inner
        if ch == "[":
            return _Atom(at, self._char_class())
        self.at = at + 1
        if ch == "\\":
            return _Atom(at, self._escape())
        if ch == ".":
            return _Atom(at, _DOT)
        if ch == "^":
            return _Start(at)
        if ch == "$":
            return _Atom(at, _END)
        if ch in "*+?{)":
            raise _Unparsable(f"unexpected {ch!r} at offset {at}")
        return _Atom(at, _char(ch))

    def _escape(self) -> _Chars:
        # self.at is just past the backslash
        source = self.source
        if self.at >= len(source):
            raise _Unparsable("dangling escape")
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
                raise _Unparsable("bad hex escape") from None
        if esc in _ESCAPED_CHARS:
            return _char(_ESCAPED_CHARS[esc])
        if esc.isalnum():
            raise _Unparsable(f"unknown escape \\{esc}")
        return _char(esc)

    def _class_item(self) -> Tuple[_Chars, Optional[str]]:
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

    def _char_class(self) -> _Chars:
        source = self.source
        start = self.at
        self.at += 1
        negated = source.startswith("^", self.at)
        if negated:
            self.at += 1
        chars = _NOTHING
        first = True
        while True:
            if self.at >= len(source):
                raise _Unparsable(f"unclosed class at offset {start}")
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
                    raise _Unparsable(f"odd range at offset {self.at}")
                item = _char_range(single, high)
            chars = _union(chars, item)
        if negated:
            return _Chars(_ALL_ASCII & ~chars.ascii, _ANY_WIDE, _NONE)
        return chars


# --- cost polynomials in n, the value's length ------------------------------------------------

_Poly = Tuple[float, ...]  # coefficients, constant first
_ONE: _Poly = (1.0,)
_N: _Poly = (0.0, 1.0)


def _const(value: float) -> _Poly:
    return (float(value),)


def _add(a: _Poly, b: _Poly) -> _Poly:
    if len(a) < len(b):
        a, b = b, a
    return tuple(x + (b[i] if i < len(b) else 0.0) for i, x in enumerate(a))


def _max(a: _Poly, b: _Poly) -> _Poly:
    # Coefficient-wise: an upper bound of both for every n >= 0.
    if len(a) < len(b):
        a, b = b, a
    return tuple(max(x, b[i] if i < len(b) else 0.0) for i, x in enumerate(a))


def _at(p: _Poly, n: float) -> float:
    total = 0.0
    for coefficient in reversed(p):
        total = total * n + coefficient
    return total


class _Explosive(Exception):
    """The pattern's backtracking can explode; ``why`` says where, for the filter's problem."""

    def __init__(self, why: Optional[str]) -> None:
        super().__init__(why)
        self.why = why


def _mul(a: _Poly, b: _Poly, why: Optional[str]) -> _Poly:
    if len(a) + len(b) - 2 > _MAX_DEGREE:
        raise _Explosive(why)
    out = [0.0] * (len(a) + len(b) - 1)
    for i, x in enumerate(a):
        if x:
            for j, y in enumerate(b):
                out[i + j] += x * y
    return tuple(out)


class _Cost(NamedTuple):
    """Backtracking bound for a part of the pattern, from one position, on adversarial text."""

    work: _Poly  # steps spent trying the part, every way it can match, ending in failure
    ways: _Poly  # distinct ways the part can end and hand over to what follows
    culprit: Optional[str]  # the first construct that lets the part end in several ways


def _describe_culprit(culprit: str, quantifier: int) -> str:
    return f"{culprit} inside the repetition at offset {quantifier}"


class _Analyser:
    """Static facts (nullable, first characters) and the cost bound of one parsed pattern."""

    def __init__(self) -> None:
        # Keyed by the nodes themselves (identity), which keeps them alive while cached.
        self._nullable: Dict[_Node, bool] = {}
        self._first: Dict[_Node, _Chars] = {}
        self._costs: Dict[Tuple[_Node, _Chars], _Cost] = {}
        self.visits = 0
        self.spots: Set[int] = set()  # quantifiers that can stop at many places

    # static facts

    def nullable(self, node: _Node) -> bool:
        known = self._nullable.get(node)
        if known is None:
            if isinstance(node, _Atom):
                known = False
            elif isinstance(node, (_Start, _Empty)):
                known = True
            elif isinstance(node, _Seq):
                known = all(self.nullable(item) for item in node.items)
            elif isinstance(node, _Alt):
                known = any(self.nullable(branch) for branch in node.branches)
            elif isinstance(node, _Repeat):
                known = node.lo == 0 or node.hi == 0 or self.nullable(node.body)
            else:  # pragma: no cover - every node kind is listed above
                raise _Unparsable(type(node).__name__)
            self._nullable[node] = known
        return known

    def first(self, node: _Node) -> _Chars:
        known = self._first.get(node)
        if known is None:
            if isinstance(node, _Atom):
                known = node.chars
            elif isinstance(node, (_Start, _Empty)):
                known = _NOTHING
            elif isinstance(node, _Seq):
                known = self.first_of(node.items, _NOTHING)
            elif isinstance(node, _Alt):
                known = _NOTHING
                for branch in node.branches:
                    known = _union(known, self.first(branch))
            elif isinstance(node, _Repeat):
                known = _NOTHING if node.hi == 0 else self.first(node.body)
            else:  # pragma: no cover
                raise _Unparsable(type(node).__name__)
            self._first[node] = known
        return known

    def first_of(self, items: Sequence[_Node], follow: _Chars) -> _Chars:
        """The characters that can come first when ``items`` are matched, then ``follow``."""
        chars = _NOTHING
        for item in items:
            chars = _union(chars, self.first(item))
            if not self.nullable(item):
                return chars
        return _union(chars, follow)

    def fixed(self, node: _Node) -> Optional[List[_Chars]]:
        """The character sets of a fixed-width, choice-free part, position by position."""
        if isinstance(node, _Atom):
            return [node.chars]
        if isinstance(node, (_Start, _Empty)):
            return []
        if isinstance(node, _Seq):
            out: List[_Chars] = []
            for item in node.items:
                part = self.fixed(item)
                if part is None:
                    return None
                out.extend(part)
                if len(out) > _HEAD:
                    return out
            return out
        if isinstance(node, _Repeat) and node.lo == node.hi and node.lo <= _HEAD:
            part = self.fixed(node.body)
            return None if part is None else part * node.lo
        return None

    def head(self, node: _Node, follow: _Chars) -> List[_Chars]:
        """Sets that the 1st, 2nd, ... characters read by ``node`` then ``follow`` belong to."""
        items = node.items if isinstance(node, _Seq) else (node,)
        out: List[_Chars] = []
        for index, item in enumerate(items):
            part = self.fixed(item)
            if part is None:
                out.append(self.first_of(items[index:], follow))
                return out
            out.extend(part)
            if len(out) >= _HEAD:
                return out
        out.append(follow)
        return out

    def alternatives_overlap(self, node: _Alt, follow: _Chars) -> bool:
        """Whether two alternatives can both go on matching from the same place."""
        if len(node.branches) > 32:  # compare first characters only: cheap and conservative
            seen = _NOTHING
            for branch in node.branches:
                chars = self.first_of((branch,), follow)
                if _overlaps(chars, seen):
                    return True
                seen = _union(seen, chars)
            return False
        heads = [self.head(branch, follow) for branch in node.branches]
        for i, one in enumerate(heads):
            for other in heads[i + 1 :]:
                if all(_overlaps(x, y) for x, y in zip(one, other)):
                    return True
        return False

    def anchored(self, node: _Node) -> bool:
        """Whether every match must start at the start of the text."""
        if isinstance(node, _Start):
            return True
        if isinstance(node, _Seq):
            return self.anchored(node.items[0])
        if isinstance(node, _Alt):
            return all(self.anchored(branch) for branch in node.branches)
        if isinstance(node, _Repeat):
            return node.lo >= 1 and self.anchored(node.body)
        return False

    def has_anchor(self, node: _Node) -> bool:
        if isinstance(node, _Start):
            return True
        if isinstance(node, _Atom):
            return node.chars is _END
        if isinstance(node, _Seq):
            return any(self.has_anchor(item) for item in node.items)
        if isinstance(node, _Alt):
            return any(self.has_anchor(branch) for branch in node.branches)
        if isinstance(node, _Repeat):
            return self.has_anchor(node.body)
        return False

    def greedy(self, node: _Node) -> _Poly:
        """Steps of one pass that matches without backtracking (what a successful match costs)."""
        if isinstance(node, _Repeat):
            inner = self.greedy(node.body)
            if node.hi is not None and node.hi <= _SMALL_COUNT:
                return _mul(_const(node.hi), _add(inner, _ONE), None)
            step = _ONE if node.simple else _const(_ITERATION)
            return _add(_mul(_N, step, None), inner)
        if isinstance(node, _Seq):
            parts = node.items
        elif isinstance(node, _Alt):
            parts = node.branches
        else:
            return _ONE
        total: _Poly = (0.0,)
        for part in parts:
            total = _add(total, self.greedy(part))
        return total

    def sure(self, node: _Node) -> bool:
        """Whether ``node`` can always match here (empty and without an anchor that may fail)."""
        return self.nullable(node) and not self.has_anchor(node)

    def strip_tail(self, node: _Node) -> _Node:
        """Drop the end of the pattern that can never fail: reaching it is a match, search stops."""
        if self.sure(node):
            return _Empty(node.offset)
        if isinstance(node, _Seq):
            items = list(node.items)
            while items and self.sure(items[-1]):
                items.pop()
            items[-1] = self.strip_tail(items[-1])
            return items[0] if len(items) == 1 else _Seq(node.offset, items)
        if isinstance(node, _Alt):
            return _Alt(node.offset, [self.strip_tail(branch) for branch in node.branches])
        if isinstance(node, _Repeat) and node.lo >= 1 and not self.has_anchor(node.body):
            if node.lo == 1:
                return self.strip_tail(node.body)
            return _Repeat(node.offset, node.body, node.lo, node.lo, not node.simple)
        return node

    # cost

    def cost(self, node: _Node, follow: _Chars) -> _Cost:
        key = (node, follow)
        known = self._costs.get(key)
        if known is None:
            self.visits += 1
            if self.visits > _MAX_VISITS:
                raise _Explosive("the regex is too complex to check for catastrophic backtracking")
            known = self._cost(node, follow)
            self._costs[key] = known
        return known

    def _cost(self, node: _Node, follow: _Chars) -> _Cost:
        if isinstance(node, (_Atom, _Start, _Empty)):
            return _Cost(_ONE, _ONE, None)
        if isinstance(node, _Seq):
            return self._sequence_cost(node, follow)
        if isinstance(node, _Alt):
            return self._alternation_cost(node, follow)
        if isinstance(node, _Repeat):
            return self._repeat_cost(node, follow)
        raise _Unparsable(type(node).__name__)  # pragma: no cover

    def _sequence_cost(self, node: _Seq, follow: _Chars) -> _Cost:
        follows: List[_Chars] = []
        after = follow
        for item in reversed(node.items):
            follows.append(after)
            after = _union(self.first(item), after) if self.nullable(item) else self.first(item)
        follows.reverse()
        work: _Poly = (0.0,)
        ways = _ONE
        culprit: Optional[str] = None
        why = None  # too many overlapping quantifiers: the message lists them
        # Each way the earlier items can end starts a fresh attempt at the next item.
        for item, after in zip(node.items, follows):
            part = self.cost(item, after)
            work = _add(work, _mul(ways, part.work, why))
            ways = _mul(ways, part.ways, why)
            culprit = culprit or part.culprit
        return _Cost(work, ways, culprit)

    def _alternation_cost(self, node: _Alt, follow: _Chars) -> _Cost:
        parts = [self.cost(branch, follow) for branch in node.branches]
        culprit = next((part.culprit for part in parts if part.culprit), None)
        if self.alternatives_overlap(node, follow):
            work: _Poly = (0.0,)
            ways: _Poly = (0.0,)
            for part in parts:
                work = _add(work, part.work)
                ways = _add(ways, part.ways)
            return _Cost(work, ways, culprit or f"alternatives at offset {node.offset} that "
                         "can match the same text")
        # Only one alternative gets past its first characters; the others fail at once.
        work = _const(len(parts))
        ways = _ONE
        for part in parts:
            work = _max(work, _add(part.work, _const(len(parts))))
            ways = _max(ways, part.ways)
        return _Cost(work, ways, culprit)

    def _repeat_cost(self, node: _Repeat, follow: _Chars) -> _Cost:
        hi = node.hi
        if hi == 0:
            return _Cost(_ONE, _ONE, None)
        bounded = hi is not None and hi <= _SMALL_COUNT
        count = _const(hi) if hi is not None and bounded else _N
        body = node.body
        here = f"the quantifier at offset {node.offset}"
        if node.simple and isinstance(body, _Atom):
            # A loop over single characters: it takes its run, then gives it back one by one.
            work = _add(count, _ONE)
            if not _overlaps(body.chars, follow):
                return _Cost(work, _ONE, None)  # only the end of its run can be followed
            self.spots.add(node.offset)
            ways = _const(hi - node.lo + 1) if hi is not None and bounded else _N
            return _Cost(work, ways, f"nested quantifier at offset {node.offset}")
        if hi == 1:
            inner = self.cost(body, follow)
            skip = self.nullable(body) or _overlaps(self.first(body), follow)
            ways = _add(inner.ways, _ONE) if skip else _max(inner.ways, _ONE)
            culprit = inner.culprit or (f"optional group at offset {node.offset}" if skip else None)
            return _Cost(_add(inner.work, _ONE), ways, culprit)
        body_first = self.first(body)
        inner = self.cost(body, _union(body_first, follow))
        # Ways one iteration can end where another can begin: more than one, and the
        # iterations multiply them.
        again = self.cost(body, body_first)
        if self.nullable(body) or again.ways != _ONE:
            if self.nullable(body):
                why = f"the group repeated by {here} can match empty text"
            else:
                why = _describe_culprit(again.culprit or "a part that can end in several ways",
                                        node.offset)
            if not bounded or hi is None:
                raise _Explosive(why)
            per = _add(again.ways, _ONE) if self.nullable(body) else again.ways
            factor = _ONE
            for _ in range(hi):
                factor = _mul(factor, per, why)
            if _at(factor, 1) > BUDGET:
                raise _Explosive(why)  # e.g. (a|a){20}: a million ways before any text
            self.spots.add(node.offset)
            work = _mul(_mul(_const(hi), factor, why), _add(inner.work, _const(_ITERATION)), why)
            ways = _mul(_mul(_const(hi), factor, why), inner.ways, why)
            return _Cost(work, ways, inner.culprit or why)
        # One way to go on from each iteration: iterations share out the text, so their work adds
        # up to that of one iteration over all of it (twice: the last one may fail).
        if bounded:
            work = _mul(count, _add(inner.work, _const(_ITERATION)), here)
        else:
            work = _add(_mul(count, _const(_ITERATION), here), _mul(_const(2), inner.work, here))
        if _overlaps(body_first, follow) or inner.ways != _ONE:
            self.spots.add(node.offset)
            ways = _mul(count, inner.ways, here)
            return _Cost(work, ways, inner.culprit or f"nested quantifier at offset {node.offset}")
        return _Cost(work, _ONE, None)


# --- the verdict -------------------------------------------------------------------------------


class PatternAnalysis(NamedTuple):
    """What :func:`analyse_pattern` found out about one pattern."""

    python_limit: Optional[int]  # longest value Python's re may search; None: any, 0: none
    risk: str  # why Python's re is limited ('' when it is not)
    uses_shorthand: bool  # \d \s \w or their negations: RE2 reads them as ASCII only
    linear_limit: Optional[int]  # longest value RE2 may search; None: any
    server_problem: Optional[str]  # the server's engine may refuse the pattern as too large


def _server_size(node: _Node) -> int:
    # The server's engine compiles counted repetitions into copies, and wide classes into many
    # UTF-8 byte ranges; this estimates the compiled size in (rough) instructions.
    if isinstance(node, _Atom):
        return 16 if node.chars.wide else 1
    if isinstance(node, _Seq):
        return sum(_server_size(item) for item in node.items)
    if isinstance(node, _Alt):
        return sum(_server_size(branch) for branch in node.branches) + len(node.branches)
    if isinstance(node, _Repeat):
        copies = node.hi if node.hi is not None else max(node.lo, 1)
        return _server_size(node.body) * max(copies, 1) + 1
    return 1


def _spots_text(offsets: Set[int]) -> str:
    listed = [str(offset) for offset in sorted(offsets)][:6]
    if not listed:
        return "tried at every position, its repetitions rescan the rest of the value"
    if len(listed) == 1:
        return f"the quantifier at offset {listed[0]} can match in many ways"
    listing = f"{', '.join(listed[:-1])} and {listed[-1]}"
    return f"the quantifiers at offsets {listing} can match in many ways"


def _limit(total: _Poly, budget: float) -> int:
    low, high = 0, 10_000_000
    while low < high:
        middle = (low + high + 1) // 2
        if _at(total, middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def analyse_pattern(source: str) -> PatternAnalysis:
    """Bound the backtracking of Python's re on ``source`` (a pattern the dialect scanner took).

    The rule, on the pattern's tree, for adversarial text of length n that makes the match fail:

    * The end of the pattern that can always match (it can match empty and has no anchor) is
      dropped first: reaching it ends the search with a match, so it is never backtracked into.
    * A loop over single characters (``\\d+``, ``.*``, ``[a-z]{2,}``) costs n steps; it can hand
      over to what follows at n places only if what follows can start with one of its characters
      (``.*@``, ``\\d*\\d``), else at one place only (``[a-z]+@``).
    * Alternatives add up when two of them can go on matching from the same place (their first
      characters, then their next ones, overlap: ``a|a``, ``a|aa``, ``\\w|\\d``); otherwise only
      one gets past its first characters (``foo|bar``, ``a|ab`` when ``b`` cannot follow).
    * In a sequence, each way the earlier items can end starts the rest again: costs multiply
      (``.*.*=`` is n**2 per start).
    * A repeated group whose iteration can end in more than one way where another iteration can
      begin (a nested quantifier or overlapping alternatives: ``(a+)+``, ``(\\w+\\s?)*``,
      ``(a|a)*``, ``(.*a){20}``), or that can match empty (``(a*)*``), multiplies those ways per
      iteration: exponential, so Python's re never runs it. Otherwise its iterations share out
      the text (``([a-z0-9]+\\.)+``, ``(\\d{1,3}\\.){3}`` are fine).
    * An unanchored search starts at every position: one more factor n.

    The resulting polynomial bounds the steps; the longest value that keeps it within
    :data:`BUDGET` is the limit (none when the bound is linear and small at 10,000 characters).
    A limit under 32 characters, a polynomial of degree above 8 or an exponential refuses the
    pattern. A pattern the analyser cannot read is refused too: it never guesses "safe".
    """
    parser = _Parser(source)
    analyser = _Analyser()
    try:
        tree = parser.parse()
        server_size = _server_size(tree)
    except (_Unparsable, RecursionError) as exc:
        why = str(exc) if isinstance(exc, _Unparsable) else "nested too deeply"
        risk = f"the regex could not be checked for catastrophic backtracking ({why})"
        return PatternAnalysis(0, risk, True, None, None)
    server_problem = None
    if server_size > _SERVER_SIZE_LIMIT:
        server_problem = ("the regex may be too large for the server's engine (it expands to "
                          f"about {server_size} instructions)")
    linear_limit: Optional[int] = None
    if server_size * _REFERENCE_LENGTH > _LINEAR_BUDGET:
        linear_limit = max(_LINEAR_BUDGET // server_size, 1)
    try:
        stripped = analyser.strip_tail(tree)
        work = analyser.cost(stripped, _NOTHING).work
        if analyser.sure(stripped):
            total = work  # some alternative always matches at the first position: one attempt
        else:
            starts = _ONE if analyser.anchored(tree) else _N
            total = _add(_mul(starts, work, None), _N)
        total = _add(total, analyser.greedy(tree))  # the attempt that matches
    except _Explosive as exc:
        why = exc.why or _spots_text(analyser.spots)
        risk = f"the regex may backtrack catastrophically ({why})"
        return PatternAnalysis(0, risk, parser.shorthand, linear_limit, server_problem)
    except RecursionError:
        risk = "the regex is nested too deeply to check for catastrophic backtracking"
        return PatternAnalysis(0, risk, parser.shorthand, linear_limit, server_problem)
    degree = len(total) - 1
    budget = BUDGET * _LINEAR_SLACK if degree <= 1 else BUDGET
    if degree <= 1 and _at(total, _REFERENCE_LENGTH) <= budget:
        return PatternAnalysis(None, "", parser.shorthand, linear_limit, server_problem)
    limit = _limit(total, budget)
    growth = f"{_spots_text(analyser.spots)}, so its cost grows like n^{degree} with the length"
    if limit < _MIN_LIMIT:
        risk = f"the regex may backtrack catastrophically ({growth})"
        return PatternAnalysis(0, risk, parser.shorthand, linear_limit, server_problem)
    return PatternAnalysis(limit, growth, parser.shorthand, linear_limit, server_problem)


# --- the engine seam ---------------------------------------------------------------------------

_ENGINES = ("auto", "re2", "re")
_choice = "auto"
_NOT_LOADED: Any = object()
_re2: Any = _NOT_LOADED


def _load_re2() -> Any:
    global _re2
    if _re2 is _NOT_LOADED:
        try:
            module: Any = importlib.import_module("re2")
            # Another project also installs a module named re2; only google-re2 has Options.
            _re2 = module if hasattr(module, "Options") and hasattr(module, "compile") else None
        except Exception:  # ImportError, or a broken native build
            _re2 = None
    return _re2


def set_regex_engine(name: str) -> str:
    """Choose the engine for regexes compiled from now on: "auto", "re2" or "re"; return the old."""
    global _choice
    if name not in _ENGINES:
        raise ValueError(f"regex engine must be one of {', '.join(_ENGINES)}, not {name!r}")
    if name == "re2" and _load_re2() is None:
        raise ValueError("the re2 engine needs google-re2: pip install 'productos[re2]'")
    previous, _choice = _choice, name
    return previous


def linear_engine() -> Any:
    """The re2 module that definitions compile with now, or None (Python's re only)."""
    return None if _choice == "re" else _load_re2()


def regex_engine() -> str:
    """The name of the engine regexes compile with now: "re2" when available, else "re"."""
    return "re" if linear_engine() is None else "re2"


def compile_linear(source: str, module: Any) -> Any:
    """Compile ``source`` (the server's dialect, already checked) with re2, or None if it can't."""
    if module is None:
        return None
    try:
        options = module.Options()
        options.log_errors = False  # a refused pattern is expected here, not worth stderr noise
        options.never_capture = True  # only whether it matches is used
        return module.compile(source, options)
    except Exception:  # re2.error: e.g. repetitions over 1000, a program too large
        return None
