"""The flag definitions a dev server serves: checked, versioned with an ETag, re-read on change.

Each version is one immutable :class:`DefinitionsState`, compiled once by the SDK's public
:class:`productos.diagnostics.Definitions`, and replaced whole when the definitions change.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

from productos.diagnostics import Definitions

__all__ = [
    "DefinitionsState",
    "FlagDefinitions",
    "load_definitions_file",
    "normalise_definitions",
    "without_continuity",
]

log = logging.getLogger("productos.devserver")




def normalise_definitions(document: Any) -> Dict[str, Any]:
    """Check a definitions document (protocol §2 body, or a list of flags); fill defaults."""
    if isinstance(document, list):
        document = {"flags": document}
    if not isinstance(document, Mapping):
        raise ValueError("flag definitions must be a JSON object with a 'flags' list")
    result = copy.deepcopy(dict(document))
    flags = result.setdefault("flags", [])
    if not isinstance(flags, list):
        raise ValueError("'flags' in the flag definitions must be a list")
    for position, flag in enumerate(flags):
        if not isinstance(flag, Mapping) or not isinstance(flag.get("key"), str):
            raise ValueError(f"flag #{position} in the flag definitions has no text 'key'")
    if not isinstance(result.setdefault("group_type_mapping", {}), Mapping):
        raise ValueError("'group_type_mapping' in the flag definitions must be an object")
    if not isinstance(result.setdefault("cohorts", {}), Mapping):
        raise ValueError("'cohorts' in the flag definitions must be an object")
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"flag definitions are not plain JSON: {exc}") from exc
    return result


def load_definitions_file(path: str) -> Dict[str, Any]:
    """Read and check a definitions JSON file; errors name the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except OSError as exc:
        raise ValueError(f"cannot read flag definitions {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ValueError(f"flag definitions {path} are not valid JSON: {exc}") from exc
    try:
        return normalise_definitions(document)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def without_continuity(document: Mapping[str, Any]) -> Dict[str, Any]:
    """The document with experience continuity off for every flag (what the server evaluates)."""
    # Experience continuity only matters for hash-key overrides after an identify, which the
    # dev server does not keep; the server then evaluates the flag normally.
    result = dict(document)
    result["flags"] = [
        {**flag, "ensure_experience_continuity": False} if flag.get("ensure_experience_continuity")
        else flag
        for flag in document.get("flags", [])
    ]
    return result


@dataclass(frozen=True)
class DefinitionsState:
    """One immutable version of the definitions; replaced whole on every change."""

    document: Mapping[str, Any]
    body: bytes  # the definitions endpoint's response body
    etag: str
    version: int
    definitions: Definitions  # exactly what a client compiles from ``body``
    server_definitions: Definitions  # what /flags evaluates (continuity ignored)
    source: str


class FlagDefinitions:
    """The definitions the server serves and evaluates; optionally re-read when the file changes."""

    def __init__(self, document: Optional[Mapping[str, Any]] = None,
                 path: Optional[str] = None) -> None:
        self._lock = threading.Lock()
        self._version = 0
        self.path = path
        self._mtime: Optional[int] = None
        self.reload_error: Optional[str] = None
        if path is not None:
            self._mtime = _mtime(path)
            initial = load_definitions_file(path)
            source = path
        else:
            initial = normalise_definitions(document if document is not None else {"flags": []})
            source = "inline" if document is not None else "none"
        self._state = self._build(initial, source)

    def _build(self, document: Dict[str, Any], source: str) -> DefinitionsState:
        self._version += 1
        body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
        digest = hashlib.sha1(body).hexdigest()[:16]
        return DefinitionsState(
            document=document,
            body=body,
            etag=f'"{self._version}-{digest}"',
            version=self._version,
            definitions=Definitions(document),
            server_definitions=Definitions(without_continuity(document)),
            source=source,
        )

    def set(self, document: Mapping[str, Any]) -> DefinitionsState:
        """Replace the definitions (raises ValueError for a bad document); the ETag changes."""
        normalised = normalise_definitions(document)
        with self._lock:
            self._state = self._build(normalised, "inline")
            self.path = None  # explicit definitions win over the file from now on
            self.reload_error = None
            return self._state

    def current(self) -> DefinitionsState:
        """The current definitions, re-read first when the file changed on disk."""
        path = self.path
        if path is not None and _mtime(path) != self._mtime:
            with self._lock:
                mtime = _mtime(path)
                if self.path == path and mtime != self._mtime:
                    self._mtime = mtime
                    try:
                        self._state = self._build(load_definitions_file(path), path)
                        self.reload_error = None
                        log.info("productos devserver: reloaded flag definitions from %s", path)
                    except ValueError as exc:
                        # Keep serving the last good definitions, and say why in /api/flags.
                        self.reload_error = str(exc)
                        log.warning("productos devserver: %s (keeping the previous flags)", exc)
        return self._state


def _mtime(path: str) -> Optional[int]:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None
