"""The batching consumer alone, with a recording sender: no HTTP involved."""

from __future__ import annotations

import inspect
import json
import threading
import time
import typing
from dataclasses import fields
from typing import Any, List, Optional, Sequence

import pytest

import productos
from productos import errors
from productos._runtime import options as options_module
from productos._runtime.options import Options
from productos.consumer import OVERFLOW_POLICIES, BatchOutcome, Consumer, OnFull
from productos.testing import RecordingSender

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from support import wait_until  # type: ignore


class Ledger:
    """Collects outcomes and refusals the way the client does."""

    def __init__(self) -> None:
        self.outcomes: List[BatchOutcome] = []
        self.refused: List[str] = []

    def delivered(self) -> int:
        return sum(o.delivered for o in self.outcomes)

    def dropped(self) -> dict:
        total: dict = {}
        for o in self.outcomes:
            for reason, n in o.dropped.items():
                total[reason] = total.get(reason, 0) + n
        return total


def item(i: int, size: int = 0) -> bytes:
    return json.dumps({"event": "e", "i": i, "pad": "x" * size}).encode()


def make(sender: Any, ledger: Ledger, **kwargs: Any) -> Consumer:
    return Consumer(sender, on_outcome=ledger.outcomes.append,
                    on_reject=lambda reason, _: ledger.refused.append(reason), **kwargs)


def test_batches_are_bounded_by_count():
    sender, ledger = RecordingSender(), Ledger()
    consumer = make(sender, ledger, flush_at=10, max_batch_size=10, flush_interval=30)
    for i in range(35):
        consumer.put(item(i))
    assert consumer.flush(5)
    assert [len(b) for b in sender.batches] == [10, 10, 10, 5]
    assert [e["i"] for e in sender.events] == list(range(35))
    consumer.shutdown(5)


def test_batches_are_bounded_by_bytes():
    sender, ledger = RecordingSender(), Ledger()
    consumer = make(sender, ledger, flush_at=1000, max_batch_bytes=10_000, flush_interval=30)
    for i in range(20):
        consumer.put(item(i, size=2_000))
    assert consumer.flush(5)
    assert all(sum(len(json.dumps(e)) for e in b) < 10_000 for b in sender.batches)
    assert len(sender.events) == 20
    consumer.shutdown(5)


def test_reaching_flush_at_wakes_the_worker_without_waiting_for_the_interval():
    sender, ledger = RecordingSender(), Ledger()
    consumer = make(sender, ledger, flush_at=5, flush_interval=60)
    for i in range(5):
        consumer.put(item(i))
    assert wait_until(lambda: len(sender.events) == 5, timeout=5)
    consumer.shutdown(5)


def test_the_interval_sends_a_partial_batch():
    sender, ledger = RecordingSender(), Ledger()
    consumer = make(sender, ledger, flush_at=100, flush_interval=0.05)
    consumer.put(item(1))
    assert wait_until(lambda: len(sender.events) == 1, timeout=5)
    consumer.shutdown(5)


def test_flush_times_out_when_the_sender_is_stuck():
    sender, ledger = RecordingSender(), Ledger()
    sender.delay = 2
    consumer = make(sender, ledger, flush_interval=30)
    consumer.put(item(1))
    started = time.monotonic()
    assert consumer.flush(0.2) is False
    assert time.monotonic() - started < 1.5
    sender.cancel()
    consumer.shutdown(5)


def test_full_buffer_refuses_and_reports():
    sender, ledger = RecordingSender(), Ledger()
    sender.delay = 0.5
    consumer = make(sender, ledger, max_queue_size=3, flush_at=100, flush_interval=30)
    accepted = [consumer.put(item(i)) for i in range(5)]
    assert accepted == [True, True, True, False, False]
    assert ledger.refused == ["queue_full", "queue_full"]
    consumer.shutdown(5)


def test_worker_survives_a_sender_that_raises(internal_errors):
    class Exploding(RecordingSender):
        calls = 0

        def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
            Exploding.calls += 1
            if Exploding.calls == 1:
                raise RuntimeError("sender bug")
            return super().send(items, deadline)

    sender, ledger = Exploding(), Ledger()
    consumer = make(sender, ledger, flush_interval=30)
    consumer.put(item(1))
    assert consumer.flush(5)
    consumer.put(item(2))
    assert consumer.flush(5)
    assert ledger.dropped() == {"internal_error": 1}
    assert [e["i"] for e in sender.events] == [2]
    consumer.shutdown(5)
    assert [str(exc) for exc in internal_errors] == ["sender bug"]  # logged, not hidden
    internal_errors.clear()


