"""productos sends what PostHog's own SDK sends: tests/data/wire_examples.json, field by field.

The examples are requests the official posthog-python SDK made (see the file's ``_meta``). A real
``productos.Client`` is driven with the same calls, the same uuids and the same timestamps; the
request it makes (caught with ``responses``) must match the example in every field, except for
values that must differ between the two SDKs:

Values compared by presence only (they describe the SDK or the machine, not the event):
- ``$lib`` (ours is ``productos-python``) and ``$lib_version`` (ours is productos' VERSION);
- ``$os``, ``$os_version``, ``$python_runtime``, ``$python_version`` (this machine);
- ``sent_at`` (the moment of sending; checked to be ISO-8601 UTC);
- the ``User-Agent`` header value (ours is ``productos-python/<VERSION>``).

Properties productos leaves out (they are PostHog-SDK-only, not part of protocol.md §1):
- ``$is_server``: posthog-python's marker for server-side SDKs; the server does not need it and
  protocol.md does not list it among the properties the SDK adds;
- ``$os_distro``: posthog-python's Linux distribution detail; protocol.md's system properties are
  ``$os``, ``$os_version``, ``$python_runtime`` and ``$python_version`` only.
"""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
from pathlib import Path

import pytest
import responses

import productos
from productos._capture.runtime import system_properties
from productos.version import VERSION

pytestmark = pytest.mark.timeout(10)

EXAMPLES = json.loads(
    (Path(__file__).parent / "data" / "wire_examples.json").read_text(encoding="utf-8"))

API_KEY = "phc_snapshot_project"
HOST = "https://example.posthog.test"

# Present in both, values necessarily differ: compared by presence (and our own expected value).
SDK_PROPERTIES = ("$lib", "$lib_version")
MACHINE_PROPERTIES = ("$os", "$os_version", "$python_runtime", "$python_version")
# In PostHog's requests only; productos does not send them (see the module docstring).
POSTHOG_ONLY_PROPERTIES = ("$is_server", "$os_distro")

OUR_VALUES = {
    "$lib": "productos-python",
    "$lib_version": VERSION,
    **{name: system_properties()[name] for name in MACHINE_PROPERTIES},
}


def _ts(text):
    return dt.datetime.fromisoformat(text)


def _decoded(request):
    raw = request.body
    if request.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def _comparable_event(event, *, ours):
    """Return the event with the necessarily-different values blanked; check them on our side."""
    event = copy.deepcopy(event)
    props = event["properties"]
    for name in SDK_PROPERTIES + MACHINE_PROPERTIES:
        if name in props:
            if ours:
                assert props[name] == OUR_VALUES[name], name
            props[name] = "<differs>"
    if not ours:
        for name in POSTHOG_ONLY_PROPERTIES:
            props.pop(name, None)
    return event


def _send_legacy_event_family(gzip_on):
    """Make the calls that produced ``legacy_event_family``; return the one request sent."""
    example = EXAMPLES["legacy_event_family"]["body"]["batch"]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, HOST + "/batch/", status=200, json={"status": 1})
        client = productos.Client(API_KEY, host=HOST, sync_mode=False, flush_at=len(example),
                                  flush_interval=30.0, gzip=gzip_on)
        try:
            client.capture(
                "order completed", distinct_id="user-123",
                properties={"amount": 29.5,
                            "items": [{"sku": "SKU-1", "quantity": 1},
                                      {"sku": "SKU-2", "quantity": 2}]},
                groups={"company": "company-456"},
                timestamp=_ts("2026-01-02T03:04:05+00:00"),
                uuid="00000000-0000-4000-8000-000000000001")
            client.set(
                distinct_id="user-123", properties={"email": "person@example.com", "plan": "pro"},
                timestamp=_ts("2026-01-02T03:04:05+00:00"),
                uuid="00000000-0000-4000-8000-000000000002")
            client.alias(
                "anonymous-789", "user-123",
                timestamp=_ts("2026-01-02T03:04:05+00:00"),
                uuid="00000000-0000-4000-8000-000000000003")
            client.group_identify(
                "company", "company-456", {"name": "Example Corp", "employees": 42},
                distinct_id="user-123",
                timestamp=_ts("2026-01-02T03:04:05+00:00"),
                uuid="00000000-0000-4000-8000-000000000004")
            assert client.flush(5.0)
        finally:
            client.shutdown(2.0)
        assert client.stats()["sent"] == len(example)
        assert len(rsps.calls) == 1, "the four events go out as one batch"
        return rsps.calls[0].request


