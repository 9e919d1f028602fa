"""Exit codes, the CLIError exception, and how failures map to an exit status."""

from __future__ import annotations

import re
from typing import Optional

from productos import errors
from productos.cli._output import redact

EXIT_OK = 0
EXIT_FAILURE = 1  # not delivered, a doctor check failed, a flag could not be evaluated
EXIT_USAGE = 2  # bad command line
EXIT_CONFIG = 3  # cannot connect, or a key/host/file is missing, invalid or refused
EXIT_INTERRUPTED = 130  # Ctrl-C


class CLIError(Exception):
    """A failure reported as one line on stderr with an exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE, *, reported: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reported = reported  # the command already printed its --json result


_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def describe_error(error: BaseException) -> str:
    """A short, key-free sentence for an error (requests' connection errors are verbose)."""
    text = str(error)
    if isinstance(error, errors.ConnectError):
        match = _ERRNO_RE.search(text)
        where = text.split(" failed:", 1)[0]
        if match:
            text = f"{where} failed: {match.group(1).strip()}"
        elif len(text) > 160:
            text = f"{where} failed: could not connect"
    return redact(text if len(text) <= 300 else text[:297] + "...")


def connection_code(error: Optional[BaseException]) -> int:
    """The exit status for a failed request: EXIT_CONFIG for connection and key trouble."""
    if isinstance(error, errors.AuthenticationError):
        return EXIT_CONFIG
    if isinstance(error, errors.APIError):
        return EXIT_FAILURE
    if isinstance(error, errors.TransportError):
        return EXIT_CONFIG
    return EXIT_FAILURE


def unexpected_code(exc: BaseException) -> int:
    """The exit status for an unexpected exception."""
    if isinstance(exc, errors.ConfigurationError):
        return EXIT_CONFIG
    if isinstance(exc, errors.TransportError):
        return EXIT_CONFIG
    return EXIT_FAILURE