def test_shutdown_drains_then_refuses():
    sender, ledger = RecordingSender(), Ledger()
    consumer = make(sender, ledger, flush_at=1000, flush_interval=30)
    for i in range(50):
        consumer.put(item(i))
    assert consumer.shutdown(5)
    assert len(sender.events) == 50
    assert consumer.put(item(99)) is False
    assert ledger.refused == ["after_shutdown"]
    assert consumer.shutdown(1)  # idempotent


def test_shutdown_deadline_counts_what_is_left():
    sender, ledger = RecordingSender(), Ledger()
    sender.delay = 0.3
    consumer = make(sender, ledger, flush_at=1000, max_batch_size=1, flush_interval=30)
    for i in range(20):
        consumer.put(item(i))
    consumer.shutdown(0.5)
    # The worker accounts for the batch that was in flight once its cut-short send returns.
    assert wait_until(lambda: ledger.delivered() + ledger.dropped().get("shutdown_timeout", 0)
                      == 20, timeout=5), (ledger.delivered(), ledger.dropped())
    assert 0 < ledger.delivered() < 20
    assert set(ledger.dropped()) == {"shutdown_timeout"}
    reported = [error for o in ledger.outcomes for _, error, _ in o.failures]
    # productos' own type, and still the built-in TimeoutError callbacks used to receive
    assert reported and all(isinstance(e, errors.ShutdownTimeoutError) for e in reported)
    assert all(isinstance(e, TimeoutError) for e in reported)


