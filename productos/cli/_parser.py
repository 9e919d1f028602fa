"""The argument parser: commands, global options and the exit-status epilog."""

from __future__ import annotations

import argparse
from typing import NoReturn

from productos.cli._errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
)
from productos.cli._settings import (
    DEFAULT_TIMEOUT,
    DEV_PERSONAL_API_KEY,
    ENV_API_KEY,
    ENV_HOST,
    ENV_PERSONAL_API_KEY,
)
from productos.cli.devserver import DEFAULT_DEVSERVER_PORT
from productos.version import VERSION

EPILOG = f"""\
environment:
  {ENV_HOST}              default for --host (else https://us.i.posthog.com)
  {ENV_API_KEY}           default for --api-key (project key, phc_...)
  {ENV_PERSONAL_API_KEY}  default for --personal-api-key (phx_... or phs_...)

exit status:
  {EXIT_OK}    success
  {EXIT_FAILURE}    failure: event not delivered, a doctor check failed, flag value unknown
  {EXIT_USAGE}    usage error (bad options or arguments)
  {EXIT_CONFIG}    connection or configuration problem: host unreachable, key missing or
       refused, unreadable file, port in use
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

Global options may be given before or after the command. Keys are never printed.
Quick start: productos demo"""

class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line."""

    def error(self, message: str) -> NoReturn:
        """Print one usage line and exit with EXIT_USAGE."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _global_options(connection: bool = True) -> _Parser:
    """The global options, accepted before or after the command (defaults are applied later)."""
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("global options")
    sup = argparse.SUPPRESS
    if connection:
        group.add_argument("--host", default=sup, metavar="URL",
                           help=f"server base URL (default ${ENV_HOST} or PostHog US Cloud)")
        group.add_argument("--api-key", default=sup, metavar="KEY",
                           help=f"project API key, phc_... (default ${ENV_API_KEY})")
        group.add_argument("--personal-api-key", default=sup, metavar="KEY",
                           help=f"personal/secret key for flag definitions "
                                f"(default ${ENV_PERSONAL_API_KEY})")
        group.add_argument("--timeout", default=sup, type=float, metavar="SECONDS",
                           help=f"network timeout (default {DEFAULT_TIMEOUT:g})")
    group.add_argument("--json", action="store_true", default=sup,
                       help="machine-readable JSON output on stdout")
    group.add_argument("--debug", action="store_true", default=sup,
                       help="debug logging and full tracebacks")
    return parent


def _send_options() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument("--uuid", help="event uuid (default: a new one)")
    parent.add_argument("--retries", type=int, default=2,
                        help="retries on connection errors, 429 and 5xx (default 2)")
    return parent


