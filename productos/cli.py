"""The ``productos`` command line: demo, test events, flag inspection, doctor and the dev server.

Every command is a function ``cmd_*(args) -> int``; :func:`main` parses the arguments, turns
:class:`CLIError` into one line on stderr and returns the exit status. Keys are read from the
options or the environment and are never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
import traceback
import uuid as _uuid
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    NoReturn,
    Optional,
    Sequence,
    Tuple,
)

from productos.version import VERSION

if TYPE_CHECKING:
    from productos.client import Client
    from productos.definitions import CompiledFlag, FilterSpec, Snapshot
    from productos.flags import FlagResult
    from productos.transport import Response, Transport

# --- exit codes ---------------------------------------------------------------------------

EXIT_OK = 0
EXIT_FAILURE = 1  # not delivered, a doctor check failed, a flag could not be evaluated
EXIT_USAGE = 2  # bad command line
EXIT_CONFIG = 3  # cannot connect, or a key/host/file is missing, invalid or refused
EXIT_INTERRUPTED = 130  # Ctrl-C

ENV_HOST = "PRODUCTOS_HOST"
ENV_API_KEY = "PRODUCTOS_API_KEY"
ENV_PERSONAL_API_KEY = "PRODUCTOS_PERSONAL_API_KEY"

DEFAULT_TIMEOUT = 10.0
DEFAULT_DEVSERVER_PORT = 8010
DEV_PERSONAL_API_KEY = "phx_dev"  # the dev server's personal key unless told otherwise
DEMO_PROJECT_API_KEY = "phc_productos_demo"
DEMO_PERSONAL_API_KEY = "phx_productos_demo"

EPILOG = f"""\
environment:
  {ENV_HOST}              default for --host (else https://us.i.posthog.com)
  {ENV_API_KEY}           default for --api-key (project key, phc_...)
  {ENV_PERSONAL_API_KEY}  default for --personal-api-key (phx_... or phs_...)

exit status:
  {EXIT_OK}    success
  {EXIT_FAILURE}    failure: event not delivered, a doctor check failed, flag value unknown
  {EXIT_USAGE}    usage error (bad options or arguments)
  {EXIT_CONFIG}    connection or configuration problem: host unreachable, key missing or
       refused, unreadable file, port in use
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)

Global options may be given before or after the command. Keys are never printed.
Quick start: productos demo"""


class CLIError(Exception):
    """A failure reported as one line on stderr with an exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE, *, reported: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reported = reported  # the command already printed its --json result


# --- sample flags for the demo ---------------------------------------------------------------

SAMPLE_DEFINITIONS: Dict[str, Any] = {
    "flags": [
        {
            "id": 1, "key": "new-dashboard", "version": 3, "active": True,
            "filters": {
                "groups": [
                    {"properties": [{"key": "email", "type": "person", "operator": "icontains",
                                     "value": "@example.com"}],
                     "rollout_percentage": 100},
                    {"properties": [], "rollout_percentage": 30},
                ],
                "payloads": {"true": '{"layout": "grid"}'},
            },
        },
        {
            "id": 2, "key": "checkout-experiment", "version": 1, "active": True,
            "filters": {
                "groups": [
                    {"properties": [{"key": "country", "type": "person", "operator": "exact",
                                     "value": ["US", "CA", "GB"]}],
                     "rollout_percentage": 100},
                ],
                "multivariate": {"variants": [
                    {"key": "control", "rollout_percentage": 50},
                    {"key": "one-page", "rollout_percentage": 50},
                ]},
                "payloads": {"control": '{"steps": 3}', "one-page": '{"steps": 1}'},
            },
        },
        {
            "id": 3, "key": "pro-analytics", "version": 2, "active": True,
            "filters": {
                "groups": [
                    {"properties": [{"key": "plan", "type": "person", "operator": "exact",
                                     "value": ["pro", "enterprise"]}],
                     "rollout_percentage": 100},
                ],
            },
        },
        {
            "id": 4, "key": "ai-assistant", "version": 1, "active": True,
            "filters": {
                "groups": [
                    {"properties": [{"key": "pro-analytics", "type": "flag",
                                     "operator": "flag_evaluates_to", "value": True,
                                     "dependency_chain": ["pro-analytics"]}],
                     "rollout_percentage": 50},
                ],
            },
        },
        {
            "id": 5, "key": "enterprise-reports", "version": 1, "active": True,
            "filters": {
                "aggregation_group_type_index": 0,
                "groups": [
                    {"properties": [{"key": "seats", "type": "group", "group_type_index": 0,
                                     "operator": "gte", "value": 100}],
                     "rollout_percentage": 100},
                ],
            },
        },
        {
            "id": 6, "key": "sticky-onboarding", "version": 1, "active": True,
            "ensure_experience_continuity": True,
            "filters": {"groups": [{"properties": [], "rollout_percentage": 50}]},
        },
        {
            "id": 7, "key": "legacy-export", "version": 4, "active": False,
            "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
        },
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {},
}

# (distinct id, person properties, company) for the demo.
DEMO_USERS: Tuple[Tuple[str, Dict[str, Any], str], ...] = (
    ("alice", {"email": "alice@example.com", "plan": "pro", "country": "US"}, "acme"),
    ("bob", {"email": "bob@mail.test", "plan": "free", "country": "DE"}, "initech"),
    ("chris", {"email": "chris@mail.test", "plan": "enterprise", "country": "CA"}, "acme"),
)
DEMO_COMPANIES: Dict[str, Dict[str, Any]] = {
    "acme": {"name": "Acme Corp", "seats": 250},
    "initech": {"name": "Initech", "seats": 12},
}
# The explanations the demo prints in full (--verbose prints all of them).
DEMO_EXPLAIN = (("alice", "checkout-experiment"), ("bob", "new-dashboard"),
                ("chris", "ai-assistant"))


# --- settings and output ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Where to connect and with which keys (resolved from options, then the environment)."""

    host: str
    api_key: str = field(repr=False)
    personal_api_key: Optional[str] = field(repr=False)
    api_key_source: str
    personal_api_key_source: str
    timeout: float


def _option(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def resolve_settings(args: argparse.Namespace) -> Settings:
    """Resolve host, keys and timeout from the options and the environment."""
    from productos.transport import normalize_host

    host = _option(args, "host") or os.environ.get(ENV_HOST) or None
    host = normalize_host(host)
    if not host.startswith(("http://", "https://")):
        raise CLIError(f"--host must be an http(s) URL, not {host!r}", EXIT_CONFIG)
    api_key, api_source = _key(args, "api_key", "--api-key", ENV_API_KEY)
    personal, personal_source = _key(args, "personal_api_key", "--personal-api-key",
                                     ENV_PERSONAL_API_KEY)
    timeout = _option(args, "timeout")
    timeout = DEFAULT_TIMEOUT if timeout is None else float(timeout)
    if not timeout > 0:
        raise CLIError("--timeout must be a positive number of seconds", EXIT_USAGE)
    return Settings(host, api_key or "", personal, api_source, personal_source, timeout)


def _key(args: argparse.Namespace, name: str, option: str, env: str) -> Tuple[Optional[str], str]:
    value = _option(args, name)
    if value:
        return value.strip(), option
    value = os.environ.get(env, "").strip()
    if value:
        return value, env
    return None, "not set"


def _redact(text: str) -> str:
    from productos.transport import redact

    return redact(text)


_ERRNO_RE = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def describe_error(error: BaseException) -> str:
    """A short, key-free sentence for an error (requests' connection errors are verbose)."""
    from productos import errors

    text = str(error)
    if isinstance(error, errors.ConnectError):
        match = _ERRNO_RE.search(text)
        where = text.split(" failed:", 1)[0]
        if match:
            text = f"{where} failed: {match.group(1).strip()}"
        elif len(text) > 160:
            text = f"{where} failed: could not connect"
    return _redact(text if len(text) <= 300 else text[:297] + "...")


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(_option(args, "json"))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False, default=str, ensure_ascii=False))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _parse_value(raw: str, typed: bool, option: str) -> Any:
    if not typed:
        return raw
    try:
        return json.loads(raw)
    except ValueError:
        raise CLIError(f"{option}: {raw!r} is not JSON (use KEY=VALUE for text)",
                       EXIT_USAGE) from None


