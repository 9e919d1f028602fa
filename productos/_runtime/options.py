"""Every setting of a Client, declared once: name, type, default and validation.

``Options`` is the single declaration. ``Client(...)`` takes exactly its fields (the
signature is copied from it, for type checkers and for ``inspect``), and the module-level
settings of ``productos`` are made from its fields. Adding an option is adding a field here.
The consumer's settings take their defaults from ``productos.consumer`` (which cannot import
this module), so a consumer built directly has the same defaults as a Client's.
"""

from __future__ import annotations

import inspect
import math
import os
import re
from dataclasses import field, fields, replace
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
    Union,
)

from productos._flags.cache_setup import check_cache_setting
from productos._runtime import compat as _compat
from productos._runtime.hosts import normalize_host
from productos._runtime.records import record
from productos.consumer import (
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_FLUSH_AT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_ON_FULL,
    OVERFLOW_POLICIES,
    DropReason,
    OnFull,
    Sender,
)
from productos.errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Concatenate, ParamSpec

    from productos._flags.shared_cache import FlagDefinitionsCache

    P = ParamSpec("P")

S = TypeVar("S")
PathArg = Union[str, "os.PathLike[str]"]

ENV_API_KEY = "PRODUCTOS_API_KEY"
ENV_HOST = "PRODUCTOS_HOST"
ENV_PERSONAL_API_KEY = "PRODUCTOS_PERSONAL_API_KEY"


