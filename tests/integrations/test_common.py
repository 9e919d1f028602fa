"""Framework-neutral integration pieces: header cleaning, settings, the request helper."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any, List

import pytest

from productos.integrations import _common
from productos.integrations._common import (
    INERT,
    RequestClient,
    RequestInfo,
    SettingsCache,
    clean_header_value,
    client_ip,
    settings_from_mapping,
    user_distinct_id,
)


@pytest.mark.parametrize(("raw", "expected"), [
    (None, None),
    ("", None),
    ("   ", None),
    ("abc", "abc"),
    ("  abc \t", "abc"),
    ("a\x00b\x1fc\x7fd\x85e\u2028f", "abcdef"),
    ("\x00\x01", None),
    (b"bytes-id", "bytes-id"),
    ("é-ünïcode", "é-ünïcode"),
    ("x" * 1500, "x" * 1000),
])
def test_clean_header_value(raw: Any, expected: Any) -> None:
    assert clean_header_value(raw) == expected


def test_client_ip_prefers_the_first_forwarded_address() -> None:
    assert client_ip("203.0.113.1, 10.0.0.2", "127.0.0.1") == "203.0.113.1"
    assert client_ip(" , 10.0.0.2", "127.0.0.1") == "127.0.0.1"
    assert client_ip(None, "127.0.0.1") == "127.0.0.1"
    assert client_ip(None, None) is None


def test_request_info_tags_leave_out_unknowns() -> None:
    info = RequestInfo(url="http://x/a", method="GET", path="/a")
    assert info.tags() == {"$current_url": "http://x/a", "$request_method": "GET",
                           "$request_path": "/a"}


def test_user_distinct_id() -> None:
    class User:
        is_authenticated = True
        pk = 7

    class Anonymous:
        is_authenticated = False
        pk = None

    assert user_distinct_id(User()) == "7"
    assert user_distinct_id(Anonymous()) is None
    assert user_distinct_id(None) is None


# --- the request helper -----------------------------------------------------------------------


class Flags:
    def __init__(self) -> None:
        self.calls: List[Any] = []

    def feature_enabled(self, key: str, distinct_id: str, **kwargs: Any) -> bool:
        self.calls.append((key, distinct_id, kwargs))
        return True

    def get_feature_flag(self, key: str, distinct_id: str, **kwargs: Any) -> Any:
        raise RuntimeError("flag service bug")


def test_request_client_binds_identity_and_properties() -> None:
    flags = Flags()
    helper = RequestClient(flags, "u-1", person_properties={"plan": "pro", "a": 1},
                           groups={"company": "acme"})
    assert helper.feature_enabled("beta", person_properties={"a": 2}) is True
    assert flags.calls[-1] == ("beta", "u-1", {"person_properties": {"plan": "pro", "a": 2},
                                               "groups": {"company": "acme"}})
    helper.feature_enabled("beta", distinct_id="other", groups={"team": "t"},
                           only_evaluate_locally=True)
    assert flags.calls[-1] == ("beta", "other", {"person_properties": {"plan": "pro", "a": 1},
                                                 "groups": {"team": "t"},
                                                 "only_evaluate_locally": True})


def test_request_client_never_raises(internal_errors: List[BaseException]) -> None:
    helper = RequestClient(Flags(), "u-1")
    assert helper.get_feature_flag("beta") is None
    assert helper.get_feature_flag_payload("beta") is None  # the client lacks the method
    assert [str(e) for e in internal_errors] == ["flag service bug"]
    internal_errors.clear()
    assert RequestClient().feature_enabled("beta") is None
    assert RequestClient().capture("event") is None
    assert RequestClient(Flags()).feature_enabled("beta") is None  # no distinct id


def test_request_client_capture(recording: Any) -> None:
    helper = RequestClient(recording.client, "u-5")
    assert helper.capture("clicked", properties={"button": "buy"})
    (event,) = recording.events("clicked")
    assert event["distinct_id"] == "u-5"
    assert event["properties"]["button"] == "buy"


# --- settings ----------------------------------------------------------------------------------


def test_settings_use_a_given_client_without_owning_it(recording: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="productos")
    settings = settings_from_mapping({"CLIENT": recording.client, "TYPO": 1}, "TEST")
    assert settings.active and settings.client is recording.client
    assert not settings.owns_client
    assert "unknown TEST setting(s) ignored: TYPO" in caplog.text


def test_settings_build_and_own_a_client() -> None:
    settings = settings_from_mapping({"API_KEY": "phc_built", "OPTIONS": {"send": False}},
                                     "TEST")
    try:
        assert settings.owns_client
        assert settings.client.options.project_api_key == "phc_built"
    finally:
        settings.client.shutdown(1)


@pytest.mark.allow_internal_errors
def test_invalid_settings_give_an_inert_integration(caplog: Any) -> None:
    caplog.set_level(logging.ERROR, logger="productos")
    assert settings_from_mapping({"REQUEST_FILTER": 42}, "TEST") is INERT
    assert settings_from_mapping({"REQUEST_FILTER": "no.such.module.func"}, "TEST") is INERT
    assert settings_from_mapping({"OPTIONS": {"flush_at": 0}, "API_KEY": "k"}, "TEST") is INERT
    assert not INERT.active
    assert caplog.text.count("the integration is off") == 3


def test_settings_cache_loads_once_and_shuts_down_what_it_built() -> None:
    loads: List[Any] = []

    def load() -> Any:
        settings = settings_from_mapping({"API_KEY": "phc_cache", "OPTIONS": {"send": False}},
                                         "TEST")
        loads.append(settings)
        return settings

    cache = SettingsCache(load)
    first = cache.get()
    assert cache.get() is first and len(loads) == 1
    cache.reset()
    assert first.client._is_shut_down
    second = cache.get()
    assert second is not first
    cache.reset()


def test_settings_cache_survives_a_failing_loader(internal_errors: List[BaseException]) -> None:
    def load() -> Any:
        raise RuntimeError("settings bug")

    assert SettingsCache(load).get() is INERT
    assert len(internal_errors) == 1
    internal_errors.clear()


def test_guard_logs_and_swallows(internal_errors: List[BaseException], caplog: Any) -> None:
    with _common.guard("doing a thing"):
        raise ValueError("oops")
    assert "internal error while doing a thing" in caplog.text
    assert len(internal_errors) == 1
    internal_errors.clear()


# --- imports -----------------------------------------------------------------------------------


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("module", "framework"), [("django", "django"), ("flask", "flask"),
                                                   ("drf", "rest_framework")])
def test_missing_framework_gives_a_clear_error(module: str, framework: str) -> None:
    out = _run(f"""
        import sys
        sys.modules[{framework!r}] = None  # as if it were not installed
        from productos.integrations._common import IntegrationNotAvailable
        try:
            import productos.integrations.{module}
        except IntegrationNotAvailable as exc:
            assert isinstance(exc, ImportError)
            print(exc)
    """)
    assert out.returncode == 0, out.stderr
    assert "pip install 'productos[" in out.stdout


def test_common_module_imports_no_framework() -> None:
    out = _run("""
        import sys
        import productos.integrations._common
        import productos._capture.exception_events
        print(",".join(m for m in ("django", "flask", "rest_framework") if m in sys.modules))
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
