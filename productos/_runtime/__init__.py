"""Private: process-wide plumbing (options, exit and fork hooks, rate-limited logging)."""
