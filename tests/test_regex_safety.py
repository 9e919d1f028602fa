"""Regex filters never hand Python's re a pattern/value pair it could backtrack on for long.

Without a linear-time engine, patterns whose backtracking can explode are refused when the
definitions compile (the filter is inconclusive: the server decides) and patterns of polynomial
cost get a value-length limit; with the re2 extra, RE2 takes those values locally. The engine is
injected with ``set_regex_engine`` so both paths run whichever is installed. Nothing here times
anything: the tests assert how each pattern is classified and which engine answers.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import productos
from productos._flags.filters import RegexFilter
from productos._flags.regex_engine import regex_engine, set_regex_engine
from productos._flags.regex_safety import analyse_pattern
from productos.cli import main
from productos.flags import FlagResult, InconclusiveReason, ReasonCode, explain, parse_definitions

LENGTHS = (25, 1_000, 10_000)
FLAG = "regex-flag"

# (pattern, value of length n that makes a backtracking engine fail slowly, answer on it)
PATHOLOGICAL: List[Any] = [
    ("(a|a)*$", lambda n: "a" * n + "!", True),  # empty match at the end
    ("^(a|a)*$", lambda n: "a" * n + "!", False),
    ("(a+)+$", lambda n: "a" * n + "!", False),
    ("(a*)*$", lambda n: "a" * n + "!", True),
    ("(a|aa)*c", lambda n: "a" * n, False),
    ("(\\w+\\s?)*$", lambda n: "ab " * (n // 3) + "!", True),
    ("^(\\w+\\s?)*$", lambda n: "ab " * (n // 3) + "!", False),
    ("(.*a){20}", lambda n: "a" * n, True),
    ("^(([a-z])+.)+[A-Z]([a-z])+$", lambda n: "a" * n + "!", False),
    ("(x+x+)+y", lambda n: "x" * n, False),
    (".*.*.*=x$", lambda n: "=" * n, False),
    ("^(\\d+)*$", lambda n: "1" * n + "x", False),
]
PATHOLOGICAL_IDS = [case[0] for case in PATHOLOGICAL]

# Polynomial cost: fine on short values, limited on long ones.
HEAVY: List[Any] = [
    ("(a|ab)*c", lambda n: "ab" * (n // 2), False),
    ("[a-z]+@[a-z]+\\.com", lambda n: "a" * n, False),
    ("\\d+x", lambda n: "1" * n, False),
    (".*@example\\.com$", lambda n: "a@" * (n // 2), False),
    ("(?:foo|far)+x", lambda n: "foo" * (n // 3), False),
]

SAFE = [
    ("^.*@example\\.com$", "alice@example.com", True),
    ("^.*@example\\.com$", "alice@example.org", False),
    ("^(foo|bar)$", "bar", True),
    ("^(foo|bar)$", "foobar", False),
    ("\\d+", "order 66", True),
    ("\\d+", "no digits", False),
    ("[a-z]+@[a-z]+\\.com", "bob@shop.com", True),
    ("[a-z]+@[a-z]+\\.com", "bob@shop.org", False),
    (".*", "", True),
    ("(\\d{1,3}\\.){3}\\d{1,3}", "host 10.0.0.1", True),
    ("^([a-z0-9]+\\.)+[a-z]{2,}$", "www.example.com", True),
    ("^([a-z0-9]+\\.)+[a-z]{2,}$", "www..example.com", False),
    ("(a+)+", "caaab", True),  # nested, but the first attempt matches
    ("^(ab?)+$", "aabab", True),
]


def definitions(pattern: str, operator: str = "regex") -> Dict[str, Any]:
    """One flag, on for everyone whose email matches ``pattern``."""
    return {
        "flags": [{
            "id": 7, "key": FLAG, "active": True,
            "filters": {"groups": [{
                "properties": [{"key": "email", "type": "person", "operator": operator,
                                "value": pattern}],
                "rollout_percentage": 100,
            }]},
        }],
        "group_type_mapping": {},
        "cohorts": {},
    }


@pytest.fixture
def python_re() -> Iterator[None]:
    """Compile regexes with Python's re only, even when google-re2 is installed."""
    previous = set_regex_engine("re")
    yield
    set_regex_engine(previous)


