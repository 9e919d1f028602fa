"""Sending batches of serialised events to ``/batch/``: retries, back-off, 413 splitting.

The HTTP itself is the transport's; this module decides what a failure means for the
events (retry, split, give up with a reason) and reports it as a ``BatchOutcome``.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import time
from typing import Callable, Iterator, Optional, Sequence

from productos import errors
from productos._delivery.outcome import BatchOutcome, DropReason
from productos._delivery.transport import (
    BATCH_PATH,
    MAX_RETRY_AFTER,
    RETRYABLE_STATUSES,
    Transport,
    error_for,
)
from productos._runtime.records import record

log = logging.getLogger("productos")


def equal_jitter(value: float) -> float:
    """Return a wait between half of value and value: spread out, yet never near zero."""
    import backoff  # imported at the first retry: it pulls in asyncio

    return value / 2 + backoff.full_jitter(value / 2)


@record(frozen=True)
class RetryPolicy:
    """How many times and how long to wait between attempts for transient failures."""

    max_retries: int = 5
    base: float = 1.0
    cap: float = 30.0
    jitter: Callable[[float], float] = equal_jitter

    def delays(self) -> Iterator[float]:
        """Yield the wait before each retry: exponential, jittered, capped."""
        import backoff

        waits = backoff.expo(base=2, factor=self.base, max_value=self.cap)
        next(waits)  # backoff's generators are primed with one empty step
        for _ in range(self.max_retries):
            yield min(self.cap, self.jitter(next(waits)))


def is_retryable(error: BaseException) -> bool:
    """Tell whether an attempt that failed this way is worth making again."""
    if isinstance(error, errors.APIError):
        return error.status in RETRYABLE_STATUSES or error.status >= 500
    return isinstance(error, errors.TransportError)


class BatchSender:
    """Sends serialised events to ``/batch/`` with retries, splitting on 413; never stores."""

    stores_locally = False  # every batch goes to the network (see consumer.Sender)

    def __init__(self, transport: Transport, api_key: str, *, gzip: bool = True,
                 historical_migration: bool = False,
                 retry: Optional[RetryPolicy] = None,
                 wait: Optional[Callable[[float], bool]] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.transport = transport
        self.gzip = gzip
        self.retry = retry or RetryPolicy()
        self._clock = clock
        self._cancel = threading.Event()
        # ``wait(seconds) -> cancelled``; an Event makes back-off sleeps interruptible.
        self._wait = wait or self._cancel.wait
        migration = "true" if historical_migration else "false"
        self._head = (
            f'{{"api_key":{json.dumps(api_key)},"historical_migration":{migration},"batch":['
        ).encode()

    def cancel(self) -> None:
        """Cut any back-off wait short: pending retries give up at once."""
        self._cancel.set()

    def reset_after_fork(self) -> None:
        """Start the child with a clear cancel flag and its own connections."""
        self._cancel = threading.Event()
        self.transport.reset_after_fork()

    def body(self, items: Sequence[bytes]) -> bytes:
        """Return the /batch/ request body for already-serialised events."""
        sent_at = _dt.datetime.now(_dt.timezone.utc).isoformat()
        tail = b'],"sent_at":"' + sent_at.encode() + b'"}'
        if len(items) < 2:
            return self._head + b"".join(items) + tail
        # One join copies the events once; joining them, then the envelope, copies twice.
        parts = list(items)
        parts[0] = self._head + parts[0]
        parts[-1] += tail
        return b",".join(parts)

    def send(self, items: Sequence[bytes], deadline: Optional[float] = None) -> BatchOutcome:
        """Deliver items, retrying transient failures until the policy or the deadline ends."""
        outcome = BatchOutcome()
        if not items:
            return outcome
        delays = self.retry.delays()
        while True:
            try:
                response = self.transport.post_json(BATCH_PATH, self.body(items), gzip=self.gzip)
                if response.status == 200:
                    outcome.delivered += len(items)
                    return outcome
                error: errors.TransportError = error_for(response)
            except errors.TransportError as exc:
                error = exc
            if isinstance(error, errors.APIError) and error.status == 413:
                return self._split(items, deadline, outcome, error)
            if not is_retryable(error):
                outcome.drop(DropReason.REJECTED, items, error)
                return outcome
            delay = next(delays, None)
            if delay is None:
                outcome.drop(DropReason.RETRIES_EXHAUSTED, items, error)
                return outcome
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None:
                delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
            if deadline is not None and self._clock() + delay > deadline:
                outcome.drop(DropReason.DEADLINE_EXCEEDED, items, error)
                return outcome
            log.debug("productos: batch of %d failed (%s); retrying in %.1fs",
                      len(items), error, delay)
            if self._wait(delay) or self._cancel.is_set():
                outcome.drop(DropReason.CANCELLED, items, error)
                return outcome
            outcome.retries += 1

    def _split(self, items: Sequence[bytes], deadline: Optional[float],
               outcome: BatchOutcome, error: BaseException) -> BatchOutcome:
        if len(items) == 1:
            outcome.drop(DropReason.TOO_LARGE, items, error)
            return outcome
        middle = len(items) // 2
        outcome.merge(self.send(items[:middle], deadline))
        outcome.merge(self.send(items[middle:], deadline))
        return outcome
