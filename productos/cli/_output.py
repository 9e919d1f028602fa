"""What the command line shows: JSON output, values, redaction and SDK logging."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any, Iterator

from productos.diagnostics import redact

__all__ = ["RedactingFormatter", "print_json", "redact", "sdk_logging", "show", "wants_json"]


def wants_json(args: argparse.Namespace) -> bool:
    """Whether --json was given."""
    return bool(getattr(args, "json", None))


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    print(json.dumps(data, indent=2, sort_keys=False, default=str, ensure_ascii=False))


def show(value: Any) -> str:
    """A value for humans: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


class RedactingFormatter(logging.Formatter):
    """A log formatter that removes anything shaped like a key (debug logs show URLs)."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record, then redact it."""
        return redact(super().format(record))


@contextlib.contextmanager
def sdk_logging(debug: bool) -> Iterator[None]:
    """Keep the SDK's log lines off the terminal (the CLI reports), or show all with --debug."""
    logger = logging.getLogger("productos")
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(message)s"))
    else:
        handler = logging.NullHandler()
    level = logger.level
    propagate = logger.propagate
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)
    else:
        logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
