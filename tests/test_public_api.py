"""The public face: ``productos.__all__`` is pinned, complete, and the options are declared once."""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import typing

import pytest

import productos
from productos._runtime.options import Options

EXPORTED = [
    "CachedDefinitions",
    "FlagDefinitionsCache",
    "FlagsChanged",
    "APIError",
    "AsyncClient",
    "AuthenticationError",
    "BatchOutcome",
    "Client",
    "ClientShutdownError",
    "ConditionTrace",
    "ConfigurationError",
    "ConnectError",
    "DeliveryStats",
    "DropReason",
    "EvaluationContext",
    "EventError",
    "EventTooLargeError",
    "ExceptionArg",
    "ExceptionCapturer",
    "FeatureFlagResult",
    "FeatureFlagEvaluations",
    "FilterSpec",
    "FilterTrace",
    "FlagEvaluation",
    "FlagHook",
    "FlagRecord",
    "FlagResult",
    "InconclusiveReason",
    "JSON",
    "Options",
    "Posthog",
    "ProductosError",
    "QueueFullError",
    "RateLimitedError",
    "Reason",
    "ReasonCode",
    "RequestTimeoutError",
    "Sender",
    "ShutdownTimeoutError",
    "SourceState",
    "SourceStatus",
    "SpoolFullError",
    "TraceOutcome",
    "TransportError",
    "UnserializableEventError",
    "VERSION",
    "__version__",
    "alias",
    "capture",
    "capture_exception",
    "drain_all",
    "evaluate_flags",
    "feature_enabled",
    "feature_flag_definitions",
    "flush",
    "get_all_flags",
    "get_all_flags_and_payloads",
    "get_feature_flag",
    "get_feature_flag_payload",
    "get_feature_flag_result",
    "get_remote_config_payload",
    "get_tags",
    "group_identify",
    "identify_context",
    "install_sigterm_handler",
    "join",
    "load_feature_flags",
    "new_context",
    "scoped",
    "set",
    "set_context_device_id",
    "set_context_session",
    "set_once",
    "setup",
    "shutdown",
    "tag",
]


def test_exported_members_are_pinned():
    assert sorted(productos.__all__, key=str.casefold) == sorted(EXPORTED, key=str.casefold)
    assert len(set(productos.__all__)) == len(productos.__all__)


@pytest.mark.parametrize("name", EXPORTED)
def test_each_exported_name_resolves_to_a_productos_object(name):
    value = getattr(productos, name)
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__.startswith("productos"), (name, value.__module__)


def test_every_public_class_and_function_of_the_package_root_is_exported():
    # httpx's test_exported_members, for what the root defines or imports as API; modules,
    # the module-level settings and the default client are not API names.
    public = {
        name for name, value in vars(productos).items()
        if not name.startswith("_") and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith("productos")
    }
    assert public <= set(productos.__all__), sorted(public - set(productos.__all__))


def _classes_in(hint: typing.Any) -> typing.Iterator[type]:
    if inspect.isclass(hint):
        yield hint
    for arg in typing.get_args(hint):
        yield from _classes_in(arg)


def _public_callables() -> typing.Iterator[typing.Tuple[str, typing.Any]]:
    for name in productos.__all__:
        value = getattr(productos, name)
        if inspect.isfunction(value):
            yield name, value
    for name in productos.__all__:  # what an exported class's constructor takes
        value = getattr(productos, name)
        init = vars(value).get("__init__") if inspect.isclass(value) else None
        if inspect.isfunction(init) and value.__module__.startswith("productos"):
            yield f"{name}(...)", init
    for cls in (productos.Client, productos.AsyncClient):
        # Inherited methods too: the flag calls come from a mixin.
        for name, member in inspect.getmembers(cls, inspect.isfunction):
            if not name.startswith("_"):
                yield f"{cls.__name__}.{name}", member


def test_every_type_a_public_call_takes_or_returns_is_exported():
    # The types in the signatures of the public calls, then the types of their fields (a
    # FlagResult holds a Reason, which holds a ReasonCode...), all the way down.
    namespace = {name: getattr(productos, name) for name in productos.__all__}
    callables = list(_public_callables())
    walked = {where for where, _ in callables}
    assert {"Client.get_feature_flag_result", "Client.capture",  # mixin and own methods
            "AsyncClient.get_all_flags", "get_feature_flag", "new_context(...)",
            "FeatureFlagEvaluations(...)"} <= walked
    todo = [*callables, ("Client(...)", Options)]  # Client takes Options' fields
    seen: typing.Set[type] = set()
    while todo:
        where, annotated = todo.pop()
        for hint in typing.get_type_hints(annotated, localns=namespace).values():
            for cls in _classes_in(hint):
                if cls.__module__.startswith("productos") and cls not in seen:
                    assert getattr(productos, cls.__name__, None) is cls, (where, cls)
                    seen.add(cls)
                    if dataclasses.is_dataclass(cls) or hasattr(cls, "_fields"):
                        todo.append((cls.__name__, cls))
    # The walk found the types it is meant to check.
    assert {productos.FlagResult, productos.Reason, productos.ReasonCode, productos.SourceStatus,
            productos.SourceState, productos.DeliveryStats, productos.Sender} <= seen


def test_client_signature_is_the_options_declaration():
    params = list(inspect.signature(productos.Client).parameters.values())
    fields = dataclasses.fields(Options)
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [f.default for f in fields]
    assert params[0].name == "project_api_key" and params[1].name == "host"


def test_client_arguments_reach_the_options_by_keyword_and_by_position(monkeypatch):
    monkeypatch.delenv("PRODUCTOS_HOST", raising=False)
    client = productos.Client("phc_test", "http://127.0.0.1:9", True, send=False,
                              flush_at=7, disabled=True)
    try:
        assert client.options.host == "http://127.0.0.1:9"
        assert client.options.debug is True and client.options.flush_at == 7
    finally:
        client.shutdown()
    with pytest.raises(TypeError, match=r"Client\(\) got an unexpected keyword argument"):
        productos.Client("phc_test", flush_every=3)


def test_module_level_settings_are_the_options_fields(monkeypatch):
    for field in dataclasses.fields(Options):
        assert getattr(productos, field.name) == field.default, field.name
        assert field.name not in productos.__all__  # settings, not API names
    monkeypatch.setattr(productos, "project_api_key", "phc_module")
    monkeypatch.setattr(productos, "flush_at", 3)
    monkeypatch.setattr(productos, "send", False)
    productos.shutdown()
    try:
        client = productos._default()
        assert client.options.flush_at == 3 and client.options.send is False
        assert client.options.project_api_key == "phc_module"
    finally:
        productos.shutdown()


def test_options_validate_on_construction_and_keep_keys_out_of_the_repr():
    with pytest.raises(ValueError):
        Options(flush_at=0)
    text = repr(Options(project_api_key="phc_secret", personal_api_key="phx_secret",
                        flush_at=5))
    assert "secret" not in text and "flush_at=5" in text


def test_the_package_is_typed():
    assert (pathlib.Path(productos.__file__).parent / "py.typed").is_file()


def test_the_readme_documents_every_option():
    readme = (pathlib.Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Configuration"):readme.index("## Delivery and accounting")]
    missing = [f.name for f in dataclasses.fields(Options) if f"`{f.name}`" not in table]
    assert missing == []
