"""Building ``$exception`` events from Python exceptions (protocol §6), and uncaught-error hooks.

The shape follows what PostHog's own SDK sends (``tests/data/wire_examples.json``):
``$exception_list`` holds the outermost exception first, then what it was raised from or
during (``__cause__`` / ``__context__``), and the members of exception groups; every entry has
a raw stack trace whose frames run oldest first, with source context and an ``in_app`` flag.

Nothing here raises for an odd exception (a broken ``__str__``, a missing source file, a
cycle in the chain): the worst case is a shorter event.
"""

from __future__ import annotations

import builtins
import linecache
import logging
import os
import re
import sys
import threading
import weakref
from types import FrameType, TracebackType
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, Tuple

from productos._capture.arguments import check_mapping
from productos._capture.events import describe
from productos._runtime.compat import NO_EXCEPTION, exception_arg, in_app
from productos.errors import EventError

log = logging.getLogger("productos")

CONTEXT_LINES = 5
MAX_LINE_LENGTH = 1_000       # a minified or generated line must not bloat the event
MAX_VALUE_LENGTH = 8_192
MAX_FRAMES = 100              # per exception; a RecursionError has ~1000, the ends tell the story
MAX_EXCEPTIONS = 25           # chained + grouped exceptions in one event

_MARK = "__productos_captured__"
_EXTERNAL = re.compile(r"[\\/](?:site|dist)-packages[\\/]")
_GROUP_TYPES: Tuple[type, ...] = tuple(
    t for t in (getattr(builtins, "BaseExceptionGroup", None),) if t is not None)


