"""``$exception`` events (protocol §6) and the uncaught-exception hooks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import productos
from productos._capture import exception_events as exceptions
from productos._capture.exception_events import exception_properties
from productos.testing import RecordingSender

pytestmark = pytest.mark.timeout(60)

HERE = Path(__file__).resolve()
ROOT = str(HERE.parent.parent)
SOURCE = HERE.read_text(encoding="utf-8").splitlines()
EXAMPLE = json.loads((HERE.parent / "data" / "wire_examples.json").read_text(encoding="utf-8"))


@pytest.fixture
def client() -> Iterator[Any]:
    sender = RecordingSender()
    c = productos.Client("phc_test", sender=sender)
    c.sender = sender  # type: ignore[attr-defined]
    try:
        yield c
    finally:
        c.shutdown(5)


def sent(client: Any) -> List[Dict[str, Any]]:
    client.flush(5)
    return client.sender.events


def caught(func: Any, *args: Any) -> BaseException:
    try:
        func(*args)
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


# The same call shape as the wire example: a request that fails while checking out.
def _raise_snapshot_exception() -> None:
    try:
        raise ValueError("invalid order total")
    except ValueError as exc:
        raise RuntimeError("checkout failed") from exc


def _exception_request() -> BaseException:
    try:
        _raise_snapshot_exception()
    except RuntimeError as exc:
        return exc
    raise AssertionError("expected an exception")


# --- the exception list -------------------------------------------------------------------


def test_wire_shape_matches_posthogs(client: Any) -> None:
    exc = _exception_request()
    client.capture_exception(exc, distinct_id="user-123", groups={"company": "company-456"},
                             properties={"component": "checkout", "severity": "high"})
    (ours,) = sent(client)
    (theirs,) = EXAMPLE["exception_event"]["body"]["batch"]
    assert ours["event"] == theirs["event"] == "$exception"
    assert ours["distinct_id"] == theirs["distinct_id"]
    mine, example = ours["properties"], theirs["properties"]
    # Properties productos adds by protocol §6, and PostHog-only ones (see test_wire_examples).
    assert set(mine) - set(example) == {"$exception_level", "$exception_source"}
    assert set(example) - set(mine) == {"$is_server", "$os_distro"}
    for key in ("$groups", "component", "severity", "$geoip_disable"):
        assert mine[key] == example[key]
    assert len(mine["$exception_list"]) == len(example["$exception_list"]) == 2
    for got, want in zip(mine["$exception_list"], example["$exception_list"]):
        assert set(got) == set(want)
        assert (got["type"], got["value"], got["module"]) == (want["type"], want["value"],
                                                              want["module"])
        # Protocol §6 names ``synthetic``; PostHog's SDK leaves it out when false.
        assert got["mechanism"] == {**want["mechanism"], "synthetic": False}
        assert got["stacktrace"]["type"] == want["stacktrace"]["type"] == "raw"
        got_frames, want_frames = got["stacktrace"]["frames"], want["stacktrace"]["frames"]
        assert [f["function"] for f in got_frames] == [f["function"] for f in want_frames]
        for frame, model in zip(got_frames, want_frames):
            assert set(frame) == set(model)
            assert frame["platform"] == "python" and frame["in_app"] is True
            assert frame["filename"] == __name__.replace(".", "/") + ".py"  # as imported
            assert frame["abs_path"] == str(HERE)
            assert frame["module"] == __name__
            assert isinstance(frame["lineno"], int)
            assert len(frame["pre_context"]) == len(model["pre_context"]) == 5
            assert len(frame["post_context"]) == len(model["post_context"]) == 5
    assert mine["$exception_level"] == "error"


def test_frames_are_oldest_first_with_exact_source_context() -> None:
    exc = _exception_request()
    (outer, cause) = exception_properties(exc)["$exception_list"]
    frames = outer["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["_exception_request",
                                               "_raise_snapshot_exception"]
    last = frames[-1]
    line = last["lineno"]
    assert last["context_line"] == SOURCE[line - 1]
    assert last["context_line"].strip() == 'raise RuntimeError("checkout failed") from exc'
    assert last["pre_context"] == SOURCE[line - 6: line - 1]
    assert last["post_context"] == SOURCE[line: line + 5]
    assert [f["function"] for f in cause["stacktrace"]["frames"]] == [
        "_raise_snapshot_exception"]


def test_implicit_context_is_included() -> None:
    def fail_implicitly() -> None:
        try:
            {}["missing"]
        except KeyError:
            raise TypeError("while handling")  # noqa: B904

    entries = exception_properties(caught(fail_implicitly))["$exception_list"]
    assert [(e["type"], e["value"]) for e in entries] == [("TypeError", "while handling"),
                                                          ("KeyError", "'missing'")]


def test_suppressed_context_is_left_out() -> None:
    def fail() -> None:
        try:
            {}["missing"]
        except KeyError:
            raise TypeError("clean") from None

    entries = exception_properties(caught(fail))["$exception_list"]
    assert [e["type"] for e in entries] == ["TypeError"]


def test_cycles_in_the_chain_end() -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__cause__, second.__cause__ = second, first
    entries = exception_properties(first)["$exception_list"]
    assert [e["value"] for e in entries] == ["a", "b"]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception groups are Python 3.11+")
def test_exception_groups_list_their_members() -> None:
    def fail() -> None:
        errors = []
        for exc_type, text in ((ValueError, "bad value"), (KeyError, "bad key")):
            try:
                raise exc_type(text)
            except Exception as exc:
                errors.append(exc)
        raise ExceptionGroup("several things failed", errors)  # noqa: F821

    entries = exception_properties(caught(fail))["$exception_list"]
    assert [(e["type"], e["value"]) for e in entries] == [
        ("ExceptionGroup", "several things failed (2 sub-exceptions)"),
        ("ValueError", "bad value"),
        ("KeyError", "'bad key'"),
    ]
    assert all(e["stacktrace"]["frames"][-1]["function"] == "fail" for e in entries)


def test_level_handled_and_mechanism() -> None:
    try:
        raise ValueError("x")
    except ValueError as exc:
        props = exception_properties(exc, level="fatal", handled=False,
                                     mechanism_type="excepthook")
    assert props["$exception_level"] == "fatal"
    assert props["$exception_source"] == "excepthook"
    assert props["$exception_list"][0]["mechanism"] == {"type": "excepthook", "handled": False,
                                                        "synthetic": False}


def test_an_exception_never_raised_gets_the_callers_stack_marked_synthetic() -> None:
    # posthog 7.91 does the same (construct_artificial_traceback), without touching the exception.
    exc = ValueError("made, not raised")
    (entry,) = exception_properties(exc)["$exception_list"]
    assert entry["value"] == "made, not raised"
    assert entry["mechanism"]["synthetic"] is True
    functions = [frame["function"] for frame in entry["stacktrace"]["frames"]]
    assert functions[-1] == "test_an_exception_never_raised_gets_the_callers_stack_marked_synthetic"
    assert exc.__traceback__ is None


def test_module_of_non_builtin_types() -> None:
    class LocalError(Exception):
        pass

    (entry,) = exception_properties(LocalError("x"))["$exception_list"]
    assert entry["module"] == __name__
    assert entry["type"] == "test_module_of_non_builtin_types.<locals>.LocalError"


def test_broken_str_and_huge_values() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    (entry,) = exception_properties(Broken())["$exception_list"]
    assert entry["value"].startswith("Broken(")
    (entry,) = exception_properties(ValueError("x" * 100_000))["$exception_list"]
    assert len(entry["value"]) == exceptions.MAX_VALUE_LENGTH
    assert entry["value"].endswith("...")


def test_deep_recursion_keeps_both_ends() -> None:
    def recurse(n: int) -> None:
        if n == 0:
            raise RecursionError("too deep")
        recurse(n - 1)

    frames = exception_properties(caught(recurse, 500))["$exception_list"][0][
        "stacktrace"]["frames"]
    assert len(frames) == exceptions.MAX_FRAMES
    assert frames[0]["function"] == "caught"
    assert frames[-1]["function"] == "recurse"
    assert frames[-1]["context_line"].strip() == 'raise RecursionError("too deep")'


def test_hidden_frames_are_left_out() -> None:
    def hidden() -> None:
        __tracebackhide__ = True
        raise ValueError("x")

    frames = exception_properties(caught(hidden))["$exception_list"][0]["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["caught"]


def test_in_app_follows_the_project_root() -> None:
    exc = caught(json.loads, "{not json")
    frames = exception_properties(exc, project_root=ROOT)["$exception_list"][0][
        "stacktrace"]["frames"]
    mine = [f for f in frames if f["abs_path"] == str(HERE)]
    stdlib = [f for f in frames if f["module"] and f["module"].startswith("json")]
    assert mine and all(f["in_app"] for f in mine)
    assert stdlib and not any(f["in_app"] for f in stdlib)
    assert [f["filename"] for f in stdlib][:2] == ["json/__init__.py", "json/decoder.py"]
    elsewhere = exception_properties(exc, project_root=os.path.join(ROOT, "productos"))
    assert not any(f["in_app"] for f in elsewhere["$exception_list"][0]["stacktrace"]["frames"])


def test_site_packages_under_the_root_are_not_in_app() -> None:
    root = os.path.join(os.sep, "srv", "app")
    assert exceptions._in_app(os.path.join(root, "shop", "views.py"), root)
    assert not exceptions._in_app(
        os.path.join(root, ".venv", "lib", "python3.11", "site-packages", "x.py"), root)
    assert not exceptions._in_app(os.path.join(os.sep, "srv", "application", "x.py"), root)


def test_missing_source_gives_empty_context() -> None:
    namespace: Dict[str, Any] = {}
    exec(compile("def f():\n    raise ValueError('generated')\n", "<generated>", "exec"),
         namespace)
    frames = exception_properties(caught(namespace["f"]))["$exception_list"][0][
        "stacktrace"]["frames"]
    generated = frames[-1]
    assert generated["abs_path"] == "<generated>"
    assert generated["context_line"] is None
    assert generated["pre_context"] == [] and generated["post_context"] == []
    assert generated["in_app"] is False


# --- through the client -------------------------------------------------------------------


def test_capture_exception_uses_the_current_exception(client: Any) -> None:
    try:
        raise KeyError("sku-1")
    except KeyError:
        assert client.capture_exception(distinct_id="u-1")
    (event,) = sent(client)
    assert event["properties"]["$exception_list"][0]["type"] == "KeyError"
    assert event["properties"]["$exception_source"] == "generic"


def test_the_same_exception_is_captured_once(client: Any) -> None:
    exc = _exception_request()
    assert client.capture_exception(exc, distinct_id="u")
    assert client.capture_exception(exc, distinct_id="u") is None
    assert exceptions.already_captured(exc)
    assert not exceptions.already_captured(ValueError())
    assert len(sent(client)) == 1


def test_mark_captured_tolerates_odd_objects() -> None:
    class Frozen(Exception):
        def __setattr__(self, name: str, value: Any) -> None:
            raise AttributeError("read-only")

    exc = Frozen()
    exceptions.mark_captured(exc)  # no error; just not remembered
    assert not exceptions.already_captured(exc)


def test_project_root_option_reaches_the_event(tmp_path: Path) -> None:
    sender = RecordingSender()
    c = productos.Client("phc_test", sender=sender, project_root=str(tmp_path))
    try:
        c.capture_exception(_exception_request(), distinct_id="u")
        c.flush(5)
    finally:
        c.shutdown(5)
    frames = sender.events[0]["properties"]["$exception_list"][0]["stacktrace"]["frames"]
    assert not any(f["in_app"] for f in frames)


# --- uncaught-exception hooks -------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: List[Any] = []

    def __call__(self, *args: Any) -> None:
        self.calls.append(args)


@pytest.fixture
def previous_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Stand-ins for whatever hooks were installed before ours."""
    sys_hook, thread_hook = Recorder(), Recorder()
    monkeypatch.setattr(sys, "excepthook", sys_hook)
    monkeypatch.setattr(threading, "excepthook", thread_hook)
    yield sys_hook, thread_hook


