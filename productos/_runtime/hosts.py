"""Where events go: the default host, the aliases of PostHog's hosts, and URL normalisation."""

from __future__ import annotations

from typing import Optional

DEFAULT_HOST = "https://us.i.posthog.com"
HOST_ALIASES = {
    "https://app.posthog.com": DEFAULT_HOST,
    "https://us.posthog.com": DEFAULT_HOST,
    "https://eu.posthog.com": "https://eu.i.posthog.com",
}


def normalize_host(host: Optional[str]) -> str:
    """Return the base URL to talk to: aliases mapped, trailing slashes stripped."""
    if not host:
        return DEFAULT_HOST
    host = host.strip().rstrip("/")
    if "://" not in host:
        host = "https://" + host
    return HOST_ALIASES.get(host.lower().replace("http://", "https://", 1), host)
