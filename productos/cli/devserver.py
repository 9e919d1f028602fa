"""Run the local dev server and read its events: devserver, events tail/export."""

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
from productos.cli._output import RedactingFormatter, redact, show, wants_json
from productos.cli._settings import ENV_HOST, ENV_PERSONAL_API_KEY, option_value

DEFAULT_DEVSERVER_PORT = 8010
DEV_PERSONAL_API_KEY = "phx_dev"  # the dev server's personal key unless told otherwise


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
            print(json.dumps({"url": server.url, "viewer": server.url + "/", "db": db,
                              "temporary_db": args.db is None}), flush=True)
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
            print("  personal key: " + (
                "the one given by --personal-api-key" if args.server_personal_api_key
                else f"${ENV_PERSONAL_API_KEY}" if os.environ.get(ENV_PERSONAL_API_KEY)
                else "the dev default (see the README)"))
            print("Press Ctrl-C to stop.", flush=True)
        with _devserver_log(bool(option_value(args, "debug"))):
            wait_until_interrupted()
    finally:
        server.stop()
    return EXIT_OK


def _event_filters(args: argparse.Namespace) -> Dict[str, Any]:
    return {"event": args.event, "distinct_id": args.distinct_id}


def _write_events(events: Iterator[Dict[str, Any]], fmt: str) -> None:
    """Write events as they come: text (one line each), NDJSON or CSV."""
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow([column for column, _ in _CSV_FIELDS])
    for event in events:
        if writer is not None:
            writer.writerow([_csv_cell(event.get(name)) for _, name in _CSV_FIELDS])
        elif fmt == "ndjson":
            print(json.dumps(event, default=str, ensure_ascii=False))
        else:
            props = event.get("properties") or {}
            extra = {k: v for k, v in props.items() if not str(k).startswith("$")}
            for key in ("$set", "$set_once"):
                if event.get(key):
                    extra[key] = event[key]
            print(f"{event.get('timestamp', '')}  {event.get('event')}  "
                  f"{event.get('distinct_id')}  {event.get('uuid')}"
                  + (f"  {show(extra)}" if extra else ""))
        sys.stdout.flush()


# The dev server's export columns: (CSV column, event field).
_CSV_FIELDS = (("seq", "seq"), ("uuid", "uuid"), ("event", "event"),
               ("distinct_id", "distinct_id"), ("timestamp", "timestamp"),
               ("received_at", "received_at"), ("properties", "properties"), ("set", "$set"),
               ("set_once", "$set_once"))


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return value


def cmd_events_tail(args: argparse.Namespace) -> int:
    """Print the latest events from the dev server's database (optionally following)."""
    devserver = _devserver_module()
    path = _db_path(args)
    try:
        with _sigterm_as_interrupt():
            events = devserver.tail_events(path, follow=args.follow, limit=args.limit,
                                           **_event_filters(args))
            _write_events(events, args.format)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `productos events tail | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read events: {exc}", EXIT_CONFIG) from None
    return EXIT_OK


def cmd_events_export(args: argparse.Namespace) -> int:
    """Export the dev server's events as NDJSON or CSV, oldest first."""
    devserver = _devserver_module()
    path = _db_path(args)
    try:
        if args.output and args.output != "-":
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                count = devserver.export_events(path, fmt=args.format, out=out, limit=args.limit,
                                                **_event_filters(args))
            print(f"exported {count} event(s) to {args.output}", file=sys.stderr)
        else:
            devserver.export_events(path, fmt=args.format, out=sys.stdout, limit=args.limit,
                                    **_event_filters(args))
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot export events: {exc}", EXIT_CONFIG) from None
    return EXIT_OK


def _db_path(args: argparse.Namespace) -> str:
    if not os.path.exists(args.db):
        raise CLIError(f"no dev server database at {args.db}", EXIT_CONFIG)
    return str(args.db)
