"""client.on_flags_changed(callback): told which flags were added, removed and changed.

Every way definitions change reaches the listeners: set_flag_definitions, a poll of a real
definitions endpoint on 127.0.0.1, and an edited flag_definitions_file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import productos
from productos.testing import FlagDefinitionsBuilder

try:
    from tests.support import wait_until
except ModuleNotFoundError:  # plain `pytest` from the tests folder
    from support import wait_until  # type: ignore

BEFORE = FlagDefinitionsBuilder().flag("kept").flag("edited", rollout=10).flag("dropped").build()
AFTER = FlagDefinitionsBuilder().flag("kept").flag("edited", rollout=90).flag("new").build()


class Heard:
    """A listener that records each change and lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.changes: List[productos.FlagsChanged] = []
        self.threads: List[str] = []
        self._lock = threading.Lock()

    def __call__(self, change: productos.FlagsChanged) -> None:
        with self._lock:
            self.changes.append(change)
            self.threads.append(threading.current_thread().name)

    def wait_for(self, count: int, timeout: float = 10.0) -> List[productos.FlagsChanged]:
        assert wait_until(lambda: len(self.changes) >= count, timeout), self.changes
        return list(self.changes)


@pytest.fixture
def offline() -> Iterator[productos.Client]:
    client = productos.Client("phc_test", flag_definitions=BEFORE, send=False)
    yield client
    client.shutdown(2)


def test_a_swap_reports_exactly_the_keys_added_removed_and_changed(offline):
    heard = Heard()
    offline.on_flags_changed(heard)
    offline.set_flag_definitions(AFTER)
    (change,) = heard.wait_for(1)
    assert change.added == {"new"}
    assert change.removed == {"dropped"}
    assert change.changed == {"edited"}
    assert bool(change) is True
    # Off the caller's thread: a slow listener never slows a flag read or a poll.
    assert heard.threads == ["productos-flag-listeners"]
    assert offline.feature_enabled("new", "u1") is True


def test_the_same_definitions_again_call_nobody(offline):
    heard = Heard()
    offline.on_flags_changed(heard)
    offline.set_flag_definitions(BEFORE)       # same content: no change to report
    offline.set_flag_definitions(AFTER)        # a real change, reported after it
    changes = heard.wait_for(1)
    assert len(changes) == 1 and changes[0].added == {"new"}


def test_a_cohort_change_changes_every_flag_that_stays(offline):
    heard = Heard()
    offline.on_flags_changed(heard)
    with_cohort: Dict[str, Any] = json.loads(json.dumps(BEFORE))
    with_cohort["cohorts"] = {"7": {"type": "AND", "values": []}}
    offline.set_flag_definitions(with_cohort)
    (change,) = heard.wait_for(1)
    assert change.changed == {"kept", "edited", "dropped"}
    assert not change.added and not change.removed


def test_a_raising_listener_is_logged_and_the_others_still_hear(offline, caplog,
                                                                internal_errors):
    heard = Heard()

    def broken(change: productos.FlagsChanged) -> None:
        raise RuntimeError("listener broke")

    offline.on_flags_changed(broken)
    offline.on_flags_changed(heard)
    offline.set_flag_definitions(AFTER)
    heard.wait_for(1)
    assert wait_until(lambda: "on_flags_changed callback raised" in caplog.text)
    assert offline._listeners.errors == 1
    assert [type(e).__name__ for e in internal_errors] == ["RuntimeError"]
    internal_errors.clear()  # provoked on purpose
    assert offline.feature_enabled("kept", "u1") is True  # the client carries on


def test_unsubscribing_stops_the_calls(offline):
    heard, other = Heard(), Heard()
    remove = offline.on_flags_changed(heard)
    offline.on_flags_changed(other)
    remove()
    offline.set_flag_definitions(AFTER)
    other.wait_for(1)
    assert heard.changes == []


def test_a_poll_that_brings_new_definitions_is_reported(live_server):
    live_server.set_definitions(json.loads(json.dumps(BEFORE)))
    client = productos.Client("phc_test", host=live_server.url,
                              personal_api_key=live_server.personal_api_key,
                              poll_interval=0.2, send=False)
    try:
        assert client.load_feature_flags()
        heard = Heard()
        client.on_flags_changed(heard)
        live_server.set_definitions(json.loads(json.dumps(AFTER)))
        (change, *rest) = heard.wait_for(1)
        assert (change.added, change.removed, change.changed) == ({"new"}, {"dropped"},
                                                                  {"edited"})
        assert rest == []
    finally:
        client.shutdown(2)


def test_an_edited_definitions_file_is_reloaded_and_reported(tmp_path: Path):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(BEFORE))
    client = productos.Client("phc_test", flag_definitions_file=str(path), poll_interval=0.2,
                              send=False)
    try:
        assert client.feature_enabled("dropped", "u1") is True
        heard = Heard()
        client.on_flags_changed(heard)
        replacement = tmp_path / "flags.json.new"
        replacement.write_text(json.dumps(AFTER))
        os.replace(replacement, path)  # as editors and deploy tools write: whole, at once
        (change,) = heard.wait_for(1)
        assert change.added == {"new"} and change.removed == {"dropped"}
        assert client.get_feature_flag("dropped", "u1") is None
        assert client.feature_enabled("new", "u1") is True
        status = client.flag_definitions_status()
        assert status is not None and status.source == "file"
    finally:
        client.shutdown(2)


def test_a_file_that_stops_parsing_keeps_the_last_good_definitions(tmp_path: Path, caplog,
                                                                   internal_errors):
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(BEFORE))
    client = productos.Client("phc_test", flag_definitions_file=str(path), poll_interval=0.2,
                              send=False)
    try:
        assert client.feature_enabled("dropped", "u1") is True
        heard = Heard()
        client.on_flags_changed(heard)
        path.write_text("{not json")
        assert wait_until(lambda: "flags.json" in caplog.text, 5), caplog.text
        assert client.feature_enabled("dropped", "u1") is True
        assert heard.changes == []
        internal_errors.clear()  # a parse failure may be reported with its traceback
    finally:
        client.shutdown(2)