def parse_assignment(text: str, option: str) -> Tuple[str, Any]:
    """Parse ``KEY=VALUE`` (a string) or ``KEY:=JSON`` (a typed value) from the command line."""
    key, sep, raw = text.partition("=")
    typed = key.endswith(":")
    if typed:
        key = key[:-1]
    if not sep or not key:
        raise CLIError(f"{option} expects KEY=VALUE or KEY:=JSON, not {text!r}", EXIT_USAGE)
    return key, _parse_value(raw, typed, option)


def collect_properties(pairs: Optional[Sequence[str]], props_json: Optional[str],
                       option: str = "--prop") -> Dict[str, Any]:
    """Merge ``--props-json`` (first) and ``--prop`` assignments (which win) into one dict."""
    props: Dict[str, Any] = {}
    if props_json:
        try:
            loaded = json.loads(props_json)
        except ValueError as exc:
            raise CLIError(f"--props-json is not valid JSON: {exc}", EXIT_USAGE) from None
        if not isinstance(loaded, dict):
            raise CLIError("--props-json must be a JSON object", EXIT_USAGE)
        props.update(loaded)
    for pair in pairs or ():
        key, value = parse_assignment(pair, option)
        props[key] = value
    return props


def parse_groups(pairs: Optional[Sequence[str]]) -> Dict[str, str]:
    """Parse ``--group TYPE=KEY`` options."""
    groups: Dict[str, str] = {}
    for pair in pairs or ():
        gtype, sep, gkey = pair.partition("=")
        if not sep or not gtype or not gkey:
            raise CLIError(f"--group expects TYPE=KEY, not {pair!r}", EXIT_USAGE)
        groups[gtype] = gkey
    return groups


def parse_group_properties(pairs: Optional[Sequence[str]]) -> Dict[str, Dict[str, Any]]:
    """Parse ``--group-prop TYPE.KEY=VALUE`` (or ``TYPE.KEY:=JSON``) options."""
    result: Dict[str, Dict[str, Any]] = {}
    for pair in pairs or ():
        name, value = parse_assignment(pair, "--group-prop")
        gtype, dot, key = name.partition(".")
        if not dot or not gtype or not key:
            raise CLIError(f"--group-prop expects TYPE.KEY=VALUE, not {pair!r}", EXIT_USAGE)
        result.setdefault(gtype, {})[key] = value
    return result


def _connection_code(error: Optional[BaseException]) -> int:
    from productos import errors

    if isinstance(error, errors.AuthenticationError):
        return EXIT_CONFIG
    if isinstance(error, errors.APIError):
        return EXIT_FAILURE
    if isinstance(error, errors.TransportError):
        return EXIT_CONFIG
    return EXIT_FAILURE


def _need_api_key(settings: Settings, what: str) -> None:
    if not settings.api_key:
        raise CLIError(f"{what} needs the project API key: pass --api-key or set {ENV_API_KEY}",
                       EXIT_CONFIG)


# --- sending events: capture, set, alias, group ----------------------------------------------


def _recording_transport(host: str, timeout: float) -> Transport:
    """A Transport that remembers the last answer, so the CLI can show the server's reply."""
    from productos.transport import Transport

    class RecordingTransport(Transport):
        last: Optional[Response] = None

        def request(self, method: str, path: str, **kwargs: Any) -> Response:
            self.last = None
            response = super().request(method, path, **kwargs)
            self.last = response
            return response

    return RecordingTransport(host, timeout=timeout)


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
    from productos import errors
    from productos.client import Client
    from productos.transport import BatchSender, RetryPolicy

    _need_api_key(settings, "sending events")
    transport = _recording_transport(settings.host, settings.timeout)
    sender = BatchSender(transport, settings.api_key,
                         retry=RetryPolicy(max_retries=retries, base=0.5, cap=4.0))
    failures: List[BaseException] = []
    client = Client(settings.api_key, host=settings.host, sync_mode=True, sender=sender,
                    timeout=settings.timeout, enable_local_evaluation=False,
                    on_error=lambda exc, batch: failures.append(exc))
    the_uuid = event_uuid or str(_uuid.uuid4())
    try:
        returned = call(client, the_uuid)
        stats = client.stats()
    finally:
        client.shutdown(timeout=1.0)
        transport.close()
    last: Optional[Response] = getattr(transport, "last", None)
    status = None if last is None else last.status
    response: Any = None
    if last is not None:
        response = last.json()
        if response is None and last.body:
            response = _redact(last.body[:500].decode("utf-8", "replace"))
    delivered = returned is not None and stats["delivered"] >= 1
    error = None
    reason = None
    code = EXIT_OK
    if not delivered:
        reason = next(iter(stats["dropped"]), None) or "not_sent"
        failure = failures[-1] if failures else None
        if failure is not None:
            error = describe_error(failure)
            code = _connection_code(failure)
            if isinstance(failure, errors.APIError) and failure.status in (401, 403):
                error += " (check --api-key or PRODUCTOS_API_KEY)"
        else:
            error = f"the event was dropped ({reason})"
            code = EXIT_FAILURE
    return Delivery(event, distinct_id, the_uuid, delivered, status, response, error, reason,
                    code)


def _report_delivery(args: argparse.Namespace, delivery: Delivery) -> int:
    if _wants_json(args):
        _print_json(delivery.as_json())
    elif delivery.delivered:
        who = f" for {delivery.distinct_id}" if delivery.distinct_id else ""
        answer = "" if delivery.response is None else " " + _show(delivery.response)
        print(f"delivered {delivery.event!r}{who}")
        print(f"  uuid:   {delivery.uuid}")
        print(f"  server: HTTP {delivery.status}{answer}")
    if not delivery.delivered:
        raise CLIError(f"{delivery.event!r} was not delivered: {delivery.error}", delivery.code,
                       reported=_wants_json(args))
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


# --- flags -----------------------------------------------------------------------------------


