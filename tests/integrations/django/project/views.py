"""Views of the Django test project: sync and async, ones that fail, ones that read flags."""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponse, JsonResponse

from productos.context import get_context_distinct_id, get_context_session_id, get_tags
from productos.integrations.django import get_client


def _context() -> dict:
    return {
        "distinct_id": get_context_distinct_id(),
        "session_id": get_context_session_id(),
        "tags": dict(get_tags()),
    }


def hello(request: Any) -> HttpResponse:
    client = get_client()  # None when the integration is off or misconfigured
    if client is not None:
        client.capture("hello viewed", properties={"via": "sync"})
    return HttpResponse("hello")


async def hello_async(request: Any) -> HttpResponse:
    client = get_client()
    if client is not None:
        client.capture("hello viewed", properties={"via": "async"})
    return HttpResponse("hello async")


def context(request: Any) -> JsonResponse:
    return JsonResponse(_context())


async def context_async(request: Any) -> JsonResponse:
    return JsonResponse(_context())


def boom(request: Any) -> HttpResponse:
    raise RuntimeError("view exploded")


async def boom_async(request: Any) -> HttpResponse:
    raise RuntimeError("async view exploded")


def missing(request: Any) -> HttpResponse:
    raise Http404("no such thing")


def flags(request: Any) -> JsonResponse:
    helper = request.productos
    return JsonResponse(
        {
            "distinct_id": helper.distinct_id,
            "enabled": helper.feature_enabled("beta"),
            "variant": helper.get_feature_flag("experiment"),
            "payload": helper.get_feature_flag_payload("beta"),
        }
    )


def capture_as_request(request: Any) -> HttpResponse:
    request.productos.capture("signed up", properties={"plan": "pro"})
    return HttpResponse("ok")
