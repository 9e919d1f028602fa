"""ProductosProvider through the real OpenFeature SDK client, against real flag definitions."""

from __future__ import annotations

import asyncio
import copy
import threading
from typing import Any, Iterator, List

import pytest

openfeature = pytest.importorskip("openfeature")

from openfeature import api  # noqa: E402
from openfeature.evaluation_context import EvaluationContext  # noqa: E402
from openfeature.event import EventDetails, ProviderEvent  # noqa: E402
from openfeature.exception import ErrorCode, ProviderNotReadyError  # noqa: E402
from openfeature.flag_evaluation import Reason  # noqa: E402
from openfeature.provider import ProviderStatus  # noqa: E402

import productos  # noqa: E402
from productos.openfeature import ProductosProvider  # noqa: E402
from productos.testing import (  # noqa: E402
    FlagDefinitionsBuilder,
    RecordingSender,
    person_condition,
)

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # pragma: no cover
    from support import wait_until  # type: ignore


def definitions() -> dict:
    return (FlagDefinitionsBuilder()
            .flag("everyone")
            .flag("half", rollout=50)
            .flag("pros", conditions=[person_condition("plan", "pro")],
                  payloads={True: {"color": "blue"}})
            .flag("off", active=False)
            .flag("pricing", variants={"control": 50, "test": 50},
                  payloads={"control": 5, "test": 9.5})
            .flag("forced", variants={"a": 50, "b": 50},
                  conditions=[person_condition("email", "@corp.test", "icontains",
                                               variant="b")])
            .flag("one-variant", variants={"only": 100}, payloads={"only": [1, 2]})
            .flag("limit", payloads={True: 42})
            .group_type(0, "company")
            .flag("company-plan", group_type_index=0,
                  conditions=[{"properties": [{"key": "tier", "value": "gold",
                                               "operator": "exact", "type": "group",
                                               "group_type_index": 0}],
                               "rollout_percentage": 100}])
            .build())


@pytest.fixture
def client() -> Iterator[productos.Client]:
    client = productos.Client("phc_test", flag_definitions=definitions(),
                              sender=RecordingSender())
    yield client
    client.shutdown(2)


@pytest.fixture
def of_client(request: pytest.FixtureRequest, client: productos.Client) -> Iterator[Any]:
    domain = f"productos-{request.node.name}"
    provider = ProductosProvider(client)
    api.set_provider_and_wait(provider, domain)
    yield api.get_client(domain)
    api.clear_providers()


def ctx(distinct_id: str = "user-1", **attributes: Any) -> EvaluationContext:
    return EvaluationContext(distinct_id, attributes)


def test_boolean_targeting_match_default_and_disabled(of_client):
    details = of_client.get_boolean_details("everyone", False, ctx())
    assert (details.value, details.reason, details.error_code) == (
        True, Reason.TARGETING_MATCH, None)
    assert details.flag_metadata["flag_id"] == 1
    matched = of_client.get_boolean_details("pros", False, ctx(plan="pro"))
    assert (matched.value, matched.reason) == (True, Reason.TARGETING_MATCH)
    unmatched = of_client.get_boolean_details("pros", True, ctx(plan="free"))
    assert (unmatched.value, unmatched.reason, unmatched.error_code) == (
        False, Reason.DEFAULT, None)
    off = of_client.get_boolean_details("off", True, ctx())
    assert (off.value, off.reason) == (False, Reason.DISABLED)


def test_rollout_decides_with_split(of_client):
    seen = {of_client.get_boolean_details("half", False, ctx(f"user-{i}")).value
            for i in range(40)}
    assert seen == {True, False}  # the rollout splits 40 people both ways
    reasons = {of_client.get_boolean_details("half", False, ctx(f"user-{i}")).reason
               for i in range(40)}
    assert reasons == {Reason.SPLIT}