def fetch_definitions(settings: Settings) -> Tuple[Mapping[str, Any], float]:
    """Fetch the raw definitions with the personal key; return them and the request time (s)."""
    from productos.remote import DefinitionsRequester
    from productos.transport import Transport

    _need_api_key(settings, "loading flag definitions")
    if not settings.personal_api_key:
        raise CLIError(f"loading flag definitions needs a personal API key: pass "
                       f"--personal-api-key or set {ENV_PERSONAL_API_KEY} (or use --file)",
                       EXIT_CONFIG)
    transport = Transport(settings.host, timeout=settings.timeout)
    started = time.monotonic()
    try:
        fetched = DefinitionsRequester(transport, settings.api_key, settings.personal_api_key,
                                       timeout=settings.timeout).fetch()
    finally:
        transport.close()
    elapsed = time.monotonic() - started
    if fetched.outcome == "ok" and fetched.data is not None:
        return fetched.data, elapsed
    detail = describe_error(fetched.error) if fetched.error else fetched.outcome
    if fetched.outcome == "unauthorized":
        raise CLIError(f"the personal API key was refused for flag definitions ({detail}): check "
                       f"--personal-api-key or {ENV_PERSONAL_API_KEY}", EXIT_CONFIG)
    if fetched.outcome == "quota_limited":
        raise CLIError(f"flag definitions unavailable: quota limited ({detail})", EXIT_FAILURE)
    raise CLIError(f"could not load flag definitions from {settings.host}: {detail}",
                   _connection_code(fetched.error))


def load_snapshot(args: argparse.Namespace) -> Tuple[Snapshot, str]:
    """Load definitions from --file or from the server; return the snapshot and its source."""
    from productos.definitions import parse_definitions

    path = _option(args, "file")
    if path:
        from productos.poller import load_definitions_file

        try:
            return load_definitions_file(path), path
        except ValueError as exc:
            raise CLIError(str(exc), EXIT_CONFIG) from None
    settings = resolve_settings(args)
    data, _ = fetch_definitions(settings)
    return parse_definitions(data), settings.host


def _pct(value: Optional[float]) -> str:
    return "100%" if value is None else f"{value:g}%"


def describe_filter(spec: FilterSpec) -> str:
    """A short, readable form of one property filter."""
    if spec.type == "cohort":
        return f"{'not ' if spec.operator == 'not_in' else ''}in cohort {spec.value}"
    if spec.type == "flag":
        return f"flag {spec.key} is {_show(spec.value)}"
    prefix = "" if spec.type == "person" else f"{spec.type} "
    if spec.operator in ("is_set", "is_not_set"):
        return f"{prefix}{spec.key} {spec.operator}"
    return f"{prefix}{spec.key} {spec.operator} {_show(spec.value)}"


def rollout_summary(flag: CompiledFlag) -> str:
    """One line: who gets the flag, by condition, with variants and holdout."""
    if flag.malformed:
        return f"malformed: {flag.malformed}"
    parts = []
    for cond in flag.conditions:
        who = " and ".join(describe_filter(f) for f in cond.filters) or "everyone"
        text = f"{who}: {_pct(cond.rollout_percentage)}"
        if cond.variant is not None:
            text += f" -> {cond.variant}"
        parts.append(text)
    summary = "; ".join(parts) or "no conditions (nobody)"
    if flag.variants:
        summary += " | variants " + ", ".join(
            f"{v.key} {v.rollout_percentage:g}%" for v in flag.variants)
    if flag.holdout is not None:
        summary += f" | holdout {flag.holdout.exclusion_percentage:g}%"
    if flag.is_group_flag:
        summary = f"per {flag.group_type or 'unknown group type'}: " + summary
    return summary


def _flag_json(flag: CompiledFlag) -> Dict[str, Any]:
    return {
        "key": flag.key, "id": flag.id, "version": flag.version, "active": flag.active,
        "group_type": flag.group_type, "rollout": rollout_summary(flag),
        "conditions": [
            {"filters": [describe_filter(f) for f in c.filters],
             "rollout_percentage": 100 if c.rollout_percentage is None else c.rollout_percentage,
             "variant": c.variant}
            for c in flag.conditions
        ],
        "variants": [{"key": v.key, "rollout_percentage": v.rollout_percentage}
                     for v in flag.variants],
        "evaluable_locally": flag.evaluable_locally,
        "local_problem": flag.local_problem,
    }


def cmd_flags_list(args: argparse.Namespace) -> int:
    """List flag definitions: key, active, rollout, and whether they evaluate locally."""
    snapshot, source = load_snapshot(args)
    flags = list(snapshot.flags.values())
    remote_only = [f for f in flags if not f.evaluable_locally]
    if _wants_json(args):
        _print_json({"source": source, "count": len(flags),
                     "not_evaluable_locally": [f.key for f in remote_only],
                     "flags": [_flag_json(f) for f in flags],
                     "problems": list(snapshot.problems)})
        return EXIT_OK
    print(f"{len(flags)} flag(s) from {source}; {len(remote_only)} cannot be evaluated locally")
    if not flags:
        return EXIT_OK
    width = max(len(f.key) for f in flags)
    print(f"  {'KEY':<{width}}  {'ACTIVE':<6}  {'LOCAL':<5}  ROLLOUT")
    for flag in flags:
        local = "yes" if flag.evaluable_locally else "no"
        active = "yes" if flag.active else "no"
        print(f"  {flag.key:<{width}}  {active:<6}  {local:<5}  {rollout_summary(flag)}")
        if not flag.evaluable_locally:
            print(f"  {'':<{width}}  {'':<6}  {'':<5}  why not local: {flag.local_problem}")
    for problem in snapshot.problems:
        print(f"warning: {problem}")
    return EXIT_OK


def _filter_json(spec: FilterSpec) -> Dict[str, Any]:
    return {"type": spec.type, "key": spec.key, "operator": spec.operator, "value": spec.value}


def result_json(result: FlagResult, explain_it: bool = False) -> Dict[str, Any]:
    """A FlagResult as JSON, with the structured evaluation trace when asked."""
    from productos.flags import explain

    reason = result.reason
    data: Dict[str, Any] = {
        "key": result.key, "value": result.value, "variant": result.variant,
        "enabled": result.enabled, "payload": result.payload,
        "locally_evaluated": result.locally_evaluated, "flag_id": result.flag_id,
        "flag_version": result.flag_version,
        "reason": {
            "code": reason.code.value, "description": reason.description,
            "condition_index": reason.condition_index,
            "inconclusive": None if reason.inconclusive is None else reason.inconclusive.value,
            "error": reason.error,
        },
    }
    if explain_it:
        data["explanation"] = explain(result)
        data["trace"] = [
            {"condition_index": c.condition_index, "outcome": c.outcome,
             "group_type": c.group_type, "bucket": c.bucket, "threshold": c.threshold,
             "variant": c.variant, "variant_bucket": c.variant_bucket,
             "variant_range": None if c.variant_range is None else list(c.variant_range),
             "detail": c.detail,
             "filters": [{**_filter_json(f.filter), "outcome": f.outcome, "actual": f.actual,
                          "detail": f.detail} for f in c.filters]}
            for c in reason.trace
        ]
    return data


def _value_text(result: FlagResult) -> str:
    return "unknown" if result.value is None else _show(result.value)


