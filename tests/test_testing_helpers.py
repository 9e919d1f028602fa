"""The test doubles productos ships for applications' own tests."""

from __future__ import annotations

import pytest

import productos
from productos.testing import FlagDefinitionsBuilder, RecordingSender, person_condition


def test_flag_definitions_builder_drives_a_real_client_offline():
    flags = (FlagDefinitionsBuilder()
             .flag("everyone")
             .flag("nobody", rollout=0)
             .flag("beta", conditions=[person_condition("plan", ["pro", "team"])],
                   payloads={True: {"color": "blue"}})
             .flag("pricing", variants={"control": 50, "test": 50},
                   payloads={"test": {"price": 9}})
             .flag("forced", variants={"a": 50, "b": 50},
                   conditions=[person_condition("email", "@corp.test", "icontains",
                                                variant="b")])
             .flag("off", active=False)
             .group_type(0, "company")
             .flag("company-wide", group_type_index=0))
    sender = RecordingSender()
    client = productos.Client("phc_test", flag_definitions=flags.build(), sender=sender)
    try:
        assert client.feature_enabled("everyone", "u") is True
        assert client.feature_enabled("nobody", "u") is False
        assert client.get_feature_flag("beta", "u", person_properties={"plan": "team"}) is True
        assert client.get_feature_flag_payload("beta", "u",
                                               person_properties={"plan": "pro"}) == {
            "color": "blue"}
        assert client.get_feature_flag("pricing", "u") in ("control", "test")
        assert client.get_feature_flag("forced", "u",
                                       person_properties={"email": "ada@CORP.test"}) == "b"
        assert client.feature_enabled("off", "u") is False
        assert client.feature_enabled("company-wide", "u", groups={"company": "acme"}) is True
        assert client.get_feature_flag("beta", "u", only_evaluate_locally=True) is None
    finally:
        client.shutdown(5)


def test_definitions_can_be_replaced_at_run_time():
    client = productos.Client("phc_test", flag_definitions=FlagDefinitionsBuilder()
                              .flag("switch").build(), send=False)
    try:
        assert client.feature_enabled("switch", "u") is True
        client.set_flag_definitions(FlagDefinitionsBuilder().flag("switch", active=False)
                                    .build())
        assert client.feature_enabled("switch", "u") is False
    finally:
        client.shutdown(1)


@pytest.mark.parametrize("bad", [[], {"flags": "nope"}, "flags"])
def test_malformed_definitions_are_a_configuration_error(bad):
    with pytest.raises(ValueError):
        productos.Client("phc_test", flag_definitions=bad)


def test_file_and_mapping_together_are_refused(tmp_path):
    with pytest.raises(ValueError):
        productos.Client("phc_test", flag_definitions={"flags": []},
                         flag_definitions_file=str(tmp_path / "x.json"))


# --- record_events() and override_flags(): every client at once --------------------------------


def test_record_events_reaches_clients_made_before_and_restores_them():
    from productos.testing import record_events

    before = productos.Client("phc_test", host="http://127.0.0.1:9", send=False)
    try:
        with record_events() as events:
            during = productos.Client("phc_test", host="http://127.0.0.1:9")
            before.capture("one", distinct_id="u", properties={"n": 1})
            during.capture("two", distinct_id="v")
            assert [e["event"] for e in events.events] == ["one", "two"]
            assert len(events) == 2
            stats = during.stats()
            assert (stats["captured"], stats["sent"], stats["queued"]) == (1, 1, 0)
            events.assert_not_captured("three")
            with pytest.raises(AssertionError, match="expected no 'one' event"):
                events.assert_not_captured("one", n=1)
        # Back to normal: send=False counts the event and sends nothing, as before.
        before.capture("after", distinct_id="u")
        assert before.stats()["dropped"] == {"send_disabled": 1}
        assert type(before._flags).__name__ == "FlagService"
        during.shutdown(1)
    finally:
        before.shutdown(1)


def test_a_client_disabled_on_purpose_records_nothing():
    from productos.testing import record_events

    client = productos.Client("phc_test", disabled=True)
    with record_events() as events:
        assert client.capture("e", distinct_id="u") is None
        assert events.events == []
    client.shutdown(1)