@record(frozen=True)
class Options:
    """The settings of one Client; ``Client(...)`` takes these, by keyword or in this order.

    The first fields follow the order of PostHog's ``Posthog(...)``, so positional
    arguments mean the same thing in both. Keys and the host come from the environment
    (``PRODUCTOS_API_KEY``, ``PRODUCTOS_HOST``, ``PRODUCTOS_PERSONAL_API_KEY``) when not given.
    """

    project_api_key: Optional[str] = field(default=None, repr=False)
    host: Optional[str] = None
    debug: bool = False
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    send: bool = True
    on_error: Optional[Callable[[Exception, List[Any]], Any]] = None
    flush_at: int = DEFAULT_FLUSH_AT
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    gzip: bool = True
    max_retries: int = 5
    sync_mode: bool = False
    timeout: float = 15.0
    thread: int = 1  # PostHog's consumer threads: productos' max_concurrent_requests floor
    poll_interval: float = 30.0
    personal_api_key: Optional[str] = field(default=None, repr=False)
    disabled: bool = False
    disable_geoip: bool = True
    is_server: bool = True  # accepted without effect (see _runtime/compat.py)
    historical_migration: bool = False
    feature_flags_request_timeout_seconds: float = 3.0
    feature_flags_request_max_retries: int = 1
    super_properties: Optional[Mapping[str, Any]] = None
    enable_exception_autocapture: bool = False
    log_captured_exceptions: bool = False
    project_root: Optional[str] = None
    privacy_mode: bool = False
    before_send: Optional[Callable[[Dict[str, Any]], Optional[Mapping[str, Any]]]] = None
    flag_fallback_cache_url: Optional[str] = None
    enable_local_evaluation: bool = True
    flag_definition_cache_provider: Optional[Any] = field(default=None, repr=False)
    capture_exception_code_variables: bool = False
    code_variables_mask_patterns: Optional[Sequence[str]] = None
    code_variables_ignore_patterns: Optional[Sequence[str]] = None
    code_variables_mask_url_credentials: Optional[bool] = None
    code_variables_detect_secrets: Optional[bool] = None
    in_app_modules: Optional[Sequence[str]] = None
    enable_exception_autocapture_rate_limiting: bool = False
    exception_autocapture_bucket_size: int = 50
    exception_autocapture_refill_rate: float = 10
    exception_autocapture_refill_interval_seconds: float = 10
    capture_mode: Optional[str] = None
    capture_compression: Optional[str] = None
    secret_key: Optional[str] = field(default=None, repr=False)  # PostHog's personal_api_key
    metrics: Optional[Mapping[str, Any]] = None
    enable_full_ai_capture: bool = False
    capture_trace_context: bool = False
    _use_ai_lane: bool = False
    _enable_multimodal_capture: bool = False
    traces: Optional[Mapping[str, Any]] = None
    app_host: Optional[str] = None
    email_request_timeout_seconds: float = 15
    email_request_max_retries: int = 2
    migrated_from: Optional[str] = None
    # productos' own settings
    api_key: Optional[str] = field(default=None, repr=False)  # another name for project_api_key
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_queue_bytes: Optional[int] = None
    on_full: OnFull = DEFAULT_ON_FULL
    block_timeout: float = DEFAULT_BLOCK_TIMEOUT
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    on_drop: Optional[Callable[[Any, DropReason], Any]] = None
    spool_path: Optional[PathArg] = None
    spool_max_bytes: int = 100 * 1024 * 1024
    retry_base_delay: float = 1.0
    retry_max_delay: float = 30.0
    shutdown_timeout: float = 5.0
    flag_definitions_file: Optional[str] = None
    flag_definitions: Optional[Mapping[str, Any]] = field(default=None, repr=False)
    flags_first_load_timeout: float = 1.0
    sender: Optional[Sender] = field(default=None, repr=False)
    # Evaluation hooks (productos.flag_hooks.FlagHook), called around every flag read.
    hooks: Optional[Sequence[Any]] = field(default=None, repr=False)
    # One poller per fleet: a redis://, rediss:// or unix:// URL, a directory, or a
    # productos.FlagDefinitionsCache (posthog's flag_definition_cache_provider is adapted).
    flag_definitions_cache: Optional[Union[PathArg, FlagDefinitionsCache]] = field(
        default=None, repr=False)
    # While that cache is unreachable, poll the definitions endpoint directly.
    flag_definitions_cache_fallback: bool = True

    def __post_init__(self) -> None:
        _validate(self)

    def __repr__(self) -> str:
        # Only what differs from the defaults, and never a key: reprs end up in logs.
        changed = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                            if f.repr and getattr(self, f.name) != f.default)
        return f"Options({changed})"

    def resolved(self) -> Options:
        """Return these options with keys and host taken from aliases and the environment."""
        key = self.project_api_key if self.project_api_key is not None else self.api_key
        if key is None:
            key = os.environ.get(ENV_API_KEY, "")
        host = _checked_host(self.host or os.environ.get(ENV_HOST) or None)
        personal = (self.personal_api_key or self.secret_key
                    or os.environ.get(ENV_PERSONAL_API_KEY) or None)
        spool = None if self.spool_path is None else os.fspath(self.spool_path)
        return replace(self, project_api_key=key.strip(), api_key=None, host=host,
                       personal_api_key=personal, secret_key=None, spool_path=spool)

    @classmethod
    def from_call(cls, args: Tuple[Any, ...], kwargs: Dict[str, Any],
                  caller: str = "Client()") -> Options:
        """Return the resolved options of a ``Client(*args, **kwargs)`` call."""
        try:
            given = cls(*args, **kwargs)
        except TypeError as exc:  # a wrong argument name or count: say whose call it was
            raise TypeError(re.sub(r"^(?:Options\.)?__init__\(\)", caller, str(exc))) from None
        return given.resolved()


def defaults() -> Dict[str, Any]:
    """Return every option's name and default value, in declaration order."""
    return {f.name: f.default for f in fields(Options)}


def parameters_of(source: Callable[P, Any]
                  ) -> Callable[[Callable[Concatenate[S, ...], None]],
                                Callable[Concatenate[S, P], None]]:
    """Return a decorator that gives an ``__init__(self, *args, **kwargs)`` source's parameters.

    Type checkers see them through the ParamSpec; ``inspect`` and ``help()`` through
    ``__signature__``. The decorated function itself is returned unchanged.
    """
    params = list(inspect.signature(source).parameters.values())
    this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)

    def apply(init: Callable[Concatenate[S, ...], None]) -> Callable[Concatenate[S, P], None]:
        init.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [this, *params], return_annotation=None)
        return init
    return apply