def test_string_reads_the_variant_with_its_reason(of_client):
    details = of_client.get_string_details("pricing", "none", ctx())
    assert details.value in ("control", "test")
    assert details.variant == details.value
    assert details.reason == Reason.SPLIT  # the variant split chose it
    forced = of_client.get_string_details("forced", "none", ctx(email="ada@corp.test"))
    assert (forced.value, forced.variant, forced.reason) == ("b", "b", Reason.TARGETING_MATCH)
    single = of_client.get_string_details("one-variant", "none", ctx())
    assert (single.value, single.reason) == ("only", Reason.TARGETING_MATCH)
    # A multivariate flag read as a boolean is on.
    assert of_client.get_boolean_value("pricing", False, ctx()) is True


def test_numbers_and_objects_come_from_the_payload(of_client):
    variant = of_client.get_string_value("pricing", "", ctx("user-7"))
    price = of_client.get_float_details("pricing", 0.0, ctx("user-7"))
    assert price.value == {"control": 5.0, "test": 9.5}[variant]
    assert isinstance(price.value, float)
    assert price.variant == variant
    assert of_client.get_integer_value("limit", 0, ctx()) == 42
    assert of_client.get_object_value("pros", {}, ctx(plan="pro")) == {"color": "blue"}
    assert of_client.get_object_value("one-variant", {}, ctx()) == [1, 2]
    # Off for this person: the default, with the reason, and no error.
    off = of_client.get_object_details("pros", {"d": 1}, ctx(plan="free"))
    assert (off.value, off.reason, off.error_code) == ({"d": 1}, Reason.DEFAULT, None)


def test_type_mismatch_returns_the_default(of_client):
    as_int = of_client.get_integer_details("everyone", 7, ctx())  # boolean, no payload
    assert (as_int.value, as_int.reason, as_int.error_code) == (
        7, Reason.ERROR, ErrorCode.TYPE_MISMATCH)
    assert "no integer payload" in as_int.error_message
    as_str = of_client.get_string_details("everyone", "dflt", ctx())
    assert (as_str.value, as_str.error_code) == ("dflt", ErrorCode.TYPE_MISMATCH)
    as_obj = of_client.get_object_details("limit", {}, ctx())  # payload 42 is not an object
    assert (as_obj.value, as_obj.error_code) == ({}, ErrorCode.TYPE_MISMATCH)


def test_flag_not_found_returns_the_default(of_client):
    details = of_client.get_boolean_details("no-such-flag", True, ctx())
    assert (details.value, details.reason, details.error_code) == (
        True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)


def test_missing_targeting_key_is_an_error(of_client):
    details = of_client.get_boolean_details("everyone", False, EvaluationContext(None, {}))
    assert (details.value, details.error_code) == (False, ErrorCode.TARGETING_KEY_MISSING)


def test_groups_and_group_properties_through_the_reserved_attribute(of_client):
    gold = ctx(**{"$groups": {"company": {"key": "acme", "properties": {"tier": "gold"}}}})
    assert of_client.get_boolean_details("company-plan", False, gold).value is True
    silver = ctx(**{"$groups": {"company": "acme"},
                    "$group_properties": {"company": {"tier": "silver"}}})
    assert of_client.get_boolean_details("company-plan", True, silver).value is False
    no_group = of_client.get_boolean_details("company-plan", True, ctx())
    assert (no_group.value, no_group.reason) == (False, Reason.DEFAULT)


def test_a_read_emits_the_flag_called_event(client, of_client):
    of_client.get_boolean_value("everyone", False, ctx("event-user"))
    client.flush(2)
    called = [e for e in client._sender.events if e["event"] == "$feature_flag_called"]
    assert [(e["distinct_id"], e["properties"]["$feature_flag"]) for e in called] == [
        ("event-user", "everyone")]


def test_async_resolution_with_an_async_client():
    if not hasattr(productos, "AsyncClient"):
        pytest.skip("no AsyncClient in this build")
    async_client = productos.AsyncClient("phc_test", flag_definitions=definitions(), send=False)
    provider = ProductosProvider(async_client)
    api.set_provider_and_wait(provider, "productos-async")
    try:
        client = api.get_client("productos-async")
        details = asyncio.run(client.get_string_details_async("forced", "none",
                                                              ctx(email="x@corp.test")))
        assert (details.value, details.reason) == ("b", Reason.TARGETING_MATCH)
        missing = asyncio.run(client.get_boolean_details_async("nope", False, ctx()))
        assert missing.error_code == ErrorCode.FLAG_NOT_FOUND
    finally:
        api.clear_providers()
        async_client.sync.shutdown(1)