@pytest.fixture
def re2() -> Iterator[None]:
    """Compile regexes with RE2 taking what Python's re may not (skipped without google-re2)."""
    try:
        previous = set_regex_engine("re2")
    except ValueError:
        pytest.skip("google-re2 is not installed (pip install -e '.[re2]')")
    yield
    set_regex_engine(previous)


@pytest.fixture
def local_client() -> Iterator[Callable[[str], productos.Client]]:
    made: List[productos.Client] = []

    def make(pattern: str, operator: str = "regex") -> productos.Client:
        client = productos.Client("phc_regex", flag_definitions=definitions(pattern, operator),
                                  send=False)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(5)


def evaluate(client: productos.Client, value: str) -> FlagResult:
    result = client.get_feature_flag_result(FLAG, "user-1", person_properties={"email": value},
                                            only_evaluate_locally=True)
    assert result is not None
    return result


def regex_filter(result: FlagResult) -> RegexFilter:
    spec = result.reason.trace[0].filters[0].filter
    assert isinstance(spec, RegexFilter)
    return spec


# ------------------------------------------------------------------ without a linear engine


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize(("pattern", "make", "answer"), PATHOLOGICAL, ids=PATHOLOGICAL_IDS)
def test_a_pattern_that_can_explode_is_inconclusive_with_the_reason(
    python_re: None, local_client: Any, pattern: str, make: Any, answer: bool, length: int
) -> None:
    assert regex_engine() == "re"
    client = local_client(pattern)
    result = evaluate(client, make(length))
    assert result.value is None and not result.locally_evaluated
    assert result.reason.code is ReasonCode.INCONCLUSIVE
    assert result.reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION
    # Decided when the definitions compiled, not while evaluating this value.
    spec = regex_filter(result)
    assert spec.spec is None and spec.problem is not None
    assert spec.problem.startswith("the regex may backtrack catastrophically (")
    assert "productos[re2]" in spec.problem
    assert spec.problem in result.reason.description
    assert spec.problem in explain(result)
    assert client.feature_enabled(FLAG, "user-1", person_properties={"email": make(length)},
                                  only_evaluate_locally=True) is None


@pytest.mark.parametrize(
    ("pattern", "where"),
    [
        ("(a+)+$", "nested quantifier at offset 2 inside the repetition at offset 4"),
        ("(a|a)*$", "alternatives at offset 2 that can match the same text inside the "
                    "repetition at offset 5"),
        ("(a*)*$", "the group repeated by the quantifier at offset 4 can match empty text"),
        ("(\\w+\\s?)*$", "nested quantifier at offset 3 inside the repetition at offset 8"),
        ("(.*a){20}", "nested quantifier at offset 2 inside the repetition at offset 5"),
        (".*.*.*=x$", "the quantifiers at offsets 1, 3 and 5 can match in many ways"),
    ],
)
def test_the_reason_says_where_the_pattern_explodes(pattern: str, where: str) -> None:
    verdict = analyse_pattern(pattern)
    assert verdict.python_limit == 0
    assert verdict.risk.startswith("the regex may backtrack catastrophically (")
    assert where in verdict.risk


@pytest.mark.parametrize(("pattern", "make", "answer"), HEAVY, ids=[c[0] for c in HEAVY])
def test_a_polynomial_pattern_has_a_length_limit_past_which_the_server_decides(
    python_re: None, local_client: Any, pattern: str, make: Any, answer: bool
) -> None:
    limit = analyse_pattern(pattern).python_limit
    assert limit is not None and 32 <= limit < 1_000
    client = local_client(pattern)
    short = evaluate(client, make(25))
    assert short.value is answer and short.locally_evaluated  # within the limit: Python's re
    assert regex_filter(short).spec is not None
    for length in (1_000, 10_000):
        result = evaluate(client, make(length))
        assert result.value is None
        assert result.reason.inconclusive is InconclusiveReason.UNSUPPORTED_DEFINITION
        detail = result.reason.trace[0].filters[0].detail
        assert detail.startswith(f"the value has {len(make(length))} characters, more than "
                                 f"the {limit} Python's re can take safely with this regex: ")
        assert "grows like n^" in detail and "productos[re2]" in detail
        assert detail in explain(result)


