"""Django REST framework: an exception handler that captures the 5xx responses DRF produces.

DRF turns exceptions into responses inside the view, so Django's middleware never sees them.
Errors DRF does not handle still reach ``ProductosMiddleware.process_exception``; this wrapper
covers the others that end in a server error (an ``APIException`` with a 5xx status, or a
custom handler that answers 500)::

    REST_FRAMEWORK = {"EXCEPTION_HANDLER": "productos.integrations.drf.exception_handler"}

To keep your own handler, wrap it: ``handler = make_exception_handler("myapp.errors.handler")``
and point ``EXCEPTION_HANDLER`` at ``handler``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Union

from productos.context import get_context_distinct_id
from productos.integrations._common import (
    capture_request_exception,
    guard,
    not_installed_error,
    resolve_callable,
    user_distinct_id,
)

try:
    from rest_framework.views import exception_handler as drf_exception_handler
except ImportError as _error:
    raise not_installed_error("djangorestframework", "django", _error) from _error

from productos.integrations.django import get_settings

__all__ = ["exception_handler", "make_exception_handler"]

Handler = Callable[[BaseException, Mapping[str, Any]], Any]


def _authenticated_id(context: Mapping[str, Any]) -> Optional[str]:
    # DRF authenticates per view (tokens, JWT): Django's middleware saw an anonymous user.
    # Read the user DRF already resolved; never trigger authentication again here.
    drf_request = context.get("request")
    return user_distinct_id(getattr(drf_request, "_user", None))


def make_exception_handler(inner: Union[Handler, str, None] = None) -> Handler:
    """Wrap a DRF exception handler (DRF's default if None) to capture 5xx it answers with."""
    handler: Handler = resolve_callable(inner, "inner") or drf_exception_handler

    def productos_exception_handler(exc: BaseException, context: Mapping[str, Any]) -> Any:
        response = handler(exc, context)
        with guard("capturing a DRF server error"):
            status = getattr(response, "status_code", None)
            drf_request = context.get("request")
            skipped = getattr(getattr(drf_request, "_request", None), "_productos_skip", False)
            if isinstance(status, int) and status >= 500 and not skipped:
                distinct_id = None
                if get_context_distinct_id() is None:
                    distinct_id = _authenticated_id(context)
                capture_request_exception(get_settings(), exc, "drf", handled=True,
                                          distinct_id=distinct_id)
        return response

    return productos_exception_handler


exception_handler = make_exception_handler()
