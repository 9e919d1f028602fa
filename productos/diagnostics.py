"""Diagnostics: probe a host and its keys, inspect flag definitions, send one event and see why.

A :class:`~productos.Client` hides the network on purpose: it queues, retries and counts. Tools
that must show what the server said (the ``productos`` command line, health checks, support
scripts, the dev server's flag summaries) use these instead. Each call makes its requests on
the caller's thread and returns a report; none raises for network trouble, and no report,
message or log line contains a key.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from productos import errors
from productos._delivery.batch_sender import BatchSender, RetryPolicy
from productos._delivery.transport import FLAGS_PATH, Response, Transport, parse_http_date
from productos._delivery.transport import redact as _redact
from productos._flags.remote import flags_request_body
from productos._flags.source import DefinitionsRequester, FetchOutcome, load_definitions_file
from productos._runtime.hosts import normalize_host
from productos.client import Client
from productos.flags import (
    CompiledFlag,
    EvaluationContext,
    FilterSpec,
    FlagResult,
    Snapshot,
    evaluate,
    evaluate_all,
    parse_definitions,
)

__all__ = [
    "ConditionInfo",
    "Definitions",
    "DefinitionsReport",
    "FilterInfo",
    "FlagInfo",
    "Probe",
    "SendReport",
    "VariantInfo",
    "check_host",
    "check_project_key",
    "fetch_definitions",
    "normalize_host",
    "redact",
    "send_one",
]

DEFAULT_TIMEOUT = 10.0
PROBE_DISTINCT_ID = "productos-doctor"  # the person /flags is asked about by check_project_key
_MAX_RESPONSE_TEXT = 500


def redact(text: str) -> str:
    """Return text with anything shaped like a PostHog key (phc_, phx_, phs_) removed."""
    return _redact(text)


# --- probes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What one diagnostic request got back: the answer, or the error that stood in for one."""

    status: Optional[int] = None  # None: no answer (see error)
    message: str = ""  # the server's answer in a few key-free words
    body: Any = None  # the decoded JSON answer, when it was JSON
    elapsed: float = 0.0  # seconds
    clock_skew: Optional[float] = None  # server clock minus ours, in seconds (from Date)
    error: Optional[errors.TransportError] = None

    @property
    def answered(self) -> bool:
        """True when the server answered (with any status)."""
        return self.status is not None


def _probe(call: Callable[[], Response]) -> Probe:
    before = time.time()
    started = time.monotonic()
    try:
        response = call()
    except errors.TransportError as exc:
        return Probe(elapsed=time.monotonic() - started, error=exc)
    elapsed = time.monotonic() - started
    skew = None
    server = parse_http_date(response.headers.get("Date"))
    if server is not None:
        # The Date header has whole seconds: compare with the middle of the request.
        skew = server + 0.5 - (before + elapsed / 2)
    return Probe(response.status, response.message(), response.json(), elapsed, skew)


def check_host(host: Optional[str] = None, *, timeout: float = DEFAULT_TIMEOUT) -> Probe:
    """GET the host's root: whether it answers, how fast, and how its clock compares."""
    transport = Transport(host, timeout=timeout)
    try:
        return _probe(lambda: transport.request("GET", "/"))
    finally:
        transport.close()


def check_project_key(api_key: str, host: Optional[str] = None, *,
                      timeout: float = DEFAULT_TIMEOUT) -> Probe:
    """Ask ``/flags`` about a throwaway person with the project key: accepted, refused, limited."""
    body = json.dumps(flags_request_body(
        api_key, PROBE_DISTINCT_ID, groups={}, person_properties={}, group_properties={},
        device_id=None, disable_geoip=True)).encode()
    transport = Transport(host, timeout=timeout)
    try:
        return _probe(lambda: transport.post_json(FLAGS_PATH, body, gzip=False))
    finally:
        transport.close()


# --- flag definitions ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterInfo:
    """One property filter of a condition, as the definitions state it."""

    type: str  # person, group, cohort or flag
    key: Any
    operator: str
    value: Any


@dataclass(frozen=True)
class ConditionInfo:
    """One condition set of a flag: filters, rollout and variant override."""

    filters: Tuple[FilterInfo, ...]
    rollout_percentage: Optional[float]  # None: everyone who matches
    variant: Optional[str]


@dataclass(frozen=True)
class VariantInfo:
    """One variant of a multivariate flag."""

    key: str
    rollout_percentage: float


@dataclass(frozen=True)
class FlagInfo:
    """A flag as the client compiled it: what it targets and whether it evaluates locally."""

    key: str
    id: Optional[int]
    version: Optional[int]
    active: bool
    group_type: Optional[str]  # the group type it aggregates by, when known
    is_group_flag: bool
    conditions: Tuple[ConditionInfo, ...]
    variants: Tuple[VariantInfo, ...]
    holdout_percentage: Optional[float]
    malformed: Optional[str]  # why the definition could not be compiled at all
    evaluable_locally: bool
    local_problem: Optional[str]  # why the server must be asked, when it must


def _filter_info(spec: FilterSpec) -> FilterInfo:
    return FilterInfo(spec.type, spec.key, spec.operator, spec.value)


def _flag_info(flag: CompiledFlag) -> FlagInfo:
    return FlagInfo(
        key=flag.key, id=flag.id, version=flag.version, active=flag.active,
        group_type=flag.group_type, is_group_flag=flag.is_group_flag,
        conditions=tuple(
            ConditionInfo(tuple(_filter_info(f) for f in cond.filters),
                          cond.rollout_percentage, cond.variant)
            for cond in flag.conditions),
        variants=tuple(VariantInfo(v.key, v.rollout_percentage) for v in flag.variants),
        holdout_percentage=None if flag.holdout is None else flag.holdout.exclusion_percentage,
        malformed=flag.malformed, evaluable_locally=flag.evaluable_locally,
        local_problem=flag.local_problem)


