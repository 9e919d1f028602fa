"""Semantic versions as the server's semver_* operators read them."""

from __future__ import annotations

from typing import Any, Optional, Tuple

__all__ = ["SemverTuple", "parse_semver", "semver_bounds"]

SemverTuple = Tuple[int, int, int]


def _semver_part(part: str) -> Optional[int]:
    # Semver forbids leading zeros; str.isdigit() mirrors the reference, int() rejects the
    # few "digits" (superscripts) that Python cannot convert.
    if not part or not part.isdigit() or (len(part) > 1 and part[0] == "0"):
        return None
    try:
        return int(part)
    except ValueError:
        return None


def parse_semver(value: Any) -> Optional[SemverTuple]:
    """(major, minor, patch) from '1.2.3', 'v1.2', ' 1.2.3-rc.1+b5 ', else None."""
    text = str(value).strip().lstrip("vV")
    text = text.split("-")[0].split("+")[0]
    parts = text.split(".")
    if not parts[0]:
        return None
    major = _semver_part(parts[0])
    minor: Optional[int] = 0
    patch: Optional[int] = 0
    if len(parts) > 1 and parts[1]:
        minor = _semver_part(parts[1])
    if len(parts) > 2 and parts[2]:
        patch = _semver_part(parts[2])
    if major is None or minor is None or patch is None:
        return None
    return (major, minor, patch)


def semver_bounds(operator: str, value: Any) -> Optional[Tuple[SemverTuple, SemverTuple]]:
    """The [lower, upper) versions a tilde, caret or wildcard filter value covers, else None."""
    if operator == "semver_wildcard":
        # "1.*" covers [1.0.0, 2.0.0), "1.2.*" covers [1.2.0, 1.3.0), "1.2.3" covers one patch.
        cleaned = str(value).strip().lstrip("vV").replace("*", "").rstrip(".")
        parsed = [_semver_part(p) for p in cleaned.split(".") if p][:3]
        if not parsed:
            return None
        numbers = [n for n in parsed if n is not None]
        if len(numbers) != len(parsed):
            return None
        if len(numbers) == 1:
            return (numbers[0], 0, 0), (numbers[0] + 1, 0, 0)
        if len(numbers) == 2:
            return (numbers[0], numbers[1], 0), (numbers[0], numbers[1] + 1, 0)
        return (numbers[0], numbers[1], numbers[2]), (numbers[0], numbers[1], numbers[2] + 1)
    version = parse_semver(value)
    if version is None:
        return None
    major, minor, patch = version
    if operator == "semver_tilde":
        return version, (major, minor + 1, 0)
    # caret: the left-most non-zero component may not change
    if major > 0:
        return version, (major + 1, 0, 0)
    if minor > 0:
        return version, (0, minor + 1, 0)
    return version, (0, 0, patch + 1)

