"""``record``: a dataclass decorator that costs less at import, with the same comparisons.

``dataclasses.dataclass`` compiles each method it writes with ``exec()`` when the class is
defined. For a frozen class that is six methods (``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__``, ``__delattr__``), about 0.6 ms; with some forty such classes
it was a third of ``import productos``. ``record`` lets the standard decorator write only
``__init__`` and the frozen guards, and gives ``__eq__``, ``__hash__`` and ``__repr__`` from
one shared implementation that follows the dataclass rules: equality compares the fields
marked ``compare`` and only between instances of the same class, the hash of an ``eq`` and
``frozen`` record is that of those fields, a mutable ``eq`` record is unhashable, and methods
written in the class body are kept. The classes stay dataclasses: ``fields()``,
``replace()`` and ``asdict()`` work on them. Two differences remain. ``__dataclass_params__``
reports ``eq`` and ``repr`` as False, since the standard decorator did not write them. And
fields compare as a tuple, as dataclasses did before Python 3.13, so a field holding the same
NaN object compares equal.

``slots=True`` is passed on where Python has it (3.10+): the flag evaluator walks thousands
of compiled records per call, and an attribute kept in the object itself is one memory
access less than one kept in a per-instance dict, which counts once the data outgrows the
CPU caches.
"""

from __future__ import annotations

import dataclasses
import reprlib
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional, Tuple, TypeVar, cast, overload

__all__ = ["record"]

T = TypeVar("T", bound=type)

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform
else:
    def dataclass_transform(**_kwargs: Any) -> Callable[[T], T]:
        return lambda decorator: decorator


def _values(names: Tuple[str, ...]) -> Callable[[Any], Tuple[Any, ...]]:
    def values(self: Any) -> Tuple[Any, ...]:
        return tuple([getattr(self, name) for name in names])
    return values


def _add_eq(cls: type, compared: Tuple[str, ...], hashed: Tuple[str, ...],
            frozen: bool) -> None:
    values = _values(compared)

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    body = cls.__dict__
    if "__eq__" not in body:
        cls.__eq__ = __eq__  # type: ignore[method-assign,assignment]
    # As dataclasses decide it: a __hash__ written in the body is kept (Python sets
    # __hash__ = None in a body that defines __eq__; that one is not "written").
    written = body.get("__hash__", None) is not None or (
        "__hash__" in body and "__eq__" not in body)
    if written:
        return
    if frozen:
        hash_values = _values(hashed)

        def __hash__(self: Any) -> int:
            return hash(hash_values(self))

        cls.__hash__ = __hash__  # type: ignore[method-assign,assignment]
    else:
        cls.__hash__ = None  # type: ignore[assignment]


def _add_repr(cls: type, shown: Tuple[str, ...]) -> None:
    if "__repr__" in cls.__dict__:
        return

    @reprlib.recursive_repr()
    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    cls.__repr__ = __repr__  # type: ignore[method-assign,assignment]


@overload
def record(cls: T, /) -> T: ...


@overload
def record(*, frozen: bool = False, eq: bool = True, repr: bool = True,
           **options: Any) -> Callable[[T], T]: ...


@dataclass_transform(field_specifiers=(dataclasses.field, dataclasses.Field))
def record(cls: Optional[T] = None, /, *, frozen: bool = False, eq: bool = True,
           repr: bool = True, **options: Any) -> Any:
    """``@dataclasses.dataclass`` with the same arguments, cheaper to define (see above)."""

    if options.get("slots") and sys.version_info < (3, 10):
        # Only an optimisation (attributes in the object, no per-instance dict): before
        # Python 3.10 dataclasses cannot make slots, and the class works without them.
        del options["slots"]

    def wrap(target: T) -> T:
        made = cast(T, dataclasses.dataclass(target, frozen=frozen, eq=False, repr=False,
                                             **options))
        fields = dataclasses.fields(made)
        if eq:
            compared = tuple(f.name for f in fields if f.compare)
            hashed = tuple(f.name for f in fields
                           if (f.compare if f.hash is None else f.hash))
            _add_eq(made, compared, hashed, frozen)
        if repr:
            _add_repr(made, tuple(f.name for f in fields if f.repr))
        return made

    return wrap if cls is None else wrap(cls)