def test_autocapture_reports_uncaught_exceptions_fatal(previous_hooks: Any) -> None:
    sys_hook, thread_hook = previous_hooks
    sender = RecordingSender()
    c = productos.Client("phc_test", sender=sender, enable_exception_autocapture=True)
    try:
        assert sys.excepthook is not sys_hook
        exc = _exception_request()
        sys.excepthook(type(exc), exc, exc.__traceback__)
        assert sys_hook.calls == [(type(exc), exc, exc.__traceback__)]  # always chained

        def worker() -> None:
            raise LookupError("in a thread")

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert len(thread_hook.calls) == 1
        c.flush(5)
    finally:
        c.shutdown(5)
    events = sender.events
    assert [e["properties"]["$exception_list"][0]["value"] for e in events] == [
        "checkout failed", "in a thread"]
    for event in events:
        p = event["properties"]
        assert p["$exception_level"] == "fatal"
        assert p["$exception_list"][0]["mechanism"] == {"type": "excepthook", "handled": False,
                                                        "synthetic": False}
    # shutdown put the previous hooks back
    assert sys.excepthook is sys_hook and threading.excepthook is thread_hook


def test_keyboard_interrupt_is_passed_on_not_captured(previous_hooks: Any) -> None:
    sys_hook, _ = previous_hooks
    sender = RecordingSender()
    c = productos.Client("phc_test", sender=sender, enable_exception_autocapture=True)
    try:
        exc = KeyboardInterrupt()
        sys.excepthook(KeyboardInterrupt, exc, None)
        c.flush(5)
    finally:
        c.shutdown(5)
    assert sender.events == []
    assert len(sys_hook.calls) == 1