def _evaluate_from_file(args: argparse.Namespace, person: Dict[str, Any], groups: Dict[str, str],
                        group_props: Dict[str, Dict[str, Any]]) -> FlagResult:
    from productos import flags

    snapshot, _ = load_snapshot(args)
    ctx = flags.EvaluationContext(distinct_id=args.distinct_id, groups=groups,
                                  person_properties=person, group_properties=group_props,
                                  device_id=args.device_id)
    return flags.evaluate(snapshot, args.key, ctx)


def _evaluate_with_client(args: argparse.Namespace, person: Dict[str, Any],
                          groups: Dict[str, str], group_props: Dict[str, Dict[str, Any]]
                          ) -> Tuple[Optional[FlagResult], Optional[str]]:
    from productos.client import Client
    from productos.poller import SourceState

    settings = resolve_settings(args)
    _need_api_key(settings, "evaluating flags")
    use_local = bool(settings.personal_api_key) and not args.remote
    if args.local_only and not use_local:
        raise CLIError(f"--local-only needs a personal API key (--personal-api-key or "
                       f"{ENV_PERSONAL_API_KEY}) or --file", EXIT_CONFIG)
    failures: List[BaseException] = []
    client = Client(settings.api_key, host=settings.host,
                    personal_api_key=settings.personal_api_key if use_local else None,
                    enable_local_evaluation=use_local, send=False, timeout=settings.timeout,
                    poll_interval=3600.0, flags_first_load_timeout=settings.timeout,
                    feature_flags_request_timeout_seconds=settings.timeout,
                    on_error=lambda exc, batch: failures.append(exc))
    warning = None
    try:
        result = client.get_feature_flag_result(
            args.key, args.distinct_id, groups=groups or None, person_properties=person or None,
            group_properties=group_props or None, device_id=args.device_id,
            only_evaluate_locally=args.local_only, send_feature_flag_events=False)
        status = client.flag_definitions_status()
        if use_local and status is not None and status.state is not SourceState.VALID:
            warning = (f"flag definitions not loaded ({status.state.value}: "
                       f"{_redact(status.last_error or 'no answer')}); ")
            warning += "the value is unknown" if args.local_only else "the server was asked"
    finally:
        client.shutdown(timeout=1.0)
    if result is None:
        why = f": {describe_error(failures[-1])}" if failures else ""
        raise CLIError(f"flag {args.key!r} could not be evaluated{why}", EXIT_FAILURE)
    return result, warning


def cmd_flags_eval(args: argparse.Namespace) -> int:
    """Evaluate one flag for one person, optionally with the full trace."""
    person = collect_properties(args.person_prop, None, "--person-prop")
    groups = parse_groups(args.group)
    group_props = parse_group_properties(args.group_prop)
    missing = sorted(set(group_props) - set(groups))
    if missing:
        raise CLIError(f"--group-prop for {missing[0]!r} needs --group {missing[0]}=KEY",
                       EXIT_USAGE)
    warning = None
    if _option(args, "file"):
        result: Optional[FlagResult] = _evaluate_from_file(args, person, groups, group_props)
    else:
        result, warning = _evaluate_with_client(args, person, groups, group_props)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if result is None:
        raise CLIError(f"flag {args.key!r} could not be evaluated", EXIT_FAILURE)
    if _wants_json(args):
        _print_json({"distinct_id": args.distinct_id, **result_json(result, args.explain)})
    elif args.explain:
        from productos.flags import explain

        print(explain(result))
        if not result.reason.trace and not result.locally_evaluated:
            print("note: the server sends no evaluation trace; with the personal API key the "
                  "flag is evaluated locally and fully explained", file=sys.stderr)
    else:
        where = "locally" if result.locally_evaluated else "by the server"
        if result.value is None:
            where = "not decided"
        print(f"{result.key}: {_value_text(result)}")
        print(f"  reason:  {result.reason.code.value}: {result.reason.description} ({where})")
        if result.payload is not None:
            print(f"  payload: {_show(result.payload)}")
    if result.value is None:
        error = result.reason.error or (
            result.reason.inconclusive.value if result.reason.inconclusive else "unknown")
        code = EXIT_CONFIG if error in ("connection_error", "timeout") else EXIT_FAILURE
        raise CLIError(f"flag {args.key!r} has no value for {args.distinct_id!r}: {error}", code,
                       reported=_wants_json(args))
    return EXIT_OK


# --- doctor ----------------------------------------------------------------------------------


@dataclass
class Check:
    """One doctor check: PASS, WARN, FAIL or SKIP, with a detail line and optional items."""

    name: str
    status: str
    detail: str
    items: List[str] = field(default_factory=list)


def _server_date(response: Response) -> Optional[float]:
    from productos.transport import parse_http_date

    return parse_http_date(response.headers.get("Date"))


def run_doctor(settings: Settings) -> List[Check]:
    """Run every check against the configured host; never raises for network trouble."""
    from productos import errors
    from productos.definitions import parse_definitions
    from productos.remote import DefinitionsRequester, flags_request_body
    from productos.transport import FLAGS_PATH, Transport

    checks: List[Check] = []
    skews: List[float] = []
    transport = Transport(settings.host, timeout=settings.timeout)

    def timed(call: Callable[[], Any]) -> Tuple[Any, float]:
        before = time.time()
        started = time.monotonic()
        value = call()
        elapsed = time.monotonic() - started
        if hasattr(value, "headers"):
            server = _server_date(value)
            if server is not None:
                # The Date header has whole seconds: compare with the middle of the request.
                skews.append(server + 0.5 - (before + elapsed / 2))
        return value, elapsed

    try:
        try:
            response, elapsed = timed(lambda: transport.request("GET", "/"))
        except errors.TransportError as exc:
            checks.append(Check("host reachable", "FAIL", describe_error(exc)))
            for name in ("project API key", "personal API key", "flag definitions",
                         "clock skew"):
                checks.append(Check(name, "SKIP", "host not reachable"))
            return checks
        checks.append(Check("host reachable", "PASS",
                            f"{settings.host} answered HTTP {response.status} in "
                            f"{elapsed * 1000:.0f} ms"))

        if not settings.api_key:
            checks.append(Check("project API key", "FAIL",
                                f"not set: pass --api-key or set {ENV_API_KEY}"))
        else:
            body = json.dumps(flags_request_body(
                settings.api_key, "productos-doctor", groups={}, person_properties={},
                group_properties={}, device_id=None, disable_geoip=True)).encode()
            try:
                response, _ = timed(lambda: transport.post_json(FLAGS_PATH, body, gzip=False))
            except errors.TransportError as exc:
                checks.append(Check("project API key", "FAIL",
                                    f"/flags request failed: {describe_error(exc)}"))
            else:
                checks.append(_project_key_check(response, settings))

        if not settings.personal_api_key:
            checks.append(Check("personal API key", "SKIP",
                                f"not set: flags are evaluated by the server (set "
                                f"{ENV_PERSONAL_API_KEY} for local evaluation)"))
            checks.append(Check("flag definitions", "SKIP", "needs the personal API key"))
        elif not settings.api_key:
            checks.append(Check("personal API key", "SKIP", "needs the project API key too"))
            checks.append(Check("flag definitions", "SKIP", "needs both keys"))
        else:
            requester = DefinitionsRequester(transport, settings.api_key,
                                             settings.personal_api_key,
                                             timeout=settings.timeout)
            fetched = requester.fetch()
            source = settings.personal_api_key_source
            if fetched.outcome == "ok" and fetched.data is not None:
                checks.append(Check("personal API key", "PASS",
                                    f"accepted for flag definitions (from {source})"))
                checks.append(_definitions_check(parse_definitions(fetched.data)))
            else:
                detail = describe_error(fetched.error) if fetched.error else fetched.outcome
                if fetched.outcome == "unauthorized":
                    text = (f"refused for flag definitions ({detail}): check "
                            f"--personal-api-key or {ENV_PERSONAL_API_KEY} (from {source})")
                elif fetched.outcome == "quota_limited":
                    text = f"flag definitions are quota limited ({detail})"
                else:
                    text = f"flag definitions request failed: {detail}"
                checks.append(Check("personal API key", "FAIL", text))
                checks.append(Check("flag definitions", "SKIP", "not loaded"))
        checks.append(_skew_check(skews))
    finally:
        transport.close()
    return checks


