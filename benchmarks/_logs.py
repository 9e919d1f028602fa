"""Keeps an SDK's log records out of the benchmark output while counting them."""

from __future__ import annotations

import logging
from typing import List


class CountingHandler(logging.Handler):
    """Counts log records (and keeps the first few) instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.first: List[str] = []

    def handle(self, record: logging.LogRecord) -> bool:
        # Overridden whole: no lock and no formatting, so counting costs the SDK almost nothing.
        self.count += 1
        if len(self.first) < 5:
            self.first.append(f"{record.levelname}: {record.getMessage()[:200]}")
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)


def quiet_logger(name: str) -> CountingHandler:
    """Route one logger's records to a fresh CountingHandler and return it."""
    handler = CountingHandler()
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    return handler
