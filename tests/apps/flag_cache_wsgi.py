"""A WSGI app for gunicorn whose workers share flag definitions through a directory cache.

Settings come from the environment (FLEET_HOST, FLEET_SECRET, FLEET_CACHE, FLEET_INTERVAL);
each worker builds its own client when it imports this module (no --preload). Every request
answers with the worker's pid, where its definitions come from and its flag values.
"""

from __future__ import annotations

import json
import os

import productos

client = productos.Client(
    "phc_gunicorn", host=os.environ["FLEET_HOST"], send=False,
    personal_api_key=os.environ["FLEET_SECRET"],
    poll_interval=float(os.environ["FLEET_INTERVAL"]),
    flag_definitions_cache=os.environ["FLEET_CACHE"])


def app(environ, start_response):  # type: ignore[no-untyped-def]
    status = client.flag_definitions_status()
    body = json.dumps({
        "pid": os.getpid(),
        "source": status and status.source,
        "values": {f"p{n}": client.get_all_flags(f"p{n}", only_evaluate_locally=True)
                   for n in range(10)},
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
