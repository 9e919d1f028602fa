"""How long Python's re may run on a flag's regex: a backtracking bound computed at compile time.

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
engine choice, which lives in :mod:`productos._flags.regex_engine`.
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

from productos._flags.regex_syntax import (
    END,
    NOTHING,
    Alt,
    Atom,
    Chars,
    Empty,
    Node,
    Parser,
    Repeat,
    Seq,
    Start,
    Unparsable,
    overlaps,
    union,
)

__all__ = [
    "BUDGET",
    "PatternAnalysis",
    "analyse_pattern",
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
_MAX_VISITS = 50_000  # analysis steps before a pattern is declared too complex to check
_HEAD = 16  # characters compared when telling alternatives apart



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
        self._nullable: Dict[Node, bool] = {}
        self._first: Dict[Node, Chars] = {}
        self._costs: Dict[Tuple[Node, Chars], _Cost] = {}
        self.visits = 0
        self.spots: Set[int] = set()  # quantifiers that can stop at many places

    # static facts

    def nullable(self, node: Node) -> bool:
        known = self._nullable.get(node)
        if known is None:
            if isinstance(node, Atom):
                known = False
            elif isinstance(node, (Start, Empty)):
                known = True
            elif isinstance(node, Seq):
                known = all(self.nullable(item) for item in node.items)
            elif isinstance(node, Alt):
                known = any(self.nullable(branch) for branch in node.branches)
            elif isinstance(node, Repeat):
                known = node.lo == 0 or node.hi == 0 or self.nullable(node.body)
            else:  # pragma: no cover - every node kind is listed above
                raise Unparsable(type(node).__name__)
            self._nullable[node] = known
        return known

    def first(self, node: Node) -> Chars:
        known = self._first.get(node)
        if known is None:
            if isinstance(node, Atom):
                known = node.chars
            elif isinstance(node, (Start, Empty)):
                known = NOTHING
            elif isinstance(node, Seq):
                known = self.first_of(node.items, NOTHING)
            elif isinstance(node, Alt):
                known = NOTHING
                for branch in node.branches:
                    known = union(known, self.first(branch))
            elif isinstance(node, Repeat):
                known = NOTHING if node.hi == 0 else self.first(node.body)
            else:  # pragma: no cover
                raise Unparsable(type(node).__name__)
            self._first[node] = known
        return known

    def first_of(self, items: Sequence[Node], follow: Chars) -> Chars:
        """The characters that can come first when ``items`` are matched, then ``follow``."""
        chars = NOTHING
        for item in items:
            chars = union(chars, self.first(item))
            if not self.nullable(item):
                return chars
        return union(chars, follow)

    def fixed(self, node: Node) -> Optional[List[Chars]]:
        """The character sets of a fixed-width, choice-free part, position by position."""
        if isinstance(node, Atom):
            return [node.chars]
        if isinstance(node, (Start, Empty)):
            return []
        if isinstance(node, Seq):
            out: List[Chars] = []
            for item in node.items:
                part = self.fixed(item)
                if part is None:
                    return None
                out.extend(part)
                if len(out) > _HEAD:
                    return out
            return out
        if isinstance(node, Repeat) and node.lo == node.hi and node.lo <= _HEAD:
            part = self.fixed(node.body)
            return None if part is None else part * node.lo
        return None

    def head(self, node: Node, follow: Chars) -> List[Chars]:
        """Sets that the 1st, 2nd, ... characters read by ``node`` then ``follow`` belong to."""
        items = node.items if isinstance(node, Seq) else (node,)
        out: List[Chars] = []
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

    def alternatives_overlap(self, node: Alt, follow: Chars) -> bool:
        """Whether two alternatives can both go on matching from the same place."""
        if len(node.branches) > 32:  # compare first characters only: cheap and conservative
            seen = NOTHING
            for branch in node.branches:
                chars = self.first_of((branch,), follow)
                if overlaps(chars, seen):
                    return True
                seen = union(seen, chars)
            return False
        heads = [self.head(branch, follow) for branch in node.branches]
        for i, one in enumerate(heads):
            for other in heads[i + 1 :]:
                if all(overlaps(x, y) for x, y in zip(one, other)):
                    return True
        return False

    def anchored(self, node: Node) -> bool:
        """Whether every match must start at the start of the text."""
        if isinstance(node, Start):
            return True
        if isinstance(node, Seq):
            return self.anchored(node.items[0])
        if isinstance(node, Alt):
            return all(self.anchored(branch) for branch in node.branches)
        if isinstance(node, Repeat):
            return node.lo >= 1 and self.anchored(node.body)
        return False

    def has_anchor(self, node: Node) -> bool:
        if isinstance(node, Start):
            return True
        if isinstance(node, Atom):
            return node.chars is END
        if isinstance(node, Seq):
            return any(self.has_anchor(item) for item in node.items)
        if isinstance(node, Alt):
            return any(self.has_anchor(branch) for branch in node.branches)
        if isinstance(node, Repeat):
            return self.has_anchor(node.body)
        return False

    def greedy(self, node: Node) -> _Poly:
        """Steps of one pass that matches without backtracking (what a successful match costs)."""
        if isinstance(node, Repeat):
            inner = self.greedy(node.body)
            if node.hi is not None and node.hi <= _SMALL_COUNT:
                return _mul(_const(node.hi), _add(inner, _ONE), None)
            step = _ONE if node.simple else _const(_ITERATION)
            return _add(_mul(_N, step, None), inner)
        if isinstance(node, Seq):
            parts = node.items
        elif isinstance(node, Alt):
            parts = node.branches
        else:
            return _ONE
        total: _Poly = (0.0,)
        for part in parts:
            total = _add(total, self.greedy(part))
        return total

    def sure(self, node: Node) -> bool:
        """Whether ``node`` can always match here (empty and without an anchor that may fail)."""
        return self.nullable(node) and not self.has_anchor(node)

    def strip_tail(self, node: Node) -> Node:
        """Drop the end of the pattern that can never fail: reaching it is a match, search stops."""
        if self.sure(node):
            return Empty(node.offset)
        if isinstance(node, Seq):
            items = list(node.items)
            while items and self.sure(items[-1]):
                items.pop()
            items[-1] = self.strip_tail(items[-1])
            return items[0] if len(items) == 1 else Seq(node.offset, items)
        if isinstance(node, Alt):
            return Alt(node.offset, [self.strip_tail(branch) for branch in node.branches])
        if isinstance(node, Repeat) and node.lo >= 1 and not self.has_anchor(node.body):
            if node.lo == 1:
                return self.strip_tail(node.body)
            return Repeat(node.offset, node.body, node.lo, node.lo, not node.simple)
        return node

    # cost

    def cost(self, node: Node, follow: Chars) -> _Cost:
        key = (node, follow)
        known = self._costs.get(key)
        if known is None:
            self.visits += 1
            if self.visits > _MAX_VISITS:
                raise _Explosive("the regex is too complex to check for catastrophic backtracking")
            known = self._cost(node, follow)
            self._costs[key] = known
        return known

    def _cost(self, node: Node, follow: Chars) -> _Cost:
        if isinstance(node, (Atom, Start, Empty)):
            return _Cost(_ONE, _ONE, None)
        if isinstance(node, Seq):
            return self._sequence_cost(node, follow)
        if isinstance(node, Alt):
            return self._alternation_cost(node, follow)
        if isinstance(node, Repeat):
            return self._repeat_cost(node, follow)
        raise Unparsable(type(node).__name__)  # pragma: no cover

    def _sequence_cost(self, node: Seq, follow: Chars) -> _Cost:
        follows: List[Chars] = []
        after = follow
        for item in reversed(node.items):
            follows.append(after)
            after = union(self.first(item), after) if self.nullable(item) else self.first(item)
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

    def _alternation_cost(self, node: Alt, follow: Chars) -> _Cost:
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

    def _repeat_cost(self, node: Repeat, follow: Chars) -> _Cost:
        hi = node.hi
        if hi == 0:
            return _Cost(_ONE, _ONE, None)
        bounded = hi is not None and hi <= _SMALL_COUNT
        count = _const(hi) if hi is not None and bounded else _N
        body = node.body
        here = f"the quantifier at offset {node.offset}"
        if node.simple and isinstance(body, Atom):
            # A loop over single characters: it takes its run, then gives it back one by one.
            work = _add(count, _ONE)
            if not overlaps(body.chars, follow):
                return _Cost(work, _ONE, None)  # only the end of its run can be followed
            self.spots.add(node.offset)
            ways = _const(hi - node.lo + 1) if hi is not None and bounded else _N
            return _Cost(work, ways, f"nested quantifier at offset {node.offset}")
        if hi == 1:
            inner = self.cost(body, follow)
            skip = self.nullable(body) or overlaps(self.first(body), follow)
            ways = _add(inner.ways, _ONE) if skip else _max(inner.ways, _ONE)
            culprit = inner.culprit or (f"optional group at offset {node.offset}" if skip else None)
            return _Cost(_add(inner.work, _ONE), ways, culprit)
        body_first = self.first(body)
        inner = self.cost(body, union(body_first, follow))
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
        if overlaps(body_first, follow) or inner.ways != _ONE:
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


def _server_size(node: Node) -> int:
    # The server's engine compiles counted repetitions into copies, and wide classes into many
    # UTF-8 byte ranges; this estimates the compiled size in (rough) instructions.
    if isinstance(node, Atom):
        return 16 if node.chars.wide else 1
    if isinstance(node, Seq):
        return sum(_server_size(item) for item in node.items)
    if isinstance(node, Alt):
        return sum(_server_size(branch) for branch in node.branches) + len(node.branches)
    if isinstance(node, Repeat):
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
    parser = Parser(source)
    analyser = _Analyser()
    try:
        tree = parser.parse()
        server_size = _server_size(tree)
    except (Unparsable, RecursionError) as exc:
        why = str(exc) if isinstance(exc, Unparsable) else "nested too deeply"
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
        work = analyser.cost(stripped, NOTHING).work
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
