"""Local feature-flag evaluation (filled in by the flags issue)."""
