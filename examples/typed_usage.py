"""A typed application script: what users write, checked with ``mypy --strict`` in CI.

Every call here is checked against productos' own annotations: the client, the module-level
API in posthog's style, JSON payloads, exception capture and the web integrations' typed
request accessors. Run it against a local dev server with ``python examples/typed_usage.py``.
"""

from __future__ import annotations

import sys
from typing import Dict, List, Optional, Union

import productos
from productos import JSON, FlagResult, Posthog
from productos.integrations import RequestClient


def price_for(payload: Optional[JSON]) -> float:
    """Read a price out of a flag payload, whatever JSON the flag carries."""
    if isinstance(payload, dict):
        value = payload.get("price")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return 9.99


def track_checkout(client: productos.Client, user: str, amount: float) -> Optional[str]:
    """Capture an event with the client API; the uuid (or None) comes back."""
    return client.capture("checkout completed", distinct_id=user,
                          properties={"amount": amount}, disable_geoip=False)


def variant_of(client: productos.Client, user: str) -> str:
    """Read a flag's value as a string, whatever type it has."""
    value: Union[bool, str, None] = client.get_feature_flag("checkout-flow", user)
    result: Optional[FlagResult] = client.get_feature_flag_result("checkout-flow", user)
    if result is not None and result.variant is not None:
        return result.variant
    return "control" if value is None else str(value)


def in_a_django_view(request: object) -> bool:
    """What a typed Django view does with the middleware's per-request client."""
    from productos.integrations.django import request_client

    helper: RequestClient = request_client(request)
    return bool(helper.feature_enabled("new-home"))


def in_a_flask_view() -> Optional[str]:
    """What a typed Flask view does with the per-request client."""
    from productos.integrations.flask import get_request_client, productos_request

    helper: RequestClient = get_request_client()
    helper.feature_enabled("new-home")
    return productos_request.capture("home viewed")


def main(host: str) -> int:
    """Use the module-level client the way posthog scripts do, then an explicit one."""
    productos.project_api_key = "phc_typed_example"
    productos.host = host
    productos.capture("script started", distinct_id="typed-user", properties={"argv": 1})
    productos.set(distinct_id="typed-user", properties={"plan": "pro"})
    flags: Optional[Dict[str, Union[bool, str]]] = productos.get_all_flags("typed-user")
    payload: Optional[JSON] = productos.get_feature_flag_payload("pricing", "typed-user")
    print(flags, price_for(payload))
    try:
        raise ValueError("typed example")
    except ValueError:
        productos.capture_exception(sys.exc_info(), distinct_id="typed-user")
    productos.flush(timeout_seconds=5)
    productos.shutdown()

    with Posthog("phc_typed_example", host, flush_interval=0.5, thread=2) as client:
        track_checkout(client, "typed-user", 12.5)
        print(variant_of(client, "typed-user"))
        keys: List[str] = sorted((client.get_all_flags("typed-user") or {}).keys())
        print(keys)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8010"))
