"""Run the local dev server: the devserver command (events tail/export live in events.py)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from typing import Any, Dict, Iterator

from productos.cli._errors import EXIT_CONFIG, EXIT_OK, CLIError
from productos.cli._output import RedactingFormatter, redact, wants_json
from productos.cli._settings import (
    DEV_PERSONAL_API_KEY,
    ENV_HOST,
    ENV_PERSONAL_API_KEY,
    option_value,
)

DEFAULT_DEVSERVER_PORT = 8010


def _devserver_module() -> Any:
    try:
        import productos.devserver as devserver
    except ImportError as exc:
        raise CLIError(f"the dev server is not available in this install: {exc}",
                       EXIT_CONFIG) from None
    return devserver


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while serving, so `kill` stops cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def wait_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM."""
    never = threading.Event()
    try:
        with _sigterm_as_interrupt():
            while not never.wait(3600):
                pass
    except KeyboardInterrupt:
        pass


def start_devserver(**kwargs: Any) -> Any:
    """Start a DevServer with these arguments, or raise a CLIError saying why it cannot."""
    devserver = _devserver_module()
    try:
        server = devserver.DevServer(**kwargs)
    except (OSError, ValueError) as exc:  # an unreadable flags file or database
        raise CLIError(f"cannot start the dev server: {redact(str(exc))}", EXIT_CONFIG) from None
    try:
        return server.start()
    except OSError as exc:
        server.stop()
        where = f"{kwargs.get('host')}:{kwargs.get('port')}"
        raise CLIError(f"cannot listen on {where}: {exc.strerror or exc}", EXIT_CONFIG) from None


@contextlib.contextmanager
def _devserver_log(debug: bool) -> Iterator[None]:
    """Show the dev server's notices (flags reloaded, errors) on stderr while it runs."""
    logger = logging.getLogger("productos.devserver")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if not debug:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def cmd_devserver(args: argparse.Namespace) -> int:
    """Run the local PostHog-compatible dev server until interrupted."""
    personal = (args.server_personal_api_key or os.environ.get(ENV_PERSONAL_API_KEY)
                or DEV_PERSONAL_API_KEY)
    server = start_devserver(host=args.bind_host, port=args.port, db_path=args.db,
                              flags_path=args.flags, project_api_key=args.project_api_key,
                              personal_api_key=personal)
    try:
        db = str(server.db_path)
        if wants_json(args):
            started: Dict[str, Any] = {"url": server.url, "viewer": server.url + "/", "db": db,
                                       "temporary_db": args.db is None}
            if personal == DEV_PERSONAL_API_KEY:
                started["personal_api_key"] = DEV_PERSONAL_API_KEY  # a public, local-only key
            print(json.dumps(started), flush=True)
        else:
            print(f"productos dev server listening on {server.url}")
            print(f"  event viewer: {server.url}/")
            print(f"  database:     {db}" + (" (temporary: pass --db PATH to keep it)"
                                            if args.db is None else ""))
            if args.flags:
                print(f"  flags:        {args.flags} (reloaded when it changes)")
            print(f"  point the SDK and CLI at it: export {ENV_HOST}={server.url}")
            print("  project key:  " + ("the one given by --project-api-key"
                                        if args.project_api_key else "any (not checked)"))
            # The dev default is public (documented) and only ever served on this machine, so
            # it is shown; a key the user chose is never printed.
            print("  personal key: " + (
                "the one given by --personal-api-key" if args.server_personal_api_key
                else f"${ENV_PERSONAL_API_KEY}" if os.environ.get(ENV_PERSONAL_API_KEY)
                else f"{DEV_PERSONAL_API_KEY} (the dev default; the CLI uses it by itself "
                     f"against a dev server on this machine)"))
            print(f"  workbench:    productos funnel STEP1 STEP2 ... --window 1d; "
                  f"{server.url}/api/funnel?steps=A,B")
            print("Press Ctrl-C to stop.", flush=True)
        with _devserver_log(bool(option_value(args, "debug"))):
            wait_until_interrupted()
    finally:
        server.stop()
    return EXIT_OK
