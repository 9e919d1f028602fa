"""``python -m productos.devserver``: run the dev server in the foreground (Ctrl-C stops it)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from productos.devserver import DevServer


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments, serve until interrupted, and return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m productos.devserver",
                                     description="productos local dev server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--db", default=None, help="SQLite file (default: a temporary one)")
    parser.add_argument("--flags", default=None, help="flag definitions JSON file")
    parser.add_argument("--project-api-key", default=None)
    parser.add_argument("--personal-api-key", default="phx_dev")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        server = DevServer(host=args.host, port=args.port, db_path=args.db,
                           flags_path=args.flags, project_api_key=args.project_api_key,
                           personal_api_key=args.personal_api_key)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"productos devserver: {exc}\n")
        return 2
    try:
        server.start()  # bind now, so a busy port is reported before "listening"
    except OSError as exc:
        server.stop()
        sys.stderr.write(f"productos devserver: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 2
    sys.stderr.write(f"productos dev server listening on {server.url} (db {server.db_path})\n")
    try:
        # The server runs on its own thread; wait here, in short steps so Ctrl-C gets through.
        while not server.join(1.0):
            pass
        return 1  # the serving thread ended without a Ctrl-C
    except KeyboardInterrupt:
        return 0
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