def test_a_keyless_client_records_in_test_mode_and_is_disabled_again_after(monkeypatch):
    from productos.testing import record_events

    monkeypatch.delenv("PRODUCTOS_API_KEY", raising=False)
    client = productos.Client()
    assert client.disabled
    with record_events() as events:
        client.capture("e", distinct_id="u")
        events.assert_captured("e", distinct_id="u")
    assert client.disabled
    client.shutdown(1)


def test_no_events_at_all_says_so():
    from productos.testing import record_events

    with record_events() as events, pytest.raises(AssertionError,
                                                  match="no events were captured at all"):
        events.assert_captured("signed up")


def test_overrides_values_payloads_and_unknown():
    from productos.testing import override_flags

    client = productos.Client("phc_test", flag_definitions=FlagDefinitionsBuilder()
                              .flag("real").build(), send=False)
    try:
        with override_flags() as flags:
            flags.set("real", False)
            flags.set("variant", "b", payload={"x": 1})
            assert client.feature_enabled("real", "u") is False
            assert client.get_feature_flag("variant", "u") == "b"
            assert client.get_feature_flag_payload("variant", "u") == {"x": 1}
            assert client.get_all_flags("u") == {"real": False, "variant": "b"}
            results = client.get_all_flags_results("u")
            assert results["variant"].payload == {"x": 1}
            flags.set("real", None)  # as if it did not exist
            assert client.get_feature_flag("real", "u") is None
            assert client.get_all_flags("u") == {"variant": "b"}  # unknown: left out
            assert client.get_all_flags("u", flag_keys_to_evaluate=["real", "variant"]) == {
                "variant": "b"}
            flags.remove("real")
            assert client.feature_enabled("real", "u") is True
            with pytest.raises(ValueError):
                flags.set("bad", 3)  # type: ignore[arg-type]
        assert client.get_feature_flag("variant", "u") is None
    finally:
        client.shutdown(1)


def test_the_same_mode_cannot_be_nested():
    from productos.testing import override_flags, record_events

    with record_events(), pytest.raises(RuntimeError), record_events():
        pass
    with override_flags(), pytest.raises(RuntimeError), override_flags():
        pass


def test_overrides_reach_an_async_client():
    if not hasattr(productos, "AsyncClient"):
        pytest.skip("no AsyncClient in this build")
    import asyncio

    from productos.testing import override_flags

    client = productos.AsyncClient("phc_test", flag_definitions=FlagDefinitionsBuilder()
                                   .flag("real").build(), send=False)

    async def read() -> tuple:
        return (await client.get_feature_flag("real", "u"),
                (await client.get_feature_flag_result("new", "u")).payload,
                await client.get_all_flags("u"))

    try:
        with override_flags() as flags:
            flags.set("real", False)
            flags.set("new", True, payload=[1])
            assert asyncio.run(read()) == (False, [1], {"real": False, "new": True})
        assert asyncio.run(client.get_feature_flag("real", "u")) is True
    finally:
        client.sync.shutdown(1)


def test_overrides_reach_evaluate_flags_and_named_keys():
    from productos.testing import override_flags

    client = productos.Client("phc_test", flag_definitions=FlagDefinitionsBuilder()
                              .flag("real").flag("other").build(), send=False)
    try:
        with override_flags() as flags:
            flags.set("real", False)
            flags.set("variant", "b", payload={"x": 1})
            snapshot = client.evaluate_flags("u")
            assert snapshot.is_enabled("real") is False
            assert snapshot.get_flag("variant") == "b"
            assert snapshot.get_flag("other") is True
            only = client.get_all_flags("u", flag_keys_to_evaluate=["real", "variant"])
            assert only == {"real": False, "variant": "b"}
            named = client.evaluate_flags("u", flag_keys=["variant"])
            assert sorted(named.keys) == ["variant"]
        assert client.evaluate_flags("u").get_flag("variant") is None
    finally:
        client.shutdown(1)
