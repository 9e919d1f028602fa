"""Message building: ids, timestamps, JSON safety and property precedence (pure functions)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import uuid as uuid_mod
from pathlib import PurePosixPath
from types import MappingProxyType

import pytest

from productos._capture.events import MAX_DEPTH, EventBuilder, dumps
from productos._capture.ids import format_timestamp, normalize_uuid, uuid7
from productos._capture.runtime import parse_os_release, system_properties


def test_uuid7_is_a_valid_version_7_uuid_and_time_ordered():
    first = uuid7()
    parsed = uuid_mod.UUID(first)
    assert parsed.version == 7 and parsed.variant == uuid_mod.RFC_4122
    later = [uuid7() for _ in range(100)]
    # the 48-bit millisecond prefix never goes backwards
    assert all(a[:13] <= b[:13] for a, b in zip([first, *later], later))
    assert len(set(later)) == 100


def test_uuid7_within_one_millisecond_shares_its_random_head_and_counts_up():
    now_ns = 1_767_000_000_123_456_789
    ids = [uuid7(now_ns) for _ in range(500)]
    assert {i[:24] for i in ids} == {ids[0][:24]}  # time, version, rand_a, variant: drawn once
    assert ids[0][:13] == "019b6968-467b"  # the millisecond 1767000000123 in hex
    low = [int(i[24:], 16) for i in ids]
    # The last 48 bits step by one (modulo 2**48), so no two ids of the process are equal.
    assert all((b - a) % (1 << 48) >= 1 for a, b in zip(low, low[1:]))
    assert len(set(ids)) == 500
    for text in ids[:20]:
        parsed = uuid_mod.UUID(text)
        assert parsed.version == 7 and parsed.variant == uuid_mod.RFC_4122


def test_uuid7_from_many_threads_at_once_never_repeats():
    import threading

    now_ns = 1_767_000_000_500_000_000  # every thread in the same millisecond
    made: list = []
    barrier = threading.Barrier(8)

    def draw() -> None:
        barrier.wait()
        made.extend([uuid7(now_ns) for _ in range(2000)])

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 16_000
    assert len(set(made)) == 16_000


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_draws_its_own_uuid7_in_the_same_millisecond():
    import os

    now_ns = 1_767_000_000_900_000_000
    before = uuid7(now_ns)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the at-fork hook has reseeded it
        try:
            os.write(write_end, uuid7(now_ns).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 100).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    parent_next = uuid7(now_ns)
    assert len(child) == 36 and child != parent_next
    assert parent_next[:24] == before[:24]  # the parent keeps its head for the millisecond
    assert child[:24] != before[:24]  # the child drew a new one (2**26 possible heads)


def test_with_crypto_uuids_every_id_draws_all_its_random_bits(tmp_path):
    import os
    import subprocess
    import sys

    script = (
        "from productos._capture.ids import uuid7\n"
        "ids = [uuid7(1767000000123456789) for _ in range(50)]\n"
        "print(len({i[:24] for i in ids}), len(set(ids)))\n"
    )
    env = {**os.environ, "PRODUCTOS_CRYPTO_UUIDS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    heads, unique = map(int, done.stdout.split())
    assert unique == 50
    assert heads > 40  # a fresh rand_a and variant bits per id, not one per millisecond


@pytest.mark.parametrize("given, expected", [
    ("00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000001"),
    ("00000000000040008000000000000001", "00000000-0000-4000-8000-000000000001"),
    (uuid_mod.UUID(int=5), "00000000-0000-0000-0000-000000000005"),
    ("nope", None), (12, None), ("", None),
])
def test_normalize_uuid(given, expected):
    assert normalize_uuid(given) == expected


@pytest.mark.parametrize("given, expected", [
    (dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.timezone.utc),
     "2026-01-02T03:04:05.123456+00:00"),
    (dt.datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05+00:00"),
    (dt.datetime(2026, 1, 2, 5, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
     "2026-01-02T03:04:05+00:00"),
    (dt.date(2026, 1, 2), "2026-01-02T00:00:00+00:00"),
    (0, "1970-01-01T00:00:00+00:00"),
    ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00"),
])
def test_timestamps_are_iso_utc(given, expected):
    assert format_timestamp(given) == expected


def test_now_is_utc_with_offset():
    assert format_timestamp().endswith("+00:00")


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Colour(enum.Enum):
    RED = "red"


class FakePydantic:
    def model_dump(self):
        return {"name": "model"}


class Unknown:
    pass


def decode(obj):
    data, problems = dumps(obj)
    return json.loads(data), problems


def test_json_safety_conversions():
    value, problems = decode({
        "dt": dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc), "d": dt.date(2026, 1, 1),
        "u": uuid_mod.UUID(int=1), "dec": decimal.Decimal("1.25"), "set": {3},
        "tuple": (1, 2), "bytes": "é".encode(), "nan": float("nan"), "inf": float("-inf"),
        "dc": Point(1, 2.5), "enum": Colour.RED, "path": PurePosixPath("/a/b"),
        "model": FakePydantic(), "dec_nan": decimal.Decimal("NaN"),
    })
    assert value == {
        "dt": "2026-01-01T12:00:00+00:00", "d": "2026-01-01",
        "u": "00000000-0000-0000-0000-000000000001", "dec": 1.25, "set": [3],
        "tuple": [1, 2], "bytes": "é", "nan": None, "inf": None,
        "dc": {"x": 1, "y": 2.5}, "enum": "red", "path": "/a/b", "model": {"name": "model"},
        "dec_nan": None,
    }
    assert problems == []


def test_unconvertible_values_are_dropped_and_reported():
    value, problems = decode({"ok": 1, "bad": Unknown(), "list": [1, Unknown(), 2]})
    assert value == {"ok": 1, "list": [1, 2]}
    assert len(problems) == 2 and "Unknown" in problems[0]


def test_cycles_are_cut_not_followed():
    loop: dict = {"a": 1}
    loop["me"] = loop
    items: list = [1]
    items.append(items)
    value, problems = decode({"loop": loop, "items": items})
    assert value == {"loop": {"a": 1}, "items": [1]}
    assert all("circular" in p for p in problems)


def test_shared_but_acyclic_values_are_kept():
    shared = {"k": 1}
    value, problems = decode({"a": shared, "b": shared})
    assert value == {"a": {"k": 1}, "b": {"k": 1}} and problems == []


def test_too_deep_nesting_is_cut():
    deep: dict = {}
    node = deep
    for _ in range(5_000):  # deeper than the C encoder's recursion limit
        node["n"] = {}
        node = node["n"]
    value, problems = decode({"deep": deep})
    assert problems and "deeper" in problems[0]
    depth, node = 0, value["deep"]
    while node:
        node, depth = node["n"], depth + 1
    assert depth < MAX_DEPTH


def test_non_string_keys_are_stringified_or_dropped():
    value, problems = decode({2: "int", None: "none", True: "bool", (1, 2): "tuple"})
    assert value == {"2": "int", "null": "none", "true": "bool"}
    assert len(problems) == 1


def test_lone_surrogates_do_not_break_serialisation():
    data, _ = dumps({"s": "bad \ud800 text"})
    assert isinstance(data, bytes)


def test_builder_precedence_and_system_properties():
    builder = EventBuilder(super_properties={"s": "super", "x": "super"})
    message = builder.build("e", "u", {"x": "caller", "c": 1, "$lib": "spoofed"},
                            tags={"x": "tag", "t": 1}, session_id="sess",
                            groups={"company": "acme"})
    props = message["properties"]
    assert props["x"] == "super" and props["c"] == 1 and props["t"] == 1
    assert props["$lib"] == "productos-python"
    assert props["$session_id"] == "sess"
    assert props["$groups"] == {"company": "acme"}
    assert "$os" in props and "$python_version" in props


def test_runtime_properties_are_those_the_platform_module_reports():
    import platform
    import sys

    props = system_properties()
    assert props["$python_runtime"] == platform.python_implementation()
    assert props["$python_version"] == platform.python_version()
    reader = getattr(platform, "freedesktop_os_release", None)  # Python 3.10+
    if sys.platform.startswith("linux") and reader is not None:
        try:
            expected = reader().get("VERSION_ID") or ""
        except OSError:
            expected = platform.release()
        assert props["$os"] == "Linux"
        assert props["$os_version"] == expected


@pytest.mark.parametrize("text, expected", [
    ('NAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n',
     {"NAME": "Debian GNU/Linux", "VERSION_ID": "12", "ID": "debian"}),
    ("VERSION_ID='22.04'\n", {"VERSION_ID": "22.04"}),
    ('# a comment=1\n\nPRETTY_NAME="A \\"quoted\\" \\$name"\n',
     {"PRETTY_NAME": 'A "quoted" $name'}),
    ('VERSION_ID="3.19\nBAD LINE\n  INDENTED=1\nKEY = 2\n', {"VERSION_ID": '"3.19'}),
    # Only "\n" ends a line: other characters str.splitlines() breaks on stay in the value.
    ('VERSION_ID="1\x0c2"\nNAME="a\x1dVERSION_ID=9"\n',
     {"VERSION_ID": "1\x0c2", "NAME": "a\x1dVERSION_ID=9"}),
    ("", {}),
])
def test_os_release_files_are_read_as_the_platform_module_reads_them(text, expected):
    import platform

    assert parse_os_release(text) == expected
    if hasattr(platform, "_parse_os_release"):  # CPython's own reader, when it has one
        reference = platform._parse_os_release(text.split("\n"))
        assert {k: reference[k] for k in expected} == expected
        # Beyond what the text sets, CPython's reader only adds its defaults.
        assert set(reference) - set(expected) <= {"NAME", "ID", "PRETTY_NAME"}


def test_a_first_client_and_its_first_event_do_not_import_platform():
    import subprocess
    import sys

    script = (
        "import sys, productos\n"
        "c = productos.Client('phc_x', send=False)\n"
        "c.capture('e', distinct_id='u')\n"
        "print('platform' in sys.modules, sorted(productos._capture.runtime.system_properties()))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    imported, names = done.stdout.split(" ", 1)
    assert names.strip() == "['$os', '$os_version', '$python_runtime', '$python_version']"
    assert imported == ("True" if not sys.platform.startswith("linux") else "False")


def test_builder_without_system_properties():
    message = EventBuilder().build("$set", "u", None, system=False, top_level={"$set": {"a": 1}})
    assert "$os" not in message["properties"]
    assert message["$set"] == {"a": 1}


def test_lone_surrogates_become_valid_utf8():
    data, problems = dumps({"s": "bad \ud800 text"})
    assert json.loads(data.decode("utf-8"))["s"] == "bad ? text"
    assert problems


@pytest.mark.parametrize("defer", [True, False])
@pytest.mark.parametrize("properties, top_level, system", [
    ({"a": 1, "b": [1, 2], "c": {"d": None}}, None, True),
    ({}, None, True),
    (None, None, False),
    ({"$lib": "spoofed", "x": 1}, None, True),  # a constant key: merged in full
    (MappingProxyType({"m": "mapping, not a dict"}), None, True),
    (None, {"$set": {"plan": "pro"}, "$set_once": {"first": 1}}, False),
])
def test_the_templated_encoding_is_the_message_as_json(defer, properties, top_level, system):
    builder = EventBuilder(super_properties=None, defer_constants=defer)
    draft = builder.draft("e\u00e9", "user-1", properties, top_level=top_level, system=system)
    data, problems = builder.encode(draft)
    assert problems == []
    assert json.loads(data) == builder.message(draft)
    assert builder.message(draft)["properties"]["$lib"] == "productos-python"


def test_unencodable_properties_fall_back_to_the_sanitiser():
    builder = EventBuilder(defer_constants=True)
    draft = builder.draft("e", "u", {"ok": 1, "bad": Unknown(), "nan": float("nan")})
    data, problems = builder.encode(draft)
    props = json.loads(data)["properties"]
    assert props["ok"] == 1 and props["nan"] is None and "bad" not in props
    assert props["$lib"] == "productos-python" and len(problems) == 1


def test_an_event_without_a_person_gets_a_random_v4_id():
    message = EventBuilder().build("e", None, {"a": 1})
    person = uuid_mod.UUID(message["distinct_id"])
    assert person.version == 4 and person.variant == uuid_mod.RFC_4122
    assert message["properties"]["$process_person_profile"] is False
