"""Request-scoped context: the distinct id, session id and tags that events pick up.

Scopes live in a ``contextvars.ContextVar`` so they follow threads and asyncio tasks
correctly. A scope is immutable; changing it swaps in a changed copy, so a scope that
another task inherited is never altered behind its back.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from dataclasses import field, replace
from types import MappingProxyType, TracebackType
from typing import Any, Callable, Dict, List, Mapping, Optional, Protocol, Type, TypeVar, cast

from productos._runtime.records import record

_EMPTY: Mapping[str, Any] = MappingProxyType({})

F = TypeVar("F", bound=Callable[..., Any])


@record(frozen=True)
class Scope:
    """What the current context knows about who is acting and what to tag events with."""

    distinct_id: Optional[str] = None
    session_id: Optional[str] = None
    tags: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    capture_exceptions: bool = True
    device_id: Optional[str] = None


_ROOT = Scope()
_current: contextvars.ContextVar[Scope] = contextvars.ContextVar("productos_scope", default=_ROOT)


class ExceptionOptions(Protocol):
    """The setting that decides whether exceptions leaving a scope are captured."""

    @property
    def enable_exception_autocapture(self) -> bool:
        """True when uncaught exceptions (and those leaving a scope) are captured."""


class ExceptionCapturer(Protocol):
    """Where an exception leaving a scope is reported (``productos.Client`` is one)."""

    @property
    def options(self) -> ExceptionOptions:
        """The capturer's settings."""

    def capture_exception(self, exc: Optional[BaseException] = ..., *,
                          mechanism: str = ...) -> Optional[str]:
        """Capture an ``$exception`` event for exc."""


def _no_capturer() -> Optional[ExceptionCapturer]:
    return None


_default_capturer: List[Callable[[], Optional[ExceptionCapturer]]] = [_no_capturer]


def set_default_capturer(find: Callable[[], Optional[ExceptionCapturer]]) -> None:
    """Say where scopes opened without a client report exceptions (the package's default client)."""
    _default_capturer[0] = find


# The scope in force for the running thread or task. The ContextVar's own ``get``: every
# capture() reads it, and a Python function around it would double the cost.
current_scope: Callable[[], Scope] = _current.get


class new_context:
    """Open a scope for the duration of a ``with`` block or a decorated function.

    A nested scope starts from its parent's values unless ``fresh=True``. An exception
    leaving the scope is reported (to ``client``, else the default client) before it
    propagates: with ``capture_exceptions=None`` (the default) when that client has
    ``enable_exception_autocapture``, with ``True`` always, with ``False`` never — posthog's rule.
    """

    def __init__(self, fresh: bool = False, capture_exceptions: Optional[bool] = None,
                 client: Optional[ExceptionCapturer] = None) -> None:
        self._fresh = fresh
        self._capture_exceptions = capture_exceptions
        self._client = client
        self._tokens: List[contextvars.Token[Scope]] = []

    def __enter__(self) -> new_context:
        parent = _ROOT if self._fresh else _current.get()
        scope = replace(parent, capture_exceptions=self._capture_exceptions is not False)
        self._tokens.append(_current.set(scope))
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        try:
            if (exc is not None and self._capture_exceptions is not False
                    and isinstance(exc, Exception)):
                _report_exception(self._client, exc, always=self._capture_exceptions is True)
        finally:
            _current.reset(self._tokens.pop())

    def __call__(self, func: F) -> F:
        """Run ``func`` (sync or async) inside a fresh copy of this scope on every call."""
        settings = (self._fresh, self._capture_exceptions, self._client)
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with new_context(*settings):
                    return await func(*args, **kwargs)
            return cast(F, run_async)

        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            with new_context(*settings):
                return func(*args, **kwargs)
        return cast(F, run)


def _report_exception(client: Optional[ExceptionCapturer], exc: BaseException,
                      always: bool = False) -> None:
    """Hand an exception that left a scope to the client (if its autocapture is on, or always)."""
    target = client if client is not None else _default_capturer[0]()
    if target is not None and (always or target.options.enable_exception_autocapture):
        target.capture_exception(exc, mechanism="context")


def identify_context(distinct_id: Any) -> None:
    """Make events in the current scope belong to ``distinct_id``."""
    _current.set(replace(_current.get(), distinct_id=None if distinct_id is None
                         else str(distinct_id)))


def set_context_session(session_id: Any) -> None:
    """Attach ``$session_id`` to events in the current scope."""
    _current.set(replace(_current.get(), session_id=None if session_id is None
                         else str(session_id)))


# Set once any scope has had a device id: until then flag reads skip looking for one (they
# run often, and almost no application sets it).
DEVICE_IDS_IN_USE = [False]


def set_context_device_id(device_id: Any) -> None:
    """Make flag calls in the current scope use ``device_id`` when they are given none."""
    if device_id is not None:
        DEVICE_IDS_IN_USE[0] = True
    _current.set(replace(_current.get(), device_id=None if device_id is None
                         else str(device_id)))


def scoped(fresh: bool = False, capture_exceptions: Optional[bool] = None
           ) -> Callable[[F], F]:
    """Return a decorator running the function in a new scope (posthog's ``scoped``).

    ``capture_exceptions`` as for :class:`new_context`.
    """
    return new_context(fresh, capture_exceptions)


def tag(name: str, value: Any) -> None:
    """Add one property to every event captured in the current scope."""
    scope = _current.get()
    tags = dict(scope.tags)
    tags[str(name)] = value
    _current.set(replace(scope, tags=MappingProxyType(tags)))


def get_context_distinct_id() -> Optional[str]:
    """Return the distinct id set on the current scope, if any."""
    return _current.get().distinct_id


def get_context_session_id() -> Optional[str]:
    """Return the session id set on the current scope, if any."""
    return _current.get().session_id


def get_context_device_id() -> Optional[str]:
    """Return the device id set on the current scope, if any."""
    return _current.get().device_id


def get_tags() -> Dict[str, Any]:
    """Return a copy of the tags of the current scope."""
    return dict(_current.get().tags)


_Scope = new_context  # the class, for annotations inside ContextMethods (which shadows the name)


class ContextMethods:
    """posthog's context methods on a client: the functions above, scopes bound to the client."""

    def new_context(self, fresh: bool = False,
                    capture_exceptions: Optional[bool] = None) -> _Scope:
        """Open a scope whose escaping exceptions this client reports (see new_context)."""
        return new_context(fresh, capture_exceptions, client=cast(ExceptionCapturer, self))

    def scoped(self, fresh: bool = False, capture_exceptions: Optional[bool] = None
               ) -> _Scope:
        """Return a decorator running the function in a new scope bound to this client."""
        return self.new_context(fresh, capture_exceptions)

    @staticmethod
    def tag(name: str, value: Any) -> None:
        """Add a property to every event captured in the current scope."""
        tag(name, value)

    @staticmethod
    def get_tags() -> Dict[str, Any]:
        """Return a copy of the current scope's tags."""
        return get_tags()

    @staticmethod
    def identify_context(distinct_id: str) -> None:
        """Make events in the current scope belong to ``distinct_id``."""
        identify_context(distinct_id)

    @staticmethod
    def set_context_session(session_id: str) -> None:
        """Attach ``$session_id`` to events in the current scope."""
        set_context_session(session_id)

    @staticmethod
    def set_context_device_id(device_id: str) -> None:
        """Make flag calls in the current scope use this device id when given none."""
        set_context_device_id(device_id)
