"""Public calls never raise into the app: hostile arguments and before_send outputs, end to end.

Every call goes to a real loopback server. Without ``debug`` a bad call returns quietly, logs
one line, calls ``on_error`` (and ``on_drop`` for events) and is counted; with ``debug=True``
the documented error is raised instead. The stats invariant holds after each call.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid as uuid_mod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Type

import pytest

import productos
from productos import errors
from productos._runtime.ratelog import RateLimitedLog

try:
    from tests.server import FLAGS_PATHS, LoopbackServer
except ModuleNotFoundError:  # plain `pytest` with rootdir-relative imports
    from server import FLAGS_PATHS, LoopbackServer  # type: ignore[no-redef]


# --- hostile values -------------------------------------------------------------------------


class ExplodingStr:
    """An id whose str() and repr() raise."""

    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    __repr__ = __str__


class NonStringStr:
    """An id whose __str__ returns something that is not a string."""

    def __str__(self) -> Any:
        return 5


class ExplodingEq:
    """An id that cannot even be compared."""

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no comparing")

    __hash__ = object.__hash__


class ExplodingMapping(Mapping):
    """A mapping whose iteration and lookups raise."""

    def __getitem__(self, key: Any) -> Any:
        raise RuntimeError("no item")

    def __iter__(self) -> Iterator[Any]:
        raise RuntimeError("no iteration")

    def __len__(self) -> int:
        return 2


class ExplodingLenMapping(ExplodingMapping):
    """A mapping whose len() raises too."""

    def __len__(self) -> int:
        raise RuntimeError("no len")


# --- the table ------------------------------------------------------------------------------

Call = Callable[[Any], Any]


@dataclass(frozen=True)
class Case:
    """One public call with hostile arguments and what must come of it.

    kind: "dropped" (an event refused and counted "invalid"), "accepted" (the event is sent,
    with a warning about what was fixed or left out) or "flag" (a flag read that fails: the
    call returns ``returns`` and reports the error).
    """

    name: str
    call: Call
    kind: str
    debug_raises: Optional[Type[BaseException]]
    log_says: str = ""
    returns: Any = None


def dropped(name: str, call: Call, debug_raises: Type[BaseException]) -> Case:
    return Case(name, call, "dropped", debug_raises, "(invalid)")


def accepted(name: str, call: Call, log_says: str,
             debug_raises: Optional[Type[BaseException]] = None) -> Case:
    return Case(name, call, "accepted", debug_raises, log_says)


def flag(name: str, call: Call, debug_raises: Type[BaseException], returns: Any = None) -> Case:
    return Case(name, call, "flag", debug_raises, "failed", returns)


EventError = errors.EventError

EVENT_CASES = [
    dropped("capture-event-none", lambda c: c.capture(None, distinct_id="u"), EventError),
    dropped("capture-event-empty", lambda c: c.capture("", distinct_id="u"), EventError),
    dropped("capture-event-int", lambda c: c.capture(123, distinct_id="u"), EventError),
    dropped("capture-event-bytes", lambda c: c.capture(b"e", distinct_id="u"), EventError),
    dropped("capture-id-exploding-str",
            lambda c: c.capture("e", distinct_id=ExplodingStr()), RuntimeError),
    dropped("capture-id-str-not-str",
            lambda c: c.capture("e", distinct_id=NonStringStr()), TypeError),
    dropped("capture-id-exploding-eq",
            lambda c: c.capture("e", distinct_id=ExplodingEq()), RuntimeError),
    dropped("capture-id-list", lambda c: c.capture("e", distinct_id=[1]), EventError),
    dropped("capture-id-dict", lambda c: c.capture("e", distinct_id={"id": 1}), EventError),
    dropped("capture-id-bytes", lambda c: c.capture("e", distinct_id=b"u"), EventError),
    dropped("capture-id-bool", lambda c: c.capture("e", distinct_id=True), EventError),
    dropped("capture-props-list",
            lambda c: c.capture("e", distinct_id="u", properties=["a"]), EventError),
    dropped("capture-props-str",
            lambda c: c.capture("e", distinct_id="u", properties="a=1"), EventError),
    dropped("capture-props-exploding-mapping",
            lambda c: c.capture("e", distinct_id="u", properties=ExplodingMapping()),
            RuntimeError),
    dropped("capture-props-exploding-len",
            lambda c: c.capture("e", distinct_id="u", properties=ExplodingLenMapping()),
            RuntimeError),
    dropped("capture-timestamp-object",
            lambda c: c.capture("e", distinct_id="u", timestamp=object()), TypeError),
    dropped("capture-timestamp-text",
            lambda c: c.capture("e", distinct_id="u", timestamp="not a date"), ValueError),
    dropped("capture-timestamp-nan",
            lambda c: c.capture("e", distinct_id="u", timestamp=float("nan")), TypeError),
    dropped("capture-timestamp-huge",
            lambda c: c.capture("e", distinct_id="u", timestamp=10**30), Exception),
    dropped("capture-timestamp-list",
            lambda c: c.capture("e", distinct_id="u", timestamp=[2026, 1, 1]), TypeError),
    dropped("capture-groups-str",
            lambda c: c.capture("e", distinct_id="u", groups="acme"), EventError),
    dropped("capture-groups-value-dict",
            lambda c: c.capture("e", distinct_id="u", groups={"company": {"id": 1}}),
            EventError),
    dropped("capture-groups-value-none",
            lambda c: c.capture("e", distinct_id="u", groups={"company": None}), EventError),
    dropped("capture-groups-pairs",
            lambda c: c.capture("e", distinct_id="u", groups=[("company", "acme")]),
            EventError),
    dropped("capture-groups-key-tuple",
            lambda c: c.capture("e", distinct_id="u", groups={("company",): "acme"}),
            EventError),
    dropped("capture-flags-list",
            lambda c: c.capture("e", distinct_id="u", flags=["beta"]), EventError),
    dropped("capture-flags-exploding-mapping",
            lambda c: c.capture("e", distinct_id="u", flags=ExplodingMapping()), RuntimeError),
    dropped("set-without-id", lambda c: c.set(properties={"a": 1}), EventError),
    dropped("set-props-int", lambda c: c.set(distinct_id="u", properties=5), EventError),
    dropped("set-timestamp-list",
            lambda c: c.set(distinct_id="u", properties={}, timestamp=[1]), TypeError),
    dropped("set-once-exploding-mapping",
            lambda c: c.set_once(distinct_id="u", properties=ExplodingMapping()), RuntimeError),
    dropped("alias-previous-none", lambda c: c.alias(None, "x"), EventError),
    dropped("alias-new-dict", lambda c: c.alias("x", {"id": 1}), EventError),
    dropped("alias-exploding-str", lambda c: c.alias(ExplodingStr(), "x"), RuntimeError),
    dropped("group-type-none", lambda c: c.group_identify(None, "acme"), EventError),
    dropped("group-key-list", lambda c: c.group_identify("company", ["acme"]), EventError),
    dropped("group-props-list",
            lambda c: c.group_identify("company", "acme", ["a"]), EventError),
    dropped("group-props-exploding-mapping",
            lambda c: c.group_identify("company", "acme", ExplodingMapping()), RuntimeError),
    dropped("exception-not-an-exception",
            lambda c: c.capture_exception("boom"), EventError),
    dropped("exception-props-list",
            lambda c: c.capture_exception(ValueError("x"), properties=["a"]), EventError),
    dropped("exception-groups-str",
            lambda c: c.capture_exception(ValueError("y"), groups="acme"), EventError),
    accepted("capture-uuid-invalid",
             lambda c: c.capture("e", distinct_id="u", uuid="not-a-uuid"),
             "is not a valid UUID"),
    accepted("capture-uuid-int",
             lambda c: c.capture("e", distinct_id="u", uuid=5), "is not a valid UUID"),
    accepted("set-uuid-object",
             lambda c: c.set(distinct_id="u", properties={"a": 1}, uuid=object()),
             "is not a valid UUID"),
    accepted("capture-props-tuple-key",
             lambda c: c.capture("e", distinct_id="u", properties={("t",): 1, "ok": 2}),
             "not JSON-safe", errors.UnserializableEventError),
    accepted("capture-props-exploding-value",
             lambda c: c.capture("e", distinct_id="u", properties={"v": ExplodingStr()}),
             "not JSON-safe", errors.UnserializableEventError),
]

ONE_FLAG = ["get_feature_flag", "feature_enabled", "get_feature_flag_result",
            "get_feature_flag_payload"]
ALL_FLAGS = ["get_all_flags", "get_all_flags_results", "get_all_flags_and_payloads"]
NO_FLAGS = {"featureFlags": {}, "featureFlagPayloads": {}}


def _one_flag_cases(method: str) -> List[Case]:
    def call(*args: Any, **kwargs: Any) -> Call:
        return lambda c: getattr(c, method)(*args, **kwargs)

    return [
        flag(f"{method}-key-none", call(None, "u"), EventError),
        flag(f"{method}-key-list", call(["x"], "u"), EventError),
        flag(f"{method}-key-int", call(5, "u"), EventError),
        flag(f"{method}-no-distinct-id", call("k"), EventError),
        flag(f"{method}-id-exploding-str", call("k", ExplodingStr()), RuntimeError),
        flag(f"{method}-id-dict", call("k", {"id": 1}), EventError),
        flag(f"{method}-groups-str", call("k", "u", groups="acme"), EventError),
        flag(f"{method}-groups-value-dict", call("k", "u", groups={"company": {"a": 1}}),
             EventError),
        flag(f"{method}-person-props-list", call("k", "u", person_properties=["a"]),
             EventError),
        flag(f"{method}-group-props-list", call("k", "u", group_properties={"company": ["a"]}),
             EventError),
        flag(f"{method}-device-id-dict", call("k", "u", device_id={"a": 1}), EventError),
    ]


def _all_flags_cases(method: str) -> List[Case]:
    returns = NO_FLAGS if method == "get_all_flags_and_payloads" else None

    def call(*args: Any, **kwargs: Any) -> Call:
        return lambda c: getattr(c, method)(*args, **kwargs)

    return [
        flag(f"{method}-no-distinct-id", call(), EventError, returns),
        flag(f"{method}-id-exploding-str", call(ExplodingStr()), RuntimeError, returns),
        flag(f"{method}-id-list", call(["u"]), EventError, returns),
        flag(f"{method}-groups-str", call("u", groups="acme"), EventError, returns),
        flag(f"{method}-person-props-int", call("u", person_properties=5), EventError,
             returns),
        flag(f"{method}-group-props-list", call("u", group_properties=["x"]), EventError,
             returns),
        flag(f"{method}-device-id-list", call("u", device_id=[1]), EventError, returns),
    ]


FLAG_CASES = [case for m in ONE_FLAG for case in _one_flag_cases(m)]
FLAG_CASES += [case for m in ALL_FLAGS for case in _all_flags_cases(m)]
FLAG_CASES += [
    flag("payload-match-value-list-key",
         lambda c: c.get_feature_flag_payload(["x"], "u", match_value=True), EventError),
    flag("payload-match-value-dict-key",
         lambda c: c.get_feature_flag_payload({"k": 1}, "u", match_value="control"),
         EventError),
]
CASES = EVENT_CASES + FLAG_CASES


# --- helpers --------------------------------------------------------------------------------


@dataclass
class Reports:
    errors: List[Tuple[BaseException, list]]
    drops: List[Tuple[Any, str]]


@pytest.fixture
def make_client(live_server: LoopbackServer) -> Iterator[Callable[..., Tuple[Any, Reports]]]:
    made: List[productos.Client] = []

    def make(**kwargs: Any) -> Tuple[productos.Client, Reports]:
        reports = Reports([], [])
        kwargs.setdefault("flush_interval", 0.05)
        client = productos.Client(
            "phc_safety", host=live_server.url,
            on_error=lambda exc, batch: reports.errors.append((exc, batch)),
            on_drop=lambda event, reason: reports.drops.append((event, reason)), **kwargs)
        made.append(client)
        return client, reports

    yield make
    for client in made:
        client.shutdown(5)


def assert_invariant(stats: Dict[str, Any]) -> None:
    settled = (stats["sent"] + stats["queued"] + stats["in_flight"] + stats["spooled"]
               + stats["dropped_total"] + stats["filtered"])
    assert stats["captured"] == settled, stats


def warnings_of(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "productos" and r.levelno >= logging.WARNING]


def all_requests_ok(server: LoopbackServer) -> None:
    statuses = [r.response_status for r in server.requests]
    assert all(status == 200 for status in statuses), statuses


# --- hostile arguments ----------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_arguments_never_raise_and_are_reported(case, make_client, live_server, caplog):
    client, reports = make_client()
    with caplog.at_level(logging.WARNING, logger="productos"):
        result = case.call(client)
        assert client.flush(5)
    lines = warnings_of(caplog)
    assert len(lines) == 1, lines
    assert case.log_says in lines[0], lines
    stats = client.stats()
    assert_invariant(stats)
    if case.kind == "dropped":
        assert result is None
        assert stats["dropped"] == {"invalid": 1}, stats
        assert stats["captured"] == 1 and stats["sent"] == 0
        assert len(reports.errors) == 1 and isinstance(reports.errors[0][0], Exception)
        assert [reason for _, reason in reports.drops] == ["invalid"]
        assert live_server.events == []
    elif case.kind == "accepted":
        assert uuid_mod.UUID(result)
        assert stats["sent"] == 1 and stats["dropped_total"] == 0, stats
        [event] = live_server.events
        assert event["uuid"] == result
    else:
        assert result == case.returns
        assert len(reports.errors) == 1 and isinstance(reports.errors[0][0], Exception)
        assert stats["captured"] == 0 and stats["dropped_total"] == 0, stats
        # refused before any request
        assert not [r for r in live_server.requests if r.path in FLAGS_PATHS]
    all_requests_ok(live_server)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_debug_mode_raises_the_documented_error(case, make_client, live_server):
    client, _ = make_client(debug=True)
    if case.debug_raises is None:
        assert uuid_mod.UUID(case.call(client))
    else:
        with pytest.raises(case.debug_raises):
            case.call(client)
    assert client.flush(5)
    assert_invariant(client.stats())
    all_requests_ok(live_server)


def test_bad_values_inside_flag_properties_leave_the_flag_unknown(make_client, live_server,
                                                                   caplog):
    client, reports = make_client()
    with caplog.at_level(logging.WARNING, logger="productos"):
        value = client.get_feature_flag("k", "u", person_properties={"v": ExplodingStr()},
                                        send_feature_flag_events=False)
    assert value is None
    lines = warnings_of(caplog)
    assert len(lines) == 1 and "not JSON" in lines[0], lines
    assert reports.errors == []  # the flag is unknown, as when the server cannot be reached
    assert not [r for r in live_server.requests if r.path in FLAGS_PATHS]


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 10**400, -1.0, "soon", [1],
                                     ExplodingStr()],
                         ids=["nan", "inf", "huge", "negative", "str", "list", "exploding"])
def test_flush_and_shutdown_with_odd_timeouts_do_not_raise(timeout, make_client):
    client, _ = make_client()
    client.capture("e", distinct_id="u")
    assert isinstance(client.flush(timeout), bool)
    assert isinstance(client.shutdown(timeout), bool)


MODULE_CALLS = [
    ("capture", lambda: productos.capture(None, distinct_id="u")),
    ("set", lambda: productos.set(distinct_id="u", properties=5)),
    ("set_once", lambda: productos.set_once(properties={"a": 1})),
    ("alias", lambda: productos.alias(None, ExplodingStr())),
    ("group_identify", lambda: productos.group_identify("company", {"k": 1})),
    ("capture_exception", lambda: productos.capture_exception("boom")),
    ("feature_enabled", lambda: productos.feature_enabled(None, "u")),
    ("get_feature_flag", lambda: productos.get_feature_flag(["x"], "u")),
    ("get_feature_flag_payload",
     lambda: productos.get_feature_flag_payload(["x"], "u", match_value=True)),
    ("get_all_flags", lambda: productos.get_all_flags(ExplodingStr())),
]


def test_module_level_functions_never_raise(live_server, monkeypatch, caplog):
    reported: List[BaseException] = []
    monkeypatch.setattr(productos, "project_api_key", "phc_module")
    monkeypatch.setattr(productos, "host", live_server.url)
    monkeypatch.setattr(productos, "on_error", lambda exc, batch: reported.append(exc))
    monkeypatch.setattr(productos, "default_client", None)
    try:
        with caplog.at_level(logging.WARNING, logger="productos"):
            for name, call in MODULE_CALLS:
                assert call() is None, name
            assert productos.flush(5)
        client = productos.default_client
        assert client is not None
        stats = client.stats()
        assert_invariant(stats)
        assert stats["dropped"] == {"invalid": 6}, stats
        assert len(reported) == len(MODULE_CALLS)
        assert warnings_of(caplog)
    finally:
        productos.shutdown(5)
    assert live_server.events == []


# --- before_send output ---------------------------------------------------------------------

GIVEN_UUID = "00000000-0000-4000-8000-00000000abcd"


def _hook_cases() -> Dict[str, Callable[[dict], Any]]:
    def without(*keys: str) -> Callable[[dict], Any]:
        return lambda e: {k: v for k, v in e.items() if k not in keys}

    def with_(**fields: Any) -> Callable[[dict], Any]:
        return lambda e: {**e, **fields}

    def set_in_place_then_raise(e: dict) -> Any:
        e["event"] = None
        raise RuntimeError("hook broke halfway")

    return {
        # refused: each would make the server refuse the whole batch
        "bad:empty": lambda e: {},
        "bad:event-none": with_(event=None),
        "bad:event-int": with_(event=5),
        "bad:props-list": with_(properties=[1, 2]),
        "bad:props-str": with_(properties="x"),
        "bad:id-none": with_(distinct_id=None),
        "bad:id-missing": without("distinct_id"),
        "bad:id-empty": with_(distinct_id=""),
        "bad:id-dict": with_(distinct_id={"id": 1}),
        "bad:uuid-garbage": with_(uuid="garbage"),
        "bad:timestamp-object": with_(timestamp=object()),
        "bad:timestamp-empty": with_(timestamp=""),
        "bad:set-list": with_(**{"$set": ["a"]}),
        "bad:exploding-mapping": lambda e: ExplodingMapping(),
        "bad:in-place-then-raise": set_in_place_then_raise,
        # repaired or normalised, then sent
        "ok:uuid-missing": without("uuid"),
        "ok:uuid-none": with_(uuid=None),
        "ok:timestamp-missing": without("timestamp"),
        "ok:props-missing": without("properties"),
        "ok:id-int": with_(distinct_id=42),
        "ok:uuid-object": with_(uuid=uuid_mod.UUID(GIVEN_UUID)),
        "ok:timestamp-datetime": with_(timestamp=dt.datetime(2026, 1, 2, 3, 4, 5)),
        "ok:unchanged": lambda e: e,
        "ok:not-a-mapping": lambda e: 5,
    }


HOOK_CASES = _hook_cases()


def _dispatching_hook(event: dict) -> Any:
    case = event["properties"].get("case")
    return HOOK_CASES[case](event) if case in HOOK_CASES else event


def test_bad_before_send_output_is_dropped_alone_and_the_batch_goes_through(make_client,
                                                                            live_server,
                                                                            caplog):
    client, reports = make_client(before_send=_dispatching_hook, flush_at=1000,
                                  flush_interval=60)
    returned: Dict[str, Optional[str]] = {}
    with caplog.at_level(logging.WARNING, logger="productos"):
        for case in HOOK_CASES:
            returned[case] = client.capture("e", distinct_id="u", properties={"case": case})
        assert client.flush(5)
    bad = [case for case in HOOK_CASES if case.startswith("bad:")]
    good = [case for case in HOOK_CASES if case.startswith("ok:")]
    assert all(returned[case] is None for case in bad), returned
    stats = client.stats()
    assert_invariant(stats)
    assert stats["dropped"] == {"invalid": len(bad)}, stats
    assert stats["sent"] == len(good)
    assert [reason for _, reason in reports.drops] == ["invalid"] * len(bad)
    # One batch, accepted whole: nothing malformed reached the server.
    assert len(live_server.accepted_batches) == 1
    all_requests_ok(live_server)
    by_case = {e["properties"].get("case"): e for e in live_server.events}
    assert set(by_case) == set(good) - {"ok:props-missing"} | {None}
    for case in good:
        if case != "ok:props-missing":
            assert by_case[case]["uuid"] == returned[case]
    # What the hook left out comes back from the event as built.
    assert uuid_mod.UUID(by_case["ok:uuid-missing"]["uuid"])
    assert by_case["ok:timestamp-missing"]["timestamp"].endswith("+00:00")
    assert by_case["ok:id-int"]["distinct_id"] == "42"
    assert by_case["ok:uuid-object"]["uuid"] == GIVEN_UUID == returned["ok:uuid-object"]
    assert by_case["ok:timestamp-datetime"]["timestamp"] == "2026-01-02T03:04:05+00:00"
    drop_lines = [line for line in warnings_of(caplog) if "(invalid)" in line]
    assert len(drop_lines) == 1, drop_lines  # the rest fold into the summary


def test_debug_mode_raises_for_bad_before_send_output(make_client, live_server):
    client, _ = make_client(before_send=_dispatching_hook, debug=True)
    for case in HOOK_CASES:
        if case.startswith("bad:"):
            with pytest.raises(errors.EventError):
                client.capture("e", distinct_id="u", properties={"case": case})
    assert client.capture("e", distinct_id="u", properties={"case": "ok:uuid-missing"})
    assert client.flush(5)
    assert_invariant(client.stats())
    all_requests_ok(live_server)


# --- repeated warnings are summarised ---------------------------------------------------------


def test_invalid_uuids_are_logged_once_then_summarised(make_client, live_server, caplog):
    client, _ = make_client()
    with caplog.at_level(logging.WARNING, logger="productos"):
        ids = [client.capture("e", distinct_id="u", uuid=f"bad-{i}") for i in range(100)]
        assert client.flush(5)
        assert len(warnings_of(caplog)) == 1
        client.shutdown(5)
    first, summary = warnings_of(caplog)
    assert "'e'" in first and "'bad-0'" in first and "not a valid UUID" in first
    assert "99 more invalid uuid= arguments replaced" in summary
    assert sorted(live_server.uuids()) == sorted(ids) and len(set(ids)) == 100


def test_flags_endpoint_failures_are_summarised(make_client, live_server, caplog):
    live_server.flags_handler = lambda body: (500, {"type": "server_error"})
    client, _ = make_client()
    with caplog.at_level(logging.WARNING, logger="productos"):
        values = [client.get_feature_flag("k", f"user-{i}", send_feature_flag_events=False)
                  for i in range(50)]
        during = warnings_of(caplog)
        client.shutdown(5)
    assert values == [None] * 50
    assert len([r for r in live_server.requests if r.path in FLAGS_PATHS]) == 50
    assert len(during) == 1 and "/flags answered HTTP 500" in during[0], during
    after = warnings_of(caplog)[len(during):]
    assert after == ["productos: 49 more /flags failures (api_error_500) since the last report"]


def test_rate_limited_log_reports_the_count_each_interval(caplog):
    now = [0.0]
    ratelog = RateLimitedLog(interval=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="productos"):
        logged = [ratelog.warn("things", "productos: thing %d", i) for i in range(5)]
        now[0] = 10.5
        logged.append(ratelog.warn("things", "productos: thing %d", 5))
        logged.append(ratelog.warn("other", "productos: other"))
        ratelog.warn("things", "productos: thing %d", 6)
        ratelog.flush()
        ratelog.flush()
    assert logged == [True, False, False, False, False, True, True]
    assert warnings_of(caplog) == [
        "productos: thing 0",
        "productos: thing 5 (4 more things since the last report)",
        "productos: other",
        "productos: 1 more things since the last report",
    ]