takes_options = parameters_of(Options)


# --- validation (pure) -------------------------------------------------------------------------


def _validate(options: Options) -> None:
    """Raise ConfigurationError (a ValueError) for values that cannot work."""
    for name in ("project_api_key", "api_key", "host", "personal_api_key", "secret_key"):
        value = getattr(options, name)
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{name} must be a string")
    if options.host is not None:
        _checked_host(options.host)
    if (options.project_api_key is not None and options.api_key is not None
            and options.project_api_key != options.api_key):
        raise ConfigurationError("project_api_key and api_key were both given and differ")
    _positive_int("flush_at", options.flush_at)
    _positive_int("max_queue_size", options.max_queue_size)
    _positive_int("max_batch_size", options.max_batch_size)
    _non_negative_int("max_retries", options.max_retries)
    _positive_int("max_concurrent_requests", options.max_concurrent_requests)
    _positive_int("spool_max_bytes", options.spool_max_bytes)
    if options.spool_path is not None and not isinstance(options.spool_path,
                                                         (str, os.PathLike)):
        raise ConfigurationError("spool_path must be a file path")
    if options.max_queue_bytes is not None:
        _positive_int("max_queue_bytes", options.max_queue_bytes)
    if options.on_full not in OVERFLOW_POLICIES:
        *others, last = (repr(policy) for policy in OVERFLOW_POLICIES)
        raise ConfigurationError(
            f"on_full must be {', '.join(others)} or {last}, not {options.on_full!r}")
    _non_negative_number("block_timeout", options.block_timeout)
    _positive_number("flush_interval", options.flush_interval)
    _non_negative_number("retry_base_delay", options.retry_base_delay)
    _non_negative_number("retry_max_delay", options.retry_max_delay)
    _positive_number("timeout", options.timeout)
    _non_negative_number("shutdown_timeout", options.shutdown_timeout)
    _positive_number("poll_interval", options.poll_interval)
    _positive_number("feature_flags_request_timeout_seconds",
                     options.feature_flags_request_timeout_seconds)
    for name in ("on_error", "before_send", "on_drop"):
        value = getattr(options, name)
        if value is not None and not callable(value):
            raise ConfigurationError(f"{name} must be callable, not {type(value).__name__}")
    if options.super_properties is not None and not isinstance(options.super_properties,
                                                               Mapping):
        raise ConfigurationError("super_properties must be a mapping")
    if options.flag_definitions_file is not None and options.flag_definitions is not None:
        raise ConfigurationError("give flag_definitions_file or flag_definitions, not both")
    _check_hooks(options.hooks)
    _check_flag_definitions_cache(options.flag_definitions_cache)
    _compat.validate(options)


_HOOK_METHODS = ("before_evaluation", "after_evaluation", "on_error")


def _check_hooks(hooks: Any) -> None:
    if hooks is None:
        return
    if isinstance(hooks, (str, bytes, Mapping)) or not isinstance(hooks, (list, tuple)):
        raise ConfigurationError("hooks must be a list of flag hooks")
    for hook in hooks:
        if not any(callable(getattr(hook, name, None)) for name in _HOOK_METHODS):
            raise ConfigurationError(
                f"hooks: {type(hook).__name__} has none of before_evaluation, "
                "after_evaluation, on_error (see productos.flag_hooks)")


def _check_flag_definitions_cache(value: Any) -> None:
    if value is not None:
        check_cache_setting(value)


def _checked_host(host: Optional[str]) -> str:
    normalised = normalize_host(host)
    if not normalised.startswith(("http://", "https://")):
        raise ConfigurationError(f"host must be an http(s) URL, not {normalised!r}")
    return normalised


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive integer, not {value!r}")


def _non_negative_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 0:
        raise ConfigurationError(f"{name} must be a non-negative integer, not {value!r}")


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def _positive_number(name: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")


def _non_negative_number(name: str, value: Any) -> None:
    if not _is_number(value) or value < 0:
        raise ConfigurationError(f"{name} must be zero or more seconds, not {value!r}")
