"""The books of one client: what became of each event, counted, logged and reported.

Every event the client does not deliver passes through here once: it is counted by reason
(``Stats``), logged once per reason and then summarised (``DropLog``), and handed to the
user's ``on_error`` and ``on_drop`` callbacks, whose own exceptions are logged and go no
further. ``report()`` turns the counters into ``Client.stats()``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, TypedDict

from productos import errors
from productos._delivery.outcome import BatchOutcome, DropReason
from productos._delivery.stats import DropLog, Stats
from productos._delivery.transport import redact
from productos._runtime.ratelog import RateLimitedLog

log = logging.getLogger("productos")


class DeliveryStats(TypedDict):
    """What ``Client.stats()`` returns.

    ``captured == sent + queued + in_flight + spooled + dropped_total + filtered`` once the
    client is idle. Rows that earlier runs left in the spool are reported apart.
    """

    captured: int  # every call that was meant to make an event, since the client started
    queued: int  # waiting in the buffer
    in_flight: int  # handed to the sender, outcome not yet known
    sent: int  # accepted by the server
    retried: int  # retries it took
    filtered: int  # dropped on purpose by before_send
    spooled: int  # this run's events waiting on disk
    spool_from_earlier_runs: int  # earlier runs' events still on disk
    recovered: int  # earlier runs' events delivered by this run
    earlier_runs_dropped: Dict[str, int]  # earlier runs' events given up, by reason
    dropped: Dict[str, int]  # this run's events given up, by reason (DropReason values)
    dropped_total: int


class Ledger:
    """Counts, logs and reports every event a client does not deliver."""

    def __init__(self, on_error: Optional[Callable[..., Any]],
                 on_drop: Optional[Callable[[Any, DropReason], Any]], debug: bool) -> None:
        self._on_error = on_error
        self._on_drop = on_drop
        self._debug = debug
        self.counters = Stats()
        self._drops = DropLog()
        self.warnings = RateLimitedLog()  # repeated warnings that are not drops

    def account(self, outcome: BatchOutcome) -> None:
        """Fold one batch's outcome into the counters, the log and the callbacks."""
        if outcome.delivered or outcome.retries:
            self.counters.add_sent(outcome.delivered, outcome.retries)
        for reason, count in outcome.dropped.items():
            self.counters.add_dropped(reason, count)
        for reason, error, items in outcome.failures:
            self._drops.record(reason, len(items), redact(str(error)))
            self.call_on_error(error, items)
            self.call_on_drop(items, reason)

    def refused(self, reason: DropReason, item: bytes) -> None:
        """Account for a serialised event the buffer refused (full, or after shutdown)."""
        self.counters.add_dropped(reason, 1, before_queue=True)
        exc: errors.ProductosError = (errors.QueueFullError("the event buffer is full")
                                      if reason == DropReason.QUEUE_FULL
                                      else errors.ClientShutdownError("the client is shut down"))
        self._drops.record(reason, 1, str(exc))
        self.call_on_error(exc, [item])
        self.call_on_drop([item], reason)

    def drop_one(self, reason: DropReason, exc: BaseException,
                 message: Optional[Mapping[str, Any]], detail: Optional[str] = None) -> None:
        """Account for one event given up before the buffer; in debug mode, raise exc instead.

        An event too large is dropped even in debug mode: it is the data, not the code.
        """
        if self._debug and not isinstance(exc, errors.EventTooLargeError):
            raise exc
        self.counters.add_dropped(reason, 1, before_queue=True)
        self._drops.record(reason, 1, redact(detail or str(exc)))
        whole = [] if message is None else [message]
        self.call_on_error(exc, whole)
        self.call_on_drop(whole or [{}], reason)

    def call_on_drop(self, items: Sequence[Any], reason: DropReason) -> None:
        """Hand each dropped event (decoded) and the reason to on_drop; never raise."""
        callback = self._on_drop
        if callback is None:
            return
        for item in items:
            try:
                callback(_as_message(item), reason)
            except Exception:
                log.exception("productos: on_drop callback raised")
                return

    def call_on_error(self, exc: BaseException, batch: Sequence[Any]) -> None:
        """Hand an error and the events it concerns (decoded) to on_error; never raise."""
        callback = self._on_error
        if callback is None:
            return
        try:
            callback(exc, [_as_message(item) for item in batch])
        except Exception:
            log.exception("productos: on_error callback raised")

    def report(self, queued: int, in_flight: int, taken: int, spooled: int = 0,
               earlier: int = 0, recovered: int = 0,
               earlier_dropped: Optional[Mapping[str, int]] = None) -> DeliveryStats:
        """Return the stats, given what the buffer and the spool hold now."""
        c = self.counters
        dropped = dict(c.dropped)
        return {
            "captured": taken + queued + c.rejected_before_queue + c.filtered + c.sent_directly,
            "queued": queued,
            "in_flight": in_flight,
            "sent": c.sent,
            "retried": c.retried,
            "filtered": c.filtered,
            "spooled": spooled,
            "spool_from_earlier_runs": earlier,
            "recovered": recovered,
            "earlier_runs_dropped": dict(earlier_dropped or {}),
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
        }

    def flush_logs(self) -> None:
        """Log the summaries still pending (at shutdown), so no count goes unreported."""
        self._drops.flush()
        self.warnings.flush()

    def reset_after_fork(self) -> None:
        """Start a forked child's books at zero: the parent's events are the parent's."""
        self.counters = Stats()
        self._drops = DropLog()


def _as_message(item: Any) -> Any:
    """Return a serialised event decoded for a callback (other items as they are)."""
    if isinstance(item, (bytes, bytearray)):
        try:
            return json.loads(item)
        except ValueError:
            return item
    return item

