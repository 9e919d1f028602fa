"""A Starlette app wrapped in ProductosMiddleware; events stay queued until the process drains."""

import asyncio
import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route

import productos
from productos.integrations.asgi import ProductosMiddleware, request_flags

client = productos.AsyncClient("phc_asgi", host=os.environ["SINK_URL"], flush_interval=60,
                               flush_at=100_000)


async def ping(request):
    return JSONResponse({"ok": True})


async def capture(request):
    return JSONResponse({"uuid": client.capture("asgi event", properties={"how": "async"})})


def sync_capture(request):
    return JSONResponse({"uuid": client.capture("asgi event", properties={"how": "sync"})})


async def flag(request):
    return JSONResponse({"value": await request_flags().get_feature_flag("remote")})


async def boom(request):
    raise RuntimeError("boom from starlette")


async def missing(request):
    raise HTTPException(status_code=404, detail="no such thing")


async def slow(request):
    Path(os.environ["SLOW_MARKER"]).touch()
    await asyncio.sleep(1.5)
    return JSONResponse({"uuid": client.capture("asgi event", properties={"how": "slow"})})


app = ProductosMiddleware(Starlette(routes=[
    Route("/ping/", ping), Route("/capture/", capture), Route("/sync-capture/", sync_capture),
    Route("/flag/", flag), Route("/boom/", boom), Route("/missing/", missing),
    Route("/slow/", slow),
]), client=client)
