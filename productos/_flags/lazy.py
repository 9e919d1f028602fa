"""The flags of a snapshot, each compiled the first time it is read.

Why lazily: compiling a flag (regex analysis, value sets, plans, payload decoding) costs far
more than indexing its JSON, and an app with thousands of flags reads few of them in a
process's first seconds, often only a handful ever. Parsing a new definitions document
therefore only indexes it (and compiles the few flags that read other flags, whose dependency
cycles must be known up front); every other flag is compiled on first use.

Why it is still an immutable snapshot: what a reader can observe never changes. A flag's
compiled form depends only on the document, so compiling it now or at parse time gives equal
objects, and each key is compiled once (under a lock) and never replaced. The mappings offer
no way to write, and the definition order of iteration is that of the document. Cohorts are
compiled all together, in document order, before the first flag (flags read them while they
compile), so every message names the same cohort as an eager compilation would. The lock is
module-wide, so a fork in the middle of a compilation cannot leave a child waiting on it: the
child gets a new one.
"""

from __future__ import annotations

import os
import threading
from typing import (
    AbstractSet,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
)

from productos._flags.snapshot import CompiledFlag

__all__ = ["LazyFlags", "LoadedOnce"]

# Reentrant: compiling a flag first compiles the cohorts, under the same lock.
_lock = threading.RLock()


def _new_lock() -> None:
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock)

Compile = Callable[[str, Mapping[str, Any]], Tuple[CompiledFlag, Optional[str]]]


class LazyFlags(Mapping[str, CompiledFlag]):
    """Key → CompiledFlag, in definition order; a flag is compiled when first read.

    ``lookup`` (``dict.get`` of the compiled flags) answers without compiling: None means "not
    compiled yet or no such flag", for callers that then read the mapping the normal way.
    """

    def __init__(self, raw: Dict[str, Mapping[str, Any]], compile_flag: Compile,
                 compiled: Dict[str, CompiledFlag], errors: Dict[str, str],
                 early_errors: Callable[[], List[str]]) -> None:
        self._raw = raw
        self._compile = compile_flag
        self._compiled = compiled
        self._errors = errors
        self._early_errors = early_errors
        self._complete: Optional[Dict[str, CompiledFlag]] = None
        self._order: Optional[Tuple[AbstractSet[str], Tuple[Tuple[str, CompiledFlag, bool], ...]]]
        self._order = None
        self.lookup = compiled.get

    def _build(self, key: str) -> Optional[CompiledFlag]:
        raw = self._raw.get(key)
        if raw is None:
            return None
        with _lock:
            flag = self._compiled.get(key)
            if flag is None:
                flag, error = self._compile(key, raw)
                if error is not None:
                    self._errors[key] = error
                self._compiled[key] = flag
        return flag

    def __getitem__(self, key: str) -> CompiledFlag:
        flag = self._compiled.get(key)
        if flag is None:
            flag = self._build(key)
            if flag is None:
                raise KeyError(key)
        return flag

    def get(self, key: str, default: Any = None) -> Any:
        flag = self._compiled.get(key)
        if flag is None:
            flag = self._build(key) if key.__class__ is str else None
            if flag is None:
                return default
        return flag

    def __contains__(self, key: object) -> bool:
        return key in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def complete(self) -> Dict[str, CompiledFlag]:
        """Every flag compiled, in definition order (a dict no one writes after this)."""
        done = self._complete
        if done is None:
            get = self._compiled.get
            done = {key: get(key) or self._build_known(key) for key in self._raw}
            self._complete = done
        return done

    def walk_order(self, shared: AbstractSet[str]) -> Tuple[Tuple[str, CompiledFlag, bool], ...]:
        """(key, flag, key in shared) for every flag, compiled, in definition order.

        What an evaluation of every flag iterates (``shared``: the keys other flags depend
        on), built on the first call rather than looked up on every one.
        """
        cached = self._order
        if cached is None or cached[0] is not shared:
            order = tuple([(key, flag, key in shared) for key, flag in self.complete().items()])
            cached = self._order = (shared, order)  # a race only builds an equal tuple twice
        return cached[1]

    def _build_known(self, key: str) -> CompiledFlag:
        flag = self._build(key)
        assert flag is not None  # key comes from self._raw
        return flag

    def items(self) -> Any:
        return self.complete().items()

    def values(self) -> Any:
        return self.complete().values()

    def errors(self) -> List[str]:
        """Internal compiler errors: the cohorts', then the flags' in definition order.

        Compiles everything first.
        """
        self.complete()
        with _lock:
            early = self._early_errors()
        return early + [self._errors[key] for key in self._raw if key in self._errors]

    def __repr__(self) -> str:
        return f"LazyFlags({len(self._raw)} flags, {len(self._compiled)} compiled)"


V = TypeVar("V")


class LoadedOnce(Mapping[str, V]):
    """A read-only mapping built by ``load()`` (under the lock) the first time it is read."""

    def __init__(self, load: Callable[[], Mapping[str, V]]) -> None:
        self._load = load
        self._done: Optional[Mapping[str, V]] = None

    def mapping(self) -> Mapping[str, V]:
        """The loaded mapping itself (loaded now if need be)."""
        return self._mapping()

    def _mapping(self) -> Mapping[str, V]:
        done = self._done
        if done is None:
            with _lock:
                done = self._done
                if done is None:
                    done = self._done = self._load()
        return done

    def __getitem__(self, key: str) -> V:
        done = self._done
        return (done if done is not None else self._mapping())[key]

    def __contains__(self, key: object) -> bool:
        return key in self._mapping()

    def __iter__(self) -> Iterator[str]:
        return iter(self._mapping())

    def __len__(self) -> int:
        return len(self._mapping())

    def __repr__(self) -> str:
        return f"LoadedOnce({'not loaded' if self._done is None else dict(self._done)!r})"
