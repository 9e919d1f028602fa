"""Send one event and report the server's answer: capture, set, alias, group."""

from __future__ import annotations

import argparse
import uuid as _uuid
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from productos import Client, errors
from productos.cli._errors import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    connection_code,
    describe_error,
)
from productos.cli._output import print_json, show, wants_json
from productos.cli._properties import collect_properties, parse_groups
from productos.cli._settings import Settings, need_api_key, resolve_settings
from productos.diagnostics import send_one as send_and_report


@dataclass
class Delivery:
    """What became of one event sent by the CLI."""

    event: str
    distinct_id: Optional[str]
    uuid: str
    delivered: bool
    status: Optional[int]
    response: Any
    error: Optional[str]
    reason: Optional[str]
    code: int

    def as_json(self) -> Dict[str, Any]:
        """The --json form."""
        return {"delivered": self.delivered, "event": self.event, "distinct_id": self.distinct_id,
                "uuid": self.uuid, "status": self.status, "response": self.response,
                "error": self.error, "reason": self.reason}


def send_one(settings: Settings, event: str, distinct_id: Optional[str], retries: int,
             call: Callable[[Client, str], Optional[str]], event_uuid: Optional[str] = None
             ) -> Delivery:
    """Send one event synchronously through a real Client and report what the server said."""
    need_api_key(settings, "sending events")
    the_uuid = event_uuid or str(_uuid.uuid4())
    report = send_and_report(lambda client: call(client, the_uuid), settings.api_key,
                             settings.host, timeout=settings.timeout, retries=retries)
    error = None
    code = EXIT_OK
    if not report.delivered:
        failure = report.error
        if failure is not None:
            error = describe_error(failure)
            code = connection_code(failure)
            if isinstance(failure, errors.APIError) and failure.status in (401, 403):
                error += " (check --api-key or PRODUCTOS_API_KEY)"
        else:
            error = f"the event was dropped ({report.reason})"
            code = EXIT_FAILURE
    return Delivery(event, distinct_id, the_uuid, report.delivered, report.status,
                    report.response, error, report.reason, code)


def _report_delivery(args: argparse.Namespace, delivery: Delivery) -> int:
    if wants_json(args):
        print_json(delivery.as_json())
    elif delivery.delivered:
        who = f" for {delivery.distinct_id}" if delivery.distinct_id else ""
        answer = "" if delivery.response is None else " " + show(delivery.response)
        print(f"delivered {delivery.event!r}{who}")
        print(f"  uuid:   {delivery.uuid}")
        print(f"  server: HTTP {delivery.status}{answer}")
    if not delivery.delivered:
        raise CLIError(f"{delivery.event!r} was not delivered: {delivery.error}", delivery.code,
                       reported=wants_json(args))
    return EXIT_OK


def _check_uuid(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    try:
        return str(_uuid.UUID(value))
    except ValueError:
        raise CLIError(f"--uuid: {value!r} is not a UUID", EXIT_USAGE) from None


def cmd_capture(args: argparse.Namespace) -> int:
    """Send one event."""
    settings = resolve_settings(args)
    props = collect_properties(args.prop, args.props_json)
    groups = parse_groups(args.group) or None

    def call(client: Client, event_uuid: str) -> Optional[str]:
        return client.capture(args.event, distinct_id=args.distinct_id, properties=props,
                              groups=groups, uuid=event_uuid)

    return _report_delivery(args, send_one(settings, args.event, args.distinct_id, args.retries,
                                           call, _check_uuid(args.uuid)))


def cmd_set(args: argparse.Namespace) -> int:
    """Set person properties ($set, or $set_once with --once)."""
    settings = resolve_settings(args)
    props = collect_properties(args.prop, args.props_json)
    if not props:
        raise CLIError("set needs at least one --prop KEY=VALUE or --props-json", EXIT_USAGE)
    event = "$set_once" if args.once else "$set"

    def call(client: Client, event_uuid: str) -> Optional[str]:
        method = client.set_once if args.once else client.set
        return method(distinct_id=args.distinct_id, properties=props, uuid=event_uuid)

    return _report_delivery(args, send_one(settings, event, args.distinct_id, args.retries, call,
                                           _check_uuid(args.uuid)))


def cmd_alias(args: argparse.Namespace) -> int:
    """Link a new distinct id to an existing one ($create_alias)."""
    settings = resolve_settings(args)

    def call(client: Client, event_uuid: str) -> Optional[str]:
        return client.alias(args.previous_id, args.distinct_id, uuid=event_uuid)

    return _report_delivery(args, send_one(settings, "$create_alias", args.previous_id,
                                           args.retries, call, _check_uuid(args.uuid)))


def cmd_group(args: argparse.Namespace) -> int:
    """Set properties on a group ($groupidentify)."""
    settings = resolve_settings(args)
    props = collect_properties(args.prop, args.props_json)
    owner = args.distinct_id or f"${args.group_type}_{args.group_key}"

    def call(client: Client, event_uuid: str) -> Optional[str]:
        return client.group_identify(args.group_type, args.group_key, props,
                                     distinct_id=args.distinct_id, uuid=event_uuid)

    return _report_delivery(args, send_one(settings, "$groupidentify", owner, args.retries, call,
                                           _check_uuid(args.uuid)))