@pytest.fixture(params=[False, True], ids=["plain", "gzip"])
def legacy_request(request):
    return request.param, _send_legacy_event_family(request.param)


def test_legacy_event_family_url_method_and_timeout(legacy_request):
    _, request = legacy_request
    example = EXAMPLES["legacy_event_family"]
    assert request.method == "POST"
    assert request.url == example["url"]
    assert request.req_kwargs["timeout"] == example["timeout"]


def test_legacy_event_family_headers(legacy_request):
    gzip_on, request = legacy_request
    example = EXAMPLES["legacy_event_family"]["headers"]
    assert request.headers["Content-Type"] == example["Content-Type"]
    assert example["User-Agent"].startswith("posthog-python/")
    assert request.headers["User-Agent"] == f"productos-python/{VERSION}"
    # _meta: gzip adds exactly Content-Encoding: gzip
    if gzip_on:
        assert request.headers["Content-Encoding"] == "gzip"
    else:
        assert "Content-Encoding" not in request.headers
    assert "Authorization" not in request.headers


def test_legacy_event_family_envelope(legacy_request):
    _, request = legacy_request
    example = EXAMPLES["legacy_event_family"]["body"]
    body = _decoded(request)
    assert set(body) == set(example)
    assert body["api_key"] == example["api_key"]
    assert body["historical_migration"] is example["historical_migration"] is False
    sent_at = dt.datetime.fromisoformat(body["sent_at"])
    assert sent_at.utcoffset() == dt.timedelta(0)
    assert len(body["batch"]) == len(example["batch"])


@pytest.mark.parametrize("index", range(4), ids=["capture", "$set", "$create_alias",
                                                 "$groupidentify"])
def test_legacy_event_family_events_field_by_field(legacy_request, index):
    _, request = legacy_request
    expected = _comparable_event(EXAMPLES["legacy_event_family"]["body"]["batch"][index],
                                 ours=False)
    actual = _comparable_event(_decoded(request)["batch"][index], ours=True)

    assert set(actual) == set(expected)  # top-level fields, $set included
    assert set(actual["properties"]) == set(expected["properties"])
    for field in expected:
        if field != "properties":
            assert actual[field] == expected[field], field
    for name, value in expected["properties"].items():
        assert actual["properties"][name] == value, name
    assert actual == expected


def test_groupidentify_without_a_distinct_id_uses_a_deterministic_owner():
    # protocol.md §1 deviates from PostHog 7.x here on purpose (no random throwaway person).
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, HOST + "/batch/", status=200)
        client = productos.Client(API_KEY, host=HOST, sync_mode=True, gzip=False)
        try:
            client.group_identify("company", "company-456", {"name": "Example Corp"})
        finally:
            client.shutdown(1.0)
        (event,) = json.loads(rsps.calls[0].request.body)["batch"]
    assert event["distinct_id"] == "$company_company-456"
    assert event["properties"]["$group_set"] == {"name": "Example Corp"}


def test_flags_request():
    """The remote /flags request matches the example; ``$group_key`` is added (protocol §3)."""
    from productos._delivery.transport import Transport
    from productos._flags.remote import RemoteFlagsRequester

    example = EXAMPLES["flags_request"]
    body = example["body"]
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, example["url"], json={"flags": {}})
        requester = RemoteFlagsRequester(Transport(HOST), API_KEY, timeout=example["timeout"],
                                          disable_geoip=body["geoip_disable"])
        requester.evaluate(body["distinct_id"], groups=body["groups"],
                           person_properties=body["person_properties"],
                           group_properties=body["group_properties"],
                           device_id=body["device_id"], keys=body["flag_keys_to_evaluate"])
        (call,) = rsps.calls
    assert call.request.url == example["url"]
    assert call.request.headers["Content-Type"] == example["headers"]["Content-Type"]
    assert call.request.headers["User-Agent"] == f"productos-python/{VERSION}"
    sent = json.loads(call.request.body)
    assert _ts(sent.pop("sent_at")).utcoffset() == dt.timedelta(0)
    expected = copy.deepcopy(body)
    expected.pop("sent_at")
    for group_type, group_key in body["groups"].items():
        # protocol.md §3 (and posthog 7.91's flag methods) add the group key for each group
        expected["group_properties"][group_type]["$group_key"] = group_key
    assert sent == expected


# The exception_event example is checked field by field in tests/test_exceptions.py
# (test_wire_shape_matches_posthogs), next to the code that builds $exception events.