def _project_key_check(response: Response, settings: Settings) -> Check:
    source = settings.api_key_source
    if response.status == 200:
        data = response.json()
        if isinstance(data, dict) and "feature_flags" in (data.get("quotaLimited") or []):
            return Check("project API key", "WARN",
                         f"accepted by /flags, but flags are quota limited (from {source})")
        return Check("project API key", "PASS", f"accepted by /flags (from {source})")
    if response.status in (401, 403):
        return Check("project API key", "FAIL",
                     f"refused by /flags (HTTP {response.status}: {response.message()}): "
                     f"check --api-key or {ENV_API_KEY} (from {source})")
    return Check("project API key", "FAIL",
                 f"/flags answered HTTP {response.status}: {response.message()}")


def _definitions_check(snapshot: Snapshot) -> Check:
    flags = list(snapshot.flags.values())
    remote_only = [f for f in flags if not f.evaluable_locally]
    items = [f"{f.key}: {f.local_problem}" for f in remote_only]
    items += [f"problem: {p}" for p in snapshot.problems]
    if not remote_only and not snapshot.problems:
        return Check("flag definitions", "PASS",
                     f"{len(flags)} flag(s), all can be evaluated locally")
    return Check("flag definitions", "WARN",
                 f"{len(flags)} flag(s); {len(remote_only)} cannot be evaluated locally "
                 f"(the server is asked for those)", items)


