"""The one path every event takes, from a public call's arguments to the buffer.

check and build (the call's ``make`` function, from ``arguments``) → ``before_send`` →
serialise → size check → deliver (the consumer's ``put``, or a send in sync mode). An event
that falls out on the way is dropped through the ledger with its reason, or raised in
debug mode; nothing here raises into the application otherwise.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Union

from productos._capture.events import (
    MAX_EVENT_BYTES,
    Draft,
    EventBuilder,
    checked_hook_output,
    describe,
    dumps,
)
from productos._delivery.outcome import DropReason
from productos._runtime.ledger import Ledger
from productos.context import current_scope
from productos.errors import EventTooLargeError, UnserializableEventError

log = logging.getLogger("productos")

_getpid = os.getpid
Hook = Callable[[Dict[str, Any]], Optional[Mapping[str, Any]]]


class EventPipeline:
    """Turns public calls into serialised events and hands them on; one per client."""

    def __init__(self, builder: EventBuilder, ledger: Ledger, *, hook: Optional[Hook],
                 debug: bool, deliver: Optional[Callable[[bytes], bool]],
                 on_fork: Callable[[], None]) -> None:
        self._builder = builder
        self._ledger = ledger
        self._hook = hook
        self._debug = debug
        self._deliver = deliver  # None: send=False, events are counted and go nowhere
        self._on_fork = on_fork
        self.pid = os.getpid()  # the process whose buffer and threads these are

    def record(self, what: Any, make: Callable[..., Draft], *args: Any) -> Optional[str]:
        """Make an event with ``make(builder, scope, *args)`` and deliver it; return its uuid.

        ``what`` names the event in the drop report when the arguments cannot make one.
        Every event-making call of the client comes through here; the common case (no
        before_send hook) is kept to one serialisation and a handful of checks.
        """
        if self.pid != _getpid():
            # A fork the interpreter was not told about: uWSGI forks in C and, by default,
            # runs no at-fork hooks. The parent's thread, buffer and random ids are not ours.
            self._on_fork()
        try:
            draft = make(self._builder, current_scope(), *args)
        except Exception as exc:
            return self.reject_invalid(exc, what)
        message: Optional[Dict[str, Any]] = None
        try:
            if self._hook is None:
                item, problems = self._builder.encode(draft)
            else:
                message = self._before_send(draft, self._hook)
                if message is None:
                    return None
                item, problems = dumps(message)
        except Exception as exc:
            self._ledger.drop_one(DropReason.UNSERIALIZABLE, exc,
                                  message or self._builder.message(draft))
            return None
        if problems:
            self._report_problems(draft if message is None else message, problems)
        if len(item) > MAX_EVENT_BYTES:
            name = draft.event if message is None else message.get("event")
            too_large = EventTooLargeError(
                f"event {name!r} is {len(item)} bytes; the limit is {MAX_EVENT_BYTES}")
            self._ledger.drop_one(DropReason.TOO_LARGE, too_large,
                                  message or self._builder.message(draft))
            return None
        uuid: str = draft.uuid if message is None else message["uuid"]
        deliver = self._deliver
        if deliver is None:
            self._ledger.counters.add_dropped(DropReason.SEND_DISABLED, 1, before_queue=True)
            return uuid
        return uuid if deliver(item) else None

    def reject_invalid(self, exc: BaseException, what: Any) -> Optional[str]:
        """Account for a call whose arguments could not make an event; return None (no uuid)."""
        if self._debug:
            raise exc
        self._ledger.drop_one(DropReason.INVALID, exc, None, f"{describe(what)}: {exc}")
        return None

    def _report_problems(self, event: Union[Draft, Mapping[str, Any]],
                         problems: List[str]) -> None:
        """Say what the serialiser left out (or raise it, in debug mode)."""
        name = event.event if isinstance(event, Draft) else event.get("event")
        detail = "; ".join(problems[:5])
        if self._debug:
            raise UnserializableEventError(f"event {name!r}: {detail}")
        log.warning("productos: event %r: left out what is not JSON-safe: %s", name, detail)

    def _before_send(self, draft: Draft, hook: Hook) -> Optional[Dict[str, Any]]:
        """Return the whole event as before_send left it, or None when it is not to be sent."""
        message = self._builder.message(draft)
        changed: Any = message
        try:
            changed = hook(message)
        except Exception as exc:
            log.warning("productos: before_send raised %r; the event is kept unchanged", exc)
            self._ledger.call_on_error(exc, [message])
            changed = message  # as the hook left it, which the checks below vet
        if changed is None:
            self._ledger.counters.add_filtered()
            return None
        if not isinstance(changed, Mapping):
            log.warning("productos: before_send returned %s instead of a dict or None; "
                        "the event is kept unchanged", type(changed).__name__)
            changed = message
        try:
            # One malformed event makes the server refuse its whole batch: drop it alone.
            return checked_hook_output(changed, draft.uuid, draft.timestamp)
        except Exception as exc:
            self._ledger.drop_one(DropReason.INVALID, exc,
                                  changed if type(changed) is dict else None)
            return None
