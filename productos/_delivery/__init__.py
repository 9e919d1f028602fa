"""Private: getting batches to the server (HTTP, the batch sender, the spool, the counters)."""
