"""Send a few events through a real productos Client to a sink on 127.0.0.1 and print them.

Run:  pip install -e . && python examples/local_demo.py
Nothing leaves this machine: the sink is started here, on a free loopback port.
"""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import productos

received: list = []


class Sink(BaseHTTPRequestHandler):
    """Accepts PostHog-style /batch/ requests and keeps their events."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        received.extend(json.loads(body)["batch"])
        reply = b'{"status":1}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    """Start the sink, capture a few events, flush, and print what arrived."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"

    with productos.Client("phc_demo", host=host) as client:
        with productos.new_context():
            productos.identify_context("user-42")
            productos.tag("plan", "pro")
            client.capture("signed up", properties={"source": "demo"})
            client.capture("order completed", properties={"amount": 29.5},
                           groups={"company": "acme"})
        client.set(distinct_id="user-42", properties={"email": "ada@example.com"})
        client.alias("anonymous-7", "user-42")
        client.group_identify("company", "acme", {"employees": 42})
        client.flush()
        stats = client.stats()

    server.shutdown()
    print(f"{len(received)} events arrived at {host}/batch/:")
    for event in received:
        extra = {k: v for k, v in event["properties"].items() if not k.startswith("$")}
        print(f"  {event['event']:<16} distinct_id={event['distinct_id']:<12} {extra}")
    print(f"client stats: sent={stats['sent']} dropped={stats['dropped_total']}")


if __name__ == "__main__":
    main()