class Definitions:
    """Flag definitions compiled exactly as a Client compiles them, to inspect or evaluate."""

    __slots__ = ("_infos", "_snapshot")

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._snapshot: Snapshot = parse_definitions(document)
        self._infos: Optional[Dict[str, FlagInfo]] = None

    @classmethod
    def from_file(cls, path: str) -> Definitions:
        """Read a definitions JSON file as a Client's ``flag_definitions_file`` is read.

        Raises ConfigurationError (a ValueError) when the file is missing, not JSON, or not a
        definitions document.
        """
        definitions = cls.__new__(cls)
        definitions._snapshot = load_definitions_file(path)
        definitions._infos = None
        return definitions

    def _info(self) -> Dict[str, FlagInfo]:
        infos = self._infos
        if infos is None:
            infos = self._infos = {key: _flag_info(flag)
                                   for key, flag in self._snapshot.flags.items()}
        return infos

    @property
    def flags(self) -> Tuple[FlagInfo, ...]:
        """Every flag, in the order of the definitions."""
        return tuple(self._info().values())

    @property
    def problems(self) -> Tuple[str, ...]:
        """What in the document could not be understood (outside any one flag)."""
        return self._snapshot.problems

    def flag(self, key: str) -> Optional[FlagInfo]:
        """The flag with this key, or None."""
        return self._info().get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._snapshot.flags

    def __len__(self) -> int:
        return len(self._snapshot.flags)

    def evaluate(self, key: str, context: EvaluationContext) -> FlagResult:
        """Evaluate one flag locally, with its reason and trace (never asks a server)."""
        return evaluate(self._snapshot, key, context)

    def evaluate_all(self, context: EvaluationContext) -> Dict[str, FlagResult]:
        """Evaluate every flag locally."""
        return evaluate_all(self._snapshot, context)


@dataclass(frozen=True)
class DefinitionsReport:
    """The answer of the definitions endpoint to the personal API key."""

    outcome: str  # "ok", "unauthorized" (a key refused), "quota_limited" or "error"
    definitions: Optional[Definitions] = None  # when the outcome is "ok"
    error: Optional[BaseException] = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """True when definitions were loaded."""
        return self.definitions is not None


def fetch_definitions(api_key: str, personal_api_key: str, host: Optional[str] = None, *,
                      timeout: float = DEFAULT_TIMEOUT) -> DefinitionsReport:
    """Load the flag definitions as the client's poller does (the personal key goes only there)."""
    transport = Transport(host, timeout=timeout)
    started = time.monotonic()
    try:
        fetched = DefinitionsRequester(transport, api_key, personal_api_key,
                                       timeout=timeout).fetch()
    finally:
        transport.close()
    elapsed = time.monotonic() - started
    outcome = fetched.outcome.value
    if fetched.outcome is FetchOutcome.OK and fetched.data is not None:
        return DefinitionsReport(outcome, Definitions(fetched.data), None, elapsed)
    return DefinitionsReport(outcome, None, fetched.error, elapsed)


# --- one event ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendReport:
    """What became of one event sent by :func:`send_one`."""

    uuid: Optional[str]  # what the call returned: None when the client did not admit it
    delivered: bool
    status: Optional[int]  # the last HTTP status the server answered with
    response: Any  # that answer: decoded JSON, or its first 500 characters as key-free text
    reason: Optional[str]  # why it was not delivered: the drop reason
    error: Optional[BaseException]  # the last error the client reported, if any


class _RecordingTransport(Transport):
    """A Transport that keeps the last answer to a POST (how batches go), for the report."""

    last: Optional[Response] = None

    def post_json(self, path: str, body: bytes, *, gzip: bool,
                  timeout: Optional[float] = None) -> Response:
        """Make the request and remember its response."""
        self.last = None
        response = super().post_json(path, body, gzip=gzip, timeout=timeout)
        self.last = response
        return response


def send_one(call: Callable[[Client], Optional[str]], api_key: str,
             host: Optional[str] = None, *, timeout: float = DEFAULT_TIMEOUT,
             retries: int = 2) -> SendReport:
    """Send one event through a real Client, synchronously, and report the server's answer.

    ``call`` gets the client and makes one capture (``capture``, ``set``, ``alias``...);
    connection errors, 429 and 5xx are retried ``retries`` times.
    """
    transport = _RecordingTransport(host, timeout=timeout)
    sender = BatchSender(transport, api_key,
                         retry=RetryPolicy(max_retries=retries, base=0.5, cap=4.0))
    failures: List[BaseException] = []
    client = Client(api_key, host=transport.host, sync_mode=True, sender=sender,
                    timeout=timeout, enable_local_evaluation=False,
                    on_error=lambda exc, batch: failures.append(exc))
    try:
        returned = call(client)
        stats = client.stats()
    finally:
        client.shutdown(timeout=1.0)
        transport.close()
    last = transport.last
    response: Any = None
    if last is not None:
        response = last.json()
        if response is None and last.body:
            response = redact(last.body[:_MAX_RESPONSE_TEXT].decode("utf-8", "replace"))
    delivered = returned is not None and int(stats["sent"]) >= 1
    reason = None
    if not delivered:
        dropped = next(iter(stats["dropped"]), None)
        reason = "not_sent" if dropped is None else str(getattr(dropped, "value", dropped))
    return SendReport(returned, delivered, None if last is None else last.status, response,
                      reason, failures[-1] if failures else None)

