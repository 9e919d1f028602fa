"""``python plain_script.py N``: capture N events, say so, then wait to be stopped."""

import os
import sys
import time

import productos

client = productos.Client("phc_sigterm", host=os.environ["SINK_URL"], flush_interval=60,
                          flush_at=100_000, shutdown_timeout=float(os.environ.get("DRAIN", "5")))

if __name__ == "__main__":
    for n in range(int(sys.argv[1])):
        print(client.capture("script event", distinct_id=f"n-{n}"), flush=True)
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