def test_many_threads_put_concurrently_and_nothing_is_lost():
    sender, ledger = RecordingSender(), Ledger()
    consumer = make(sender, ledger, max_queue_size=100_000, flush_at=50, flush_interval=0.05)

    def produce(base: int) -> None:
        for i in range(2_000):
            consumer.put(item(base + i))

    threads = [threading.Thread(target=produce, args=(n * 10_000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert consumer.flush(10)
    assert len({e["i"] for e in sender.events}) == 8_000
    assert consumer.taken == 8_000
    consumer.shutdown(5)


def test_flush_with_nothing_queued_returns_at_once():
    consumer = make(RecordingSender(), Ledger())
    assert consumer.flush(0.01)


@pytest.mark.parametrize("flushes", [1, 3])
def test_flush_sends_what_was_queued_before_it(flushes):
    sender, ledger = RecordingSender(), Ledger()
    consumer = make(sender, ledger, flush_at=1000, flush_interval=30)
    for round_ in range(flushes):
        consumer.put(item(round_))
        assert consumer.flush(5)
        assert len(sender.events) == round_ + 1
    consumer.shutdown(5)


# --- overflow policies and concurrency (delivery guarantees) ----------------------------------


def test_drop_old_evicts_the_oldest_and_reports_it():
    sender, ledger = RecordingSender(), Ledger()
    refused_items: List[bytes] = []
    consumer = Consumer(sender, on_outcome=ledger.outcomes.append,
                        on_reject=lambda reason, it: refused_items.append(it),
                        max_queue_size=3, flush_at=100, flush_interval=30, on_full="drop_old")
    for i in range(5):
        assert consumer.put(item(i))
    assert [json.loads(x)["i"] for x in refused_items] == [0, 1]
    assert consumer.flush(5)
    assert [e["i"] for e in sender.events] == [2, 3, 4]
    consumer.shutdown(5)


def test_block_waits_for_room_instead_of_dropping():
    sender, ledger = RecordingSender(), Ledger()
    sender.delay = 0.05
    consumer = make(sender, ledger, max_queue_size=10, flush_at=5, flush_interval=30,
                    max_batch_size=5, on_full="block", block_timeout=5)
    for i in range(100):
        assert consumer.put(item(i))
    assert consumer.flush(10)
    assert len(sender.events) == 100 and ledger.refused == []
    consumer.shutdown(5)


def test_block_gives_up_after_its_timeout_and_counts():
    sender, ledger = RecordingSender(), Ledger()
    sender.delay = 3
    consumer = make(sender, ledger, max_queue_size=1, flush_at=100, flush_interval=30,
                    max_batch_size=1, on_full="block", block_timeout=0.1)
    assert consumer.put(item(0))
    assert consumer.flush(0) is False  # wakes the sender, which takes item 0 and stays (3 s)
    assert wait_until(lambda: consumer.in_flight == 1, timeout=5)
    assert consumer.put(item(1))  # the room item 0 left
    assert consumer.queued == 1
    started = time.monotonic()
    assert consumer.put(item(2)) is False
    assert 0.05 < time.monotonic() - started < 2
    assert ledger.refused == ["queue_full"]
    sender.cancel()
    consumer.shutdown(5)


def test_the_buffer_can_be_bounded_by_bytes():
    sender, ledger = RecordingSender(), Ledger()
    sender.delay = 0.3
    consumer = make(sender, ledger, max_queue_bytes=5_000, flush_at=1000, flush_interval=30)
    accepted = [consumer.put(item(i, size=1_000)) for i in range(10)]
    assert accepted.count(True) == 4 and ledger.refused.count("queue_full") == 6
    assert consumer.queued_bytes <= 5_000
    assert consumer.flush(5)
    assert consumer.queued_bytes == 0
    consumer.shutdown(5)


def test_a_backlog_is_sent_over_several_requests_at_once():
    class Concurrent(RecordingSender):
        """Holds each send until four are in progress at once (or two seconds pass)."""

        def __init__(self) -> None:
            super().__init__()
            self.active = 0
            self.peak = 0
            self.guard = threading.Lock()
            self.four_at_once = threading.Event()

        def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
            with self.guard:
                self.active += 1
                self.peak = max(self.peak, self.active)
                if self.active == 4:
                    self.four_at_once.set()
            self.four_at_once.wait(2)
            with self.guard:
                self.active -= 1
            return super().send(items, deadline)

    sender, ledger = Concurrent(), Ledger()
    consumer = make(sender, ledger, flush_at=100_000, max_queue_size=100_000,
                    max_batch_size=100, flush_interval=30, max_concurrent_requests=4)
    for i in range(1_000):
        consumer.put(item(i))
    assert consumer.flush(10)
    assert sender.four_at_once.is_set() and sender.peak == 4
    assert len({e["i"] for e in sender.events}) == 1_000
    assert consumer.in_flight == 0 and consumer.taken == 1_000
    consumer.shutdown(5)


class PeakConcurrency(RecordingSender):
    """Records how many sends run at once; each takes ``delay`` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            return super().send(items, deadline)
        finally:
            with self.guard:
                self.active -= 1


@pytest.mark.parametrize("delay, spread", [(0.0, False), (0.06, True)],
                         ids=["quick-endpoint", "slow-endpoint"])
def test_a_backlog_is_spread_over_requests_only_when_sending_it_alone_would_be_slow(
        delay, spread):
    sender, ledger = PeakConcurrency(delay), Ledger()
    consumer = make(sender, ledger, flush_at=100_000, max_queue_size=100_000,
                    max_batch_size=100, flush_interval=30, max_concurrent_requests=4)
    consumer.put(item(-1))
    assert consumer.flush(10)  # one batch sent: now the consumer knows how long one takes
    assert sender.peak == 1
    for i in range(600):  # six batches: 0.36 s one at a time against the slow endpoint
        consumer.put(item(i))
    assert consumer.flush(10)
    assert (sender.peak > 1) is spread, sender.peak
    assert len(sender.events) == 601 and consumer.in_flight == 0
    consumer.shutdown(5)


def test_a_backlog_bigger_than_the_batches_seen_so_far_is_judged_by_its_size():
    class PerEvent(PeakConcurrency):
        """Takes 0.2 ms per event: small steady batches are quick, a big backlog is not."""

        def send(self, items: Sequence[bytes], deadline: Optional[float] = None
                 ) -> BatchOutcome:
            self.delay = 0.0002 * len(items)
            return super().send(items, deadline)

    sender, ledger = PerEvent(0.0), Ledger()
    consumer = make(sender, ledger, flush_at=100_000, max_queue_size=100_000,
                    max_batch_size=2_000, flush_interval=30, max_concurrent_requests=4)
    for round_ in range(5):  # steady traffic: batches of 100, 20 ms each
        for i in range(100):
            consumer.put(item(round_ * 100 + i))
        assert consumer.flush(10)
    assert sender.peak == 1
    for i in range(8_000):  # 1.6 s one batch at a time: helpers spread it
        consumer.put(item(500 + i))
    assert consumer.shutdown(1.5)
    assert sender.peak > 1 and len(sender.events) == 8_500
    assert ledger.refused == [] and all(not o.dropped for o in ledger.outcomes)


def test_a_drain_that_turns_slow_gets_helpers_from_its_next_batch():
    sender, ledger = PeakConcurrency(0.0), Ledger()
    consumer = make(sender, ledger, flush_at=100_000, max_queue_size=100_000,
                    max_batch_size=100, flush_interval=30, max_concurrent_requests=4)
    consumer.put(item(-1))
    assert consumer.flush(10)  # quick so far: a small backlog would not be spread
    sender.delay = 0.15  # the endpoint slows down (say, it answers 503 and we back off)
    for i in range(800):
        consumer.put(item(i))
    started = time.monotonic()
    assert consumer.flush(10)
    assert sender.peak > 1  # the first slow batch taught it; the rest went out in parallel
    assert time.monotonic() - started < 8 * 0.15  # quicker than one batch at a time
    assert len(sender.events) == 801
    consumer.shutdown(5)


def test_unknown_overflow_policy_is_a_configuration_error():
    with pytest.raises(ValueError):
        make(RecordingSender(), Ledger(), on_full="drop_everything")


# --- a sender that stores locally (the spool) -------------------------------------------------


class LocalStore(RecordingSender):
    """Declares that it writes to local storage: the consumer waits for it, never drops."""

    stores_locally = True


class Overlaps(LocalStore):
    """Holds each write until a second one runs beside it (or 0.2 s pass); keeps the peak."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0
        self.guard = threading.Lock()
        self.two_at_once = threading.Event()

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        with self.guard:
            self.active += 1
            self.peak = max(self.peak, self.active)
            if self.active == 2:
                self.two_at_once.set()
        self.two_at_once.wait(0.2)
        with self.guard:
            self.active -= 1
        return super().send(items, deadline)


@pytest.mark.parametrize("local", [True, False], ids=["stores-locally", "sends"])
def test_a_full_buffer_waits_for_a_local_store_instead_of_dropping(local):
    sender = LocalStore() if local else RecordingSender()
    sender.delay = 0.05  # every batch takes a while; the caller is far faster
    ledger = Ledger()
    consumer = make(sender, ledger, max_queue_size=2, flush_at=1, max_batch_size=2,
                    flush_interval=30, block_timeout=5)  # the default policy: drop_new
    admitted = [consumer.put(item(i)) for i in range(12)]
    assert consumer.flush(10)
    if local:
        assert all(admitted) and ledger.refused == []
        assert [e["i"] for e in sender.events] == list(range(12))
    else:  # a sender that sends: the buffer drops what does not fit, as configured
        assert admitted.count(False) > 0 and set(ledger.refused) == {"queue_full"}
    consumer.shutdown(5)


def test_a_local_store_gets_one_writer_even_for_a_backlog():
    sender, ledger = Overlaps(), Ledger()
    consumer = make(sender, ledger, flush_at=100_000, max_queue_size=100_000,
                    max_batch_size=100, flush_interval=30, max_concurrent_requests=4)
    for i in range(300):
        consumer.put(item(i))
    assert consumer.flush(10)
    assert len(sender.batches) == 3 and sender.peak == 1
    consumer.shutdown(5)


def test_a_shutdown_deadline_never_gives_up_what_a_local_store_would_take():
    sender, ledger = LocalStore(), Ledger()
    sender.delay = 0.3
    consumer = make(sender, ledger, flush_at=1000, max_batch_size=1, flush_interval=30)
    for i in range(5):
        consumer.put(item(i))
    assert consumer.shutdown(0.1) is False  # out of time, but not out of storage
    assert wait_until(lambda: ledger.delivered() == 5, timeout=10)
    assert ledger.dropped() == {}


# --- defaults written once -------------------------------------------------------------------


def test_a_consumer_built_directly_has_the_defaults_of_a_clients():
    # The consumer's defaults are module constants that Options takes as its own.
    declared = {f.name: f.default for f in fields(Options)}
    params = inspect.signature(Consumer).parameters
    shared = [name for name in params if name in declared and name != "sender"]
    assert shared == ["flush_at", "flush_interval", "max_queue_size", "max_batch_size",
                      "max_queue_bytes", "on_full", "block_timeout", "max_concurrent_requests"]
    for name in shared:
        assert params[name].default == declared[name], name
    assert params["max_batch_size"].default == Options().max_batch_size == 2_000  # README


def test_a_clients_consumer_gets_the_options_batch_size():
    client = productos.Client("phc_test", sender=RecordingSender())
    try:
        assert client._consumer._max_batch == Options().max_batch_size
    finally:
        client.shutdown(5)
    client = productos.Client("phc_test", sender=RecordingSender(), max_batch_size=7)
    try:
        assert client._consumer._max_batch == 7
    finally:
        client.shutdown(5)


def test_overflow_policies_are_the_on_full_literal():
    assert OVERFLOW_POLICIES == typing.get_args(OnFull) == ("drop_new", "drop_old", "block")
    assert options_module.OnFull is OnFull  # Options.on_full is annotated with this one
    for policy in OVERFLOW_POLICIES:
        assert Options(on_full=policy).on_full == policy
    with pytest.raises(ValueError, match="'drop_new', 'drop_old' or 'block', not 'x'"):
        Options(on_full="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_full must be one of drop_new, drop_old, block"):
        Consumer(RecordingSender(), on_outcome=print, on_reject=print, on_full="x")
