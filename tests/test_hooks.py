"""Evaluation hooks: Client(hooks=[...]) around every flag read, local or remote."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List, Tuple

import pytest

import productos
from productos._flags.hooked import HookedFlags
from productos.flag_hooks import FlagEvaluation, FlagHook, hook_error_count
from productos.testing import FlagDefinitionsBuilder, override_flags, person_condition

DEFINITIONS = (FlagDefinitionsBuilder()
               .flag("everyone")
               .flag("pros", conditions=[person_condition("plan", "pro")],
                     payloads={True: {"color": "blue"}})
               .flag("pricing", variants={"control": 50, "test": 50})
               .build())


class Recorder(FlagHook):
    def __init__(self, name: str, log: List[Tuple[Any, ...]]) -> None:
        self.name = name
        self.log = log

    def before_evaluation(self, evaluation: FlagEvaluation) -> None:
        self.log.append((self.name, "before", evaluation.key, evaluation.distinct_id))
        evaluation.data[self.name] = "seen"

    def after_evaluation(self, evaluation: FlagEvaluation, result: productos.FlagResult) -> None:
        assert evaluation.data[self.name] == "seen"
        self.log.append((self.name, "after", evaluation.key, result.value))

    def on_error(self, evaluation: FlagEvaluation, error: BaseException) -> None:
        self.log.append((self.name, "error", evaluation.key, type(error).__name__))


class Raising(FlagHook):
    def before_evaluation(self, evaluation: FlagEvaluation) -> None:
        raise RuntimeError("before broke")

    def after_evaluation(self, evaluation: FlagEvaluation, result: productos.FlagResult) -> None:
        raise RuntimeError("after broke")


def offline(**kwargs: Any) -> productos.Client:
    return productos.Client("phc_test", flag_definitions=DEFINITIONS, send=False, **kwargs)


def test_before_in_order_after_in_reverse_for_every_kind_of_read():
    log: List[Tuple[Any, ...]] = []
    client = offline(hooks=[Recorder("a", log), Recorder("b", log)])
    try:
        assert client.feature_enabled("everyone", "u1") is True
        assert log == [("a", "before", "everyone", "u1"), ("b", "before", "everyone", "u1"),
                       ("b", "after", "everyone", True), ("a", "after", "everyone", True)]
        log.clear()
        assert client.get_feature_flag("pros", "u1", person_properties={"plan": "x"}) is False
        assert client.get_feature_flag_payload("pros", "u2",
                                               person_properties={"plan": "pro"}) == {
            "color": "blue"}
        assert client.get_feature_flag_result("pricing", "u3").value in ("control", "test")
        reads = [(entry[2], entry[1]) for entry in log if entry[0] == "a"]
        assert reads == [("pros", "before"), ("pros", "after"), ("pros", "before"),
                         ("pros", "after"), ("pricing", "before"), ("pricing", "after")]
        log.clear()
        assert set(client.get_all_flags("u4")) == {"everyone", "pricing"}
        bulk = sorted(entry[2] for entry in log if entry[:2] == ("a", "after"))
        assert bulk == ["everyone", "pricing", "pros"]
        assert hook_error_count(client) == 0
    finally:
        client.shutdown(1)


def test_an_unknown_flag_reaches_after_with_value_none():
    log: List[Tuple[Any, ...]] = []
    client = offline(hooks=[Recorder("a", log)])
    try:
        assert client.get_feature_flag("missing", "u") is None
        assert log[-1] == ("a", "after", "missing", None)
    finally:
        client.shutdown(1)


@pytest.mark.allow_internal_errors
def test_a_raising_hook_never_breaks_the_read(caplog):
    log: List[Tuple[Any, ...]] = []
    client = offline(hooks=[Raising(), Recorder("ok", log)])
    try:
        with caplog.at_level(logging.WARNING, logger="productos"):
            for _ in range(3):
                assert client.feature_enabled("everyone", "u") is True
        assert hook_error_count(client) == 6  # before and after, three reads
        assert [entry[1] for entry in log] == ["before", "after"] * 3  # the others still ran
        warned = [r.getMessage() for r in caplog.records if "flag hook" in r.getMessage()]
        assert warned and "before broke" in warned[0]
        assert len(warned) <= 2  # rate limited: one line per hook kind, not one per read
    finally:
        client.shutdown(1)


class _BrokenService:
    """A flag service whose evaluation raises (the client would log it and return None)."""

    def result(self, key: str, ctx: Any, **kwargs: Any) -> Any:
        raise KeyError("evaluation broke")

    def all_results(self, ctx: Any, **kwargs: Any) -> Any:
        raise KeyError("evaluation broke")


def test_on_error_runs_in_reverse_when_the_evaluation_raises():
    log: List[Tuple[Any, ...]] = []
    service = HookedFlags(_BrokenService(), [Recorder("a", log), Recorder("b", log)])
    ctx = productos.EvaluationContext("u")
    with pytest.raises(KeyError):
        service.result("everyone", ctx, only_local=False)
    assert log == [("a", "before", "everyone", "u"), ("b", "before", "everyone", "u"),
                   ("b", "error", "everyone", "KeyError"), ("a", "error", "everyone", "KeyError")]
    log.clear()
    with pytest.raises(KeyError):
        service.all_values(ctx)
    assert log == [("b", "error", "*", "KeyError"), ("a", "error", "*", "KeyError")]


def test_remote_reads_run_the_hooks_too(live_server):
    live_server.set_definitions({"flags": []})
    log: List[Tuple[Any, ...]] = []
    client = productos.Client("phc_remote", host=live_server.url, send=False,
                              hooks=[Recorder("a", log)])
    try:
        value = client.get_feature_flag("remote-flag", "u")
        asked = [r for r in live_server.requests if r.path in ("/flags", "/flags/")]
        assert asked, [r.path for r in live_server.requests]
        assert log[0] == ("a", "before", "remote-flag", "u")
        assert log[-1] == ("a", "after", "remote-flag", value)
    finally:
        client.shutdown(1)


def test_hooks_see_test_overrides():
    log: List[Tuple[Any, ...]] = []
    client = offline(hooks=[Recorder("a", log)])
    try:
        with override_flags() as flags:
            flags.set("everyone", False)
            assert client.feature_enabled("everyone", "u") is False
        assert log[-1] == ("a", "after", "everyone", False)
        assert client.feature_enabled("everyone", "u") is True
    finally:
        client.shutdown(1)


def test_without_hooks_the_flag_service_is_not_wrapped():
    client = offline()
    try:
        assert type(client._flags).__name__ == "FlagService"
    finally:
        client.shutdown(1)


@pytest.mark.parametrize("bad", ["hook", [object()], {"a": FlagHook()}])
def test_hooks_that_are_not_hooks_are_a_configuration_error(bad):
    with pytest.raises(ValueError):
        offline(hooks=bad)


def test_sync_hooks_serve_an_async_client():
    if not hasattr(productos, "AsyncClient"):
        pytest.skip("no AsyncClient in this build")
    log: List[Tuple[Any, ...]] = []
    client = productos.AsyncClient("phc_test", flag_definitions=DEFINITIONS, send=False,
                                   hooks=[Recorder("a", log)])

    async def read() -> Any:
        return (await client.get_feature_flag("everyone", "u"),
                (await client.get_feature_flag_result(
                    "pros", "u", person_properties={"plan": "free"})).value,
                await client.get_all_flags("u"))

    try:
        value, result, every = asyncio.run(read())
        assert (value, result) == (True, False)
        assert log[:4] == [("a", "before", "everyone", "u"), ("a", "after", "everyone", True),
                           ("a", "before", "pros", "u"), ("a", "after", "pros", False)]
        bulk = sorted(entry[2] for entry in log[4:] if entry[1] == "after")
        assert bulk == sorted(["pros", *every])  # every flag, the ones that are off too
    finally:
        client.sync.shutdown(1)


def test_evaluate_flags_and_named_keys_run_the_hooks_once_per_flag():
    log: List[Tuple[Any, ...]] = []
    client = offline(hooks=[Recorder("a", log)])
    try:
        snapshot = client.evaluate_flags("u1", person_properties={"plan": "pro"})
        assert snapshot.is_enabled("pros") is True
        afters = sorted(entry[2] for entry in log if entry[1] == "after")
        assert afters == ["everyone", "pricing", "pros"]
        log.clear()
        answer = client.get_all_flags_and_payloads("u1", flag_keys_to_evaluate=["everyone"])
        assert answer["featureFlags"] == {"everyone": True}
        assert log == [("a", "before", "everyone", "u1"), ("a", "after", "everyone", True)]
    finally:
        client.shutdown(1)