def exception_properties(exc: BaseException, *, level: str = "error", handled: bool = True,
                         mechanism_type: str = "generic",
                         project_root: Optional[str] = None,
                         in_app_modules: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Return the ``$exception`` properties for exc (``$exception_list``, level and source).

    Frames of the ``in_app_modules`` (module name prefixes) are in-app wherever they live.
    """
    root = _normalise_root(project_root)
    mechanism = {"type": mechanism_type, "handled": bool(handled), "synthetic": False}
    # An exception that was never raised has no stack: the caller's stands in (as posthog's).
    stack = _caller_stack() if exc.__traceback__ is None else None
    entries = [_exception_entry(e, mechanism, root, stack if e is exc else None)
               for e in _walk(exc)]
    if in_app_modules:
        for entry in entries:
            for frame in entry.get("stacktrace", {}).get("frames", ()):
                if in_app(frame.get("module"), in_app_modules):
                    frame["in_app"] = True
    return {
        "$exception_list": entries,
        "$exception_level": level,
        # How the exception reached us: "generic" for capture_exception(), else the hook's name.
        "$exception_source": mechanism_type,
    }


def exception_event_properties(exc: Any, properties: Any, *,
                               level: str, handled: bool, mechanism: str,
                               project_root: Optional[str],
                               in_app_modules: Optional[Sequence[str]] = None
                               ) -> Optional[Dict[str, Any]]:
    """Return the properties of capture_exception()'s event, or None when there is none to make.

    exc is an exception or an ``exc_info`` tuple (posthog's forms). With exc None, the
    exception being handled is taken; ``(None, None, None)`` makes no event; an exception
    object already captured is not captured again. ``properties`` are added over the
    exception's own.
    """
    exc = exception_arg(exc)
    if exc is NO_EXCEPTION:
        log.debug("productos: capture_exception() given an empty exc_info")
        return None
    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            log.debug("productos: capture_exception() called with no exception")
            return None
    if not isinstance(exc, BaseException):
        raise EventError(f"capture_exception() takes an exception, not {describe(exc)}")
    if already_captured(exc):
        return None
    props = exception_properties(exc, level=level, handled=handled, mechanism_type=mechanism,
                                 project_root=project_root, in_app_modules=in_app_modules)
    mark_captured(exc)
    extra = check_mapping("properties", properties)
    if extra:
        props.update(extra)
    return props


def already_captured(exc: BaseException) -> bool:
    """Tell whether this exception object was captured before."""
    try:
        return bool(getattr(exc, _MARK, False))
    except Exception:
        return False


def mark_captured(exc: BaseException) -> None:
    """Remember that this exception object was captured."""
    try:
        setattr(exc, _MARK, True)
    except Exception:  # an exception type that refuses attributes just is not deduplicated
        pass


# --- the exception list --------------------------------------------------------------------


def _walk(exc: BaseException) -> Iterator[BaseException]:
    """Yield exc, what it was raised from or during, and group members; each object once."""
    seen: List[BaseException] = []  # holds the objects so their ids stay unique meanwhile
    seen_ids: Set[int] = set()

    def visit(start: BaseException) -> Iterator[BaseException]:
        current: Optional[BaseException] = start
        while current is not None and id(current) not in seen_ids:
            if len(seen) >= MAX_EXCEPTIONS:
                return
            seen.append(current)
            seen_ids.add(id(current))
            yield current
            if _GROUP_TYPES and isinstance(current, _GROUP_TYPES):
                for member in getattr(current, "exceptions", ()):
                    if isinstance(member, BaseException):
                        yield from visit(member)
            # The traceback printer's rule: an explicit cause, else the implicit context
            # unless ``raise ... from None`` suppressed it.
            if current.__cause__ is not None:
                current = current.__cause__
            elif not current.__suppress_context__:
                current = current.__context__
            else:
                current = None

    return visit(exc)


def _caller_stack() -> Optional[TracebackType]:
    """Return the current stack as a traceback, outermost first, ending where the app called."""
    tb: Optional[TracebackType] = None
    try:
        frame: Optional[FrameType] = sys._getframe(1)
        while frame is not None:  # innermost first, so tb_next runs outermost to innermost
            tb = TracebackType(tb, frame, frame.f_lasti, frame.f_lineno)
            frame = frame.f_back
    except Exception:  # an interpreter without _getframe: no stack, as before
        return None
    return tb


def _exception_entry(exc: BaseException, mechanism: Dict[str, Any],
                     root: Optional[str],
                     stack: Optional[TracebackType] = None) -> Dict[str, Any]:
    exc_type = type(exc)
    entry: Dict[str, Any] = {
        "type": getattr(exc_type, "__qualname__", None) or exc_type.__name__,
        "value": _safe_str(exc),
        "module": _type_module(exc_type),
        "mechanism": dict(mechanism) if stack is None else dict(mechanism, synthetic=True),
    }
    frames = _frames(exc.__traceback__ if stack is None else stack, root)
    if frames:  # an exception that was never raised has no stack; PostHog omits the key too
        entry["stacktrace"] = {"type": "raw", "frames": frames}
    return entry


def _type_module(cls: type) -> Optional[str]:
    module = getattr(cls, "__module__", None)
    return None if module in (None, "builtins", "__builtin__") else str(module)


def _safe_str(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        try:
            text = repr(exc)
        except Exception:
            text = f"<{type(exc).__name__} with a broken __str__>"
    return _cap(text, MAX_VALUE_LENGTH)


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- frames --------------------------------------------------------------------------------


def _frames(tb: Optional[TracebackType], root: Optional[str]) -> List[Dict[str, Any]]:
    shown: List[Tuple[FrameType, int]] = []
    while tb is not None:
        if not _hidden(tb.tb_frame):
            shown.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    if len(shown) > MAX_FRAMES:  # keep where it started and where it ended
        half = MAX_FRAMES // 2
        shown = shown[:half] + shown[-half:]
    out = []
    for frame, lineno in shown:
        try:
            out.append(_frame(frame, lineno, root))
        except Exception:  # one unreadable frame must not cost the whole event
            log.debug("productos: could not describe a stack frame", exc_info=True)
    return out


def _hidden(frame: FrameType) -> bool:
    """Leave out the SDK's own frames and those that ask to be hidden (pytest's convention)."""
    try:
        module = frame.f_globals.get("__name__") or ""
        if module == "productos" or module.startswith("productos."):
            return True
        f_locals = frame.f_locals
        return bool(f_locals.get("__tracebackhide__") or f_locals.get("__traceback_hide__"))
    except Exception:
        return False


def _frame(frame: FrameType, lineno: int, root: Optional[str]) -> Dict[str, Any]:
    code = frame.f_code
    path = code.co_filename
    abs_path = os.path.abspath(path) if path and not path.startswith("<") else path
    module = frame.f_globals.get("__name__")
    module = module if isinstance(module, str) else None
    pre, line, post = _source_context(path, lineno, frame.f_globals)
    return {
        "platform": "python",
        "filename": _filename(module, abs_path, root),
        "abs_path": abs_path,
        "function": code.co_name or "<unknown>",
        "module": module,
        "lineno": lineno,
        "context_line": line,
        "pre_context": pre,
        "post_context": post,
        "in_app": _in_app(abs_path, root),
    }


def _source_context(path: str, lineno: int,
                    module_globals: Dict[str, Any]) -> Tuple[List[str], Optional[str], List[str]]:
    try:
        # module_globals lets linecache ask the module's loader (zip imports, frozen apps).
        lines = linecache.getlines(path, module_globals)
    except Exception:
        lines = []
    index = lineno - 1
    if not lines or not 0 <= index < len(lines):  # no source, or the file changed meanwhile
        return [], None, []

    def clean(text: str) -> str:
        return _cap(text.rstrip("\r\n"), MAX_LINE_LENGTH)

    pre = [clean(t) for t in lines[max(0, index - CONTEXT_LINES): index]]
    post = [clean(t) for t in lines[index + 1: index + 1 + CONTEXT_LINES]]
    return pre, clean(lines[index]), post


def _filename(module: Optional[str], abs_path: Optional[str], root: Optional[str]) -> Optional[str]:
    """The path as the import system sees it (``django/core/handlers/base.py``)."""
    if not abs_path or abs_path.startswith("<"):
        return abs_path
    path = abs_path[:-1] if abs_path.endswith(".pyc") else abs_path
    parts = path.split(os.sep)
    if module and module != "__main__":
        names = module.split(".")
        stem = os.path.splitext(parts[-1])[0]
        if stem == "__init__":
            names.append("__init__")
        tail = parts[-len(names):]
        # Only when the file sits where its module name says (not a script run by path).
        if len(parts) > len(names) and tail[:-1] == names[:-1] and stem == names[-1]:
            return "/".join(tail)
    if root and path.startswith(root + os.sep):
        return path[len(root) + 1:].replace(os.sep, "/")
    return os.path.basename(path)


def _normalise_root(project_root: Optional[str]) -> Optional[str]:
    try:
        root = os.path.abspath(project_root if project_root is not None else os.getcwd())
    except Exception:  # the working directory may have been deleted
        return None
    return root.rstrip(os.sep) or None  # "/" would make every file in-app


def _in_app(abs_path: Optional[str], root: Optional[str]) -> bool:
    if not abs_path or root is None or _EXTERNAL.search(abs_path):
        return False
    return abs_path.startswith(root + os.sep)


# --- uncaught-exception hooks --------------------------------------------------------------


class Autocapture:
    """Our links in the ``sys.excepthook`` and ``threading.excepthook`` chains."""

    def __init__(self, client: Any) -> None:
        try:
            self._client: Callable[[], Any] = weakref.ref(client)
        except TypeError:  # a client object without weakref support: hold it
            self._client = lambda: client
        self._active = True
        self._lock = threading.Lock()
        self._previous_sys: Callable[..., Any] = sys.excepthook
        self._previous_thread: Callable[..., Any] = threading.excepthook
        # Bound methods are new objects on every access: keep the ones we install, so
        # uninstall() can tell whether they are still in place.
        self._sys_hook = self._on_uncaught
        self._thread_hook = self._on_thread_uncaught
        sys.excepthook = self._sys_hook
        threading.excepthook = self._thread_hook

    def _capture(self, exc: Optional[BaseException]) -> None:
        if not self._active or exc is None or isinstance(exc, (KeyboardInterrupt, SystemExit)):
            return
        client = self._client()
        if client is None:
            return
        try:
            client.capture_exception(exc, level="fatal", handled=False, mechanism="excepthook")
        except Exception:  # the previous hook must run whatever we do
            log.exception("productos: could not capture an uncaught exception")

    def _on_uncaught(self, exc_type: Any, exc: Optional[BaseException], tb: Any) -> None:
        try:
            self._capture(exc)
        finally:
            self._previous_sys(exc_type, exc, tb)

    def _on_thread_uncaught(self, args: Any) -> None:
        try:
            self._capture(getattr(args, "exc_value", None))
        finally:
            self._previous_thread(args)

    def reset_after_fork(self) -> None:
        """Give a forked child its own lock (the parent's may have been held at fork)."""
        self._lock = threading.Lock()

    def uninstall(self) -> None:
        """Stop capturing; put the previous hooks back where ours are still installed."""
        with self._lock:
            self._active = False  # if another hook chained ours, we stay in its chain as a no-op
            if sys.excepthook is self._sys_hook:
                sys.excepthook = self._previous_sys
            if threading.excepthook is self._thread_hook:
                threading.excepthook = self._previous_thread


def install_autocapture(client: Any) -> Autocapture:
    """Chain sys.excepthook and threading.excepthook to capture uncaught exceptions."""
    return Autocapture(client)