@pytest.mark.parametrize(("pattern", "value", "answer"), SAFE)
@pytest.mark.parametrize("engine", ["python_re", "re2"])
def test_common_patterns_keep_evaluating_locally(
    request: pytest.FixtureRequest, local_client: Any, engine: str, pattern: str, value: str,
    answer: bool
) -> None:
    request.getfixturevalue(engine)
    result = evaluate(local_client(pattern), value)
    assert result.locally_evaluated and result.value is answer
    negated = evaluate(local_client(pattern, "not_regex"), value)
    assert negated.locally_evaluated and negated.value is (not answer)


@pytest.mark.parametrize(
    "pattern",
    ["^.*@example\\.com$", "^(foo|bar)$", "\\d+", ".*", "\\.com$", "^abc$", "^(?:ab)+c",
     "^[a-z0-9._%+-]+@[a-z0-9-]+\\.[a-z]{2,}$", "^(\\d{1,3}\\.){3}\\d{1,3}$", "(a+)+"],
)
def test_linear_patterns_have_no_length_limit(pattern: str) -> None:
    verdict = analyse_pattern(pattern)
    assert verdict.python_limit is None and verdict.risk == ""


def test_long_values_of_a_linear_pattern_stay_local(python_re: None, local_client: Any) -> None:
    client = local_client("^.*@example\\.com$")
    assert evaluate(client, "x" * 10_000 + "@example.com").value is True
    assert evaluate(client, "x@" * 5_000).value is False


def test_the_decision_is_made_once_when_definitions_compile(python_re: None) -> None:
    snapshot = parse_definitions(definitions("(a|aa)*c"))
    compiled = snapshot.flags[FLAG]
    assert compiled.local_reason == "unsupported_definition"
    assert "may backtrack catastrophically" in (compiled.local_problem or "")
    spec = compiled.conditions[0].filters[0]
    assert isinstance(spec, RegexFilter) and spec.spec is None
    with pytest.raises(AttributeError):
        spec.problem = None  # type: ignore[misc]  # frozen


def test_a_pattern_too_large_for_the_server_is_left_to_it(python_re: None,
                                                          local_client: Any) -> None:
    result = evaluate(local_client("\\w{20000}"), "abc")
    assert result.value is None
    assert "too large for the server's engine" in result.reason.description


# --------------------------------------------------------------------------- remote fallback


def answer_with(seen: List[Dict[str, Any]], enabled: bool) -> Callable[[Dict[str, Any]], Any]:
    def answer(body: Dict[str, Any]) -> Any:
        seen.append(body)
        return 200, {"flags": {FLAG: {
            "key": FLAG, "enabled": enabled, "variant": None,
            "reason": {"code": "condition_match", "description": "server regex"},
            "metadata": {"id": 7, "version": 1, "payload": None}}},
            "errorsWhileComputingFlags": False, "requestId": "req-regex"}
    return answer


@pytest.fixture
def server_client(live_server: Any) -> Iterator[Callable[[str], productos.Client]]:
    made: List[productos.Client] = []

    def make(pattern: str) -> productos.Client:
        live_server.set_definitions(copy.deepcopy(definitions(pattern)))
        client = productos.Client("phc_regex", host=live_server.url,
                                  personal_api_key=live_server.personal_api_key,
                                  flush_interval=0.05)
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown(5)


@pytest.mark.parametrize(("pattern", "make", "answer"), PATHOLOGICAL[:6],
                         ids=PATHOLOGICAL_IDS[:6])
def test_without_a_linear_engine_the_server_is_asked(
    python_re: None, live_server: Any, server_client: Any, pattern: str, make: Any, answer: bool
) -> None:
    seen: List[Dict[str, Any]] = []
    live_server.flags_handler = answer_with(seen, True)
    client = server_client(pattern)
    value = make(10_000)
    result = client.get_feature_flag_result(FLAG, "user-1", person_properties={"email": value})
    assert result is not None and result.value is True
    assert result.reason.code is ReasonCode.REMOTE and not result.locally_evaluated
    assert len(seen) == 1 and seen[0]["flag_keys_to_evaluate"] == [FLAG]
    assert seen[0]["person_properties"]["email"] == value


def test_a_value_past_the_limit_goes_to_the_server(
    python_re: None, live_server: Any, server_client: Any
) -> None:
    seen: List[Dict[str, Any]] = []
    live_server.flags_handler = answer_with(seen, False)
    client = server_client("[a-z]+@[a-z]+\\.com")
    assert client.get_feature_flag(FLAG, "u", person_properties={"email": "a@b.com"}) is True
    assert seen == []  # short: decided locally
    assert client.get_feature_flag(FLAG, "u", person_properties={"email": "a" * 10_000}) is False
    assert len(seen) == 1 and seen[0]["person_properties"]["email"] == "a" * 10_000


