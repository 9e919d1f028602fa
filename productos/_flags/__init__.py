"""Private: flag definitions (fetch, poll, parse, compile) and the service that answers calls."""
