"""AsyncClient: the Client for asyncio code, whose flag reads never block the event loop.

It is a thin face over a :class:`productos.Client` (``client.sync``). Events go through the
same pipeline: ``capture()`` and the other event calls only build and queue an event, so they
stay plain calls, safe inside a coroutine. Flag reads are awaitable. Local evaluation answers
inline, on the loop, without a thread hop; whatever may wait (the ``/flags`` request when local
data cannot decide, the first wait for definitions, a definitions load, flush and shutdown)
runs on a small bounded pool of worker threads, so the loop keeps serving meanwhile.

Why threads and not an async HTTP library: the blocking part is a socket wait, during which
a worker thread holds no GIL, so the loop's lag stays in the sub-millisecond range (see
benchmarks/bench_async.py). The requests go through the same transport as the sync client
(same errors, redaction, timeouts and connection pool), and no dependency is added.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import (
    Any,
    Callable,
    Dict,
    Mapping,
    Optional,
    Sequence,
    Type,
    TypeVar,
    Union,
)

from productos._capture.events import describe
from productos._flags.arguments import check_flag_key
from productos._flags.poller import SourceStatus
from productos._flags.service import (
    UNDECIDED,
    FlagService,
    Undecided,
    WouldWait,
    WrapperOfService,
    payload_for,
    refusing_to_wait,
)
from productos._runtime.ledger import DeliveryStats
from productos._runtime.options import Options, takes_options
from productos.client import Client
from productos.flags import FeatureFlagEvaluations, FlagResult

T = TypeVar("T")

# At most this many flag reads wait on the network at once; more queue for a worker. The
# transport's connection pool is sized to match, so each keeps its connection for the next.
REMOTE_WORKERS = 32


class AsyncClient:
    """Captures events and evaluates feature flags from asyncio code without blocking the loop.

    ``AsyncClient(...)`` takes the same settings as :class:`productos.Client`. It may be created
    outside a running loop and used inside one (or several, one after the other)::

        async with productos.AsyncClient("phc_...", personal_api_key="phx_...") as client:
            client.capture("signed up", distinct_id="user-1")
            if await client.feature_enabled("new-home", "user-1"):
                ...

    ``async with`` shuts the client down (flushing what is queued) on the way out.
    """

    options: Options
    sync: Client

    @takes_options
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync = Client(*args, **kwargs)
        self.options = self.sync.options
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        _widen_connection_pool(self.sync)

    @classmethod
    def wrapping(cls, client: Client) -> AsyncClient:
        """Return an AsyncClient over an existing Client: same queue, flags and settings.

        For code that has a sync client already (a web integration's, the module default)
        and wants flag reads that do not block a loop. Shutting either down stops both.
        """
        self = cls.__new__(cls)
        self.sync = client
        self.options = client.options
        self._pool = None
        self._pool_pid = 0
        self._pool_lock = threading.Lock()
        return self

    @property
    def disabled(self) -> bool:
        """True when the client sends nothing (no key, or ``disabled=True``)."""
        return self.sync.disabled

    # --- events: plain calls, they only queue --------------------------------------------

    def capture(self, event: str, *, distinct_id: Any = None,
                properties: Optional[Mapping[str, Any]] = None, timestamp: Any = None,
                uuid: Any = None, groups: Optional[Mapping[str, Any]] = None,
                flags: Optional[Mapping[str, Any]] = None,
                send_feature_flags: bool = False, **more: Any) -> Optional[str]:
        """Queue an event; return its uuid, or None when it was not admitted (never blocks).

        ``send_feature_flags=True`` attaches flags from local evaluation only. Other keyword
        arguments are those of :meth:`productos.Client.capture`.
        """
        return self.sync.capture(event, distinct_id=distinct_id, properties=properties,
                                 timestamp=timestamp, uuid=uuid, groups=groups, flags=flags,
                                 send_feature_flags=send_feature_flags, **more)

    def set(self, *, distinct_id: Any = None, properties: Optional[Mapping[str, Any]] = None,
            timestamp: Any = None, uuid: Any = None, **more: Any) -> Optional[str]:
        """Set person properties (``$set``); return the event uuid or None."""
        return self.sync.set(distinct_id=distinct_id, properties=properties,
                             timestamp=timestamp, uuid=uuid, **more)

    def set_once(self, *, distinct_id: Any = None,
                 properties: Optional[Mapping[str, Any]] = None,
                 timestamp: Any = None, uuid: Any = None, **more: Any) -> Optional[str]:
        """Set person properties only where not yet set (``$set_once``)."""
        return self.sync.set_once(distinct_id=distinct_id, properties=properties,
                                  timestamp=timestamp, uuid=uuid, **more)

    def alias(self, previous_id: Any, distinct_id: Any, *, timestamp: Any = None,
              uuid: Any = None, **more: Any) -> Optional[str]:
        """Link ``distinct_id`` (new) to ``previous_id`` (existing); return the uuid or None."""
        return self.sync.alias(previous_id, distinct_id, timestamp=timestamp, uuid=uuid,
                               **more)

    def group_identify(self, group_type: Any, group_key: Any,
                       properties: Optional[Mapping[str, Any]] = None, *,
                       timestamp: Any = None, uuid: Any = None,
                       distinct_id: Any = None, **more: Any) -> Optional[str]:
        """Set properties on a group (``$groupidentify``); return the uuid or None."""
        return self.sync.group_identify(group_type, group_key, properties,
                                        timestamp=timestamp, uuid=uuid,
                                        distinct_id=distinct_id, **more)

    def capture_exception(self, exc: Optional[BaseException] = None, *, distinct_id: Any = None,
                          properties: Optional[Mapping[str, Any]] = None,
                          groups: Optional[Mapping[str, Any]] = None, level: str = "error",
                          handled: bool = True, mechanism: str = "generic") -> Optional[str]:
        """Capture an ``$exception`` event (the one being handled when exc is None)."""
        return self.sync.capture_exception(exc, distinct_id=distinct_id, properties=properties,
                                           groups=groups, level=level, handled=handled,
                                           mechanism=mechanism)

    # --- flags: awaitable; local answers inline, waits go to a worker -----------------------

    async def get_feature_flag_result(self, key: str, distinct_id: Any = None, *,
                                      groups: Any = None, person_properties: Any = None,
                                      group_properties: Any = None, device_id: Any = None,
                                      only_evaluate_locally: bool = False,
                                      send_feature_flag_events: bool = True,
                                      disable_geoip: Optional[bool] = None,
                                      detail: bool = True) -> Optional[FlagResult]:
        """Evaluate one flag and return the full result: value, variant, payload and reason.

        ``detail=False``: as :meth:`Client.get_feature_flag_result`.
        """
        result = self._local_result(key, distinct_id, groups, person_properties,
                                    group_properties, device_id, only_evaluate_locally,
                                    send_feature_flag_events, disable_geoip, detail)
        if not isinstance(result, Undecided):
            return result
        # The sync path does it all on a worker: the first-load wait, local evaluation again
        # (microseconds, beside a round trip) and the /flags request.
        return await self._in_worker(functools.partial(
            self.sync.get_feature_flag_result, key, distinct_id, groups=groups,
            person_properties=person_properties, group_properties=group_properties,
            device_id=device_id, only_evaluate_locally=only_evaluate_locally,
            send_feature_flag_events=send_feature_flag_events, disable_geoip=disable_geoip,
            detail=detail))

    async def get_feature_flag(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                               person_properties: Any = None, group_properties: Any = None,
                               device_id: Any = None, only_evaluate_locally: bool = False,
                               send_feature_flag_events: bool = True,
                               disable_geoip: Optional[bool] = None
                               ) -> Union[bool, str, None]:
        """Return a flag's value: True/False, the variant key, or None when unknown."""
        sync = self.sync
        if sync.disabled:
            return None
        try:
            flags = sync._flags
            if flags.__class__ is FlagService:  # value_now() without its frame
                value = flags.value(key, distinct_id, groups, person_properties,
                                    group_properties, device_id, only_evaluate_locally,
                                    send_feature_flag_events, disable_geoip, False)
            else:
                value = flags.value_now(key, distinct_id, groups, person_properties,
                                        group_properties, device_id, only_evaluate_locally,
                                        send_feature_flag_events, disable_geoip)
        except Exception as exc:
            sync._flag_failed(exc, f"evaluating flag {describe(key)}")
            return None
        if value is not UNDECIDED:
            return value  # type: ignore[return-value]
        return await self._in_worker(functools.partial(
            sync.get_feature_flag, key, distinct_id, groups=groups,
            person_properties=person_properties, group_properties=group_properties,
            device_id=device_id, only_evaluate_locally=only_evaluate_locally,
            send_feature_flag_events=send_feature_flag_events, disable_geoip=disable_geoip))

    async def feature_enabled(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                              person_properties: Any = None, group_properties: Any = None,
                              device_id: Any = None, only_evaluate_locally: bool = False,
                              send_feature_flag_events: bool = True,
                              disable_geoip: Optional[bool] = None) -> Optional[bool]:
        """Return whether a flag is on for this person (None when it cannot be known)."""
        value = await self.get_feature_flag(
            key, distinct_id, groups=groups, person_properties=person_properties,
            group_properties=group_properties, device_id=device_id,
            only_evaluate_locally=only_evaluate_locally,
            send_feature_flag_events=send_feature_flag_events, disable_geoip=disable_geoip)
        return None if value is None else bool(value)

    async def get_feature_flag_payload(self, key: str, distinct_id: Any = None, *,
                                       match_value: Any = None, **kwargs: Any) -> Any:
        """Return the decoded payload of the flag's value for this person, if any.

        Takes the keyword arguments of :meth:`get_feature_flag_result`.
        """
        if match_value is not None and type(key) is str:
            try:
                payload = payload_for(self.sync._definitions.get(), key, match_value)
            except Exception as exc:
                self.sync._flag_failed(exc, f"reading the payload of flag {describe(key)}")
                return None
            if payload is not None:
                return payload
        kwargs.setdefault("send_feature_flag_events", False)
        result = await self.get_feature_flag_result(key, distinct_id, **kwargs)
        return None if result is None else result.payload

    async def get_all_flags_results(self, distinct_id: Any = None, *, groups: Any = None,
                                    person_properties: Any = None, group_properties: Any = None,
                                    device_id: Any = None, only_evaluate_locally: bool = False,
                                    disable_geoip: Optional[bool] = None,
                                    flag_keys_to_evaluate: Optional[Sequence[str]] = None
                                    ) -> Optional[Dict[str, FlagResult]]:
        """Evaluate every flag (at most one remote request, off the loop); full results."""
        if self.sync.disabled:
            return None
        found: Optional[Dict[str, FlagResult]] = await self._every_flag(
            self.sync.get_all_flags_results, distinct_id, groups, person_properties,
            group_properties, device_id, only_evaluate_locally, disable_geoip,
            flag_keys_to_evaluate)
        return found

    async def get_all_flags(self, distinct_id: Any = None, *, groups: Any = None,
                            person_properties: Any = None, group_properties: Any = None,
                            device_id: Any = None, only_evaluate_locally: bool = False,
                            disable_geoip: Optional[bool] = None,
                            flag_keys_to_evaluate: Optional[Sequence[str]] = None
                            ) -> Optional[Dict[str, Union[bool, str]]]:
        """Return every flag's known value for this person (at most one remote request)."""
        if self.sync.disabled:
            return None
        found: Optional[Dict[str, Union[bool, str]]] = await self._every_flag(
            self.sync.get_all_flags, distinct_id, groups, person_properties,
            group_properties, device_id, only_evaluate_locally, disable_geoip,
            flag_keys_to_evaluate)
        return found

    async def get_all_flags_and_payloads(self, distinct_id: Any = None, *, groups: Any = None,
                                         person_properties: Any = None,
                                         group_properties: Any = None, device_id: Any = None,
                                         only_evaluate_locally: bool = False,
                                         disable_geoip: Optional[bool] = None,
                                         flag_keys_to_evaluate: Optional[Sequence[str]] = None
                                         ) -> Dict[str, Any]:
        """Return ``{"featureFlags": {...}, "featureFlagPayloads": {...}}`` as posthog does."""
        call = functools.partial(
            self.sync.get_all_flags_and_payloads, distinct_id, groups=groups,
            person_properties=person_properties, group_properties=group_properties,
            device_id=device_id, only_evaluate_locally=only_evaluate_locally,
            disable_geoip=disable_geoip, flag_keys_to_evaluate=flag_keys_to_evaluate)
        return await self._locally_or_in_worker(call)

    async def evaluate_flags(self, distinct_id: Any = None, *, groups: Any = None,
                             person_properties: Any = None, group_properties: Any = None,
                             only_evaluate_locally: bool = False,
                             disable_geoip: Optional[bool] = None,
                             flag_keys: Optional[Sequence[str]] = None,
                             device_id: Any = None) -> FeatureFlagEvaluations:
        """Evaluate every flag (or ``flag_keys``) once; see :meth:`Client.evaluate_flags`.

        Reading the returned snapshot is a plain call: it never waits on the network.
        """
        call = functools.partial(
            self.sync.evaluate_flags, distinct_id, groups=groups,
            person_properties=person_properties, group_properties=group_properties,
            only_evaluate_locally=only_evaluate_locally, disable_geoip=disable_geoip,
            flag_keys=flag_keys, device_id=device_id)
        return await self._locally_or_in_worker(call)

    async def load_feature_flags(self) -> bool:
        """Fetch definitions now, off the loop; return True if they are loaded."""
        return await self._in_worker(self.sync.load_feature_flags)

    def set_flag_definitions(self, definitions: Mapping[str, Any]) -> None:
        """Replace the definitions in force (with a poller running, its next fetch wins)."""
        self.sync.set_flag_definitions(definitions)

    def feature_flag_definitions(self) -> Optional[Mapping[str, Any]]:
        """Return the raw definitions in force (None before the first load)."""
        return self.sync.feature_flag_definitions()

    def flag_definitions_status(self) -> Optional[SourceStatus]:
        """Return the state of the definitions poller (None when there is none)."""
        return self.sync.flag_definitions_status()

    # --- lifecycle ----------------------------------------------------------------------

    async def flush(self, timeout: Optional[float] = 10.0) -> bool:
        """Send everything queued so far, off the loop; True if it all settled in time."""
        return await _off_loop(functools.partial(self.sync.flush, timeout))

    async def shutdown(self, timeout: Optional[float] = 10.0) -> bool:
        """Flush within timeout and stop, off the loop; later events are refused."""
        try:
            return await _off_loop(functools.partial(self.sync.shutdown, timeout))
        finally:
            with self._pool_lock:
                pool, self._pool = self._pool, None
            if pool is not None:
                pool.shutdown(wait=False)

    close = shutdown

    async def join(self) -> None:
        """Wait for queued events to be sent (PostHog-compatible name for flush)."""
        await self.flush(None)

    def stats(self) -> DeliveryStats:
        """Return the delivery counters (see :meth:`productos.Client.stats`)."""
        return self.sync.stats()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, kind: Optional[Type[BaseException]],
                        exc: Optional[BaseException],
                        traceback: Optional[TracebackType]) -> None:
        await self.shutdown()

    # --- internals ------------------------------------------------------------------------

    def _local_result(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
                      group_properties: Any, device_id: Any, only_local: bool,
                      send_event: bool, disable_geoip: Optional[bool] = None,
                      detail: bool = True) -> Union[FlagResult, Undecided, None]:
        """The answer local data gives at once (a FlagResult or None), or UNDECIDED."""
        sync = self.sync
        if sync.disabled:
            return None
        try:
            key = check_flag_key(key)
            ctx = sync._flags.context(distinct_id, groups, person_properties,
                                      group_properties, device_id, send_event, disable_geoip)
            return sync._flags.result_now(key, ctx, only_local=only_local,
                                          send_event=send_event, detail=detail)
        except Exception as exc:
            sync._flag_failed(exc, f"evaluating flag {describe(key)}")
            return None

    async def _every_flag(self, method: Callable[..., Any], distinct_id: Any, groups: Any,
                          person_properties: Any, group_properties: Any, device_id: Any,
                          only_local: bool, disable_geoip: Optional[bool],
                          keys: Optional[Sequence[str]]) -> Any:
        """A bulk read of the sync client's (``method``), inline when it would not wait."""
        call = functools.partial(
            method, distinct_id, groups=groups, person_properties=person_properties,
            group_properties=group_properties, device_id=device_id,
            only_evaluate_locally=only_local, disable_geoip=disable_geoip,
            flag_keys_to_evaluate=keys)
        return await self._locally_or_in_worker(call)

    async def _locally_or_in_worker(self, call: Callable[[], T]) -> T:
        """Run a bulk sync read inline when local data answers it, else on a worker.

        Inline, the read refuses to wait: reaching the first definitions load or the server,
        it stops with WouldWait, and the worker runs it whole. A disabled client or bad
        arguments answer inline too (None, after the sync client's report).
        """
        if not isinstance(self.sync._flags, WrapperOfService):
            with refusing_to_wait():
                try:
                    return call()
                except WouldWait:
                    pass
        return await self._in_worker(call)

    def _workers(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        with self._pool_lock:
            # A forked child has none of its parent's worker threads: it makes its own pool.
            if self._pool is None or self._pool_pid != os.getpid():
                self._pool = ThreadPoolExecutor(max_workers=REMOTE_WORKERS,
                                                thread_name_prefix="productos-async")
                self._pool_pid = os.getpid()
            return self._pool

    async def _in_worker(self, work: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        try:
            pool = self._workers()
        except RuntimeError:  # shut down meanwhile, or the interpreter is exiting
            return work()
        return await loop.run_in_executor(pool, work)


def _widen_connection_pool(client: Client) -> None:
    """Size the client's HTTP connection pool for REMOTE_WORKERS concurrent requests.

    A request already under way (the first definitions fetch) keeps the session it started
    on; every later one takes the new session.
    """
    transport = client.transport
    if getattr(transport, "_pool_size", REMOTE_WORKERS) < REMOTE_WORKERS:
        transport._pool_size = REMOTE_WORKERS
        transport.reset_after_fork()  # "a new session": the same operation a fork needs


async def _off_loop(work: Callable[[], T]) -> T:
    """Run work on a thread of its own, so a drain never waits behind slow flag reads."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            outcome = work()
        except BaseException as exc:  # handed to the awaiting coroutine, which re-raises
            _settle(loop, future, None, exc)
        else:
            _settle(loop, future, outcome, None)

    threading.Thread(target=run, name="productos-async-drain", daemon=True).start()
    return await future


def _settle(loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], value: Optional[T],
            error: Optional[BaseException]) -> None:
    def apply() -> None:
        if future.done():  # the awaiting task was cancelled
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    try:
        loop.call_soon_threadsafe(apply)
    except RuntimeError:  # the loop closed while the drain ran
        pass
