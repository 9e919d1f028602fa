"""The public Client: captures events and hands them to the consumer.

This module wires the parts together. It holds no HTTP, hashing or thread loops: those
live in transport.py, flags.py and consumer.py.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Union

from productos import errors
from productos._capture import exception_events as exceptions
from productos._capture.events import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    EventBuilder,
    checked_hook_output,
    describe,
)
from productos._delivery.stats import DropLog, Stats
from productos._flags.definitions import Snapshot, parse_definitions
from productos._flags.poller import (
    Poller,
    SnapshotHolder,
    SourceState,
    SourceStatus,
    load_definitions_file,
    payload_for,
)
from productos._flags.remote import DefinitionsRequester, RemoteFlags, RemoteFlagsRequester
from productos._flags.service import FlagService, flags_for_event
from productos._runtime import lifecycle as _lifecycle
from productos._runtime.options import ENV_PERSONAL_API_KEY, Options, resolve_api_key, resolve_host
from productos._runtime.ratelog import RateLimitedLog
from productos.consumer import Consumer, Sender
from productos.context import current_scope
from productos.flags import EvaluationContext, FlagResult

if TYPE_CHECKING:
    from productos._delivery.spool import SpoolingSender
from productos._delivery.transport import BatchOutcome, BatchSender, RetryPolicy, Transport, redact

log = logging.getLogger("productos")

_NO_PROPERTIES: Mapping[str, Any] = MappingProxyType({})
_new_object = object.__new__

_UNSET: Any = object()


class Client:
    """Captures product events and ships them in the background.

    Public calls never raise into the application for bad data or network trouble: they
    log, count the drop, call ``on_error`` and return None. With ``debug=True`` they raise,
    so mistakes show up in development. Invalid configuration raises ``ValueError`` at once.
    """

    def __init__(self, project_api_key: Optional[str] = None, *, api_key: Optional[str] = None,
                 host: Optional[str] = None, personal_api_key: Optional[str] = None,
                 secret_key: Optional[str] = None,
                 flush_at: int = 100, flush_interval: float = 0.5,
                 max_queue_size: int = 10_000, max_batch_size: int = 2_000,
                 max_queue_bytes: Optional[int] = None, on_full: str = "drop_new",
                 block_timeout: float = 0.5, max_concurrent_requests: int = 4,
                 on_drop: Optional[Callable[[dict, str], Any]] = None,
                 spool_path: Optional[str] = None, spool_max_bytes: int = 100 * 1024 * 1024,
                 gzip: bool = True, max_retries: int = 5, retry_base_delay: float = 1.0,
                 retry_max_delay: float = 30.0, timeout: float = 15.0,
                 shutdown_timeout: float = 5.0,
                 on_error: Optional[Callable[..., Any]] = None,
                 before_send: Optional[Callable[[dict], Optional[dict]]] = None,
                 super_properties: Optional[Mapping[str, Any]] = None,
                 disabled: bool = False, send: bool = True, sync_mode: bool = False,
                 debug: bool = False, disable_geoip: bool = True,
                 historical_migration: bool = False, poll_interval: float = 30.0,
                 feature_flags_request_timeout_seconds: float = 3.0,
                 enable_local_evaluation: bool = True,
                 flag_definitions_file: Optional[str] = None,
                 flag_definitions: Optional[Mapping[str, Any]] = None,
                 flags_first_load_timeout: float = 1.0,
                 enable_exception_autocapture: bool = False,
                 project_root: Optional[str] = None,
                 sender: Optional[Sender] = None) -> None:
        key = resolve_api_key(project_api_key, api_key)
        self.options = Options(
            project_api_key=key, host=resolve_host(host),
            personal_api_key=(personal_api_key or secret_key
                              or os.environ.get(ENV_PERSONAL_API_KEY) or None),
            flush_at=flush_at, flush_interval=flush_interval, max_queue_size=max_queue_size,
            max_batch_size=max_batch_size, max_queue_bytes=max_queue_bytes, on_full=on_full,
            block_timeout=block_timeout, max_concurrent_requests=max_concurrent_requests,
            on_drop=on_drop, spool_path=None if spool_path is None else str(spool_path),
            spool_max_bytes=spool_max_bytes, gzip=gzip, max_retries=max_retries,
            retry_base_delay=retry_base_delay, retry_max_delay=retry_max_delay, timeout=timeout,
            shutdown_timeout=shutdown_timeout, on_error=on_error, before_send=before_send,
            super_properties=super_properties, disabled=disabled, send=send,
            sync_mode=sync_mode, debug=debug, disable_geoip=disable_geoip,
            historical_migration=historical_migration, poll_interval=poll_interval,
            feature_flags_request_timeout_seconds=feature_flags_request_timeout_seconds,
        ).validate()
        opts = self.options
        if debug:
            log.setLevel(logging.DEBUG)
        self.disabled = bool(disabled)
        if not key and not disabled:
            log.warning("productos: no project API key given (argument or PRODUCTOS_API_KEY); "
                        "the client is disabled and will send nothing")
            self.disabled = True
        self.stats_counters = Stats()
        self._drops = DropLog()
        self._warnings = RateLimitedLog()
        self._builder = EventBuilder(opts.disable_geoip, opts.super_properties,
                                     defer_constants=opts.before_send is None,
                                     on_invalid_uuid=self._invalid_uuid)
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False
        self.transport = Transport(opts.host, timeout=opts.timeout)
        self._sender: Sender = sender or BatchSender(
            self.transport, key, gzip=opts.gzip,
            historical_migration=opts.historical_migration,
            retry=RetryPolicy(max_retries=opts.max_retries, base=opts.retry_base_delay,
                              cap=opts.retry_max_delay))
        self._spool: Optional[SpoolingSender] = None
        if opts.spool_path and not self.disabled and opts.send:
            from productos._delivery.spool import (
                SpoolingSender,  # sqlite3 only for those who use it
            )

            self._spool = SpoolingSender(
                self._sender, opts.spool_path, max_bytes=opts.spool_max_bytes,
                max_batch_size=opts.max_batch_size, max_batch_bytes=MAX_BATCH_BYTES - 512,
                account=self._account, concurrency=opts.max_concurrent_requests,
                interval=opts.flush_interval, outage_delay=opts.retry_base_delay,
                outage_cap=opts.retry_max_delay, background=not opts.sync_mode)
            self._sender = self._spool
        self._consumer = Consumer(
            self._sender, on_outcome=self._account, on_reject=self._reject_queued,
            flush_at=opts.flush_at, flush_interval=opts.flush_interval,
            max_queue_size=opts.max_queue_size, max_batch_size=opts.max_batch_size,
            max_queue_bytes=opts.max_queue_bytes, on_full=opts.on_full,
            block_timeout=opts.block_timeout,
            max_concurrent_requests=opts.max_concurrent_requests,
            local_store=self._spool is not None and self._spool.active)
        if self._spool is not None and self._spool.pending()[1] and not opts.sync_mode:
            self._spool.delivery.start()  # an earlier run's rows go out without waiting
        self._sync_lock = threading.Lock()
        self._pid = os.getpid()
        self._project_root = project_root
        self._setup_flags(enable_local_evaluation, flag_definitions_file,
                          flags_first_load_timeout, flag_definitions)
        self._autocapture: Any = None
        if enable_exception_autocapture and not self.disabled:
            self._autocapture = exceptions.install_autocapture(self)
        _lifecycle.track(self)

    # --- events ---------------------------------------------------------------------------

    def capture(self, event: str, *, distinct_id: Any = None,
                properties: Optional[Mapping[str, Any]] = None, timestamp: Any = None,
                uuid: Any = None, groups: Optional[Mapping[str, Any]] = None,
                flags: Optional[Mapping[str, Any]] = None,
                send_feature_flags: bool = False) -> Optional[str]:
        """Queue an event; return its uuid, or None when it was not admitted.

        ``flags`` (key → value, or the results of ``get_all_flags``) attaches
        ``$feature/<key>`` and ``$active_feature_flags``; ``send_feature_flags=True`` does the
        same from local evaluation only, so capture() never waits on the network.
        """
        if self.disabled:
            return None
        try:
            if not isinstance(event, str) or not event:
                raise errors.EventError(f"event name must be a non-empty string, "
                                        f"not {describe(event)}")
            props = _check_mapping("properties", properties)
            group_map = _check_groups(groups)
            scope = current_scope()
            if flags is not None or send_feature_flags:
                props = self._with_flag_properties(
                    props, flags, _resolve_distinct_id(distinct_id, scope.distinct_id),
                    group_map)
            message = self._builder.build(
                event, _resolve_distinct_id(distinct_id, scope.distinct_id), props,
                timestamp=timestamp, uuid=uuid, groups=group_map,
                session_id=scope.session_id, tags=scope.tags)
        except Exception as exc:
            return self._reject_invalid(exc, event)
        return self._enqueue(message)

    def set(self, *, distinct_id: Any = None, properties: Optional[Mapping[str, Any]] = None,
            timestamp: Any = None, uuid: Any = None) -> Optional[str]:
        """Set person properties (``$set``); return the event uuid or None."""
        return self._person_update("$set", distinct_id, properties, timestamp, uuid)

    def set_once(self, *, distinct_id: Any = None,
                 properties: Optional[Mapping[str, Any]] = None,
                 timestamp: Any = None, uuid: Any = None) -> Optional[str]:
        """Set person properties only where not yet set (``$set_once``); return the uuid or None."""
        return self._person_update("$set_once", distinct_id, properties, timestamp, uuid)

    def alias(self, previous_id: Any, distinct_id: Any, *, timestamp: Any = None,
              uuid: Any = None) -> Optional[str]:
        """Link ``distinct_id`` (new) to ``previous_id`` (existing); return the uuid or None."""
        if self.disabled:
            return None
        try:
            previous = _required_id("previous_id", previous_id)
            new = _required_id("distinct_id", distinct_id)
            message = self._builder.build(
                "$create_alias", previous, {"distinct_id": previous, "alias": new},
                timestamp=timestamp, uuid=uuid, system=False)
        except Exception as exc:
            return self._reject_invalid(exc, "$create_alias")
        return self._enqueue(message)

    def group_identify(self, group_type: Any, group_key: Any,
                       properties: Optional[Mapping[str, Any]] = None, *,
                       timestamp: Any = None, uuid: Any = None,
                       distinct_id: Any = None) -> Optional[str]:
        """Set properties on a group (``$groupidentify``); return the uuid or None."""
        if self.disabled:
            return None
        try:
            gtype = _required_id("group_type", group_type)
            gkey = _required_id("group_key", group_key)
            props = _check_mapping("properties", properties)
            owner = _resolve_distinct_id(distinct_id, current_scope().distinct_id)
            message = self._builder.build(
                "$groupidentify", owner or f"${gtype}_{gkey}",
                {"$group_type": gtype, "$group_key": gkey, "$group_set": dict(props or {})},
                timestamp=timestamp, uuid=uuid, system=False)
        except Exception as exc:
            return self._reject_invalid(exc, "$groupidentify")
        return self._enqueue(message)

    def capture_exception(self, exc: Optional[BaseException] = None, *, distinct_id: Any = None,
                          properties: Optional[Mapping[str, Any]] = None,
                          groups: Optional[Mapping[str, Any]] = None, level: str = "error",
                          handled: bool = True, mechanism: str = "generic") -> Optional[str]:
        """Capture an ``$exception`` event (the one being handled when exc is None)."""
        if self.disabled:
            return None
        try:
            if exc is None:
                exc = sys.exc_info()[1]
                if exc is None:
                    log.debug("productos: capture_exception() called with no exception")
                    return None
            if not isinstance(exc, BaseException):
                raise errors.EventError(f"capture_exception() takes an exception, not "
                                        f"{describe(exc)}")
            if exceptions.already_captured(exc):
                return None
            props = exceptions.exception_properties(
                exc, level=level, handled=handled, mechanism_type=mechanism,
                project_root=self._project_root)
            exceptions.mark_captured(exc)
            extra = _check_mapping("properties", properties)
            if extra:
                props.update(extra)
        except Exception as error:
            return self._reject_invalid(error, "$exception")
        return self.capture("$exception", distinct_id=distinct_id, properties=props,
                            groups=groups)

    def _person_update(self, kind: str, distinct_id: Any, properties: Any, timestamp: Any,
                       uuid: Any) -> Optional[str]:
        if self.disabled:
            return None
        try:
            props = _check_mapping("properties", properties)
            owner = _resolve_distinct_id(distinct_id, current_scope().distinct_id)
            if owner is None:
                raise errors.EventError(f"{kind} needs a distinct_id (argument or context)")
            message = self._builder.build(kind, owner, None, timestamp=timestamp, uuid=uuid,
                                          system=False, top_level={kind: dict(props or {})})
        except Exception as exc:
            return self._reject_invalid(exc, kind)
        return self._enqueue(message)

    def _invalid_uuid(self, event: str, given: Any) -> None:
        """Report a caller's uuid that is not a UUID (a new one replaces it)."""
        self._warnings.warn("invalid uuid= arguments replaced",
                            "productos: event %r: uuid=%s is not a valid UUID; a new one was "
                            "generated", event, describe(given))

    def _enqueue(self, message: Dict[str, Any]) -> Optional[str]:
        """Run before_send, serialise, size-check and queue (or send, in sync mode)."""
        hook = self.options.before_send
        if hook is not None:
            built_uuid, built_time = message["uuid"], message["timestamp"]
            changed: Any = message
            try:
                changed = hook(message)
            except Exception as exc:
                log.warning("productos: before_send raised %r; the event is kept unchanged", exc)
                self._call_on_error(exc, [message])
                changed = message  # as the hook left it, which the checks below vet
            if changed is None:
                self.stats_counters.add_filtered()
                return None
            if not isinstance(changed, Mapping):
                log.warning("productos: before_send returned %s instead of a dict or None; "
                            "the event is kept unchanged", type(changed).__name__)
                changed = message
            try:
                # One malformed event makes the server refuse its whole batch: drop it alone.
                message = checked_hook_output(changed, built_uuid, built_time)
            except Exception as exc:
                self._drop_one("invalid", exc, changed if type(changed) is dict else None)
                return None
        try:
            item, problems = self._builder.encode(message)
        except Exception as exc:
            self._drop_one("unserializable", exc, message)
            return None
        if problems:
            detail = "; ".join(problems[:5])
            if self.options.debug:
                raise errors.UnserializableEventError(f"event {message.get('event')!r}: {detail}")
            log.warning("productos: event %r: left out what is not JSON-safe: %s",
                        message.get("event"), detail)
        if len(item) > MAX_EVENT_BYTES:
            too_large = errors.EventTooLargeError(
                f"event {message.get('event')!r} is {len(item)} bytes; the limit is "
                f"{MAX_EVENT_BYTES}")
            self._drop_one("too_large", too_large, message)
            return None
        uuid: str = message["uuid"]
        if not self.options.send:
            self.stats_counters.add_dropped("send_disabled", 1, before_queue=True)
            return uuid
        if self._pid != os.getpid():
            # A fork the interpreter was not told about: uWSGI forks in C and, by default,
            # runs no at-fork hooks. The parent's thread and buffer are not ours to use.
            self._reset_after_fork()
        if self.options.sync_mode:
            return uuid if self._send_now(item) else None
        return uuid if self._consumer.put(item) else None

    def _send_now(self, item: bytes) -> bool:
        if self._is_shut_down:
            self._reject_queued("after_shutdown", item)
            return False
        deadline = time.monotonic() + self.options.timeout * 2
        spool = self._spool
        self.stats_counters.add_direct()
        with self._sync_lock:
            outcome = self._sender.send([item], deadline)
            stored = spool is not None and spool.active and not outcome.failures
            if spool is not None and stored:
                # On disk: deliver it (and any older rows) before returning. Delivery
                # accounts for itself; callbacks it runs see the lock released.
                spool.delivery.deliver_now(deadline)
        self._account(outcome)
        return stored or outcome.delivered == 1

    # --- feature flags --------------------------------------------------------------------

    def _setup_flags(self, enable_local_evaluation: bool, definitions_file: Optional[str],
                     first_load_timeout: float,
                     definitions: Optional[Mapping[str, Any]] = None) -> None:
        opts = self.options
        self._definitions: SnapshotHolder[Snapshot] = SnapshotHolder(Snapshot.empty())
        self._definitions_file = definitions_file
        self._poller: Optional[Poller[Snapshot]] = None
        self._remote: Optional[RemoteFlagsRequester] = None
        wait_ready: Callable[[float], bool] = _always_ready
        if definitions_file is not None and definitions is not None:
            raise errors.ConfigurationError(
                "give flag_definitions_file or flag_definitions, not both")
        if definitions_file is not None:
            # Offline mode: definitions from a file, never polled, no remote calls.
            self._definitions.swap(load_definitions_file(definitions_file))
        elif definitions is not None:
            # Offline mode too, from a mapping (tests, generated configuration).
            self._definitions.swap(_parse_given_definitions(definitions))
        else:
            if not self.disabled:
                self._remote = RemoteFlagsRequester(
                    self.transport, opts.project_api_key,
                    timeout=opts.feature_flags_request_timeout_seconds,
                    disable_geoip=opts.disable_geoip)
            if opts.personal_api_key and enable_local_evaluation and not self.disabled:
                requester = DefinitionsRequester(self.transport, opts.project_api_key,
                                                 opts.personal_api_key)
                self._poller = Poller(requester.fetch, parse_definitions, self._definitions,
                                      Snapshot.empty(), interval=opts.poll_interval)
                self._poller.start()
                wait_ready = self._poller.wait_ready
        self._flags = FlagService(
            snapshot=self._definitions.get,
            remote=None if self._remote is None else self._ask_server,
            emit_called=self._emit_flag_called, wait_ready=wait_ready,
            first_load_timeout=first_load_timeout)

    def _ask_server(self, ctx: EvaluationContext, keys: Optional[Sequence[str]]) -> RemoteFlags:
        assert self._remote is not None
        return self._remote.evaluate(
            ctx.distinct_id, groups=ctx.groups, person_properties=ctx.person_properties,
            group_properties=ctx.group_properties, device_id=ctx.device_id, keys=keys)

    def _emit_flag_called(self, distinct_id: str, properties: Dict[str, Any],
                          groups: Mapping[str, str]) -> None:
        self.capture("$feature_flag_called", distinct_id=distinct_id, properties=properties,
                     groups=groups or None)

    def _flag_context(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
                      group_properties: Any, device_id: Any) -> EvaluationContext:
        if key is not None and (type(key) is not str or not key):
            raise errors.EventError(f"a flag key must be a non-empty string, not "
                                    f"{describe(key)}")
        if type(distinct_id) is str and distinct_id:  # the common case, without the context
            owner: Optional[str] = distinct_id
        else:
            owner = _resolve_distinct_id(distinct_id, current_scope().distinct_id)
            if owner is None:
                raise errors.EventError("a distinct_id (argument or context) is needed for flags")
        if self._pid != os.getpid():
            self._reset_after_fork()  # see _enqueue: a fork nobody announced
        poller = self._poller
        if poller is not None and poller.needs_start:
            poller.start()  # a forked child polls on its own thread
        # The evaluator only reads these mappings, so plain dicts are passed through as they are.
        if groups is None:
            group_map: Mapping[str, str] = _NO_PROPERTIES
        elif type(groups) is dict and all(
                type(k) is str and type(v) is str for k, v in groups.items()):
            group_map = groups
        else:
            group_map = _check_groups(groups) or _NO_PROPERTIES
        if person_properties is None:
            person_properties = _NO_PROPERTIES
        elif type(person_properties) is not dict:
            person_properties = _check_mapping("person_properties", person_properties)
        if group_properties is None:
            gprops: Mapping[str, Mapping[str, Any]] = _NO_PROPERTIES
        else:
            gprops = {str(k): _check_mapping("group_properties", v) or _NO_PROPERTIES
                      for k, v in (_check_mapping("group_properties", group_properties)
                                   or {}).items()}
        context = _new_object(EvaluationContext)
        # A frozen dataclass's __init__ costs one object.__setattr__ per field; this runs on
        # every flag read, so the instance dict is filled in one step (no __post_init__).
        context.__dict__.update(
            distinct_id=owner, groups=group_map, person_properties=person_properties,
            group_properties=gprops,
            device_id=None if device_id is None else _to_id(device_id), now=None)
        return context

    def _flag_failed(self, exc: Exception, what: str) -> None:
        if self.options.debug:
            raise exc
        self._warnings.warn(f"failed flag reads ({type(exc).__name__})",
                            "productos: %s failed: %s", what, redact(str(exc)))
        self._call_on_error(exc, [])

    def get_feature_flag_result(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                                person_properties: Any = None, group_properties: Any = None,
                                device_id: Any = None, only_evaluate_locally: bool = False,
                                send_feature_flag_events: bool = True
                                ) -> Optional[FlagResult]:
        """Evaluate one flag and return the full result: value, variant, payload and reason."""
        return self._flag_result(key, distinct_id, groups, person_properties, group_properties,
                                 device_id, only_evaluate_locally, send_feature_flag_events,
                                 True)

    def _flag_result(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
                     group_properties: Any, device_id: Any, only_local: bool, send_event: bool,
                     detail: bool) -> Optional[FlagResult]:
        if self.disabled:
            return None
        try:
            if key is None:  # _flag_context lets None through: it means "all flags" there
                raise errors.EventError("a flag key is required")
            ctx = self._flag_context(key, distinct_id, groups, person_properties,
                                     group_properties, device_id)
            return self._flags.result(key, ctx, only_local=only_local, send_event=send_event,
                                      detail=detail)
        except Exception as exc:
            self._flag_failed(exc, f"evaluating flag {describe(key)}")
            return None

    def get_feature_flag(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                         person_properties: Any = None, group_properties: Any = None,
                         device_id: Any = None, only_evaluate_locally: bool = False,
                         send_feature_flag_events: bool = True) -> Union[bool, str, None]:
        """Return a flag's value: True/False, the variant key, or None when unknown."""
        result = self._flag_result(key, distinct_id, groups, person_properties,
                                   group_properties, device_id, only_evaluate_locally,
                                   send_feature_flag_events, False)
        return None if result is None else result.value

    def feature_enabled(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                        person_properties: Any = None, group_properties: Any = None,
                        device_id: Any = None, only_evaluate_locally: bool = False,
                        send_feature_flag_events: bool = True) -> Optional[bool]:
        """Return whether a flag is on for this person (None when it cannot be known)."""
        result = self._flag_result(key, distinct_id, groups, person_properties,
                                   group_properties, device_id, only_evaluate_locally,
                                   send_feature_flag_events, False)
        value = None if result is None else result.value
        return None if value is None else bool(value)

    def get_feature_flag_payload(self, key: str, distinct_id: Any = None, *,
                                 match_value: Any = None, **kwargs: Any) -> Any:
        """Return the decoded payload of the flag's value for this person, if any."""
        if match_value is not None and type(key) is str:
            # A key of another type goes the normal way below, which reports it.
            try:
                payload = payload_for(self._definitions.get(), key, match_value)
            except Exception as exc:
                self._flag_failed(exc, f"reading the payload of flag {describe(key)}")
                return None
            if payload is not None:
                return payload
        kwargs.setdefault("send_feature_flag_events", False)
        result = self.get_feature_flag_result(key, distinct_id, **kwargs)
        return None if result is None else result.payload

    def get_all_flags_results(self, distinct_id: Any = None, *, groups: Any = None,
                              person_properties: Any = None, group_properties: Any = None,
                              device_id: Any = None, only_evaluate_locally: bool = False
                              ) -> Optional[Dict[str, FlagResult]]:
        """Evaluate every flag (at most one remote request) and return the full results."""
        if self.disabled:
            return None
        try:
            ctx = self._flag_context(None, distinct_id, groups, person_properties,
                                     group_properties, device_id)
            return self._flags.all_results(ctx, only_local=only_evaluate_locally)
        except Exception as exc:
            self._flag_failed(exc, "evaluating all flags")
            return None

    def get_all_flags(self, distinct_id: Any = None, *, groups: Any = None,
                      person_properties: Any = None, group_properties: Any = None,
                      device_id: Any = None, only_evaluate_locally: bool = False
                      ) -> Optional[Dict[str, Union[bool, str]]]:
        """Return every flag's known value for this person (at most one remote request)."""
        if self.disabled:
            return None
        try:
            ctx = self._flag_context(None, distinct_id, groups, person_properties,
                                     group_properties, device_id)
            values = self._flags.all_values(ctx, only_local=only_evaluate_locally)
        except Exception as exc:
            self._flag_failed(exc, "evaluating all flags")
            return None
        return {key: value for key, value in values.items() if value is not None}

    def get_all_flags_and_payloads(self, distinct_id: Any = None, **kwargs: Any
                                   ) -> Dict[str, Dict[str, Any]]:
        """Return ``{"featureFlags": {...}, "featureFlagPayloads": {...}}`` for this person."""
        results = self.get_all_flags_results(distinct_id, **kwargs) or {}
        return {
            "featureFlags": {k: r.value for k, r in results.items() if r.value is not None},
            "featureFlagPayloads": {k: r.payload for k, r in results.items()
                                    if r.payload is not None and r.value},
        }

    def load_feature_flags(self) -> bool:
        """Fetch definitions now (or re-read the file); return True if they are loaded."""
        try:
            if self._definitions_file is not None:
                self._definitions.swap(load_definitions_file(self._definitions_file))
                return True
            if self._poller is None:
                log.warning("productos: load_feature_flags() needs personal_api_key")
                return False
            return self._poller.poll_once().state is SourceState.VALID
        except Exception as exc:
            self._flag_failed(exc, "loading flag definitions")
            return False

    def set_flag_definitions(self, definitions: Mapping[str, Any]) -> None:
        """Replace the definitions in force (with a poller running, its next fetch wins)."""
        self._definitions.swap(_parse_given_definitions(definitions))

    def feature_flag_definitions(self) -> Optional[Mapping[str, Any]]:
        """Return the raw definitions in force (None before the first load)."""
        snap = self._definitions.get()
        return snap.raw if snap.loaded else None

    def flag_definitions_status(self) -> Optional[SourceStatus]:
        """Return the state of the definitions poller (None when there is none)."""
        return None if self._poller is None else self._poller.status

    def _with_flag_properties(self, props: Optional[Mapping[str, Any]], flags: Any,
                              distinct_id: Optional[str],
                              groups: Optional[Mapping[str, str]]) -> Dict[str, Any]:
        if flags is None:
            if distinct_id is None:
                return dict(props or {})
            values = self.get_all_flags(distinct_id, groups=groups,
                                        only_evaluate_locally=True) or {}
        else:
            given = _check_mapping("flags", flags) or {}
            values = {str(k): (v.value if isinstance(v, FlagResult) else v)
                      for k, v in given.items()}
        merged, active = flags_for_event(values)
        merged["$active_feature_flags"] = active
        merged.update(props or {})
        return merged

    # --- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = 10.0) -> bool:
        """Send everything queued so far; return True if it all settled within timeout.

        With a spool, settled means delivered (or dropped for a reason): events that wait
        on disk through an outage make flush return False. Called from an ``on_error`` or
        ``on_drop`` callback (which run on the delivery threads) it returns False at once.
        """
        timeout = _timeout_arg(timeout, 10.0)
        if self.disabled:
            return True
        try:
            if self._on_delivery_thread():
                log.debug("productos: flush() called from a delivery callback returns at once")
                return False
            deadline = None if timeout is None else time.monotonic() + timeout
            done = self._consumer.flush(timeout)
            spool = self._spool
            if spool is not None and spool.active:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                done = spool.delivery.flush(left) and done
            return done
        except Exception as exc:  # never raise into the app
            log.exception("productos: flush failed")
            self._call_on_error(exc, [])
            return False

    def _on_delivery_thread(self) -> bool:
        spool = self._spool
        return self._consumer.on_worker_thread() or (
            spool is not None and spool.delivery.on_own_thread())

    def shutdown(self, timeout: Optional[float] = 10.0) -> bool:
        """Flush within timeout and stop the background thread; later events are refused."""
        timeout = _timeout_arg(timeout, 10.0)
        with self._shutdown_lock:
            if self._is_shut_down:
                return self._consumer.queued == 0
            self._is_shut_down = True
        _lifecycle.untrack(self)
        if self._autocapture is not None:
            self._autocapture.uninstall()
        if self._poller is not None:
            self._poller.stop()
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            done = self._consumer.shutdown(timeout)
        except Exception as exc:
            log.exception("productos: shutdown failed")
            self._call_on_error(exc, [])
            done = False
        spool = self._spool
        if spool is not None and spool.delivery.on_own_thread():
            # From a callback on the delivery thread: it cannot wait for itself. It stops
            # after this pass and closes the spool; what is left waits for the next run.
            spool.delivery.stop_soon()
            return False
        if spool is not None:
            try:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if spool.active:
                    done = spool.delivery.shutdown(left) and done
            except Exception as exc:
                log.exception("productos: shutdown of the spool delivery failed")
                self._call_on_error(exc, [])
                done = False
        self._drops.flush()
        self._warnings.flush()
        if self._remote is not None:
            self._remote.failures.flush()
        if not done:
            left_over = self._consumer.queued + self._consumer.in_flight
            if left_over and not _lifecycle.reports_leftovers():  # the exit drain sums them
                log.warning("productos: shutdown timed out with %d event(s) not yet sent",
                            left_over)
        if spool is not None:
            mine, earlier = spool.pending()
            if mine or earlier:
                log.warning("productos: %d event(s) wait in the spool %s for the next run",
                            mine + earlier, self.options.spool_path)
            spool.close()
        self.transport.close()
        return done

    close = shutdown

    def join(self) -> None:
        """Wait for queued events to be sent (PostHog-compatible name for flush).

        From an ``on_error``/``on_drop`` callback it returns at once (see ``flush``).
        """
        self.flush(None)

    def _shutdown_at_exit(self) -> None:
        # Always: a batch in flight or waiting to retry is as unsent as a queued one.
        if not self._is_shut_down:
            self.shutdown(self.options.shutdown_timeout)

    def _reset_after_fork(self) -> None:
        # Every lock the child can touch is new: another thread of the parent may have held
        # any of them at the moment of fork. The counters start at zero: the parent's
        # events are the parent's, in the books as in the buffer.
        self._pid = os.getpid()
        self.stats_counters = Stats()
        self._drops = DropLog()
        self._consumer.reinit_after_fork()
        if self._poller is not None:
            self._poller.reset_after_fork()
        self._flags.deduper.reset()
        self._sync_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        if self._autocapture is not None:
            self._autocapture.reset_after_fork()
        if self._spool is not None:
            self._consumer.set_local_store(self._spool.active)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def stats(self) -> Dict[str, Any]:
        """Return the delivery counters: captured, queued, in flight, sent, dropped by reason.

        ``captured == sent + queued + in_flight + spooled + dropped_total + filtered`` once
        the client is idle. Rows that earlier runs left in the spool are not this run's:
        they are reported apart (``spool_from_earlier_runs``, ``recovered``,
        ``earlier_runs_dropped``).
        """
        spool = self._spool
        if spool is None:
            return self._books(0, 0, None)
        with spool.books:  # no row is between "deleted" and "counted" while we read
            mine, earlier = spool.pending()
            return self._books(mine, earlier, spool)

    def _books(self, spooled: int, earlier: int, spool: Optional[SpoolingSender]
               ) -> Dict[str, Any]:
        c = self.stats_counters
        consumer = self._consumer
        queued = consumer.queued
        in_flight = consumer.in_flight
        dropped = dict(c.dropped)
        captured = (consumer.taken + queued + c.rejected_before_queue + c.filtered
                    + c.sent_directly)
        return {
            "captured": captured,
            "queued": queued,
            "in_flight": in_flight,
            "sent": c.sent,
            "delivered": c.sent,
            "retried": c.retried,
            "filtered": c.filtered,
            "spooled": spooled,
            "spool_from_earlier_runs": earlier,
            "recovered": 0 if spool is None else spool.earlier.recovered,
            "earlier_runs_dropped": {} if spool is None else dict(spool.earlier.dropped),
            "dropped": dropped,
            "dropped_total": sum(dropped.values()),
        }

    # --- accounting ---------------------------------------------------------------------

    def _account(self, outcome: BatchOutcome) -> None:
        """Fold one batch's outcome into the counters, the log and on_error."""
        if outcome.delivered or outcome.retries:
            self.stats_counters.add_sent(outcome.delivered, outcome.retries)
        for reason, count in outcome.dropped.items():
            self.stats_counters.add_dropped(reason, count)
        for reason, error, items in outcome.failures:
            self._drops.record(reason, len(items), redact(str(error)))
            self._call_on_error(error, items)
            self._call_on_drop(items, reason)

    def _reject_queued(self, reason: str, item: bytes) -> None:
        """Account for a serialised event the consumer refused."""
        self.stats_counters.add_dropped(reason, 1, before_queue=True)
        exc: errors.ProductosError = (errors.QueueFullError("the event buffer is full")
                                      if reason == "queue_full"
                                      else errors.ClientShutdownError("the client is shut down"))
        self._drops.record(reason, 1, str(exc))
        self._call_on_error(exc, [item])
        self._call_on_drop([item], reason)

    def _reject_invalid(self, exc: BaseException, event: Any) -> Optional[str]:
        """Account for a call whose arguments could not make an event; return None (no uuid)."""
        if self.options.debug:
            raise exc
        self._drop_one("invalid", exc, None, f"{describe(event)}: {exc}")
        return None

    def _drop_one(self, reason: str, exc: BaseException, message: Optional[dict],
                  detail: Optional[str] = None) -> None:
        if self.options.debug and not isinstance(exc, errors.EventTooLargeError):
            raise exc
        self.stats_counters.add_dropped(reason, 1, before_queue=True)
        self._drops.record(reason, 1, redact(detail or str(exc)))
        whole = [] if message is None else [self._builder.complete(message)]
        self._call_on_error(exc, whole)
        self._call_on_drop(whole or [{}], reason)

    def _call_on_drop(self, items: Sequence[Any], reason: str) -> None:
        callback = self.options.on_drop
        if callback is None:
            return
        for item in items:
            try:
                callback(_as_message(item), reason)
            except Exception:
                log.exception("productos: on_drop callback raised")
                return

    def _call_on_error(self, exc: BaseException, batch: Sequence[Any]) -> None:
        callback = self.options.on_error
        if callback is None:
            return
        try:
            callback(exc, [_as_message(item) for item in batch])
        except Exception:
            log.exception("productos: on_error callback raised")

    def _capture_scope_exception(self, exc: BaseException) -> None:
        """Report an exception leaving a new_context() scope that asked for it."""
        if self._autocapture is not None:
            self.capture_exception(exc, mechanism="context")


