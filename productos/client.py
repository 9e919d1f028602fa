"""The public Client: the face of productos, and the wiring of its parts.

Every event-making call takes one path, ``_capture.pipeline``: its arguments are checked and
made into an event (``_capture.arguments``), then ``before_send`` runs, the event is serialised,
size-checked and handed to the consumer (or sent, in sync mode). The consumer and senders
deliver, the flag service evaluates, the ledger keeps the books; this module builds them
from the options and connects them.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Mapping,
    Optional,
    Sequence,
    Union,
    cast,
)

from productos._capture import arguments, ids
from productos._capture import exception_events as exceptions
from productos._capture.arguments import timeout_arg
from productos._capture.events import MAX_BATCH_BYTES, EventBuilder, describe
from productos._capture.pipeline import EventPipeline
from productos._delivery.batch_sender import BatchSender, RetryPolicy
from productos._delivery.outcome import DropReason
from productos._delivery.transport import Transport, redact
from productos._flags.arguments import flag_values, parse_given_definitions
from productos._flags.called_events import flags_for_event
from productos._flags.definitions_setup import definitions_poller, file_poller, load_compiler
from productos._flags.definitions_setup import describe as describe_source
from productos._flags.evaluations import FeatureFlagEvaluations
from productos._flags.hooked import HookedFlags
from productos._flags.listeners import FlagsChanged, FlagsChangedListeners
from productos._flags.poller import Poller, SnapshotHolder, SourceState, SourceStatus
from productos._flags.queries import FlagQueries
from productos._flags.remote import RemoteFlags, RemoteFlagsRequester
from productos._flags.service import FlagService
from productos._flags.shapes import (
    capture_flag_properties,
    send_flags_options,
)
from productos._flags.source import load_definitions_file
from productos._runtime import compat as _compat
from productos._runtime import lifecycle as _lifecycle
from productos._runtime.ledger import DeliveryStats, Ledger
from productos._runtime.options import Options, takes_options
from productos.consumer import Consumer, Sender
from productos.context import ContextMethods
from productos.flags import EvaluationContext, Snapshot
from productos.types import ExceptionArg

if TYPE_CHECKING:
    from productos._delivery.spool import SpoolingSender

log = logging.getLogger("productos")


class Client(ContextMethods, FlagQueries):
    """Captures product events and ships them in the background; evaluates feature flags.

    ``Client(...)`` takes the settings declared by :class:`productos.Options` (by keyword, or
    positionally in PostHog's order). Public calls never raise into the application for bad
    data or network trouble: they log, count the drop, call ``on_error`` and return None.
    With ``debug=True`` they raise, so mistakes show up in development. Invalid configuration
    raises ``ValueError`` at once.
    """

    options: Options
    disabled: bool

    @takes_options
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        opts = self.options = Options.from_call(args, kwargs)
        if opts.debug:
            log.setLevel(logging.DEBUG)
        self.disabled = bool(opts.disabled)
        if not opts.project_api_key and not opts.disabled:
            log.warning("productos: no project API key given (argument or PRODUCTOS_API_KEY); "
                        "the client is disabled and will send nothing")
            self.disabled = True
        key = opts.project_api_key or ""
        self._ledger = Ledger(opts.on_error, opts.on_drop, opts.debug)
        hook = (_compat.privacy_filtered(opts.before_send) if opts.privacy_mode
                else opts.before_send)
        concurrency = _compat.concurrency(opts)
        self._builder = EventBuilder(opts.disable_geoip, opts.super_properties,
                                     defer_constants=hook is None,
                                     on_invalid_uuid=self._invalid_uuid)
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False
        self.transport = Transport(opts.host, timeout=opts.timeout)
        self._sender: Sender = opts.sender or BatchSender(
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
                self._sender, str(opts.spool_path), max_bytes=opts.spool_max_bytes,
                max_batch_size=opts.max_batch_size, max_batch_bytes=MAX_BATCH_BYTES - 512,
                account=self._ledger.account, concurrency=concurrency,
                interval=opts.flush_interval, outage_delay=opts.retry_base_delay,
                outage_cap=opts.retry_max_delay, background=not opts.sync_mode)
            self._sender = self._spool
        self._consumer = Consumer(
            self._sender, on_outcome=self._ledger.account, on_reject=self._ledger.refused,
            flush_at=opts.flush_at, flush_interval=opts.flush_interval,
            max_queue_size=opts.max_queue_size, max_batch_size=opts.max_batch_size,
            max_queue_bytes=opts.max_queue_bytes, on_full=opts.on_full,
            block_timeout=opts.block_timeout,
            max_concurrent_requests=concurrency)
        # Where a serialised event goes: nowhere (send=False), the sender now, or the buffer.
        self._pipeline = EventPipeline(
            self._builder, self._ledger, hook=hook, debug=opts.debug,
            deliver=(None if not opts.send else self._send_now if opts.sync_mode
                     else self._consumer.put),
            on_fork=self.reset_after_fork)
        self._record = self._pipeline.record
        if self._spool is not None and self._spool.pending()[1] and not opts.sync_mode:
            self._spool.delivery.start()  # an earlier run's rows go out without waiting
        self._sync_lock = threading.Lock()
        self._setup_flags()
        self._autocapture: Optional[exceptions.Autocapture] = None
        if opts.enable_exception_autocapture and not self.disabled:
            self._autocapture = exceptions.install_autocapture(self)
        _compat.report_inert(opts)
        _lifecycle.track(self)

    # --- events ---------------------------------------------------------------------------

    def capture(self, event: str, *, distinct_id: Any = None,
                properties: Optional[Mapping[str, Any]] = None, timestamp: Any = None,
                uuid: Any = None, groups: Optional[Mapping[str, Any]] = None,
                flags: Union[Mapping[str, Any], FeatureFlagEvaluations, None] = None,
                send_feature_flags: Union[bool, Mapping[str, Any]] = False,
                disable_geoip: Optional[bool] = None) -> Optional[str]:
        """Queue an event; return its uuid, or None when it was not admitted.

        ``flags`` (an ``evaluate_flags()`` snapshot, key → value, or the results of
        ``get_all_flags_results``) attaches ``$feature/<key>`` and ``$active_feature_flags``;
        ``send_feature_flags=True`` does the same from local evaluation only, so capture()
        never waits on the network. posthog's options dict (``only_evaluate_locally``,
        ``person_properties``, ``group_properties``, ``flag_keys_filter``) is honoured as
        posthog does.
        """
        if self.disabled:
            return None
        with_flags = (None if flags is None and not send_feature_flags
                      else functools.partial(self._flag_properties, flags, send_feature_flags,
                                             disable_geoip))
        if disable_geoip is not None:  # posthog's per-call override of the setting
            return self._record(event, arguments.capture_event, event, distinct_id,
                                properties, groups, timestamp, uuid, with_flags, disable_geoip)
        return self._record(event, arguments.capture_event, event, distinct_id, properties,
                            groups, timestamp, uuid, with_flags)

    def set(self, *, distinct_id: Any = None, properties: Optional[Mapping[str, Any]] = None,
            timestamp: Any = None, uuid: Any = None,
            disable_geoip: Optional[bool] = None) -> Optional[str]:
        """Set person properties (``$set``); return the event uuid or None."""
        if self.disabled:
            return None
        return self._record("$set", arguments.person_event, "$set", distinct_id, properties,
                            timestamp, uuid, disable_geoip)

    def set_once(self, *, distinct_id: Any = None,
                 properties: Optional[Mapping[str, Any]] = None,
                 timestamp: Any = None, uuid: Any = None,
                 disable_geoip: Optional[bool] = None) -> Optional[str]:
        """Set person properties only where not yet set (``$set_once``); return the uuid or None."""
        if self.disabled:
            return None
        return self._record("$set_once", arguments.person_event, "$set_once", distinct_id,
                            properties, timestamp, uuid, disable_geoip)

    def alias(self, previous_id: Any, distinct_id: Any, timestamp: Any = None,
              uuid: Any = None, disable_geoip: Optional[bool] = None) -> Optional[str]:
        """Link ``distinct_id`` (new) to ``previous_id`` (existing); return the uuid or None.

        The arguments after the ids may be given by position, in posthog's order.
        """
        if self.disabled:
            return None
        return self._record("$create_alias", arguments.alias_event, previous_id, distinct_id,
                            timestamp, uuid, disable_geoip)

    def group_identify(self, group_type: Any, group_key: Any,
                       properties: Optional[Mapping[str, Any]] = None,
                       timestamp: Any = None, uuid: Any = None,
                       disable_geoip: Optional[bool] = None,
                       distinct_id: Any = None) -> Optional[str]:
        """Set properties on a group (``$groupidentify``); return the uuid or None.

        The arguments may be given by position, in posthog's order.
        """
        if self.disabled:
            return None
        return self._record("$groupidentify", arguments.group_event, group_type, group_key,
                            properties, distinct_id, timestamp, uuid, disable_geoip)

    def capture_exception(self, exception: ExceptionArg = None, *, distinct_id: Any = None,
                          properties: Optional[Mapping[str, Any]] = None,
                          groups: Optional[Mapping[str, Any]] = None, level: str = "error",
                          handled: bool = True, mechanism: str = "generic",
                          timestamp: Any = None, uuid: Any = None,
                          flags: Optional[Mapping[str, Any]] = None,
                          send_feature_flags: Any = False,
                          disable_geoip: Optional[bool] = None) -> Optional[str]:
        """Capture an ``$exception`` event; return its uuid or None.

        ``exception`` is an exception or an ``exc_info`` tuple; None takes the one being
        handled, and ``(None, None, None)`` captures nothing (as posthog does).
        """
        if self.disabled:
            return None
        opts = self.options
        try:
            props = exceptions.exception_event_properties(
                exception, properties, level=level, handled=handled, mechanism=mechanism,
                project_root=opts.project_root, in_app_modules=opts.in_app_modules)
        except Exception as error:
            return self._pipeline.reject_invalid(error, "$exception")
        if props is None:
            return None
        if opts.log_captured_exceptions:
            log.error("productos: captured exception", exc_info=_compat.exc_info(exception))
        return self.capture("$exception", distinct_id=distinct_id, properties=props,
                            groups=groups, timestamp=timestamp, uuid=uuid, flags=flags,
                            send_feature_flags=send_feature_flags, disable_geoip=disable_geoip)

    def _invalid_uuid(self, event: str, given: Any) -> None:
        """Report a caller's uuid that is not a UUID (a new one replaces it)."""
        self._ledger.warnings.warn("invalid uuid= arguments replaced",
                                   "productos: event %r: uuid=%s is not a valid UUID; a new "
                                   "one was generated", event, describe(given))

    def _check_fork(self) -> None:
        if self._pipeline.pid != os.getpid():
            self.reset_after_fork()  # a fork nobody announced: see EventPipeline.record

    def _send_now(self, item: bytes) -> bool:
        if self._is_shut_down:
            self._ledger.refused(DropReason.AFTER_SHUTDOWN, item)
            return False
        deadline = time.monotonic() + self.options.timeout * 2
        spool = self._spool
        self._ledger.counters.add_direct()
        with self._sync_lock:
            outcome = self._sender.send([item], deadline)
            stored = spool is not None and spool.active and not outcome.failures
            if spool is not None and stored:
                # On disk: deliver it (and any older rows) before returning. Delivery
                # accounts for itself; callbacks it runs see the lock released.
                spool.delivery.deliver_now(deadline)
        self._ledger.account(outcome)
        return stored or outcome.delivered == 1

    # --- feature flags --------------------------------------------------------------------

    def _setup_flags(self) -> None:
        opts = self.options
        self._definitions: SnapshotHolder[Snapshot] = SnapshotHolder(Snapshot.empty())
        self._poller: Optional[Poller[Snapshot]] = None
        self._remote: Optional[RemoteFlagsRequester] = None
        wait_ready: Callable[[float], bool] = _always_ready
        self._listeners = FlagsChangedListeners()
        self._definitions.on_swap = self._definitions_swapped
        if opts.flag_definitions_file is not None:
            # Offline mode: definitions from a file, no remote calls; reloaded when it changes.
            self._definitions.swap(load_definitions_file(opts.flag_definitions_file))
            self._poller = file_poller(opts.flag_definitions_file, self._definitions,
                                       opts.poll_interval)
            self._poller.start()
        elif opts.flag_definitions is not None:
            # Offline mode too, from a mapping (tests, generated configuration).
            self._definitions.swap(parse_given_definitions(opts.flag_definitions))
        elif not self.disabled:
            key = opts.project_api_key or ""
            self._remote = RemoteFlagsRequester(
                self.transport, key, timeout=opts.feature_flags_request_timeout_seconds,
                disable_geoip=opts.disable_geoip, retries=_compat.flag_request_retries(opts))
            if opts.personal_api_key and opts.enable_local_evaluation:
                # Alone, or one poller for the fleet through flag_definitions_cache.
                self._poller = definitions_poller(opts, self.transport, self._definitions)
                self._poller.start()
                try:
                    load_compiler()  # while the first fetch is on the wire
                except BaseException:  # a broken install, or Ctrl-C: no poller outlives us
                    self._poller.stop()
                    raise
                wait_ready = self._poller.wait_ready
        self._flags = FlagService(
            snapshot=self._definitions.get,
            remote=None if self._remote is None else self._ask_server,
            emit_called=self._emit_flag_called, wait_ready=wait_ready,
            first_load_timeout=opts.flags_first_load_timeout,
            check_fork=self._flags_fork_check)
        if opts.hooks:
            # Only a client with hooks pays for them: the others keep the plain service.
            self._flags = cast(FlagService, HookedFlags(self._flags, opts.hooks,
                                                        self._ledger.warnings))

    def _ask_server(self, ctx: EvaluationContext, keys: Optional[Sequence[str]]) -> RemoteFlags:
        assert self._remote is not None
        return self._remote.evaluate(
            ctx.distinct_id, groups=ctx.groups, person_properties=ctx.person_properties,
            group_properties=ctx.group_properties, device_id=ctx.device_id, keys=keys,
            disable_geoip=ctx.disable_geoip)

    def _emit_flag_called(self, distinct_id: str, properties: Dict[str, Any],
                          groups: Mapping[str, str],
                          disable_geoip: Optional[bool] = None) -> None:
        if not self.disabled:
            self._record("$feature_flag_called", arguments.flag_called_event, distinct_id,
                         properties, groups, disable_geoip)

    def _flags_fork_check(self) -> None:
        self._check_fork()
        poller = self._poller
        if poller is not None and poller.needs_start:
            poller.start()  # a forked child polls on its own thread

    def _flag_context(self, distinct_id: Any, groups: Any, person_properties: Any,
                      group_properties: Any, device_id: Any, sends: bool = True,
                      disable_geoip: Optional[bool] = None) -> EvaluationContext:
        if disable_geoip is None:
            return self._flags.context(distinct_id, groups, person_properties,
                                       group_properties, device_id, sends)
        return self._flags.context(distinct_id, groups, person_properties, group_properties,
                                   device_id, sends, disable_geoip)

    def _flag_failed(self, exc: Exception, what: str) -> None:
        if self.options.debug:
            raise exc
        self._ledger.warnings.warn(f"failed flag reads ({type(exc).__name__})",
                                   "productos: %s failed: %s", what, redact(str(exc)))
        self._ledger.call_on_error(exc, [])

    def _flag_properties(self, flags: Any, send_feature_flags: Any,
                         disable_geoip: Optional[bool], distinct_id: Optional[str],
                         groups: Optional[Dict[str, str]]) -> Dict[str, Any]:
        """Return the ``$feature/<key>`` and ``$active_feature_flags`` properties of capture()."""
        if isinstance(flags, FeatureFlagEvaluations):
            return flags.event_properties()
        if flags is None:
            if distinct_id is None:
                return {}
            if isinstance(send_feature_flags, Mapping):
                return self._send_flags_properties(send_feature_flags, distinct_id, groups,
                                                   disable_geoip)
            values: Mapping[str, Any] = self.get_all_flags(
                distinct_id, groups=groups, only_evaluate_locally=True) or {}
        else:
            values = flag_values(flags)
        merged, active = flags_for_event(values)
        merged["$active_feature_flags"] = active
        return merged

    def _send_flags_properties(self, options: Mapping[str, Any], distinct_id: str,
                               groups: Optional[Dict[str, str]],
                               disable_geoip: Optional[bool]) -> Dict[str, Any]:
        """posthog's ``send_feature_flags={...}``: local when asked or when definitions are
        loaded (unless ``only_evaluate_locally`` is False), else the server."""
        opts = send_flags_options(options)
        local = opts.only_evaluate_locally
        if local is None:
            local = self._definitions.get().loaded
        values = self.get_all_flags(
            distinct_id, groups=groups, person_properties=opts.person_properties,
            group_properties=opts.group_properties, only_evaluate_locally=bool(local),
            disable_geoip=disable_geoip, flag_keys_to_evaluate=opts.flag_keys_filter)
        return capture_flag_properties(values or {})

    def load_feature_flags(self) -> bool:
        """Fetch definitions now (or re-read the file); return True if they are loaded."""
        try:
            if self.options.flag_definitions_file is not None:
                self._definitions.swap(load_definitions_file(self.options.flag_definitions_file))
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
        self._definitions.swap(parse_given_definitions(definitions))

    def feature_flag_definitions(self) -> Optional[Mapping[str, Any]]:
        """Return the raw definitions in force (None before the first load)."""
        snap = self._definitions.get()
        return snap.raw if snap.loaded else None

    def flag_definitions_status(self) -> Optional[SourceStatus]:
        """Return where the definitions come from and how fresh they are (None: no poller).

        ``source`` is "holder" or "follower" (a shared cache), "direct" or "file"; ``age`` is
        the seconds since they were fetched, ``polls`` the definitions requests this process
        made, ``cache`` the shared cache's health.
        """
        return describe_source(self._poller)

    def on_flags_changed(self, callback: Callable[[FlagsChanged], Any]) -> Callable[[], None]:
        """Call ``callback(FlagsChanged)`` after each update that adds, removes or changes
        flags (a poll, a shared cache update, a file reload, ``set_flag_definitions``).

        Callbacks run on a thread of their own, one at a time; one that raises is logged and
        counted. Returns a function that removes the callback.
        """
        return self._listeners.add(callback)

    def _definitions_swapped(self, old: Snapshot, new: Snapshot) -> None:
        self._listeners.notify(old.raw, new.raw)

    # --- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: Optional[float] = 10.0, *,
              timeout_seconds: Optional[float] = math.nan) -> bool:
        """Send everything queued so far; return True if it all settled within timeout.

        ``timeout_seconds`` is posthog's name for ``timeout`` (NaN: not given).

        With a spool, settled means delivered (or dropped for a reason): events that wait
        on disk through an outage make flush return False. Called from an ``on_error`` or
        ``on_drop`` callback (which run on the delivery threads) it returns False at once.
        """
        if timeout_seconds is None or timeout_seconds == timeout_seconds:  # not NaN: given
            timeout = timeout_seconds
        timeout = timeout_arg(timeout, 10.0)
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
            self._ledger.call_on_error(exc, [])
            return False

    def _on_delivery_thread(self) -> bool:
        spool = self._spool
        return self._consumer.on_worker_thread() or (
            spool is not None and spool.delivery.on_own_thread())

    def shutdown(self, timeout: Optional[float] = 10.0) -> bool:
        """Flush within timeout and stop the background thread; later events are refused."""
        timeout = timeout_arg(timeout, 10.0)
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
            self._ledger.call_on_error(exc, [])
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
                self._ledger.call_on_error(exc, [])
                done = False
        self._ledger.flush_logs()
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

    def reset_after_fork(self) -> None:
        """Give a forked child its own threads, locks and buffers (the fork hooks call this)."""
        # Every lock the child can touch is new: another thread of the parent may have held
        # any of them at the moment of fork. The counters start at zero: the parent's
        # events are the parent's, in the books as in the buffer.
        self._pipeline.pid = os.getpid()
        ids.reseed()  # the at-fork hook does this; a fork nobody announced needs it here
        self._ledger.reset_after_fork()
        self._consumer.reinit_after_fork()
        if self._poller is not None:
            self._poller.reset_after_fork()
        self._flags.deduper.reset()
        self._sync_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        if self._autocapture is not None:
            self._autocapture.reset_after_fork()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.shutdown()

    def stats(self) -> DeliveryStats:
        """Return the delivery counters: captured, queued, in flight, sent, dropped by reason.

        ``captured == sent + queued + in_flight + spooled + dropped_total + filtered`` once
        the client is idle. Rows that earlier runs left in the spool are not this run's:
        they are reported apart (``spool_from_earlier_runs``, ``recovered``,
        ``earlier_runs_dropped``).
        """
        consumer, spool = self._consumer, self._spool
        if spool is None:
            queued, in_flight = consumer.queued, consumer.in_flight
            return self._ledger.report(queued, in_flight, consumer.taken)
        with spool.books:  # no row is between "deleted" and "counted" while we read
            mine, earlier = spool.pending()
            queued, in_flight = consumer.queued, consumer.in_flight
            return self._ledger.report(queued, in_flight, consumer.taken, mine, earlier,
                                       spool.earlier.recovered, spool.earlier.dropped)


def _always_ready(timeout: float) -> bool:
    """Definitions that never load over the network are ready at once."""
    return True