def _skew_check(skews: List[float]) -> Check:
    if not skews:
        return Check("clock skew", "SKIP", "the server sent no Date header")
    skew = sorted(skews)[len(skews) // 2]
    text = f"local clock is {abs(skew):.1f} s {'behind' if skew > 0 else 'ahead of'} the server"
    if abs(skew) <= 5:
        return Check("clock skew", "PASS", f"{text} (within 5 s)")
    if abs(skew) <= 60:
        return Check("clock skew", "WARN", f"{text}; event times may be off")
    return Check("clock skew", "FAIL", f"{text}; fix the system clock (NTP)")


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check connectivity, keys, definitions and clock skew."""
    settings = resolve_settings(args)
    checks = run_doctor(settings)
    failed = [c for c in checks if c.status == "FAIL"]
    if _wants_json(args):
        _print_json({"host": settings.host, "ok": not failed,
                     "checks": [{"name": c.name, "status": c.status, "detail": c.detail,
                                 "items": c.items} for c in checks]})
    else:
        print(f"productos doctor: {settings.host}")
        for check in checks:
            print(f"  {check.status:<4}  {check.name:<17} {check.detail}")
            for item in check.items:
                print(f"        {'':<17} - {item}")
        warned = sum(c.status == "WARN" for c in checks)
        if failed:
            print(f"{len(failed)} check(s) failed")
        else:
            print("all checks passed" + (f" ({warned} warning(s))" if warned else ""))
    if failed:
        raise CLIError(f"doctor: {len(failed)} check(s) failed: "
                       + ", ".join(c.name for c in failed), EXIT_FAILURE, reported=True)
    return EXIT_OK


# --- dev server, events ----------------------------------------------------------------------


def _devserver_module() -> Any:
    try:
        import productos.devserver as devserver
    except ImportError as exc:
        raise CLIError(f"the dev server is not available in this install: {exc}",
                       EXIT_CONFIG) from None
    return devserver


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt while serving, so `kill` stops cleanly."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_until_interrupted() -> None:
    """Block until Ctrl-C or SIGTERM."""
    never = threading.Event()
    try:
        with _sigterm_as_interrupt():
            while not never.wait(3600):
                pass
    except KeyboardInterrupt:
        pass


def _start_devserver(**kwargs: Any) -> Any:
    devserver = _devserver_module()
    try:
        server = devserver.DevServer(**kwargs)
    except (OSError, ValueError) as exc:  # an unreadable flags file or database
        raise CLIError(f"cannot start the dev server: {_redact(str(exc))}", EXIT_CONFIG) from None
    try:
        return server.start()
    except OSError as exc:
        server.stop()
        where = f"{kwargs.get('host')}:{kwargs.get('port')}"
        raise CLIError(f"cannot listen on {where}: {exc.strerror or exc}", EXIT_CONFIG) from None


@contextlib.contextmanager
def _devserver_log(debug: bool) -> Iterator[None]:
    """Show the dev server's notices (flags reloaded, errors) on stderr while it runs."""
    logger = logging.getLogger("productos.devserver")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    if not debug:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def cmd_devserver(args: argparse.Namespace) -> int:
    """Run the local PostHog-compatible dev server until interrupted."""
    personal = (args.server_personal_api_key or os.environ.get(ENV_PERSONAL_API_KEY)
                or DEV_PERSONAL_API_KEY)
    server = _start_devserver(host=args.bind_host, port=args.port, db_path=args.db,
                              flags_path=args.flags, project_api_key=args.project_api_key,
                              personal_api_key=personal)
    try:
        db = str(server.db_path)
        if _wants_json(args):
            print(json.dumps({"url": server.url, "viewer": server.url + "/", "db": db,
                              "temporary_db": args.db is None}), flush=True)
        else:
            print(f"productos dev server listening on {server.url}")
            print(f"  event viewer: {server.url}/")
            print(f"  database:     {db}" + (" (temporary: pass --db PATH to keep it)"
                                            if args.db is None else ""))
            if args.flags:
                print(f"  flags:        {args.flags} (reloaded when it changes)")
            print(f"  point the SDK and CLI at it: export {ENV_HOST}={server.url}")
            print("  project key:  " + ("the one given by --project-api-key"
                                        if args.project_api_key else "any (not checked)"))
            print("  personal key: " + (
                "the one given by --personal-api-key" if args.server_personal_api_key
                else f"${ENV_PERSONAL_API_KEY}" if os.environ.get(ENV_PERSONAL_API_KEY)
                else "the dev default (see the README)"))
            print("Press Ctrl-C to stop.", flush=True)
        with _devserver_log(bool(_option(args, "debug"))):
            _wait_until_interrupted()
    finally:
        server.stop()
    return EXIT_OK


def _event_filters(args: argparse.Namespace) -> Dict[str, Any]:
    return {"event": args.event, "distinct_id": args.distinct_id}


def _write_events(events: Iterator[Dict[str, Any]], fmt: str) -> None:
    """Write events as they come: text (one line each), NDJSON or CSV."""
    import csv

    writer = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow([column for column, _ in _CSV_FIELDS])
    for event in events:
        if writer is not None:
            writer.writerow([_csv_cell(event.get(name)) for _, name in _CSV_FIELDS])
        elif fmt == "ndjson":
            print(json.dumps(event, default=str, ensure_ascii=False))
        else:
            props = event.get("properties") or {}
            extra = {k: v for k, v in props.items() if not str(k).startswith("$")}
            for key in ("$set", "$set_once"):
                if event.get(key):
                    extra[key] = event[key]
            print(f"{event.get('timestamp', '')}  {event.get('event')}  "
                  f"{event.get('distinct_id')}  {event.get('uuid')}"
                  + (f"  {_show(extra)}" if extra else ""))
        sys.stdout.flush()


# The dev server's export columns: (CSV column, event field).
_CSV_FIELDS = (("seq", "seq"), ("uuid", "uuid"), ("event", "event"),
               ("distinct_id", "distinct_id"), ("timestamp", "timestamp"),
               ("received_at", "received_at"), ("properties", "properties"), ("set", "$set"),
               ("set_once", "$set_once"))


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return value


def cmd_events_tail(args: argparse.Namespace) -> int:
    """Print the latest events from the dev server's database (optionally following)."""
    devserver = _devserver_module()
    path = _db_path(args)
    try:
        with _sigterm_as_interrupt():
            events = devserver.tail_events(path, follow=args.follow, limit=args.limit,
                                           **_event_filters(args))
            _write_events(events, args.format)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `productos events tail | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot read events: {exc}", EXIT_CONFIG) from None
    return EXIT_OK


def cmd_events_export(args: argparse.Namespace) -> int:
    """Export the dev server's events as NDJSON or CSV, oldest first."""
    devserver = _devserver_module()
    path = _db_path(args)
    try:
        if args.output and args.output != "-":
            with open(args.output, "w", encoding="utf-8", newline="") as out:
                count = devserver.export_events(path, fmt=args.format, out=out, limit=args.limit,
                                                **_event_filters(args))
            print(f"exported {count} event(s) to {args.output}", file=sys.stderr)
        else:
            devserver.export_events(path, fmt=args.format, out=sys.stdout, limit=args.limit,
                                    **_event_filters(args))
    except (OSError, ValueError) as exc:
        raise CLIError(f"cannot export events: {exc}", EXIT_CONFIG) from None
    return EXIT_OK


def _db_path(args: argparse.Namespace) -> str:
    if not os.path.exists(args.db):
        raise CLIError(f"no dev server database at {args.db}", EXIT_CONFIG)
    return str(args.db)


# --- demo ------------------------------------------------------------------------------------


def _demo_events(client: Client) -> List[Tuple[str, str, Optional[str]]]:
    """Send the sample events; return (kind, label, uuid) for each."""
    sent: List[Tuple[str, str, Optional[str]]] = []
    for name, props in DEMO_COMPANIES.items():
        sent.append(("group_identify", f"company {name}",
                     client.group_identify("company", name, props)))
    sent.append(("alias", "anon-7f3a -> alice", client.alias("alice", "anon-7f3a")))
    for user, person, company in DEMO_USERS:
        sent.append(("set", f"{user} {_show(person)}",
                     client.set(distinct_id=user, properties=person)))
        sent.append(("set_once", f"{user} first_seen",
                     client.set_once(distinct_id=user,
                                     properties={"first_seen": "2026-01-05"})))
        for path in ("/", "/pricing", "/checkout"):
            sent.append(("capture", f"$pageview {user} {path}", client.capture(
                "$pageview", distinct_id=user, groups={"company": company},
                properties={"$current_url": f"https://app.example.com{path}"})))
    sent.append(("capture", "signed up bob", client.capture(
        "signed up", distinct_id="bob", properties={"plan": "free", "source": "demo"})))
    sent.append(("capture", "report exported chris", client.capture(
        "report exported", distinct_id="chris", groups={"company": "acme"},
        properties={"format": "csv", "rows": 1200})))
    try:
        _demo_failure()
    except ZeroDivisionError as exc:
        sent.append(("capture_exception", "ZeroDivisionError alice",
                     client.capture_exception(exc, distinct_id="alice")))
    return sent


def _demo_failure() -> float:
    """A bug for the demo's $exception event."""
    seats = 0
    return 100 / seats


def _demo_context(user: str, person: Dict[str, Any], company: str) -> Dict[str, Any]:
    return {"groups": {"company": company}, "person_properties": person,
            "group_properties": {"company": DEMO_COMPANIES[company]}}


def cmd_demo(args: argparse.Namespace) -> int:
    """Start a dev server, send sample events and evaluate sample flags end to end."""
    from productos.client import Client
    from productos.flags import explain

    quiet = _wants_json(args)
    say: Callable[..., None] = (lambda *a, **k: None) if quiet else print
    server = _start_devserver(host="127.0.0.1", port=args.port, db_path=args.db,
                              definitions=SAMPLE_DEFINITIONS, project_api_key=None,
                              personal_api_key=DEMO_PERSONAL_API_KEY)
    failures: List[str] = []
    clients: List[Client] = []
    try:
        db = str(server.db_path)
        say(f"productos demo: dev server on {server.url} (database {db})")
        client = Client(DEMO_PROJECT_API_KEY, host=server.url,
                        personal_api_key=DEMO_PERSONAL_API_KEY, flush_interval=0.2,
                        max_retries=2, retry_base_delay=0.2, flags_first_load_timeout=5.0,
                        on_error=lambda exc, batch: failures.append(_redact(str(exc))))
        clients.append(client)
        remote = Client(DEMO_PROJECT_API_KEY, host=server.url, enable_local_evaluation=False,
                        send=False)
        clients.append(remote)
        loaded = client.load_feature_flags()
        if not loaded:
            failures.append("the sample flag definitions could not be loaded")

        say("\n1. Events sent through productos.Client:")
        sent = _demo_events(client)
        for kind, label, event_uuid in sent:
            say(f"  {kind:<17} {label}" + ("" if event_uuid else "   (NOT ADMITTED)"))

        say("\n2. Flags evaluated locally for each user (remote = asked the dev server):")
        keys = [f["key"] for f in SAMPLE_DEFINITIONS["flags"]]
        table: Dict[str, Dict[str, FlagResult]] = {}
        agree = 0
        disagree: List[str] = []
        for user, person, company in DEMO_USERS:
            ctx = _demo_context(user, person, company)
            table[user] = {}
            for key in keys:
                result = client.get_feature_flag_result(key, user, **ctx)
                if result is not None:
                    table[user][key] = result
            server_side = remote.get_all_flags_results(user, **ctx) or {}
            for key, result in table[user].items():
                other = server_side.get(key)
                if other is not None and other.value == result.value:
                    agree += 1
                else:
                    theirs = "missing" if other is None else _value_text(other)
                    disagree.append(f"{user}/{key}: local {_value_text(result)}, "
                                    f"server {theirs}")
        width = max(len(k) for k in keys)
        say(("  " + f"{'FLAG':<{width}}  " + "  ".join(f"{u:<14}" for u, _, _ in DEMO_USERS))
            .rstrip())
        for key in keys:
            cells = []
            for user, _, _ in DEMO_USERS:
                result = table[user].get(key)
                text = "error" if result is None else _value_text(result)
                if result is not None and not result.locally_evaluated and result.value is not None:
                    text += " (remote)"
                cells.append(f"{text:<14}")
            say((f"  {key:<{width}}  " + "  ".join(cells)).rstrip())
        total = agree + len(disagree)
        say(f"  the dev server's /flags gives the same value for {agree} of {total}")
        for line in disagree:
            say(f"  differs: {line}")

        say("\n3. Why? (productos.flags.explain)")
        pairs = ([(u, k) for u, _, _ in DEMO_USERS for k in keys] if args.verbose
                 else list(DEMO_EXPLAIN))
        explanations: Dict[str, str] = {}
        for user, key in pairs:
            result = table.get(user, {}).get(key)
            if result is None:
                continue
            text = explain(result)
            explanations[f"{user}/{key}"] = text
            say(f"\n  for {user}:")
            say("\n".join("  " + line for line in text.splitlines()))

        if not client.flush(10.0):
            failures.append("some events were still unsent after 10 s")
        stats = client.stats()
        stored = server.store.events(limit=10_000)
        counts: Dict[str, int] = {}
        for event in stored:
            name = str(event.get("event"))
            counts[name] = counts.get(name, 0) + 1
        say("\n4. Summary")
        say(f"  events: {stats['captured']} captured, {stats['delivered']} delivered, "
            f"{stats['dropped_total']} dropped; {len(stored)} stored by the dev server")
        for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            say(f"    {count:>3}  {name}")
        not_local = [f.get("key") for f in SAMPLE_DEFINITIONS["flags"]
                     if f.get("ensure_experience_continuity")]
        say(f"  flags: {len(keys)} sample definitions; evaluated for {len(DEMO_USERS)} users "
            f"({', '.join(not_local)} needs the server)")
        say(f"  event viewer: {server.url}/")
        if stats["dropped_total"]:
            failures.append(f"{stats['dropped_total']} event(s) dropped: {stats['dropped']}")
        if disagree:
            failures.append(f"{len(disagree)} flag value(s) differ between local and server")
        if quiet:
            _print_json({
                "url": server.url, "viewer": server.url + "/", "db": db,
                "events": {"captured": stats["captured"], "delivered": stats["delivered"],
                           "dropped": stats["dropped_total"], "stored": len(stored),
                           "by_name": counts},
                "flags": {user: {k: r.value for k, r in results.items()}
                          for user, results in table.items()},
                "server_agrees": {"same": agree, "different": disagree},
                "explanations": explanations,
                "ok": not failures, "problems": failures,
            })
        for client_ in clients:
            client_.shutdown(5.0)
        if args.keep_running:
            if not quiet:
                print(f"\nThe dev server keeps running at {server.url}/ (Ctrl-C to stop).\n"
                      f"It accepts any project key, e.g.\n"
                      f"  productos --host {server.url} --api-key phc_anything capture hello "
                      f"--distinct-id you", flush=True)
            _wait_until_interrupted()
        elif not quiet:
            print("\nRun `productos demo --keep-running` to browse the events in the viewer.")
    finally:
        for client_ in clients:
            client_.shutdown(1.0)
        server.stop()
    if failures:
        raise CLIError("demo: " + "; ".join(failures), EXIT_FAILURE, reported=quiet)
    return EXIT_OK


# --- parser ----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line."""

    def error(self, message: str) -> NoReturn:
        """Print one usage line and exit with EXIT_USAGE."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _global_options(connection: bool = True) -> _Parser:
    """The global options, accepted before or after the command (defaults are applied later)."""
    parent = _Parser(add_help=False)
    group = parent.add_argument_group("global options")
    sup = argparse.SUPPRESS
    if connection:
        group.add_argument("--host", default=sup, metavar="URL",
                           help=f"server base URL (default ${ENV_HOST} or PostHog US Cloud)")
        group.add_argument("--api-key", default=sup, metavar="KEY",
                           help=f"project API key, phc_... (default ${ENV_API_KEY})")
        group.add_argument("--personal-api-key", default=sup, metavar="KEY",
                           help=f"personal/secret key for flag definitions "
                                f"(default ${ENV_PERSONAL_API_KEY})")
        group.add_argument("--timeout", default=sup, type=float, metavar="SECONDS",
                           help=f"network timeout (default {DEFAULT_TIMEOUT:g})")
    group.add_argument("--json", action="store_true", default=sup,
                       help="machine-readable JSON output on stdout")
    group.add_argument("--debug", action="store_true", default=sup,
                       help="debug logging and full tracebacks")
    return parent


def _send_options() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument("--uuid", help="event uuid (default: a new one)")
    parent.add_argument("--retries", type=int, default=2,
                        help="retries on connection errors, 429 and 5xx (default 2)")
    return parent


def _props_options() -> _Parser:
    parent = _Parser(add_help=False)
    parent.add_argument("--prop", action="append", metavar="KEY=VALUE",
                        help="a property: KEY=text or KEY:=JSON (repeatable)")
    parent.add_argument("--props-json", metavar="JSON", help="properties as one JSON object")
    return parent


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for every command."""
    parser = _Parser(prog="productos", parents=[_global_options()],
                     description="productos: product analytics and feature flags speaking "
                                 "PostHog's API, from the command line.",
                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"productos {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    common = _global_options()
    local = _global_options(connection=False)

    demo = sub.add_parser("demo", parents=[local], help="run the end-to-end demo on a dev server",
                          description="Start a dev server on a free port with sample flags, send "
                                      "sample events through a real Client, evaluate the flags "
                                      "for a few users with explanations, print a summary.")
    demo.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    demo.add_argument("--keep-running", action="store_true",
                      help="keep the dev server and its viewer up until Ctrl-C")
    demo.add_argument("--db", help="keep the events in this SQLite file")
    demo.add_argument("--verbose", "-v", action="store_true",
                      help="explain every flag for every user")
    demo.set_defaults(func=cmd_demo)

    send = [common, _send_options(), _props_options()]
    capture = sub.add_parser("capture", parents=send, help="send one event",
                             description="Send one event, wait for the server's answer, print "
                                         "the uuid and the answer.")
    capture.add_argument("event", help="event name")
    capture.add_argument("--distinct-id", required=True, help="who did it")
    capture.add_argument("--group", action="append", metavar="TYPE=KEY",
                         help="attach a group (repeatable)")
    capture.set_defaults(func=cmd_capture)

    set_ = sub.add_parser("set", parents=send, help="set person properties ($set)",
                          description="Set person properties ($set; $set_once with --once).")
    set_.add_argument("--distinct-id", required=True, help="the person")
    set_.add_argument("--once", action="store_true", help="send $set_once instead of $set")
    set_.set_defaults(func=cmd_set)

    alias = sub.add_parser("alias", parents=[common, _send_options()],
                           help="link a new distinct id to an existing one",
                           description="Send $create_alias: --distinct-id (new) becomes the "
                                       "same person as --previous-id (existing).")
    alias.add_argument("--previous-id", required=True, help="the existing distinct id")
    alias.add_argument("--distinct-id", required=True, help="the new distinct id")
    alias.set_defaults(func=cmd_alias)

    group = sub.add_parser("group", parents=send, help="set group properties ($groupidentify)",
                           description="Send $groupidentify for one group.")
    group.add_argument("group_type", metavar="TYPE", help="group type, e.g. company")
    group.add_argument("group_key", metavar="KEY", help="group key, e.g. acme")
    group.add_argument("--distinct-id", help="sender (default: $TYPE_KEY)")
    group.set_defaults(func=cmd_group)

    flags = sub.add_parser("flags", help="list and evaluate feature flags",
                           description="Inspect flag definitions and evaluate flags.")
    flags_sub = flags.add_subparsers(dest="flags_command", metavar="SUBCOMMAND",
                                     parser_class=_Parser)
    flags_sub.required = True
    flist = flags_sub.add_parser(
        "list", parents=[common], help="list flags: active, rollout, local evaluation",
        description="List flag definitions (needs the personal API key, or --file).")
    flist.add_argument("--file", help="read definitions from this JSON file instead")
    flist.set_defaults(func=cmd_flags_list)
    feval = flags_sub.add_parser(
        "eval", parents=[common], help="evaluate one flag for one person",
        description="Evaluate one flag: locally when the personal API key is set, else (or when "
                    "local data cannot decide) by the server's /flags.")
    feval.add_argument("key", help="flag key")
    feval.add_argument("--distinct-id", required=True, help="the person")
    feval.add_argument("--person-prop", action="append", metavar="KEY=VALUE",
                       help="person property: KEY=text or KEY:=JSON (repeatable)")
    feval.add_argument("--group", action="append", metavar="TYPE=KEY", help="group (repeatable)")
    feval.add_argument("--group-prop", action="append", metavar="TYPE.KEY=VALUE",
                       help="group property: TYPE.KEY=text or TYPE.KEY:=JSON (repeatable)")
    feval.add_argument("--device-id", help="device id (for flags bucketed by device)")
    feval.add_argument("--explain", action="store_true",
                       help="print the evaluation trace: conditions, filters, buckets, variants")
    where = feval.add_mutually_exclusive_group()
    where.add_argument("--local-only", action="store_true", help="never ask the server")
    where.add_argument("--remote", action="store_true", help="ask the server only")
    feval.add_argument("--file", help="evaluate against definitions in this JSON file (offline)")
    feval.set_defaults(func=cmd_flags_eval)

    doctor = sub.add_parser("doctor", parents=[common], help="check host, keys, flags, clock",
                            description="Check that the host is reachable, the project key is "
                                        "accepted, the personal key can load definitions, which "
                                        "flags need the server, and the clock skew.")
    doctor.set_defaults(func=cmd_doctor)

    dev = sub.add_parser("devserver", parents=[local], help="run the local dev server",
                         description="Run the local PostHog-compatible server (events in "
                                     "SQLite, flags from a JSON file, a viewer at /).")
    dev.add_argument("--host", dest="bind_host", default="127.0.0.1",
                     help="interface to listen on (default 127.0.0.1)")
    dev.add_argument("--port", type=int, default=DEFAULT_DEVSERVER_PORT,
                     help=f"port (default {DEFAULT_DEVSERVER_PORT}; 0 = a free port)")
    dev.add_argument("--db", help="SQLite database file")
    dev.add_argument("--flags", help="flag definitions JSON file")
    dev.add_argument("--project-api-key", help="accept only this project key (default: any)")
    dev.add_argument("--personal-api-key", dest="server_personal_api_key",
                     help=f"personal key for /flags/definitions (default "
                          f"${ENV_PERSONAL_API_KEY}, else {DEV_PERSONAL_API_KEY})")
    dev.set_defaults(func=cmd_devserver)

    events = sub.add_parser("events", help="read the dev server's events",
                            description="Read events stored by the dev server.")
    events_sub = events.add_subparsers(dest="events_command", metavar="SUBCOMMAND",
                                       parser_class=_Parser)
    events_sub.required = True
    for name, func, text in (("tail", cmd_events_tail, "print the latest events"),
                             ("export", cmd_events_export, "export events, oldest first")):
        ev = events_sub.add_parser(name, parents=[local], help=text, description=text + ".")
        ev.add_argument("--db", required=True,
                        help="the dev server's SQLite database (printed when it starts)")
        ev.add_argument("--event", help="only events with this name")
        ev.add_argument("--distinct-id", help="only events of this distinct id")
        if name == "tail":
            ev.add_argument("--format", choices=("text", "ndjson", "csv"), default="text",
                            help="output format (default text)")
            ev.add_argument("--limit", type=int, default=10,
                            help="how many recent events to show first (default 10)")
            ev.add_argument("--follow", "-f", action="store_true",
                            help="keep printing new events until Ctrl-C")
        else:
            ev.add_argument("--format", choices=("ndjson", "csv"), default="ndjson",
                            help="output format (default ndjson)")
            ev.add_argument("--limit", type=int, help="only the newest N events")
            ev.add_argument("--output", "-o", help="write to this file (default stdout)")
        ev.set_defaults(func=func)
    return parser


# --- entry point -----------------------------------------------------------------------------


class _RedactingFormatter(logging.Formatter):
    """A log formatter that removes anything shaped like a key (debug logs show URLs)."""

    def format(self, record: logging.LogRecord) -> str:
        """Format the record, then redact it."""
        return _redact(super().format(record))


@contextlib.contextmanager
def _logging(debug: bool) -> Iterator[None]:
    """Keep the SDK's log lines off the terminal (the CLI reports), or show all with --debug."""
    logger = logging.getLogger("productos")
    handler: logging.Handler
    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(message)s"))
    else:
        handler = logging.NullHandler()
    level = logger.level
    propagate = logger.propagate
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)
    else:
        logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line and return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_OK
    debug = bool(_option(args, "debug"))
    with _logging(debug):
        try:
            return int(args.func(args))
        except CLIError as exc:
            if _wants_json(args) and not exc.reported:
                _print_json({"ok": False, "error": _redact(exc.message), "exit_code": exc.code})
            print(f"productos: error: {_redact(exc.message)}", file=sys.stderr)
            return exc.code
        except KeyboardInterrupt:
            print("productos: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except Exception as exc:
            if debug:
                traceback.print_exc()
            message = _redact(str(exc) or type(exc).__name__)
            hint = "" if debug else " (run with --debug for the traceback)"
            print(f"productos: error: {type(exc).__name__}: {message}{hint}", file=sys.stderr)
            return _unexpected_code(exc)


def _unexpected_code(exc: BaseException) -> int:
    from productos import errors

    if isinstance(exc, errors.ConfigurationError):
        return EXIT_CONFIG
    if isinstance(exc, errors.TransportError):
        return EXIT_CONFIG
    return EXIT_FAILURE


__all__ = ["CLIError", "build_parser", "main"]