@pytest.mark.allow_internal_errors
def test_a_failing_capture_still_calls_the_previous_hook(previous_hooks: Any) -> None:
    sys_hook, _ = previous_hooks

    class Broken:
        def capture_exception(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("broken client")

    broken = Broken()
    handle = exceptions.install_autocapture(broken)
    try:
        exc = ValueError("x")
        sys.excepthook(ValueError, exc, None)
        assert sys_hook.calls == [(ValueError, exc, None)]
    finally:
        handle.uninstall()


def test_uninstall_leaves_a_later_hook_in_place(previous_hooks: Any) -> None:
    sys_hook, thread_hook = previous_hooks
    calls: List[Any] = []

    class Fake:
        def capture_exception(self, exc: BaseException, **kwargs: Any) -> None:
            calls.append(exc)

    fake = Fake()
    handle = exceptions.install_autocapture(fake)
    ours = sys.excepthook
    later = Recorder()

    def chained(*args: Any) -> None:  # another library chaining onto ours
        later(*args)
        ours(*args)

    sys.excepthook = chained
    handle.uninstall()
    assert sys.excepthook is chained  # not ours to remove
    assert threading.excepthook is thread_hook  # ours, so restored
    sys.excepthook(ValueError, ValueError("after"), None)
    assert calls == []  # our link is inert now ...
    assert len(sys_hook.calls) == 1  # ... and still passes the exception on
    handle.uninstall()  # idempotent


def test_scope_exceptions_are_captured_with_autocapture(client: Any) -> None:
    sender = RecordingSender()
    c = productos.Client("phc_test", sender=sender, enable_exception_autocapture=True)
    try:
        with pytest.raises(ValueError), productos.new_context(client=c):
            productos.identify_context("u-ctx")
            raise ValueError("left the scope")
        c.flush(5)
    finally:
        c.shutdown(5)
    (event,) = sender.events
    assert event["distinct_id"] == "u-ctx"
    assert event["properties"]["$exception_list"][0]["mechanism"]["type"] == "context"


def test_uncaught_exception_in_a_real_process_reaches_the_server(live_server: Any,
                                                                  tmp_path: Path) -> None:
    script = tmp_path / "crashing_app.py"
    script.write_text(textwrap.dedent(f"""
        import productos

        client = productos.Client("phc_crash", host={live_server.url!r},
                                  enable_exception_autocapture=True)

        def main():
            raise SystemError("the app crashed")

        main()
    """), encoding="utf-8")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 1
    assert "SystemError: the app crashed" in out.stderr  # the default hook still printed it
    assert live_server.wait_for_events(1, timeout=10)
    (event,) = live_server.events
    p = event["properties"]
    assert p["$exception_level"] == "fatal"
    (entry,) = p["$exception_list"]
    assert (entry["type"], entry["value"]) == ("SystemError", "the app crashed")
    frames = entry["stacktrace"]["frames"]
    assert [f["function"] for f in frames] == ["<module>", "main"]
    assert all(f["in_app"] for f in frames)  # the script's directory is the working directory
    assert frames[-1]["context_line"].strip() == 'raise SystemError("the app crashed")'
    assert frames[-1]["filename"] == "crashing_app.py"