def _props_options() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument("--prop", action="append", metavar="KEY=VALUE",
                        help="a property: KEY=text or KEY:=JSON (repeatable)")
    parent.add_argument("--props-json", metavar="JSON", help="properties as one JSON object")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every command.

    Each command stores the name of its ``cmd_*`` function as ``handler``; ``main`` looks it
    up in ``productos.cli`` when it runs, so the parser needs no import of its parent.
    """
    parser = _Parser(prog="productos", parents=[_global_options()],
                     description="productos: product analytics and feature flags speaking "
                                 "PostHog's API, from the command line.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"productos {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _global_options()
    local = _global_options(connection=False)

    demo = sub.add_parser("demo", parents=[local], help="run the end-to-end demo on a dev server",
                          description="Start a dev server on a free port with sample flags, send "
                                      "sample events through a real Client, evaluate the flags "
                                      "for a few users with explanations, print a summary.")
    demo.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    demo.add_argument("--keep-running", action="store_true",
                      help="keep the dev server and its viewer up until Ctrl-C")
    demo.add_argument("--db", help="keep the events in this SQLite file")
    demo.add_argument("--verbose", "-v", action="store_true",
                      help="explain every flag for every user")
    demo.set_defaults(handler="cmd_demo")

    send = [common, _send_options(), _props_options()]
    capture = sub.add_parser("capture", parents=send, help="send one event",
                             description="Send one event, wait for the server's answer, print "
                                         "the uuid and the answer.")
    capture.add_argument("event", help="event name")
    capture.add_argument("--distinct-id", required=True, help="who did it")
    capture.add_argument("--group", action="append", metavar="TYPE=KEY",
                         help="attach a group (repeatable)")
    capture.set_defaults(handler="cmd_capture")

    set_ = sub.add_parser("set", parents=send, help="set person properties ($set)",
                          description="Set person properties ($set; $set_once with --once).")
    set_.add_argument("--distinct-id", required=True, help="the person")
    set_.add_argument("--once", action="store_true", help="send $set_once instead of $set")
    set_.set_defaults(handler="cmd_set")

    alias = sub.add_parser("alias", parents=[common, _send_options()],
                           help="link a new distinct id to an existing one",
                           description="Send $create_alias: --distinct-id (new) becomes the "
                                       "same person as --previous-id (existing).")
    alias.add_argument("--previous-id", required=True, help="the existing distinct id")
    alias.add_argument("--distinct-id", required=True, help="the new distinct id")
    alias.set_defaults(handler="cmd_alias")

    group = sub.add_parser("group", parents=send, help="set group properties ($groupidentify)",
                           description="Send $groupidentify for one group.")
    group.add_argument("group_type", metavar="TYPE", help="group type, e.g. company")
    group.add_argument("group_key", metavar="KEY", help="group key, e.g. acme")
    group.add_argument("--distinct-id", help="sender (default: $TYPE_KEY)")
    group.set_defaults(handler="cmd_group")

    flags = sub.add_parser("flags", help="list and evaluate feature flags",
                           description="Inspect flag definitions and evaluate flags.")
    flags_sub = flags.add_subparsers(dest="flags_command", metavar="SUBCOMMAND",
                                     parser_class=_Parser)
    flags_sub.required = True
    flist = flags_sub.add_parser(
        "list", parents=[common], help="list flags: active, rollout, local evaluation",
        description="List flag definitions (needs the personal API key, or --file).")
    flist.add_argument("--file", help="read definitions from this JSON file instead")
    flist.set_defaults(handler="cmd_flags_list")
    feval = flags_sub.add_parser(
        "eval", parents=[common], help="evaluate one flag for one person",
        description="Evaluate one flag: locally when the personal API key is set, else (or when "
                    "local data cannot decide) by the server's /flags.")
    feval.add_argument("key", help="flag key")
    feval.add_argument("--distinct-id", required=True, help="the person")
    feval.add_argument("--person-prop", action="append", metavar="KEY=VALUE",
                       help="person property: KEY=text or KEY:=JSON (repeatable)")
    feval.add_argument("--group", action="append", metavar="TYPE=KEY", help="group (repeatable)")
    feval.add_argument("--group-prop", action="append", metavar="TYPE.KEY=VALUE",
                       help="group property: TYPE.KEY=text or TYPE.KEY:=JSON (repeatable)")
    feval.add_argument("--device-id", help="device id (for flags bucketed by device)")
    feval.add_argument("--explain", action="store_true",
                       help="print the evaluation trace: conditions, filters, buckets, variants")
    where = feval.add_mutually_exclusive_group()
    where.add_argument("--local-only", action="store_true", help="never ask the server")
    where.add_argument("--remote", action="store_true", help="ask the server only")
    feval.add_argument("--file", help="evaluate against definitions in this JSON file (offline)")
    feval.set_defaults(handler="cmd_flags_eval")
    finit = flags_sub.add_parser(
        "init", parents=[local], help="write a sample flag definitions file to edit",
        description="Write a sample definitions file (the dev server's --flags format), with "
                    "notes on every field, to FILE (default flags.json). Never overwrites.")
    finit.add_argument("file", nargs="?", default="flags.json", metavar="FILE")
    finit.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    finit.set_defaults(handler="cmd_flags_init")

    doctor = sub.add_parser("doctor", parents=[common], help="check host, keys, flags, clock",
                            description="Check that the host is reachable, the project key is "
                                        "accepted, the personal key can load definitions, which "
                                        "flags need the server, and the clock skew.")
    doctor.add_argument("--flag-definitions-cache", metavar="URL_OR_DIR",
                        help="also check this shared definitions cache (redis://..., a "
                             "directory); default $PRODUCTOS_FLAG_DEFINITIONS_CACHE")
    doctor.set_defaults(handler="cmd_doctor")

    dev = sub.add_parser("devserver", parents=[local], help="run the local dev server",
                         description="Run the local PostHog-compatible server (events in "
                                     "SQLite, flags from a JSON file, a viewer at /).")
    dev.add_argument("--host", dest="bind_host", default="127.0.0.1",
                     help="interface to listen on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=DEFAULT_DEVSERVER_PORT,
                     help=f"port (default {DEFAULT_DEVSERVER_PORT}; 0 = a free port)")
    dev.add_argument("--db", help="SQLite database file")
    dev.add_argument("--flags", help="flag definitions JSON file")
    dev.add_argument("--project-api-key", help="accept only this project key (default: any)")
    dev.add_argument("--personal-api-key", dest="server_personal_api_key",
                     help=f"personal key for /flags/definitions (default "
                          f"${ENV_PERSONAL_API_KEY}, else {DEV_PERSONAL_API_KEY})")
    dev.set_defaults(handler="cmd_devserver")

    events = sub.add_parser("events", help="read the dev server's events",
                            description="Read events stored by the dev server: from the running "
                                        "server over HTTP (--host, default $PRODUCTOS_HOST or "
                                        "http://127.0.0.1:8010), or from its database (--db).")
    events_sub = events.add_subparsers(dest="events_command", metavar="SUBCOMMAND",
                                       parser_class=_Parser)
    events_sub.required = True
    for name, handler, text in (("tail", "cmd_events_tail", "print the latest events"),
                                ("export", "cmd_events_export", "export events, oldest first")):
        ev = events_sub.add_parser(name, parents=[common], help=text, description=text + ".")
        ev.add_argument("--db", help="read this dev server SQLite database instead of the "
                                     "running server")
        ev.add_argument("--event", help="only events with this name")
        ev.add_argument("--distinct-id", help="only events of this distinct id")
        if name == "tail":
            ev.add_argument("--format", choices=("text", "ndjson", "csv"), default="text",
                            help="output format (default text)")
            ev.add_argument("--limit", type=int, default=10,
                            help="how many recent events to show first (default 10)")
            ev.add_argument("--follow", "-f", action="store_true",
                            help="keep printing new events until Ctrl-C")
        else:
            ev.add_argument("--format", choices=("ndjson", "csv", "parquet"), default="ndjson",
                            help="output format (default ndjson; parquet needs "
                                 "productos[parquet] and -o)")
            ev.add_argument("--limit", type=int, help="only the newest N events")
            ev.add_argument("--output", "-o", help="write to this file (default stdout)")
        ev.set_defaults(handler=handler)

    funnel = sub.add_parser(
        "funnel", parents=[common], help="conversion through ordered steps (dev server)",
        description="Ask a running dev server for the funnel of STEP1 STEP2 ...: how many "
                    "persons did each step in order within the window from their first STEP1.")
    funnel.add_argument("steps", nargs="+", metavar="STEP", help="event names, 2 to 10")
    funnel.add_argument("--window", default="14d",
                        help="conversion window: seconds or 30m, 2h, 1d, 2w (default 14d)")
    funnel.add_argument("--breakdown", metavar="PROPERTY",
                        help="split by this property of the first step's event")
    funnel.add_argument("--from", dest="date_from", metavar="DATE", help="ISO date/time")
    funnel.add_argument("--to", dest="date_to", metavar="DATE", help="ISO date/time")
    funnel.set_defaults(handler="cmd_funnel")

    trends = sub.add_parser(
        "trends", parents=[common], help="an event per hour or day (dev server)",
        description="Ask a running dev server how often EVENT happened per hour or day, and by "
                    "how many persons.")
    trends.add_argument("event", help="event name")
    trends.add_argument("--interval", choices=("hour", "day"), default="day")
    trends.add_argument("--from", dest="date_from", metavar="DATE", help="ISO date/time")
    trends.add_argument("--to", dest="date_to", metavar="DATE", help="ISO date/time")
    trends.set_defaults(handler="cmd_trends")
    return parser
