"""How many forks the interpreter announced in this process's ancestry (a cheap fork check).

``os.getpid()`` is a system call on every flag read; comparing this counter with the value a
flag service saw last is one list read. Forks the interpreter is not told about (uWSGI forks
in C and by default runs no at-fork hooks) are caught by the pid check the flag service still
makes before every event and remote call, and every ``PID_CHECK_EVERY`` value-only reads.
"""

from __future__ import annotations

import os
from typing import List

__all__ = ["FORKS", "PID_CHECK_EVERY"]

# FORKS[0] grows by one in every forked child the interpreter announces.
FORKS: List[int] = [0]
PID_CHECK_EVERY = 256


def _forked() -> None:
    FORKS[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)
