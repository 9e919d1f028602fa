"""A FastAPI app behind ProductosMiddleware; events stay queued until the process drains."""

import asyncio
import os
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException

import productos
from productos.integrations.asgi import AsyncRequestClient, ProductosMiddleware, productos_flags

client = productos.Client("phc_asgi", host=os.environ["SINK_URL"], flush_interval=60,
                          flush_at=100_000)
app = FastAPI()
app.add_middleware(ProductosMiddleware, client=client)


@app.get("/ping/")
async def ping():
    return {"ok": True}


@app.get("/capture/")
async def capture_async():
    return {"uuid": client.capture("asgi event", properties={"how": "async"})}


@app.get("/sync-capture/")
def capture_sync():  # FastAPI runs it on a worker thread, in a copy of the request context
    return {"uuid": client.capture("asgi event", properties={"how": "sync"})}


@app.get("/flag/")
async def flag(flags: AsyncRequestClient = Depends(productos_flags)):  # noqa: B008
    return {"value": await flags.get_feature_flag("remote")}


@app.get("/boom/")
async def boom():
    raise RuntimeError("boom from fastapi")


@app.get("/missing/")
async def missing():
    raise HTTPException(status_code=404, detail="no such thing")


@app.get("/slow/")
async def slow():
    Path(os.environ["SLOW_MARKER"]).touch()
    await asyncio.sleep(1.5)
    return {"uuid": client.capture("asgi event", properties={"how": "slow"})}
