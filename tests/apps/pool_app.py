"""``python pool_app.py METHOD ENDING``: 240 events captured by multiprocessing pool workers.

The client is module-level, as in most apps: fork children inherit it, spawn and forkserver
children build their own when they import this module. ENDING is how the pool ends:
``close`` (close + join: workers return, then ``os._exit()``), ``with`` (the context manager
terminates the workers with SIGTERM) or ``maxtasks`` (workers replaced every 10 tasks).
"""

import multiprocessing
import os
import sys

import productos

client = productos.Client("phc_pool", host=os.environ["SINK_URL"], flush_interval=60,
                          flush_at=100_000)
EVENTS = 240


def work(n):
    """Capture one event in a worker; return its uuid."""
    return client.capture("pool task", distinct_id=f"n-{n}", properties={"pid": os.getpid()})


if __name__ == "__main__":
    method, ending = sys.argv[1], sys.argv[2]
    context = multiprocessing.get_context(method)
    if ending == "with":
        with context.Pool(4) as pool:
            uuids = pool.map(work, range(EVENTS))
    else:
        pool = context.Pool(4, maxtasksperchild=10 if ending == "maxtasks" else None)
        uuids = pool.map(work, range(EVENTS), chunksize=5)
        pool.close()
        pool.join()
    for uuid in uuids:
        print(uuid)
