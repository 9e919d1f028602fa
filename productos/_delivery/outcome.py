"""What becomes of events handed to a sender: the reasons one is dropped, and a batch's outcome.

Both the consumer and the senders (the HTTP batch sender, the spool) speak in these terms,
so neither has to import the other.
"""

from __future__ import annotations

import enum
from dataclasses import field
from typing import Dict, List, Sequence, Tuple

from productos._runtime.records import record


class DropReason(str, enum.Enum):
    """Why an event was given up; the value is the key in ``stats()["dropped"]``."""

    INVALID = "invalid"                      # bad arguments: no event name, properties not a dict
    UNSERIALIZABLE = "unserializable"        # nothing JSON could be made of the event
    TOO_LARGE = "too_large"                  # over 900 KiB, or alone in a batch refused as too big
    QUEUE_FULL = "queue_full"                # the buffer was full
    AFTER_SHUTDOWN = "after_shutdown"        # captured after shutdown()
    REJECTED = "rejected"                    # the server answered a final 4xx
    RETRIES_EXHAUSTED = "retries_exhausted"  # transient failures outlasted the retry policy
    DEADLINE_EXCEEDED = "deadline_exceeded"  # a flush/shutdown deadline ended the retries
    SHUTDOWN_TIMEOUT = "shutdown_timeout"    # still queued when shutdown's time ran out
    CANCELLED = "cancelled"                  # retries abandoned by shutdown
    SEND_DISABLED = "send_disabled"          # send=False: accepted, counted, never sent
    SPOOL_FULL = "spool_full"                # oldest spooled events, evicted for spool_max_bytes
    INTERNAL_ERROR = "internal_error"        # a bug in productos; reported, never raised

    def __str__(self) -> str:
        # The plain value, so log lines and f-strings read "queue_full" on every Python.
        return self.value


@record
class BatchOutcome:
    """What became of the events in one batch handed to a sender."""

    delivered: int = 0
    retries: int = 0
    dropped: Dict[DropReason, int] = field(default_factory=dict)
    # (reason, error, items) for on_error and on_drop
    failures: List[Tuple[DropReason, BaseException, List[bytes]]] = field(default_factory=list)

    def drop(self, reason: DropReason, items: Sequence[bytes], error: BaseException) -> None:
        """Record that items were given up for reason."""
        self.dropped[reason] = self.dropped.get(reason, 0) + len(items)
        self.failures.append((reason, error, list(items)))

    def merge(self, other: BatchOutcome) -> None:
        """Fold another outcome into this one."""
        self.delivered += other.delivered
        self.retries += other.retries
        for reason, count in other.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + count
        self.failures.extend(other.failures)
