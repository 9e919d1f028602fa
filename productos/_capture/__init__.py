"""Private: building events from calls (validation, ids, JSON) and $exception events."""
