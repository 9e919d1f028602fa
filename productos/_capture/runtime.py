"""The runtime properties every event carries: ``$os``, ``$os_version``, ``$python_*``."""

from __future__ import annotations

import functools
import os
import sys
from types import MappingProxyType
from typing import Any, Dict, Mapping

__all__ = ["parse_os_release", "system_properties"]

# Where the os-release file lives (os-release(5)): the first that exists is read.
_OS_RELEASE_PATHS = ("/etc/os-release", "/usr/lib/os-release")
_RUNTIME_NAMES = {"cpython": "CPython", "pypy": "PyPy", "ironpython": "IronPython",
                  "jython": "Jython"}


def parse_os_release(text: str) -> Dict[str, str]:
    """The KEY=value lines of an os-release file, unquoted (comments and junk skipped)."""
    fields: Dict[str, str] = {}
    for line in text.split("\n"):  # only newlines end a line (str.splitlines knows more)
        name, sep, value = line.partition("=")
        if not sep or not name or not (name.replace("_", "").isalnum() and name.isascii()):
            continue  # a comment, a blank line or not an assignment
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        if "\\" in value:  # the escapes the format allows inside quotes
            import re

            value = re.sub(r"\\([\\$\"'`])", r"\1", value)
        fields[name] = value
    return fields


def _os_version() -> str:
    """Return the OS version as posthog reports it (the distribution's on Linux)."""
    system: str = getattr(sys, "platform")  # noqa: B009 - read as data, not narrowed by mypy
    if system.startswith("linux"):
        # /etc/os-release read directly (as `distro` and platform.freedesktop_os_release read
        # it), so a flags-only or first client does not import platform (about 1.3 ms).
        for path in _OS_RELEASE_PATHS:
            try:
                with open(path, encoding="utf-8") as file:
                    return parse_os_release(file.read()).get("VERSION_ID") or ""
            except OSError:
                continue
            except ValueError:  # not UTF-8: no usable file, as for CPython's reader
                break
        return os.uname().release  # no os-release file (some containers): the kernel's
    import platform  # elsewhere the platform module knows how to ask

    try:
        if system == "darwin":
            return platform.mac_ver()[0] or ""
        if system.startswith("win"):
            return platform.win32_ver()[0] or ""
    except Exception:  # an odd system: the kernel's release, as before
        pass
    return platform.release()


def _python_runtime() -> str:
    """The interpreter's name as platform.python_implementation() gives it."""
    known = _RUNTIME_NAMES.get(sys.implementation.name)
    if known is not None:
        return known
    import platform  # an interpreter this table does not name

    return platform.python_implementation()


@functools.cache
def system_properties() -> Mapping[str, Any]:
    """Return the properties that describe this runtime, computed once, by the first client.

    Not at import: on Linux they read /etc/os-release, which a process that imports productos
    without sending never needs.
    """
    os_name = {"darwin": "Mac OS X", "win32": "Windows"}.get(sys.platform)
    if os_name is None:
        os_name = "Linux" if sys.platform.startswith("linux") else sys.platform
    return MappingProxyType({
        "$os": os_name,
        "$os_version": _os_version(),
        "$python_runtime": _python_runtime(),
        "$python_version": "{}.{}.{}".format(*sys.version_info[:3]),
    })
