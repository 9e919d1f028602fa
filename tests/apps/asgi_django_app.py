"""Django's ASGI handler wrapped in ProductosMiddleware (no Django middleware of productos).

Django answers a view's exception with a 500 inside its handler, so the ASGI middleware never
sees it raised: ProductosConfig's got_request_exception hook captures it, with the same client.
"""

import asyncio
import json
import os
from pathlib import Path

import django  # noqa: TID251 - a Django app under test
from django.conf import settings  # noqa: TID251
from django.http import Http404, HttpResponse  # noqa: TID251
from django.urls import path  # noqa: TID251

import productos

client = productos.Client("phc_asgi", host=os.environ["SINK_URL"], flush_interval=60,
                          flush_at=100_000)

settings.configure(
    SECRET_KEY="tests-only-not-secret", DEBUG=False, ALLOWED_HOSTS=["127.0.0.1"],
    ROOT_URLCONF=__name__, MIDDLEWARE=[], DATABASES={}, USE_TZ=True,
    INSTALLED_APPS=["productos.integrations.django.ProductosConfig"],
    PRODUCTOS={"CLIENT": client},
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402,TID251 - a Django app under test

from productos.integrations.asgi import ProductosMiddleware, request_flags  # noqa: E402


def as_json(data):
    return HttpResponse(json.dumps(data), content_type="application/json")


async def ping(request):
    return as_json({"ok": True})


async def capture(request):
    return as_json({"uuid": client.capture("asgi event", properties={"how": "async"})})


def sync_capture(request):  # Django runs it on a thread, in a copy of the request context
    return as_json({"uuid": client.capture("asgi event", properties={"how": "sync"})})


async def flag(request):
    return as_json({"value": await request_flags().get_feature_flag("remote")})


async def boom(request):
    raise RuntimeError("boom from django")


async def missing(request):
    raise Http404("no such thing")


async def slow(request):
    Path(os.environ["SLOW_MARKER"]).touch()
    await asyncio.sleep(1.5)
    return as_json({"uuid": client.capture("asgi event", properties={"how": "slow"})})


urlpatterns = [path("ping/", ping), path("capture/", capture), path("sync-capture/", sync_capture),
               path("flag/", flag), path("boom/", boom), path("missing/", missing),
               path("slow/", slow)]

app = ProductosMiddleware(get_asgi_application(), client=client)
