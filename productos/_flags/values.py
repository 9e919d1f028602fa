"""Property and filter values as the server's flags service reads them: text, numbers, truth."""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any, Optional

__all__ = ["ascii_lower", "parse_number", "stringify", "truthy", "truthy_or_falsy"]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case only A-Z, as the server's string operators do."""
    return text.lower() if text.isascii() else text.translate(_ASCII_LOWER)


def _json_float(value: float) -> Optional[str]:
    # The flags service prints floats the way JavaScript does for the exponent, but keeps
    # Python's repr otherwise (323.0 stays "323.0"): the vectors pin both behaviours.
    if not math.isfinite(value):
        return None
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exponent_text = text.split("e")
    exponent = int(exponent_text)
    if -6 < exponent < 0:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if exponent >= 0 else ''}{exponent}"


def _json_text(value: Any) -> Optional[str]:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, list):
        parts = []
        for item in value:
            text = _json_text(item)
            if text is None:
                return None
            parts.append(text)
        return "[" + ",".join(parts) + "]"
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            return None
        parts = []
        for k in sorted(value):
            text = _json_text(value[k])
            if text is None:
                return None
            parts.append(json.dumps(k, ensure_ascii=False) + ":" + text)
        return "{" + ",".join(parts) + "}"
    return None


def stringify(value: Any) -> Optional[str]:
    """Text the server compares: strings as-is, other JSON values as compact JSON, else None."""
    if isinstance(value, str):
        return value
    try:
        return _json_text(value)
    except RecursionError:
        return None


_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_number(value: Any) -> Optional[float]:
    """Finite number from a JSON number or a plain decimal string, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        if _NUMBER_RE.fullmatch(value) is None:
            return None
    elif not isinstance(value, (int, float, Decimal)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def truthy_or_falsy(value: Any) -> bool:
    """Whether a filter value is made only of booleans or "true"/"false" texts."""
    # Matching version 1 treats a filter made only of booleans (or "true"/"false") as a
    # truthiness test rather than a string comparison.
    if isinstance(value, bool):
        return True
    if isinstance(value, str):
        return value.lower() in ("true", "false")
    if isinstance(value, list):
        return all(truthy_or_falsy(item) for item in value)
    return False


def truthy(value: Any) -> bool:
    """Truthiness as the server's exact operator sees it (lists: every item truthy)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() == "true"
    if isinstance(value, list):
        return all(truthy(item) for item in value)
    return False

