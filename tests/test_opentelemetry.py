"""OpenTelemetryHook and with_trace_context, with opentelemetry-sdk's in-memory exporter."""

from __future__ import annotations

from typing import Any, Iterator, Tuple

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

import productos
from productos.flag_hooks import FlagEvaluation, hook_error_count
from productos.integrations.opentelemetry import (
    OpenTelemetryHook,
    with_trace_context,
)
from productos.testing import (
    FlagDefinitionsBuilder,
    RecordingSender,
    person_condition,
)

DEFINITIONS = (FlagDefinitionsBuilder()
               .flag("everyone")
               .flag("half", rollout=50)
               .flag("pros", conditions=[person_condition("plan", "pro")])
               .flag("off", active=False)
               .flag("pricing", variants={"control": 50, "test": 50})
               .build())


@pytest.fixture
def tracing() -> Iterator[Tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


@pytest.fixture
def client() -> Iterator[productos.Client]:
    client = productos.Client("phc_test", flag_definitions=DEFINITIONS, send=False,
                              hooks=[OpenTelemetryHook()])
    yield client
    client.shutdown(1)


def flag_events(exporter: InMemorySpanExporter) -> list:
    (span,) = exporter.get_finished_spans()
    return [dict(e.attributes) for e in span.events if e.name == "feature_flag.evaluation"]


def test_each_read_adds_an_event_with_the_semantic_attributes(tracing, client):
    tracer, exporter = tracing
    with tracer.start_as_current_span("request"):
        client.feature_enabled("everyone", "user-1")
        client.get_feature_flag("pros", "user-1", person_properties={"plan": "free"})
        client.feature_enabled("off", "user-1")
        variant = client.get_feature_flag("pricing", "user-1")
    events = flag_events(exporter)
    assert events[0] == {
        "feature_flag.key": "everyone",
        "feature_flag.provider.name": "productos",
        "feature_flag.context.id": "user-1",
        "feature_flag.result.reason": "targeting_match",
        "feature_flag.result.value": True,
        "feature_flag.version": "1",
    }
    assert (events[1]["feature_flag.result.reason"], events[1]["feature_flag.result.value"]) \
        == ("default", False)
    assert events[2]["feature_flag.result.reason"] == "disabled"
    assert events[3]["feature_flag.result.variant"] == variant
    assert events[3]["feature_flag.result.value"] == variant
    assert all("error.type" not in e for e in events)


def test_a_rollout_is_a_split(tracing, client):
    tracer, exporter = tracing
    with tracer.start_as_current_span("request"):
        client.feature_enabled("half", "user-1")
    (event,) = flag_events(exporter)
    assert event["feature_flag.result.reason"] == "split"


def test_an_unknown_flag_carries_error_type(tracing, client):
    tracer, exporter = tracing
    with tracer.start_as_current_span("request"):
        assert client.get_feature_flag("missing", "user-1") is None
    (event,) = flag_events(exporter)
    assert event["error.type"] == "flag_not_found"
    assert event["feature_flag.result.reason"] == "error"
    assert "feature_flag.result.value" not in event


def test_no_recording_span_no_event_and_no_error(tracing, client):
    _, exporter = tracing
    assert client.feature_enabled("everyone", "user-1") is True  # no active span at all
    assert exporter.get_finished_spans() == ()
    assert hook_error_count(client) == 0


def test_value_can_be_left_out(tracing):
    tracer, exporter = tracing
    client = productos.Client("phc_test", flag_definitions=DEFINITIONS, send=False,
                              hooks=[OpenTelemetryHook(include_value=False)])
    try:
        with tracer.start_as_current_span("request"):
            client.get_feature_flag("pricing", "user-1")
    finally:
        client.shutdown(1)
    (event,) = flag_events(exporter)
    assert "feature_flag.result.value" not in event
    assert event["feature_flag.result.variant"] in ("control", "test")


def test_on_error_records_the_exception_type(tracing):
    tracer, exporter = tracing
    hook = OpenTelemetryHook()
    evaluation = FlagEvaluation("k", productos.EvaluationContext("u"))
    with tracer.start_as_current_span("request"):
        hook.on_error(evaluation, TimeoutError("too slow"))
    (event,) = flag_events(exporter)
    assert (event["error.type"], event["error.message"]) == ("TimeoutError", "too slow")


def test_captured_events_carry_the_trace_id(tracing):
    tracer, _ = tracing
    sender = RecordingSender()
    seen = []

    def mine(event):
        seen.append(event["properties"].get("$trace_id"))
        return event

    client = productos.Client("phc_test", sender=sender, sync_mode=True,
                              before_send=with_trace_context(mine))
    try:
        with tracer.start_as_current_span("request") as span:
            client.capture("inside", distinct_id="u")
            context = span.get_span_context()
        client.capture("outside", distinct_id="u")
    finally:
        client.shutdown(1)
    inside, outside = sender.events
    assert inside["properties"]["$trace_id"] == format(context.trace_id, "032x")
    assert inside["properties"]["$span_id"] == format(context.span_id, "016x")
    assert "$trace_id" not in outside["properties"]
    assert seen == [format(context.trace_id, "032x"), None]  # the wrapped hook ran after