# --- argument checks (pure helpers) ---------------------------------------------------------


def _to_id(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, _NOT_IDS) or value is None:
        # str() of these makes a string, but never the id the caller meant.
        raise errors.EventError(f"an id must be a string or number, not {describe(value)}")
    text = str(value)
    if not isinstance(text, str):
        raise errors.EventError("an id's str() did not return a string")
    return text


_NOT_IDS = (bool, bytes, bytearray, memoryview, Mapping, list, tuple, set, frozenset)


def _resolve_distinct_id(value: Any, from_context: Optional[str]) -> Optional[str]:
    if type(value) is str and value:
        return value
    if value is None or value == "":
        return from_context
    return _to_id(value)


def _required_id(name: str, value: Any) -> str:
    if value is None or value == "":
        raise errors.EventError(f"{name} is required")
    return _to_id(value)


def _check_mapping(name: str, value: Any) -> Optional[Mapping[str, Any]]:
    if value is None or type(value) is dict:  # the common cases, without an ABC check
        return value
    if not isinstance(value, Mapping):
        raise errors.EventError(f"{name} must be a mapping, not {type(value).__name__}")
    return value


def _check_groups(value: Any) -> Optional[Dict[str, str]]:
    if value is None:
        return None
    groups = _check_mapping("groups", value)
    if not groups:
        return None
    return {_to_id(k): _to_id(v) for k, v in groups.items()}


def _timeout_arg(value: Any, default: Optional[float]) -> Optional[float]:
    """Return a usable timeout for flush()/shutdown(): None waits for good, bad means default."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int past float range: as good as forever
            return threading.TIMEOUT_MAX
        if seconds != seconds:  # NaN
            return default
        return min(max(0.0, seconds), threading.TIMEOUT_MAX)
    log.warning("productos: timeout=%s is not a number of seconds; %s is used instead",
                describe(value), default)
    return default


def _as_message(item: Any) -> Any:
    if isinstance(item, (bytes, bytearray)):
        try:
            return json.loads(item)
        except ValueError:
            return item
    return item


def _always_ready(timeout: float) -> bool:
    """Definitions that never load over the network are ready at once."""
    return True


def _parse_given_definitions(definitions: Any) -> Snapshot:
    """Parse definitions handed over in code; a wrong shape is a configuration error."""
    if not isinstance(definitions, Mapping) or not isinstance(definitions.get("flags"), list):
        raise errors.ConfigurationError(
            "flag definitions must be a mapping with a 'flags' list (the body of the "
            "definitions endpoint)")
    return parse_definitions(definitions)
