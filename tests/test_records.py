"""``record`` behaves as ``dataclasses.dataclass`` does: each case is checked against it."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any, Callable, Tuple

import pytest

from productos._runtime.records import record

DECORATORS = [pytest.param(dataclasses.dataclass, id="dataclass"),
              pytest.param(record, id="record")]


def build(decorate: Callable[..., Any], **options: Any) -> type:
    @decorate(**options)
    class Point:
        x: int
        y: int = 0
        label: str = dataclasses.field(default="", compare=False)
        secret: str = dataclasses.field(default="s", repr=False)
        tags: Tuple[str, ...] = dataclasses.field(default=(), hash=False)

    return Point


def outcomes(decorate: Callable[..., Any], **options: Any) -> dict:
    point = build(decorate, **options)
    a, b = point(1, 2, "a", tags=("t",)), point(1, 2, "b", tags=("u",))
    other = build(decorate, **options)(1, 2)
    found: dict = {
        "repr": repr(a).split(".")[-1],
        "equal": a == b,
        "equal_other_class": a == other,
        "unequal": a == point(1, 3),
        "ne": a != point(1, 3),
        "hashable": point.__hash__ is not None,
        "fields": [f.name for f in dataclasses.fields(a)],
        "replace": dataclasses.replace(a, y=5).y,
        "asdict": dataclasses.asdict(a),
        "match_args": getattr(point, "__match_args__", None),  # Python 3.10+
    }
    if found["hashable"]:
        found["hash"] = hash(a) == hash(point(1, 2, "z", tags=("v",)))
    return found


@pytest.mark.parametrize("options", [
    {}, {"frozen": True}, {"eq": False}, {"frozen": True, "eq": False}, {"repr": False},
], ids=["mutable", "frozen", "no-eq", "frozen-no-eq", "no-repr"])
def test_a_record_answers_as_the_same_dataclass_would(options):
    expected = outcomes(dataclasses.dataclass, **options)
    got = outcomes(record, **options)
    if options.get("repr") is False:  # object.__repr__ shows an address
        expected.pop("repr"), got.pop("repr")
    assert got == expected


@pytest.mark.parametrize("decorate", DECORATORS)
def test_a_frozen_record_refuses_changes(decorate):
    point = build(decorate, frozen=True)(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del point.y  # type: ignore[misc]


@pytest.mark.parametrize("decorate", DECORATORS)
def test_methods_written_in_the_class_are_kept(decorate):
    @decorate(frozen=True)
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Named) and other.name.lower() == self.name.lower()

        def __hash__(self) -> int:
            return hash(self.name.lower())

    assert repr(Named("A")) == "<A>"
    assert Named("A") == Named("a") and hash(Named("A")) == hash(Named("a"))


@pytest.mark.parametrize("decorate", DECORATORS)
def test_an_eq_written_in_the_body_of_a_frozen_class_gets_the_field_hash(decorate):
    @decorate(frozen=True)
    class Loose:
        value: int

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Loose) and other.value % 10 == self.value % 10

    assert Loose(1) == Loose(11)
    assert hash(Loose(1)) == hash(Loose(1)) and hash(Loose(1)) != hash(Loose(2))


@pytest.mark.parametrize("decorate", DECORATORS)
def test_subclasses_compare_only_with_their_own_class(decorate):
    @decorate(frozen=True)
    class Base:
        key: str

    @decorate(frozen=True)
    class Child(Base):
        extra: int = 0

    assert Base("k") != Child("k") and Child("k", 1) == Child("k", 1)
    assert repr(Child("k", 1)).endswith("Child(key='k', extra=1)")


def test_a_record_that_holds_itself_prints_without_recursing():
    @record
    class Node:
        name: str
        child: Any = None

    node = Node("a")
    node.child = node
    assert repr(node).endswith("Node(name='a', child=...)")


def test_the_package_records_compare_by_value():
    from productos._flags.compiler import parse_definitions

    body = {"flags": [{"key": "f", "active": True, "filters": {"groups": [{"properties": [
        {"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}],
        "rollout_percentage": 50}]}}]}
    first, second = parse_definitions(body), parse_definitions(body)
    spec_a = first.flags["f"].conditions[0].filters[0]
    spec_b = second.flags["f"].conditions[0].filters[0]
    assert spec_a is not spec_b and spec_a == spec_b
    assert first.flags["f"] != second.flags["f"]  # compiled flags compare by identity


def test_a_slotted_record_keeps_its_attributes_in_the_object():
    @record(frozen=True, slots=True)
    class Spec:
        key: str
        texts: Tuple[str, ...] = ()

    spec = Spec("plan", ("pro",))
    if sys.version_info >= (3, 10):
        assert not hasattr(spec, "__dict__") and Spec.__slots__ == ("key", "texts")
    assert spec == Spec("plan", ("pro",)) and hash(spec) == hash(Spec("plan", ("pro",)))
    assert dataclasses.replace(spec, key="country") == Spec("country", ("pro",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.key = "x"  # type: ignore[misc]


def test_the_compiled_flags_the_evaluator_walks_carry_no_instance_dicts():
    from productos._flags.compiler import parse_definitions

    if sys.version_info < (3, 10):
        pytest.skip("dataclasses make slots from Python 3.10")
    body = {"flags": [{"key": "f", "active": True, "filters": {"groups": [{"properties": [
        {"key": "plan", "value": ["pro"], "operator": "exact", "type": "person"}],
        "rollout_percentage": 50}]}}]}
    flag = parse_definitions(body).flags["f"]
    spec = flag.conditions[0].filters[0]
    for obj in (flag, flag.plan, flag.conditions[0], spec):
        assert not hasattr(obj, "__dict__"), type(obj).__name__
