"""posthog's Django settings (POSTHOG_MW_*) as aliases of the PRODUCTOS keys, and the typed
request accessor. End to end against posthog itself: tests/test_migration.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("django")

import productos
from productos.integrations import RequestClient
from productos.integrations.django import (
    PosthogContextMiddleware,
    ProductosMiddleware,
    merged_settings,
    request_client,
)


def hook(request: Any) -> dict:
    return {}


def other_hook(request: Any) -> dict:
    return {"other": True}


def test_posthog_names_are_read_as_productos_keys():
    source = SimpleNamespace(POSTHOG_MW_CAPTURE_EXCEPTIONS=False, POSTHOG_MW_REQUEST_FILTER=hook,
                             POSTHOG_MW_EXTRA_TAGS=hook, POSTHOG_MW_TAG_MAP=hook,
                             POSTHOG_MW_TRUST_TRACING_HEADERS=False, POSTHOG_MW_CLIENT="c")
    merged = merged_settings({}, source)
    assert merged == {"CAPTURE_EXCEPTIONS": False, "REQUEST_FILTER": hook,
                      "EXTRA_PROPERTIES": hook, "PROPERTIES_MAP": hook,
                      "TRUST_DISTINCT_ID_HEADER": False, "CLIENT": "c"}


def test_posthogs_current_names_beat_its_deprecated_ones_and_productos_keys_beat_both():
    source = SimpleNamespace(POSTHOG_MW_EXTRA_PROPERTIES=hook, POSTHOG_MW_EXTRA_TAGS=other_hook,
                             POSTHOG_MW_CAPTURE_TRACING_HEADERS=True,
                             POSTHOG_MW_TRUST_TRACING_HEADERS=False,
                             POSTHOG_MW_CAPTURE_EXCEPTIONS=False, POSTHOG_MW_CLIENT="c")
    merged = merged_settings({"CAPTURE_EXCEPTIONS": True}, source)
    assert merged["EXTRA_PROPERTIES"] is hook
    assert merged["TRUST_DISTINCT_ID_HEADER"] is True
    assert merged["CAPTURE_EXCEPTIONS"] is True


def test_without_a_client_setting_the_configured_module_client_is_used(monkeypatch):
    productos.shutdown()
    monkeypatch.setattr(productos, "api_key", "phc_module")
    monkeypatch.setattr(productos, "send", False)
    try:
        merged = merged_settings({}, SimpleNamespace())
        assert merged["CLIENT"] is productos.default_client is not None
        assert merged_settings({"API_KEY": "phc_own"}, SimpleNamespace()) == {"API_KEY": "phc_own"}
    finally:
        productos.shutdown()


def test_without_any_configuration_nothing_is_added():
    productos.shutdown()
    assert merged_settings({}, SimpleNamespace()) == {}


def test_posthogs_middleware_name_is_the_middleware():
    assert PosthogContextMiddleware is ProductosMiddleware


def test_request_client_is_typed_and_inert_outside_the_middleware():
    helper = request_client(SimpleNamespace())
    assert isinstance(helper, RequestClient)
    assert helper.feature_enabled("x") is None and helper.capture("e") is None
    bound = RequestClient(distinct_id="u1")
    assert request_client(SimpleNamespace(productos=bound)) is bound
    assert isinstance(request_client(SimpleNamespace(productos="not one")), RequestClient)
