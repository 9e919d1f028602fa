"""Transport and BatchSender against protocol.md §0-§1, with HTTP mocked by `responses`.

Back-off never really sleeps: BatchSender takes ``wait=`` (patch the sleep, not the logic) and
``clock=``, so the tests record the waits the sender asks for instead of waiting them out.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import json
import threading
import time
import uuid

import pytest
import requests
import responses

import productos
from productos import errors
from productos._capture.events import EventBuilder, dumps
from productos._delivery.batch_sender import BatchSender, RetryPolicy
from productos._delivery.transport import (
    DEFAULT_HOST,
    USER_AGENT,
    Response,
    Transport,
    error_for,
    gzip_bytes,
    normalize_host,
    parse_retry_after,
    redact,
)
from productos.version import VERSION

pytestmark = pytest.mark.timeout(10)

HOST = "https://example.test"
URL = HOST + "/batch/"
KEY = "phc_test"


# --------------------------------------------------------------------------- helpers


class Waits:
    """A stand-in for the back-off sleep: records each wait and says "not cancelled"."""

    def __init__(self, on_wait=None):
        self.delays = []
        self._on_wait = on_wait

    def __call__(self, seconds):
        self.delays.append(seconds)
        if self._on_wait is not None:
            self._on_wait(seconds)
        return False


def no_jitter(value):
    return value


def make_items(n=3):
    """Serialised events, as the consumer hands them to a sender."""
    builder = EventBuilder()
    items = []
    for i in range(n):
        message = builder.build(
            f"event-{i}", "user-1", {"i": i},
            timestamp=dt.datetime(2026, 1, 2, 3, 4, 5, i, tzinfo=dt.timezone.utc),
            uuid=str(uuid.uuid4()))
        item, problems = dumps(message)
        assert not problems
        items.append(item)
    return items


def make_sender(*, gzip_on=True, max_retries=5, base=1.0, cap=30.0, jitter=no_jitter,
                wait=None, clock=time.monotonic):
    waits = wait if wait is not None else Waits()
    sender = BatchSender(
        Transport(HOST, timeout=2.0), KEY, gzip=gzip_on,
        retry=RetryPolicy(max_retries=max_retries, base=base, cap=cap, jitter=jitter),
        wait=waits, clock=clock)
    return sender, waits


def body_of(request):
    raw = request.body
    if request.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def events_of(call):
    return body_of(call.request)["batch"]


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def add_statuses(rsps, *statuses, headers=None):
    """Answer successive POSTs to /batch/ with these statuses (the last one repeats)."""
    for status in statuses:
        rsps.add(responses.POST, URL, status=status, json={}, headers=headers or {})


# --------------------------------------------------------------------------- the request


def test_send_posts_gzipped_json_to_batch_with_the_right_headers(rsps):
    add_statuses(rsps, 200)
    items = make_items(3)
    sender, _ = make_sender()

    outcome = sender.send(items)

    assert outcome.delivered == 3 and outcome.dropped == {} and outcome.retries == 0
    assert len(rsps.calls) == 1
    request = rsps.calls[0].request
    assert request.method == "POST"
    assert request.url == "https://example.test/batch/"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"productos-python/{VERSION}" == USER_AGENT
    assert request.headers["Content-Encoding"] == "gzip"
    assert "Authorization" not in request.headers
    assert request.body[:2] == b"\x1f\x8b"  # a gzip member

    body = json.loads(gzip.decompress(request.body))
    assert set(body) == {"api_key", "batch", "historical_migration", "sent_at"}
    assert body["api_key"] == KEY
    assert body["historical_migration"] is False
    assert body["batch"] == [json.loads(item) for item in items]  # all of them, in order
    sent_at = dt.datetime.fromisoformat(body["sent_at"])
    assert sent_at.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - sent_at).total_seconds()) < 60


def test_send_without_gzip_posts_plain_json_and_no_content_encoding(rsps):
    add_statuses(rsps, 200)
    items = make_items(2)
    sender, _ = make_sender(gzip_on=False)

    assert sender.send(items).delivered == 2

    request = rsps.calls[0].request
    assert "Content-Encoding" not in request.headers
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.body)
    assert body["api_key"] == KEY
    assert body["batch"] == [json.loads(item) for item in items]


def test_historical_migration_flag_is_sent_when_asked(rsps):
    add_statuses(rsps, 200)
    sender = BatchSender(Transport(HOST), KEY, historical_migration=True, wait=Waits())
    sender.send(make_items(1))
    assert body_of(rsps.calls[0].request)["historical_migration"] is True


def test_an_empty_batch_makes_no_request(rsps):
    sender, _ = make_sender()
    outcome = sender.send([])
    assert outcome.delivered == 0 and outcome.dropped == {}
    assert len(rsps.calls) == 0


def test_gzip_bytes_round_trips():
    data = json.dumps({"batch": ["x" * 1000]}).encode()
    packed = gzip_bytes(data)
    assert gzip.decompress(packed) == data
    assert len(packed) < len(data)


# --------------------------------------------------------------------------- statuses


def test_200_is_success(rsps):
    add_statuses(rsps, 200)
    sender, waits = make_sender()
    outcome = sender.send(make_items(2))
    assert (outcome.delivered, outcome.retries, outcome.dropped) == (2, 0, {})
    assert waits.delays == []


@pytest.mark.parametrize("status", [500, 501, 502, 503, 504, 520, 408, 429])
def test_transient_status_is_retried_then_delivered(rsps, status):
    add_statuses(rsps, status, 200)
    sender, waits = make_sender()

    outcome = sender.send(make_items(2))

    assert len(rsps.calls) == 2
    assert outcome.delivered == 2 and outcome.retries == 1 and outcome.dropped == {}
    assert len(waits.delays) == 1


@pytest.mark.parametrize("exc", [
    requests.exceptions.ConnectionError("connection refused"),
    requests.exceptions.ReadTimeout("read timed out"),
    requests.exceptions.ConnectTimeout("connect timed out"),
], ids=["connection-error", "read-timeout", "connect-timeout"])
def test_connection_errors_and_timeouts_are_retried(rsps, exc):
    rsps.add(responses.POST, URL, body=exc)
    rsps.add(responses.POST, URL, status=200)
    sender, waits = make_sender()

    outcome = sender.send(make_items(1))

    assert len(rsps.calls) == 2
    assert len(waits.delays) == 1
    assert outcome.delivered == 1 and outcome.retries == 1 and outcome.dropped == {}


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_4xx_is_final_rejected_and_not_retried(rsps, status):
    add_statuses(rsps, status, 200)
    sender, waits = make_sender()
    items = make_items(3)

    outcome = sender.send(items)

    assert len(rsps.calls) == 1
    assert waits.delays == []
    assert outcome.delivered == 0 and outcome.retries == 0
    assert outcome.dropped == {"rejected": 3}
    (reason, error, failed), = outcome.failures
    assert reason == "rejected" and failed == items
    assert isinstance(error, errors.APIError) and error.status == status


def test_only_200_is_success(rsps):
    add_statuses(rsps, 204)
    sender, _ = make_sender()
    outcome = sender.send(make_items(1))
    assert outcome.delivered == 0
    assert sum(outcome.dropped.values()) == 1


@pytest.mark.parametrize("max_retries", [0, 1, 3])
def test_retries_exhausted_after_exactly_max_retries_plus_one_attempts(rsps, max_retries):
    add_statuses(rsps, 503)
    sender, waits = make_sender(max_retries=max_retries)

    outcome = sender.send(make_items(2))

    assert len(rsps.calls) == max_retries + 1
    assert len(waits.delays) == max_retries
    assert outcome.retries == max_retries
    assert outcome.delivered == 0
    assert outcome.dropped == {"retries_exhausted": 2}
    assert isinstance(outcome.failures[0][1], errors.APIError)
    assert outcome.failures[0][1].status == 503


def test_connection_errors_exhausting_retries_report_a_connect_error(rsps):
    rsps.add(responses.POST, URL, body=requests.exceptions.ConnectionError("refused"))
    sender, _ = make_sender(max_retries=2)
    outcome = sender.send(make_items(1))
    assert len(rsps.calls) == 3
    assert outcome.dropped == {"retries_exhausted": 1}
    assert isinstance(outcome.failures[0][1], errors.ConnectError)


def test_timeouts_exhausting_retries_report_a_timeout_error(rsps):
    rsps.add(responses.POST, URL, body=requests.exceptions.ReadTimeout("slow"))
    sender, _ = make_sender(max_retries=1)
    outcome = sender.send(make_items(1))
    assert len(rsps.calls) == 2
    assert isinstance(outcome.failures[0][1], errors.RequestTimeoutError)


def test_retried_events_keep_their_uuid_and_timestamp(rsps):
    add_statuses(rsps, 500, 429, 502, 200)
    sender, _ = make_sender()
    items = make_items(4)

    outcome = sender.send(items)

    assert outcome.delivered == 4 and outcome.retries == 3
    attempts = [events_of(call) for call in rsps.calls]
    assert len(attempts) == 4
    first = attempts[0]
    assert [e["uuid"] for e in first] == [json.loads(i)["uuid"] for i in items]
    for later in attempts[1:]:
        assert later == first  # same events, same order, same uuid and timestamp
        assert [(e["uuid"], e["timestamp"]) for e in later] == [
            (e["uuid"], e["timestamp"]) for e in first]


# --------------------------------------------------------------------------- 413


def test_413_splits_the_batch_into_halves_recursively(rsps):
    def answer(request):
        size = len(body_of(request)["batch"])
        return (413, {}, "") if size > 2 else (200, {}, "{}")

    rsps.add_callback(responses.POST, URL, callback=answer)
    sender, waits = make_sender()
    items = make_items(8)

    outcome = sender.send(items)

    sizes = [len(events_of(call)) for call in rsps.calls]
    assert sizes == [8, 4, 2, 2, 4, 2, 2]
    assert outcome.delivered == 8 and outcome.dropped == {} and outcome.retries == 0
    assert waits.delays == []  # a split is not a back-off
    delivered = [e for call in rsps.calls if call.response.status_code == 200
                 for e in events_of(call)]
    assert [e["uuid"] for e in delivered] == [json.loads(i)["uuid"] for i in items]


def test_a_single_event_that_still_gets_413_is_dropped_too_large(rsps):
    items = make_items(5)
    huge_uuid = json.loads(items[3])["uuid"]

    def answer(request):
        uuids = [e["uuid"] for e in body_of(request)["batch"]]
        return (413, {}, "") if huge_uuid in uuids else (200, {}, "{}")

    rsps.add_callback(responses.POST, URL, callback=answer)
    sender, waits = make_sender()

    outcome = sender.send(items)

    assert outcome.delivered == 4
    assert outcome.dropped == {"too_large": 1}
    (reason, error, failed), = outcome.failures
    assert reason == "too_large" and failed == [items[3]]
    assert isinstance(error, errors.APIError) and error.status == 413
    assert waits.delays == []
    # [0..4] -> [0,1] ok, [2,3,4] -> [2] ok, [3,4] -> [3] dropped, [4] ok
    assert [len(events_of(c)) for c in rsps.calls] == [5, 2, 3, 1, 2, 1, 1]


# --------------------------------------------------------------------------- retry timing


def test_backoff_is_exponential_and_capped():
    policy = RetryPolicy(max_retries=8, base=1.0, cap=30.0, jitter=no_jitter)
    assert list(policy.delays()) == [1, 2, 4, 8, 16, 30, 30, 30]


def test_backoff_base_scales_the_delays():
    policy = RetryPolicy(max_retries=4, base=0.25, cap=30.0, jitter=no_jitter)
    assert list(policy.delays()) == [0.25, 0.5, 1.0, 2.0]


def test_default_jitter_stays_within_bounds_and_under_the_cap():
    nominal = [1, 2, 4, 8, 16, 30, 30]
    policy = RetryPolicy(max_retries=len(nominal))
    seen = set()
    for _ in range(300):
        delays = list(policy.delays())
        assert len(delays) == len(nominal)
        for delay, step in zip(delays, nominal):
            assert step / 2 <= delay <= step <= 30
        # equal jitter keeps the sequence growing until the cap
        assert delays[:5] == sorted(delays[:5])
        seen.add(delays[0])
    assert len(seen) > 1  # it is jittered


def test_sender_waits_grow_exponentially_within_jitter_bounds(rsps):
    add_statuses(rsps, 503)
    sender, waits = make_sender(max_retries=7, jitter=RetryPolicy().jitter)

    outcome = sender.send(make_items(1))

    assert outcome.dropped == {"retries_exhausted": 1}
    nominal = [1, 2, 4, 8, 16, 30, 30]
    assert len(waits.delays) == len(nominal)
    for delay, step in zip(waits.delays, nominal):
        assert step / 2 <= delay <= step


def test_sender_waits_follow_the_policy_exactly_without_jitter(rsps):
    add_statuses(rsps, 500)
    sender, waits = make_sender(max_retries=6, cap=10.0)
    sender.send(make_items(1))
    assert waits.delays == [1, 2, 4, 8, 10, 10]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_the_minimum_wait(rsps, status):
    add_statuses(rsps, status, headers={"Retry-After": "7"})
    rsps.add(responses.POST, URL, status=200)
    sender, waits = make_sender()

    outcome = sender.send(make_items(1))

    assert outcome.delivered == 1
    assert waits.delays == [7.0]  # 7 s beats the 1 s back-off


def test_retry_after_does_not_shorten_a_longer_backoff(rsps):
    add_statuses(rsps, 503, 503, 503, 503)
    # the first 4 attempts say nothing; the 5th asks for 1 s while back-off is at 16 s
    rsps.add(responses.POST, URL, status=503, headers={"Retry-After": "1"})
    rsps.add(responses.POST, URL, status=200)
    sender, waits = make_sender()
    assert sender.send(make_items(1)).delivered == 1
    assert waits.delays == [1, 2, 4, 8, 16]


def test_retry_after_longer_than_the_backoff_cap_is_still_honoured(rsps):
    add_statuses(rsps, 429, headers={"Retry-After": "60"})
    rsps.add(responses.POST, URL, status=200)
    sender, waits = make_sender(cap=30.0)
    sender.send(make_items(1))
    assert waits.delays == [60.0]


def test_retry_after_http_date_is_the_minimum_wait(rsps):
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    add_statuses(rsps, 503, headers={"Retry-After": when})
    rsps.add(responses.POST, URL, status=200)
    sender, waits = make_sender()

    outcome = sender.send(make_items(1))

    assert outcome.delivered == 1
    (delay,) = waits.delays
    assert 18.0 <= delay <= 20.0  # HTTP dates have whole-second resolution


def test_a_retry_that_would_pass_the_deadline_is_dropped(rsps):
    add_statuses(rsps, 503)
    now = [1000.0]
    waits = Waits(on_wait=lambda s: now.__setitem__(0, now[0] + s))
    sender, _ = make_sender(wait=waits, clock=lambda: now[0])

    # waits of 1 and 2 fit before 1000 + 3.5; the third (4 s) would pass it
    outcome = sender.send(make_items(2), deadline=1003.5)

    assert waits.delays == [1, 2]
    assert len(rsps.calls) == 3
    assert outcome.retries == 2
    assert outcome.dropped == {"deadline_exceeded": 2}


def test_a_deadline_already_too_close_for_any_retry_drops_after_one_attempt(rsps):
    add_statuses(rsps, 429, headers={"Retry-After": "7"})
    sender, waits = make_sender(clock=lambda: 50.0)
    outcome = sender.send(make_items(1), deadline=55.0)  # 7 s would pass it
    assert len(rsps.calls) == 1 and waits.delays == []
    assert outcome.dropped == {"deadline_exceeded": 1}


def test_cancel_during_a_wait_gives_up_the_retry(rsps):
    add_statuses(rsps, 503, 200)
    holder = {}
    waits = Waits(on_wait=lambda s: holder["sender"].cancel())
    sender, _ = make_sender(wait=waits)
    holder["sender"] = sender

    outcome = sender.send(make_items(2))

    assert len(rsps.calls) == 1  # no second attempt
    assert outcome.delivered == 0
    assert outcome.dropped == {"cancelled": 2}


def test_cancel_interrupts_the_real_backoff_sleep(rsps):
    """With the default wait (an Event), cancel() from another thread ends a 30 s back-off."""
    add_statuses(rsps, 503, 200)
    sender = BatchSender(Transport(HOST), KEY,
                         retry=RetryPolicy(max_retries=3, base=30.0, jitter=no_jitter))
    timer = threading.Timer(0.05, sender.cancel)
    timer.start()
    started = time.monotonic()
    try:
        outcome = sender.send(make_items(1))
    finally:
        timer.cancel()
    assert time.monotonic() - started < 5
    assert len(rsps.calls) == 1
    assert outcome.dropped == {"cancelled": 1}


# --------------------------------------------------------------------------- parse_retry_after


@pytest.mark.parametrize("value, expected", [
    ("7", 7.0),
    (" 120 ", 120.0),
    ("0", 0.0),
    ("1.5", 1.5),
    ("-3", 0.0),
    (None, None),
    ("", None),
    ("soon", None),
    ("nan", None),
])
def test_parse_retry_after_seconds_and_junk(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    now = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()
    assert parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now=now) == 90.0
    # a date in the past means "now"
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0


def test_parse_retry_after_http_date_uses_the_wall_clock_by_default():
    value = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28.0 <= parse_retry_after(value) <= 30.0


# --------------------------------------------------------------------------- normalize_host


@pytest.mark.parametrize("given, expected", [
    (None, "https://us.i.posthog.com"),
    ("", "https://us.i.posthog.com"),
    ("https://app.posthog.com", "https://us.i.posthog.com"),
    ("https://us.posthog.com", "https://us.i.posthog.com"),
    ("https://eu.posthog.com", "https://eu.i.posthog.com"),
    ("https://app.posthog.com/", "https://us.i.posthog.com"),
    ("https://eu.posthog.com/", "https://eu.i.posthog.com"),
    ("https://us.i.posthog.com/", "https://us.i.posthog.com"),
    ("https://example.test/", "https://example.test"),
    ("https://example.test//", "https://example.test"),
    ("http://localhost:8000/", "http://localhost:8000"),
    ("example.test", "https://example.test"),
    ("eu.posthog.com", "https://eu.i.posthog.com"),
    ("  https://example.test/  ", "https://example.test"),
])
def test_normalize_host(given, expected):
    assert normalize_host(given) == expected


def test_default_host_constant():
    assert DEFAULT_HOST == "https://us.i.posthog.com"
    assert Transport().host == DEFAULT_HOST


# --------------------------------------------------------------------------- redact


@pytest.mark.parametrize("key", [
    "phc_" + "AbC123xyz_-0", "phx_" + "personalKey42", "phs_" + "secretKey-9",
])
@pytest.mark.parametrize("template", [
    "{}", "invalid key {}", "token={}&send_cohorts", "Bearer {}", '{{"api_key": "{}"}}',
    "key '{}' rejected",
])
def test_redact_removes_keys(key, template):
    text = redact(template.format(key))
    assert key not in text
    assert key[4:] not in text
    assert "[redacted]" in text


def test_redact_keeps_other_text():
    assert redact("nothing secret here: phone_number") == "nothing secret here: phone_number"
    assert redact("HTTP 500: upstream failed") == "HTTP 500: upstream failed"


def test_error_message_redacts_a_key_after_a_json_escape():
    # a non-dict JSON error body is used raw; its "\\n" escape glues a letter to the key
    body = json.dumps(["invalid project key:\n" + KEY + "Secret123"]).encode()
    error = error_for(Response(401, {}, body))
    assert "Secret123" not in str(error)


# --------------------------------------------------------------------------- error_for


def test_error_for_429_is_rate_limited_with_retry_after():
    error = error_for(Response(429, {"Retry-After": "7"}, b'{"detail": "slow down"}'))
    assert type(error) is errors.RateLimitedError
    assert isinstance(error, errors.APIError)
    assert error.status == 429 and error.retry_after == 7.0
    assert error.message == "slow down"
    assert error.retryable


@pytest.mark.parametrize("status", [401, 403])
def test_error_for_auth_statuses_is_authentication_error(status):
    error = error_for(Response(status, {}, b'{"detail": "Project API key invalid."}'))
    assert type(error) is errors.AuthenticationError
    assert error.status == status
    assert error.message == "Project API key invalid."
    assert str(error) == f"HTTP {status}: Project API key invalid."
    assert not error.retryable


@pytest.mark.parametrize("status, retryable", [(400, False), (404, False), (500, True),
                                               (503, True), (408, True)])
def test_error_for_other_statuses_is_api_error(status, retryable):
    error = error_for(Response(status, {}, b"plain text problem"))
    assert type(error) is errors.APIError
    assert error.status == status and error.message == "plain text problem"
    assert error.retryable is retryable


@pytest.mark.parametrize("body", [
    b'{"detail": "invalid api key phc_test"}',
    b'{"error": "token phc_test is not valid"}',
    b'{"type": "x", "code": "bad_key", "attr": "phc_test"}',
    b"<html>key phc_test rejected</html>",
])
def test_error_messages_never_contain_the_api_key(body):
    error = error_for(Response(401, {}, body))
    assert KEY not in str(error) and KEY not in error.message


def test_transport_errors_never_contain_the_api_key(rsps):
    rsps.add(responses.POST, URL, body=requests.exceptions.ConnectionError(
        f"HTTPSConnectionPool: Max retries exceeded with url: /batch/?token={KEY}"))
    rsps.add(responses.GET, HOST + "/flags/definitions",
             body=requests.exceptions.ReadTimeout(f"timed out, token={KEY}"))
    transport = Transport(HOST)
    with pytest.raises(errors.ConnectError) as connect:
        transport.post_json("/batch/", b"{}", gzip=False)
    with pytest.raises(errors.RequestTimeoutError) as timeout:
        transport.request("GET", "/flags/definitions", params={"token": KEY})
    for exc in (connect.value, timeout.value):
        assert KEY not in str(exc)


def test_a_request_timeout_has_its_own_name_beside_the_builtin():
    assert not hasattr(errors, "TimeoutError")  # no shadowing of the built-in name
    assert issubclass(errors.RequestTimeoutError, errors.TransportError)
    assert not issubclass(errors.RequestTimeoutError, TimeoutError)


def test_a_rejected_batch_reports_a_key_free_error(rsps):
    rsps.add(responses.POST, URL, status=401, json={"detail": f"Invalid key {KEY}"})
    sender, _ = make_sender()
    outcome = sender.send(make_items(1))
    error = outcome.failures[0][1]
    assert isinstance(error, errors.AuthenticationError)
    assert KEY not in str(error)


# --------------------------------------------------------------------------- Client level


def test_client_sync_capture_makes_exactly_one_post_of_the_right_shape(rsps):
    rsps.add(responses.POST, URL, status=200, json={"status": 1})
    client = productos.Client(KEY, host="https://example.test", sync_mode=True)
    try:
        event_uuid = client.capture("signed up", distinct_id="user-1", properties={"plan": "pro"})
    finally:
        client.shutdown(1)

    assert event_uuid is not None
    assert len(rsps.calls) == 1
    request = rsps.calls[0].request
    assert request.method == "POST" and request.url == URL
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"productos-python/{VERSION}"
    assert "Authorization" not in request.headers
    body = json.loads(gzip.decompress(request.body))
    assert body["api_key"] == KEY and body["historical_migration"] is False
    (event,) = body["batch"]
    assert event["event"] == "signed up"
    assert event["distinct_id"] == "user-1"
    assert event["uuid"] == event_uuid
    assert event["properties"]["plan"] == "pro"
    assert event["properties"]["$lib"] == "productos-python"
    assert event["properties"]["$lib_version"] == VERSION
    assert client.stats()["sent"] == 1


def test_client_with_gzip_off_sends_plain_json(rsps):
    rsps.add(responses.POST, URL, status=200)
    client = productos.Client(KEY, host="https://example.test", sync_mode=True, gzip=False)
    try:
        client.capture("clicked", distinct_id="user-1")
    finally:
        client.shutdown(1)

    (call,) = rsps.calls
    assert "Content-Encoding" not in call.request.headers
    body = json.loads(call.request.body)
    assert body["batch"][0]["event"] == "clicked"


def test_client_reports_a_rejected_event_without_the_key(rsps):
    rsps.add(responses.POST, URL, status=401, json={"detail": f"bad key {KEY}"})
    seen = []
    client = productos.Client(KEY, host="https://example.test", sync_mode=True,
                              on_error=lambda exc, batch: seen.append((exc, batch)))
    try:
        assert client.capture("clicked", distinct_id="user-1") is None
    finally:
        client.shutdown(1)

    assert len(rsps.calls) == 1  # not retried
    assert client.stats()["dropped"] == {"rejected": 1}
    ((exc, batch),) = seen
    assert isinstance(exc, errors.AuthenticationError) and exc.status == 401
    assert KEY not in str(exc)
    assert batch[0]["event"] == "clicked"
