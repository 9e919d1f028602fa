"""Arbitrary property values never raise from capture() and never kill the consumer."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import productos
from productos.testing import RecordingSender

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(), st.binary(max_size=64), st.datetimes(), st.dates(), st.uuids(),
    st.decimals(allow_nan=True), st.just(object()),
    st.integers(min_value=1, max_value=400_000).map(lambda n: "x" * n),  # huge strings
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), children, max_size=5),
        st.tuples(children, children),
        st.frozensets(st.integers(), max_size=3),
    ),
    max_leaves=20,
)
names = st.one_of(st.text(max_size=30), st.none(), st.integers(), st.just(b"bytes"))
ids = st.one_of(st.text(max_size=30), st.none(), st.integers(), st.uuids(), st.floats())

SENDER = RecordingSender()
CLIENT = productos.Client("phc_fuzz", sender=SENDER, flush_interval=0.05)


@pytest.fixture(scope="module", autouse=True)
def _shut_the_client_down():
    yield
    logging.getLogger("productos").disabled = True  # the drop summary is expected here
    try:
        CLIENT.shutdown(5)
    finally:
        logging.getLogger("productos").disabled = False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=names, distinct_id=ids,
       properties=st.one_of(st.none(), st.dictionaries(st.text(max_size=10), values, max_size=6),
                            values))
def test_capture_never_raises(event, distinct_id, properties):
    result = CLIENT.capture(event, distinct_id=distinct_id, properties=properties)
    assert result is None or uuid.UUID(result)


@settings(max_examples=50, deadline=None)
@given(props=st.dictionaries(st.text(max_size=10), values, max_size=6))
def test_set_and_group_identify_never_raise(props):
    CLIENT.set(distinct_id="u", properties=props)
    CLIENT.group_identify("company", "acme", props)


def test_the_consumer_is_alive_and_the_books_balance_after_fuzzing():
    loop: dict = {}
    loop["loop"] = loop
    CLIENT.capture("after fuzz", distinct_id="u", properties={
        "loop": loop, "when": dt.datetime.now(), "d": decimal.Decimal("1.5")})
    assert CLIENT.flush(10)
    assert SENDER.events[-1]["event"] == "after fuzz"
    s = CLIENT.stats()
    assert s["captured"] == s["sent"] + s["queued"] + s["in_flight"] + s["dropped_total"]
