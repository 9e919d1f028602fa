"""Arbitrary arguments never raise from the event calls, and each ends the way the rules say.

Every example is checked against an oracle: arguments the documented rules refuse must be
dropped as ``invalid`` with an ``EventError``; anything else must be admitted (its uuid
returned and, after a flush, delivered) or dropped as ``too_large``. An internal error that
the client swallowed would show up as the wrong outcome or the wrong exception type.
Each test makes its own client, so the tests do not depend on their order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import logging
import uuid
from typing import Any, Dict, Iterator, List, Tuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import productos
from productos import errors
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
names = st.one_of(st.text(min_size=1, max_size=30), st.text(max_size=30), st.none(),
                  st.integers(), st.just(b"bytes"))
ids = st.one_of(st.text(max_size=30), st.none(), st.integers(), st.uuids(), st.floats(),
                st.booleans(), st.just(b"bytes"), st.lists(st.integers(), max_size=2))
properties = st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), values,
                             max_size=6)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Recorder:
    """A client whose on_error and on_drop calls are kept, to tell outcomes apart."""

    def __init__(self) -> None:
        self.sender = RecordingSender()
        self.errors: List[BaseException] = []
        self.drops: List[str] = []
        self.client = productos.Client("phc_fuzz", sender=self.sender, flush_interval=0.05,
                                       on_error=lambda exc, batch: self.errors.append(exc),
                                       on_drop=lambda event, why: self.drops.append(str(why)))
        self.admitted: List[str] = []

    def expect(self, result: Any, *, valid: bool, before: Tuple[int, int]) -> None:
        """Check one call's result: invalid → dropped as such; valid → admitted or too large."""
        new_errors, new_drops = self.errors[before[0]:], self.drops[before[1]:]
        if not valid:
            assert result is None
            assert [type(e) for e in new_errors] == [errors.EventError], new_errors
            assert new_drops == ["invalid"]
        elif result is None:
            assert [type(e) for e in new_errors] == [errors.EventTooLargeError], new_errors
            assert new_drops == ["too_large"]
        else:
            assert uuid.UUID(result) and not new_errors and not new_drops
            self.admitted.append(result)

    def mark(self) -> Tuple[int, int]:
        return len(self.errors), len(self.drops)

    def settle(self) -> Dict[str, Any]:
        """Flush; check that exactly the admitted events arrived and the books balance."""
        assert self.client.flush(10)
        assert sorted(e["uuid"] for e in self.sender.events) == sorted(self.admitted)
        stats = self.client.stats()
        assert stats["captured"] == (stats["sent"] + stats["queued"] + stats["in_flight"]
                                     + stats["dropped_total"])
        return dict(stats)


@contextlib.contextmanager
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    try:
        yield rec
    finally:
        logging.getLogger("productos").disabled = True  # the drop summary is expected here
        try:
            rec.client.shutdown(5)
        finally:
            logging.getLogger("productos").disabled = False


def valid_id(value: Any) -> bool:
    """The rule for ids: strings and numbers (not bools); None means 'from the context'."""
    if value is None:
        return True
    return isinstance(value, (str, int, float, uuid.UUID)) and not isinstance(value, bool)


def test_capture_never_raises_and_each_call_ends_as_the_rules_say():
    with recorder() as rec:
        calls = {"valid": 0, "invalid": 0}

        @FUZZ
        @given(event=names, distinct_id=ids,
               properties=st.one_of(st.none(), properties, properties, values))
        def check(event: Any, distinct_id: Any, properties: Any) -> None:
            valid = (isinstance(event, str) and event != "" and valid_id(distinct_id)
                     and (properties is None or isinstance(properties, dict)))
            before = rec.mark()
            result = rec.client.capture(event, distinct_id=distinct_id, properties=properties)
            rec.expect(result, valid=valid, before=before)
            calls["valid" if valid else "invalid"] += 1

        check()
        assert calls["valid"] >= 30 and calls["invalid"] >= 30  # both kinds were exercised
        stats = rec.settle()
        assert stats["dropped"].get("invalid") == calls["invalid"]


def test_set_and_group_identify_admit_any_properties_or_say_they_are_too_large():
    with recorder() as rec:
        calls = []

        @settings(max_examples=50, deadline=None)
        @given(props=properties)
        def check(props: Dict[str, Any]) -> None:
            before = rec.mark()
            rec.expect(rec.client.set(distinct_id="u", properties=props), valid=True,
                       before=before)
            before = rec.mark()
            rec.expect(rec.client.group_identify("company", "acme", props), valid=True,
                       before=before)
            calls.append(props)

        check()
        assert len(calls) >= 20
        rec.settle()


def test_the_consumer_is_alive_and_the_books_balance_after_fuzzing():
    with recorder() as rec:
        @settings(max_examples=100, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(properties=properties)
        def check(properties: Dict[str, Any]) -> None:
            before = rec.mark()
            rec.expect(rec.client.capture("fuzz", distinct_id="u", properties=properties),
                       valid=True, before=before)

        check()
        loop: dict = {}
        loop["loop"] = loop
        before = rec.mark()
        rec.expect(rec.client.capture("after fuzz", distinct_id="u", properties={
            "loop": loop, "when": dt.datetime.now(), "d": decimal.Decimal("1.5")}),
            valid=True, before=before)
        rec.settle()
        last = rec.sender.events[-1]
        assert last["event"] == "after fuzz" and last["properties"]["d"] == 1.5
        assert "loop" in last["properties"] and last["properties"]["loop"] == {}
