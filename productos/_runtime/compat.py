"""PostHog compatibility: what posthog's arguments and settings mean here, in one place.

posthog 7.91's ``Posthog(...)`` takes arguments productos has no use for (its own AI lane,
tracing, e-mails, capture v1...). They are fields of ``Options`` so that positional calls
keep their meaning; this module says which of them do something here and how, and reports
the rest once. The core reads ordinary option values; only this module knows posthog.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from productos.errors import ConfigurationError

log = logging.getLogger("productos")

# posthog's arguments that productos accepts and ignores, in Options' order: a value other
# than the default is reported once, at construction. Their defaults are read from Options'
# fields (they are posthog's too; tests/test_posthog_compat.py checks that against posthog),
# so none is written here. This module cannot import options.py at import time (options
# imports it), which is why the defaults are read from the instance in inert_given().
INERT_OPTIONS: Tuple[str, ...] = (
    "is_server",
    "flag_fallback_cache_url",
    "capture_exception_code_variables",
    "code_variables_mask_patterns",
    "code_variables_ignore_patterns",
    "code_variables_mask_url_credentials",
    "code_variables_detect_secrets",
    "enable_exception_autocapture_rate_limiting",
    "exception_autocapture_bucket_size",
    "exception_autocapture_refill_rate",
    "exception_autocapture_refill_interval_seconds",
    "capture_mode",
    "capture_compression",
    "metrics",
    "enable_full_ai_capture",
    "capture_trace_context",
    "_use_ai_lane",
    "_enable_multimodal_capture",
    "traces",
    "app_host",
    "email_request_timeout_seconds",
    "email_request_max_retries",
    "migrated_from",
)

# What posthog's AI wrappers withhold under privacy_mode (prompts, outputs, state).
AI_CONTENT_PROPERTIES = (
    "$ai_input", "$ai_output_choices", "$ai_input_state", "$ai_output_state",
    "$ai_instructions", "$ai_custom_data", "$ai_trace_metadata",
)

Hook = Callable[[Dict[str, Any]], Optional[Mapping[str, Any]]]


def inert_defaults(options: Any) -> Dict[str, Any]:
    """Return each posthog-only argument's default, as the fields of ``options`` declare it."""
    declared = {f.name: f.default for f in dataclasses.fields(options)}
    return {name: declared[name] for name in INERT_OPTIONS}


def inert_given(options: Any) -> List[str]:
    """Return the names of posthog-only arguments given a value other than posthog's default."""
    given = []
    for name, default in inert_defaults(options).items():
        value = getattr(options, name)
        if value is not default and value != default:
            given.append(name)
    return given


def report_inert(options: Any) -> None:
    """Log one debug line naming the posthog arguments that have no effect here."""
    given = inert_given(options)
    if given:
        log.debug("productos: accepted for compatibility with posthog, without effect here: %s",
                  ", ".join(given))


def validate(options: Any) -> None:
    """Raise ConfigurationError for posthog-order arguments that cannot work."""
    thread = options.thread
    if not isinstance(thread, int) or isinstance(thread, bool) or thread <= 0:
        raise ConfigurationError(f"thread must be a positive integer, not {thread!r}")
    retries = options.feature_flags_request_max_retries
    if not isinstance(retries, int) or isinstance(retries, bool):
        raise ConfigurationError(
            f"feature_flags_request_max_retries must be an integer, not {retries!r}")
    modules = options.in_app_modules
    if modules is not None and (isinstance(modules, (str, bytes))
                                or not all(isinstance(m, str) for m in modules)):
        raise ConfigurationError("in_app_modules must be a list of module name prefixes")


def concurrency(options: Any) -> int:
    """Return the number of concurrent uploads: posthog's ``thread`` count is a floor.

    posthog runs ``thread`` consumer threads, each with one request at a time; productos
    has one consumer with up to ``max_concurrent_requests`` requests in flight, so asking
    for more threads asks for more requests at once.
    """
    return max(int(options.max_concurrent_requests), int(options.thread))


def flag_request_retries(options: Any) -> int:
    """Return the /flags retries after a network failure (posthog treats negatives as 0)."""
    return max(0, int(options.feature_flags_request_max_retries))


def privacy_filtered(hook: Optional[Hook]) -> Hook:
    """Return a before_send hook that withholds AI content, then runs ``hook`` (if any)."""

    def withhold(message: Dict[str, Any]) -> Optional[Mapping[str, Any]]:
        name = message.get("event")
        props = message.get("properties")
        if isinstance(name, str) and name.startswith("$ai_") and isinstance(props, dict):
            for key in AI_CONTENT_PROPERTIES:
                if key in props:
                    props[key] = None  # posthog's wrappers send these as null
        return message if hook is None else hook(message)

    return withhold


NO_EXCEPTION = object()  # an exc_info tuple of Nones: posthog captures nothing


def exception_arg(value: Any) -> Any:
    """Return the exception in posthog's ``exception`` argument (an exception or exc_info).

    None stays None (the exception being handled); ``(None, None, None)`` is NO_EXCEPTION.
    Anything else is returned as it is, for the caller's check to reject.
    """
    if isinstance(value, tuple) and len(value) == 3:
        _, exc, tb = value
        if exc is None:
            return NO_EXCEPTION
        if isinstance(exc, BaseException) and tb is not None and exc.__traceback__ is None:
            exc = exc.with_traceback(tb)
        return exc
    return value


def in_app(module: Optional[str], prefixes: Optional[Sequence[str]]) -> bool:
    """Tell whether a frame's module is one of the ``in_app_modules`` (or below one)."""
    if not module or not prefixes:
        return False
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def exc_info(value: Any) -> Any:
    """Return what ``logging``'s ``exc_info=`` needs to print the exception in value."""
    exc = exception_arg(value)
    if exc is None:
        return True  # the exception being handled
    if isinstance(exc, BaseException):
        return (type(exc), exc, exc.__traceback__)
    return False


# posthog's module functions that tune what productos does not have (connection options,
# code-variable capture): they exist so posthog code runs, and only log that they do nothing.
INERT_FUNCTIONS = frozenset({
    "enable_keep_alive", "disable_connection_reuse", "set_socket_options",
    "set_capture_exception_code_variables_context", "set_code_variables_mask_patterns_context",
    "set_code_variables_ignore_patterns_context",
    "set_code_variables_mask_url_credentials_context",
    "set_code_variables_detect_secrets_context",
})


def inert_function(name: str) -> Callable[..., None]:
    """Return posthog's module function ``name``, which has no effect here."""

    def accepted(*args: Any, **kwargs: Any) -> None:
        log.debug("productos: %s() is accepted for compatibility with posthog and has no "
                  "effect here", name)

    accepted.__name__ = accepted.__qualname__ = name
    return accepted


_warned_names: set[str] = set()


def unknown_setting(name: str, settings: Iterable[str]) -> None:
    """Warn, once per name, that ``productos.<name> = ...`` sets nothing the client reads."""
    if name in _warned_names:
        return
    _warned_names.add(name)
    import difflib  # only for a typo: not at import time

    close = difflib.get_close_matches(name, list(settings), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    warnings.warn(f"productos.{name} is not a setting of productos and has no effect{hint}",
                  UserWarning, stacklevel=3)

