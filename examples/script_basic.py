"""One Client in a plain script: capture, groups, a feature flag, and capture_exception.

Local (no account):  productos devserver   # in another terminal, listens on 127.0.0.1:8010
    PRODUCTOS_API_KEY=phc_dev PRODUCTOS_HOST=http://127.0.0.1:8010 python examples/script_basic.py
Real project:  PRODUCTOS_API_KEY=phc_... PRODUCTOS_HOST=https://us.i.posthog.com python ...
"""

from __future__ import annotations

import productos


def checkout(total: float) -> None:
    """Fail the way real code does: an error raised from another."""
    try:
        raise ValueError(f"invalid order total: {total}")
    except ValueError as exc:
        raise RuntimeError("checkout failed") from exc


def main() -> None:
    """Send a few events, read a flag, report an exception, and flush before exiting."""
    # Key and host come from PRODUCTOS_API_KEY / PRODUCTOS_HOST; without a key nothing is sent.
    client = productos.Client(flush_interval=0.2)
    user = "user-42"

    client.capture("signed up", distinct_id=user, properties={"plan": "pro"})
    client.set(distinct_id=user, properties={"email": "ada@example.com"})
    client.group_identify("company", "acme", {"name": "Acme Inc.", "employees": 120})
    client.capture("invoice paid", distinct_id=user, groups={"company": "acme"},
                   properties={"amount": 99.0})

    # None means "unknown" (no such flag, or the server could not be reached).
    if client.feature_enabled("new-checkout", user, groups={"company": "acme"}):
        print("new-checkout is on for", user)
    print("pricing variant:", client.get_feature_flag("pricing-test", user))

    try:
        checkout(-1)
    except RuntimeError:
        client.capture_exception(distinct_id=user, properties={"component": "checkout"})

    client.shutdown(timeout=10)  # flush what is queued before the process ends
    print("stats:", client.stats())


if __name__ == "__main__":
    main()
