"""Views that capture one event each and answer with its uuid; /slow/ is still running when
the test sends SIGTERM (it touches SLOW_MARKER first)."""

import asyncio
import os
from pathlib import Path

from django.http import HttpResponse, JsonResponse  # noqa: TID251 - a Django site under test
from django.urls import path  # noqa: TID251 - a Django site under test


def ping(request):
    """Answers without capturing: the test polls it until the server is up."""
    return HttpResponse("ok")


def sync_view(request):
    """A sync view (a thread under ASGI servers)."""
    return JsonResponse({"uuid": request.productos.capture("sync view")})


async def async_view(request):
    """An async view (the event loop's thread)."""
    return JsonResponse({"uuid": request.productos.capture("async view")})


async def slow_view(request):
    """Captures after the test has sent SIGTERM: the server's graceful shutdown waits for it."""
    Path(os.environ["SLOW_MARKER"]).touch()
    await asyncio.sleep(1.5)
    return JsonResponse({"uuid": request.productos.capture("slow view")})


urlpatterns = [
    path("ping/", ping),
    path("sync/", sync_view),
    path("async/", async_view),
    path("slow/", slow_view),
]
