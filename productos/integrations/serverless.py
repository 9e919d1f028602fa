"""Serverless handlers: send what an invocation captured before the platform freezes it.

AWS Lambda (and other function platforms) freeze or end the process as soon as the handler
returns, so events still queued in the background would wait for the next invocation, or be
lost. The decorator flushes before returning, within the time the platform leaves::

    from productos.integrations.serverless import serverless_handler

    client = productos.Client("phc_...")

    @serverless_handler(client)
    def handler(event, context):
        client.capture("order placed", distinct_id=event["user"])
        return {"statusCode": 200}

It works for sync and ``async def`` handlers, with any signature. When an argument has
``get_remaining_time_in_millis()`` (Lambda's context), the flush takes at most that time less
``reserve_ms``, and never more than ``timeout``. Each invocation runs in a fresh context, so
tags of one never leak into the next on a warm instance; an exception leaving the handler is
captured once (``capture_exceptions``), flushed, and re-raised.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
from typing import Any, Callable, Optional, TypeVar, cast, overload

import productos
from productos.async_client import AsyncClient
from productos.context import new_context

__all__ = ["serverless_handler"]

log = logging.getLogger("productos")

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_TIMEOUT = 5.0
DEFAULT_RESERVE_MS = 200


@overload
def serverless_handler(client: F) -> F: ...


@overload
def serverless_handler(client: Any = None, *, timeout: float = DEFAULT_TIMEOUT,
                       reserve_ms: int = DEFAULT_RESERVE_MS,
                       capture_exceptions: bool = True) -> Callable[[F], F]: ...


def serverless_handler(client: Any = None, *, timeout: float = DEFAULT_TIMEOUT,
                       reserve_ms: int = DEFAULT_RESERVE_MS,
                       capture_exceptions: bool = True) -> Any:
    """Decorate a handler so it flushes events before it returns (see the module docstring).

    ``client``: a Client or AsyncClient; None flushes every live client. Used bare
    (``@serverless_handler``), it flushes every live client with the defaults.
    """
    if callable(client) and not isinstance(client, (productos.Client, AsyncClient)):
        return _Drained(None, timeout, reserve_ms, capture_exceptions).wrap(client)
    drained = _Drained(client, timeout, reserve_ms, capture_exceptions)
    return drained.wrap


class _Drained:
    def __init__(self, client: Any, timeout: float, reserve_ms: int,
                 capture_exceptions: bool) -> None:
        self.client = client
        self.timeout = max(0.0, float(timeout))
        self.reserve = max(0, int(reserve_ms)) / 1000.0
        self.capture_exceptions = capture_exceptions

    def wrap(self, handler: F) -> F:
        if inspect.iscoroutinefunction(handler):
            @functools.wraps(handler)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                budget = self.budget(args, kwargs)
                try:
                    with new_context(fresh=True, capture_exceptions=False):
                        try:
                            return await handler(*args, **kwargs)
                        except Exception as exc:
                            self.capture(exc)
                            raise
                finally:
                    await self.flush_async(budget)
            return cast(F, run_async)

        @functools.wraps(handler)
        def run(*args: Any, **kwargs: Any) -> Any:
            budget = self.budget(args, kwargs)
            try:
                with new_context(fresh=True, capture_exceptions=False):
                    try:
                        return handler(*args, **kwargs)
                    except Exception as exc:
                        self.capture(exc)
                        raise
            finally:
                self.flush(budget)
        return cast(F, run)

    def budget(self, args: Any, kwargs: Any) -> Callable[[], float]:
        """Return a function giving the seconds the flush may take from now."""
        deadline: Optional[float] = None
        for value in (*args, *kwargs.values()):
            remaining = getattr(value, "get_remaining_time_in_millis", None)
            if callable(remaining):
                try:
                    deadline = time.monotonic() + float(remaining()) / 1000.0 - self.reserve
                except Exception:
                    log.debug("productos: get_remaining_time_in_millis() failed", exc_info=True)
                break

        def left() -> float:
            if deadline is None:
                return self.timeout
            return max(0.0, min(self.timeout, deadline - time.monotonic()))
        return left

    def capture(self, exc: BaseException) -> None:
        if not self.capture_exceptions:
            return
        try:
            target = self.client if self.client is not None else productos.setup()
            target.capture_exception(exc, handled=False, mechanism="serverless")
        except Exception:
            log.exception("productos: could not capture the handler's exception")

    def flush(self, budget: Callable[[], float]) -> None:
        seconds = budget()
        try:
            client = self.client
            if client is None:
                done = productos.drain_all(seconds)
            else:
                sync = client.sync if isinstance(client, AsyncClient) else client
                done = sync.flush(seconds)
        except Exception:
            log.exception("productos: flushing at the end of the handler failed")
            return
        if not done:
            log.warning("productos: events not all sent within the %.2f s the invocation "
                        "had left; they stay queued for the next one", seconds)

    async def flush_async(self, budget: Callable[[], float]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.flush, budget)
