"""events tail / events export: from a running dev server over HTTP, or from its --db file."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional

from productos.cli._devhttp import dev_host, get_json
from productos.cli._errors import EXIT_CONFIG, EXIT_OK, CLIError
from productos.cli._output import show
from productos.cli.devserver import _devserver_module, _sigterm_as_interrupt

__all__ = ["cmd_events_export", "cmd_events_tail", "http_events"]

_PAGE = 1000  # the dev server's /api/events limit
_POLL_SECONDS = 0.5


def _event_filters(args: argparse.Namespace) -> Dict[str, Any]:
    return {"event": args.event, "distinct_id": args.distinct_id}


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


def _write_events(events: Iterator[Dict[str, Any]], fmt: str) -> None:
    """Write events as they come: text (one line each), NDJSON or CSV."""
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


# --- over HTTP -------------------------------------------------------------------------------


def http_events(host: str, args: argparse.Namespace, *, limit: Optional[int],
                follow: bool = False, with_person: bool = False,
                stop: Optional[threading.Event] = None) -> Iterator[Dict[str, Any]]:
    """Events from a running dev server, oldest first: all of them, or the newest ``limit``;
    with ``follow``, then every new one until ``stop`` is set (or Ctrl-C)."""
    base: Dict[str, Any] = {**_event_filters(args), "person": "1" if with_person else None}
    after = 0
    if limit is not None:
        newest: List[Dict[str, Any]] = []
        before: Optional[int] = None
        while len(newest) < limit:  # pages of at most _PAGE, newest first
            want = min(_PAGE, limit - len(newest))
            page = get_json(host, "/api/events", {**base, "limit": want, "before": before},
                            args)
            newest.extend(page["events"])
            if not page["events"]:
                after = int(page.get("last_seq") or 0)
            if len(page["events"]) < want:
                break
            before = page["events"][-1]["seq"]
        if newest:
            after = int(newest[0]["seq"])
        yield from reversed(newest)
        if not follow:
            return
    waiter = stop if stop is not None else threading.Event()
    while not waiter.is_set():
        page = get_json(host, "/api/events",
                        {**base, "limit": _PAGE, "after": after, "order": "asc"}, args)
        events = page["events"]
        yield from events
        if events:
            after = int(events[-1]["seq"])
        if len(events) == _PAGE:
            continue
        if not follow:
            return
        waiter.wait(_POLL_SECONDS)


# --- the commands ------------------------------------------------------------------------------


def cmd_events_tail(args: argparse.Namespace) -> int:
    """Print the latest events from a running dev server (or its --db file), optionally
    following new ones."""
    try:
        with _sigterm_as_interrupt():
            if args.db:
                devserver = _devserver_module()
                events = devserver.tail_events(_db_path(args), follow=args.follow,
                                               limit=args.limit, **_event_filters(args))
            else:
                events = http_events(dev_host(args), args, limit=args.limit,
                                     follow=args.follow)
            _write_events(events, args.format)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `productos events tail | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read events: {exc}", EXIT_CONFIG) from None
    return EXIT_OK


def cmd_events_export(args: argparse.Namespace) -> int:
    """Export events oldest first as NDJSON, CSV or Parquet, from a running dev server over
    HTTP (or from its --db file)."""
    devserver = _devserver_module()
    to_file = bool(args.output and args.output != "-")
    if args.format == "parquet" and not to_file:
        raise CLIError("Parquet export needs an output file: -o events.parquet", EXIT_CONFIG)
    try:
        if args.db:
            path = _db_path(args)
            if args.format == "parquet":
                count = devserver.export_events(path, fmt="parquet", limit=args.limit,
                                                path=args.output, **_event_filters(args))
            elif to_file:
                with open(args.output, "w", encoding="utf-8", newline="") as out:
                    count = devserver.export_events(path, fmt=args.format, out=out,
                                                    limit=args.limit, **_event_filters(args))
            else:
                devserver.export_events(path, fmt=args.format, out=sys.stdout,
                                        limit=args.limit, **_event_filters(args))
                return EXIT_OK
        else:
            events = http_events(dev_host(args), args, limit=args.limit,
                                 with_person=args.format == "parquet")
            if args.format == "parquet":
                count = devserver.write_parquet(events, args.output)
            elif to_file:
                with open(args.output, "w", encoding="utf-8", newline="") as out:
                    count = devserver.write_events(events, args.format, out)
            else:
                devserver.write_events(events, args.format, sys.stdout)
                return EXIT_OK
    except devserver.ParquetUnavailable as exc:
        raise CLIError(str(exc), EXIT_CONFIG) from None
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot export events: {exc}", EXIT_CONFIG) from None
    print(f"exported {count} event(s) to {args.output}", file=sys.stderr)
    return EXIT_OK


def _db_path(args: argparse.Namespace) -> str:
    if not os.path.exists(args.db):
        raise CLIError(f"no dev server database at {args.db}", EXIT_CONFIG)
    return str(args.db)
