"""The ``productos`` command line: demo, test events, flag inspection, doctor and the dev server.

Every command is a function ``cmd_*(args) -> int``; :func:`main` parses the arguments, turns
:class:`CLIError` into one line on stderr and returns the exit status. Keys are read from the
options or the environment and are never printed.

Each job has its own module: ``_parser`` (the argument parser), ``_output`` (printing, --json,
redaction), ``_settings`` (host and keys), ``_properties`` (KEY=VALUE arguments), ``_errors``
(exit codes), and one module per group of commands. The names below are re-exported so that
``productos.cli`` stays the one place to import from.
"""

# The imports below re-export every name the single-module CLI had (F401); main and the
# commands print (allowed for productos/cli/ in pyproject.toml).
# ruff: noqa: F401

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Callable, List, Optional

from productos.cli._errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    describe_error,
    unexpected_code,
)
from productos.cli._output import print_json, redact, sdk_logging, wants_json
from productos.cli._parser import EPILOG, build_parser
from productos.cli._properties import (
    collect_properties,
    parse_assignment,
    parse_group_properties,
    parse_groups,
)
from productos.cli._settings import (
    DEFAULT_TIMEOUT,
    DEV_PERSONAL_API_KEY,
    ENV_API_KEY,
    ENV_HOST,
    ENV_PERSONAL_API_KEY,
    Settings,
    option_value,
    resolve_settings,
)
from productos.cli.demo import (
    DEMO_COMPANIES,
    DEMO_EXPLAIN,
    DEMO_PERSONAL_API_KEY,
    DEMO_PROJECT_API_KEY,
    DEMO_USERS,
    SAMPLE_DEFINITIONS,
    cmd_demo,
)
from productos.cli.devserver import DEFAULT_DEVSERVER_PORT, cmd_devserver
from productos.cli.doctor import Check, _skew_check, cmd_doctor, run_doctor
from productos.cli.events import cmd_events_export, cmd_events_tail
from productos.cli.flags import (
    cmd_flags_eval,
    cmd_flags_list,
    describe_filter,
    fetch_definitions,
    load_definitions,
    result_json,
    rollout_summary,
)
from productos.cli.flags_init import SAMPLE_FLAGS_FILE, cmd_flags_init
from productos.cli.send import (
    Delivery,
    cmd_alias,
    cmd_capture,
    cmd_group,
    cmd_set,
    send_one,
)
from productos.cli.workbench import cmd_funnel, cmd_trends, parse_duration


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler = getattr(args, "handler", None)
    if not handler:
        parser.print_help()
        return EXIT_OK
    command: Callable[[argparse.Namespace], int] = globals()[handler]  # replaceable (tests do)
    debug = bool(option_value(args, "debug"))
    with sdk_logging(debug):
        try:
            return int(command(args))
        except CLIError as exc:
            if wants_json(args) and not exc.reported:
                print_json({"ok": False, "error": redact(exc.message), "exit_code": exc.code})
            print(f"productos: error: {redact(exc.message)}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            print("productos: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:
            if debug:
                traceback.print_exc()
            message = redact(str(exc) or type(exc).__name__)
            hint = "" if debug else " (run with --debug for the traceback)"
            print(f"productos: error: {type(exc).__name__}: {message}{hint}", file=sys.stderr)
            return unexpected_code(exc)


__all__ = ["CLIError", "build_parser", "main"]