def test_not_ready_until_the_first_definitions_arrive_then_ready(live_server):
    live_server.set_definitions(copy.deepcopy(definitions()))
    live_server.set_delay(2.0)  # the first load takes two seconds
    client = productos.Client("phc_flags", host=live_server.url,
                              personal_api_key=live_server.personal_api_key,
                              flags_first_load_timeout=0.05, send=False)
    provider = ProductosProvider(client, ready_timeout=0.1, shutdown_client=True)
    events: List[EventDetails] = []
    ready = threading.Event()

    def on_ready(details: EventDetails) -> None:
        events.append(details)
        ready.set()

    of_client = api.get_client("productos-slow")
    try:
        with pytest.raises(ProviderNotReadyError):  # initialisation gives up after ready_timeout
            api.set_provider_and_wait(provider, "productos-slow")
        assert of_client.get_provider_status() == ProviderStatus.ERROR
        # Added now: a READY handler added earlier would run at once for the no-op provider.
        of_client.add_handler(ProviderEvent.PROVIDER_READY, on_ready)
        assert events == []
        early = of_client.get_boolean_details("everyone", False, ctx())
        assert (early.value, early.reason, early.error_code) == (
            False, Reason.ERROR, ErrorCode.PROVIDER_NOT_READY)
        live_server.set_delay(0)
        assert ready.wait(10), "PROVIDER_READY never came"
        assert of_client.get_provider_status() == ProviderStatus.READY
        late = of_client.get_boolean_details("everyone", False, ctx())
        assert (late.value, late.reason) == (True, Reason.TARGETING_MATCH)
        assert [e.provider_name for e in events] == ["productos"]
    finally:
        live_server.set_delay(0)
        api.clear_providers()  # shuts the provider down, and with it the client
    assert wait_until(lambda: client._is_shut_down, 5)


def test_ready_at_once_when_definitions_load_in_time(live_server):
    live_server.set_definitions(copy.deepcopy(definitions()))
    client = productos.Client("phc_flags", host=live_server.url,
                              personal_api_key=live_server.personal_api_key, send=False)
    provider = ProductosProvider(client, ready_timeout=5)
    try:
        api.set_provider_and_wait(provider, "productos-fast")
        of_client = api.get_client("productos-fast")
        assert of_client.get_provider_status() == ProviderStatus.READY
        assert of_client.get_boolean_value("pros", False, ctx(plan="pro")) is True
    finally:
        api.clear_providers()
        client.shutdown(2)


def test_a_disabled_client_gives_general_errors():
    client = productos.Client(disabled=True)
    api.set_provider_and_wait(ProductosProvider(client), "productos-disabled")
    try:
        details = api.get_client("productos-disabled").get_boolean_details("x", True, ctx())
        assert (details.value, details.error_code) == (True, ErrorCode.GENERAL)
    finally:
        api.clear_providers()


def test_the_provider_needs_a_productos_client():
    with pytest.raises(TypeError):
        ProductosProvider(object())


def test_changed_definitions_emit_configuration_changed(client):
    if not hasattr(client, "on_flags_changed"):
        pytest.skip("this build's Client has no on_flags_changed (change listeners)")
    api.set_provider_and_wait(ProductosProvider(client), "productos-changes")
    changes: List[EventDetails] = []
    seen = threading.Event()

    def on_change(details: EventDetails) -> None:
        changes.append(details)
        seen.set()

    of_client = api.get_client("productos-changes")
    of_client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        changed = definitions()
        changed["flags"] = [f for f in changed["flags"] if f["key"] != "half"]
        for flag in changed["flags"]:
            if flag["key"] == "everyone":
                flag["active"] = False
        client.set_flag_definitions(changed)
        assert seen.wait(5), "no PROVIDER_CONFIGURATION_CHANGED"
        assert set(changes[0].flags_changed or []) >= {"half", "everyone"}
        assert of_client.get_boolean_details("everyone", True, ctx()).reason == Reason.DISABLED
    finally:
        api.clear_providers()