def test_with_re2_the_server_is_not_needed(re2: None, live_server: Any,
                                           server_client: Any) -> None:
    seen: List[Dict[str, Any]] = []
    live_server.flags_handler = answer_with(seen, True)
    client = server_client("^(a|a)*$")
    result = client.get_feature_flag_result(FLAG, "user-1",
                                            person_properties={"email": "a" * 10_000 + "!"})
    assert result is not None and result.value is False and result.locally_evaluated
    assert regex_filter(result).spec is not None
    assert regex_filter(result).spec.engine == "re2"  # type: ignore[union-attr]
    assert seen == [] and live_server.requests_for("/flags/") == []


# --------------------------------------------------------------------------- with re2


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize(("pattern", "make", "answer"), PATHOLOGICAL + HEAVY,
                         ids=PATHOLOGICAL_IDS + [c[0] for c in HEAVY])
def test_re2_evaluates_what_python_re_may_not(
    re2: None, local_client: Any, pattern: str, make: Any, answer: bool, length: int
) -> None:
    assert regex_engine() == "re2"
    client = local_client(pattern)
    result = evaluate(client, make(length))
    assert result.locally_evaluated and result.value is answer
    spec = regex_filter(result).spec
    assert spec is not None and spec.engine == "re2"
    negated = evaluate(local_client(pattern, "not_regex"), make(length))
    assert negated.locally_evaluated and negated.value is (not answer)


def test_re2_is_not_used_where_its_classes_differ_from_the_servers(
    re2: None, local_client: Any
) -> None:
    # RE2's \w, \d and \s are ASCII only; the server's are Unicode: non-ASCII values go to
    # Python's re when it may take them, else to the server.
    client = local_client("^(\\w+\\s?)*$")
    assert evaluate(client, "hello world").value is True  # ASCII: RE2
    result = evaluate(client, "héllo wörld")
    assert result.value is None
    detail = result.reason.trace[0].filters[0].detail
    assert "may backtrack catastrophically" in detail and "ASCII only" in detail
    polynomial = local_client("\\w+@\\w+\\.com")
    assert evaluate(polynomial, "wörld@wörld.com").value is True  # short: Python's re, Unicode
    assert evaluate(polynomial, "ü" * 5_000).value is None  # too long for re, not ASCII for RE2


def test_the_engine_choice_is_checked() -> None:
    with pytest.raises(ValueError):
        set_regex_engine("pcre")
    previous = set_regex_engine("re")
    try:
        assert regex_engine() == "re"
    finally:
        set_regex_engine(previous)


# --------------------------------------------------------------------------- explain in the CLI


def test_cli_explain_shows_the_reason(python_re: None, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(definitions("(a+)+$")))
    code = main(["flags", "eval", FLAG, "--file", str(path), "--distinct-id", "u",
                 "--person-prop", "email=aaaaaaaaaaaaaaaaaaaaaaaaa!", "--explain"])
    assert code == 1  # no value: unknown
    out = capsys.readouterr().out
    assert "the regex may backtrack catastrophically (nested quantifier at offset 2 inside " \
           "the repetition at offset 4)" in out
    assert "not decided locally" in out


# --------------------------------------------------------------------------- any pattern


REGEX_PIECES = ["a", "b", "ab", ".", "|", "(", ")", "(?:", "*", "+", "?", "*?", "{2}", "{1,3}",
                "{2,}", "^", "$", "\\d", "\\w", "\\s", "\\W", "[a-z]", "[^b]", "[\\d_]", "é",
                "\\.", "\\x41", "x"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(REGEX_PIECES), min_size=1, max_size=12))
def test_any_pattern_compiles_to_a_verdict_without_raising(pieces: List[str]) -> None:
    pattern = "".join(pieces)
    verdict = analyse_pattern(pattern)
    assert verdict.python_limit is None or verdict.python_limit >= 0
    assert (verdict.python_limit is None) == (verdict.risk == "")
    snapshot = parse_definitions(definitions(pattern))
    assert snapshot.problems == ()
    spec: Optional[Any] = snapshot.flags[FLAG].conditions[0].filters[0]
    assert isinstance(spec, RegexFilter)
