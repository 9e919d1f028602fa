"""One process of a test fleet: a Client that answers queries on stdin with JSON lines.

``python tests/fleet_worker.py '<json settings>'``: prints ``ready``, then for each ``q`` line
prints the flags it evaluates locally for a fixed list of people, the version of its
definitions and its flag_definitions_status(); ``quit`` shuts the client down.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

import productos

PEOPLE = [f"person-{n}" for n in range(20)]


def main() -> None:
    settings = json.loads(sys.argv[1])
    client = productos.Client(
        settings["key"], host=settings["host"], personal_api_key=settings["personal_api_key"],
        poll_interval=settings["interval"], flag_definitions_cache=settings["cache"],
        send=False)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        definitions = client.feature_flag_definitions()
        version = None if definitions is None else hashlib.sha256(
            json.dumps(definitions, sort_keys=True, default=dict).encode()).hexdigest()[:12]
        values = {person: client.get_all_flags(person, only_evaluate_locally=True)
                  for person in PEOPLE}
        status = client.flag_definitions_status()
        print(json.dumps({
            "pid": os.getpid(), "version": version, "values": values,
            "source": status and status.source, "polls": status and status.polls,
            "cache": status and status.cache, "state": status and status.state.value,
            "age": status and status.age,
        }), flush=True)
    client.shutdown(timeout=2)


if __name__ == "__main__":
    main()
