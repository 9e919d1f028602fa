"""A plain ASGI app with a module-level client and no shutdown code of its own."""

import asyncio
import json
import os
from pathlib import Path

import productos

client = productos.Client("phc_sigterm", host=os.environ["SINK_URL"], flush_interval=60,
                          flush_at=100_000)


async def app(scope, receive, send):
    """/ping/ answers; /slow/ waits 1.5 s (SIGTERM arrives meanwhile); others capture."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = b"ok"
    if path != "/ping/":
        if path == "/slow/":
            Path(os.environ["SLOW_MARKER"]).touch()
            await asyncio.sleep(1.5)
        uuid = client.capture("plain asgi", distinct_id="u", properties={"path": path})
        body = json.dumps({"uuid": uuid}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
