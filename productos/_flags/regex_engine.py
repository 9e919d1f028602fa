"""The optional linear-time regex engine (google-re2) and the process-wide choice of engine.

RE2, like the server's engine, runs in time linear in the value's length, so it takes the values
:mod:`productos._flags.regex_safety` keeps from Python's re. The choice is read when definitions
compile; nothing here performs I/O or logs.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

__all__ = [
    "Searcher",
    "compile_linear",
    "engine_choice",
    "linear_engine",
    "regex_engine",
    "set_regex_engine",
]


class Searcher(Protocol):
    """A compiled pattern of either engine: only whether it matches somewhere is used."""

    def search(self, text: str) -> Any:
        """A match object when the pattern matches somewhere in ``text``, else None."""


_ENGINES = ("auto", "re2", "re")
_choice = "auto"
_NOT_LOADED: Any = object()
_re2: Any = _NOT_LOADED


def _load_re2() -> Any:
    global _re2
    if _re2 is _NOT_LOADED:
        try:
            module: Any = importlib.import_module("re2")
            # Another project also installs a module named re2; only google-re2 has Options.
            _re2 = module if hasattr(module, "Options") and hasattr(module, "compile") else None
        except Exception:  # ImportError, or a broken native build
            _re2 = None
    return _re2


def set_regex_engine(name: str) -> str:
    """Choose the engine for regexes compiled from now on: "auto", "re2" or "re"; return the old."""
    global _choice
    if name not in _ENGINES:
        raise ValueError(f"regex engine must be one of {', '.join(_ENGINES)}, not {name!r}")
    if name == "re2" and _load_re2() is None:
        raise ValueError("the re2 engine needs google-re2: pip install 'productos[re2]'")
    previous, _choice = _choice, name
    return previous


def engine_choice() -> str:
    """The choice in force ("auto", "re2" or "re"), without loading any engine."""
    return _choice


def linear_engine() -> Any:
    """The re2 module that definitions compile with now, or None (Python's re only)."""
    return None if _choice == "re" else _load_re2()


def regex_engine() -> str:
    """The name of the engine regexes compile with now: "re2" when available, else "re"."""
    return "re" if linear_engine() is None else "re2"


def compile_linear(source: str, module: Any) -> Any:
    """Compile ``source`` (the server's dialect, already checked) with re2, or None if it can't."""
    if module is None:
        return None
    try:
        options = module.Options()
        options.log_errors = False  # a refused pattern is expected here, not worth stderr noise
        options.never_capture = True  # only whether it matches is used
        return module.compile(source, options)
    except Exception:  # re2.error: e.g. repetitions over 1000, a program too large
        return None
