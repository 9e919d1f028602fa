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
