"""Inspect flag definitions and evaluate flags: flags list, flags eval [--explain]."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional, Protocol, Tuple

from productos import Client, diagnostics
from productos.cli._errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    connection_code,
    describe_error,
)
from productos.cli._output import print_json, redact, show, wants_json
from productos.cli._properties import (
    collect_properties,
    parse_group_properties,
    parse_groups,
)
from productos.cli._settings import (
    ENV_PERSONAL_API_KEY,
    Settings,
    need_api_key,
    option_value,
    resolve_settings,
)
from productos.diagnostics import ConditionInfo, Definitions, FlagInfo
from productos.flags import EvaluationContext, FlagResult, explain


class _Filter(Protocol):
    """A property filter: a definition's (FilterInfo) or one in an evaluation trace."""

    @property
    def type(self) -> str:
        """person, group, cohort or flag."""

    @property
    def key(self) -> Any:
        """The property (or flag) the filter reads."""

    @property
    def operator(self) -> str:
        """How the value is compared."""

    @property
    def value(self) -> Any:
        """What it is compared with."""


def fetch_definitions(settings: Settings) -> Tuple[Definitions, float]:
    """Fetch the definitions with the personal key; return them and the request time (s)."""
    need_api_key(settings, "loading flag definitions")
    if not settings.personal_api_key:
        raise CLIError(f"loading flag definitions needs a personal API key: pass "
                       f"--personal-api-key or set {ENV_PERSONAL_API_KEY} (or use --file)",
                       EXIT_CONFIG)
    fetched = diagnostics.fetch_definitions(settings.api_key, settings.personal_api_key,
                                            settings.host, timeout=settings.timeout)
    if fetched.definitions is not None:
        return fetched.definitions, fetched.elapsed
    detail = describe_error(fetched.error) if fetched.error else fetched.outcome
    if fetched.outcome == "unauthorized":
        raise CLIError(f"the personal API key was refused for flag definitions ({detail}): check "
                       f"--personal-api-key or {ENV_PERSONAL_API_KEY}", EXIT_CONFIG)
    if fetched.outcome == "quota_limited":
        raise CLIError(f"flag definitions unavailable: quota limited ({detail})", EXIT_FAILURE)
    raise CLIError(f"could not load flag definitions from {settings.host}: {detail}",
                   connection_code(fetched.error))


def load_definitions(args: argparse.Namespace) -> Tuple[Definitions, str]:
    """Load definitions from --file or from the server; return them and their source."""
    path = option_value(args, "file")
    if path:
        try:
            return Definitions.from_file(path), path
        except ValueError as exc:
            raise CLIError(str(exc), EXIT_CONFIG) from None
    settings = resolve_settings(args)
    definitions, _ = fetch_definitions(settings)
    return definitions, settings.host


def _pct(value: Optional[float]) -> str:
    return "100%" if value is None else f"{value:g}%"


def describe_filter(spec: _Filter) -> str:
    """A short, readable form of one property filter."""
    if spec.type == "cohort":
        return f"{'not ' if spec.operator == 'not_in' else ''}in cohort {spec.value}"
    if spec.type == "flag":
        return f"flag {spec.key} is {show(spec.value)}"
    prefix = "" if spec.type == "person" else f"{spec.type} "
    if spec.operator in ("is_set", "is_not_set"):
        return f"{prefix}{spec.key} {spec.operator}"
    return f"{prefix}{spec.key} {spec.operator} {show(spec.value)}"


def rollout_summary(flag: FlagInfo) -> str:
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
    if flag.holdout_percentage is not None:
        summary += f" | holdout {flag.holdout_percentage:g}%"
    if flag.is_group_flag:
        summary = f"per {flag.group_type or 'unknown group type'}: " + summary
    return summary


def _condition_json(cond: ConditionInfo) -> Dict[str, Any]:
    return {"filters": [describe_filter(f) for f in cond.filters],
            "rollout_percentage": 100 if cond.rollout_percentage is None
            else cond.rollout_percentage,
            "variant": cond.variant}


def _flag_json(flag: FlagInfo) -> Dict[str, Any]:
    return {
        "key": flag.key, "id": flag.id, "version": flag.version, "active": flag.active,
        "group_type": flag.group_type, "rollout": rollout_summary(flag),
        "conditions": [_condition_json(c) for c in flag.conditions],
        "variants": [{"key": v.key, "rollout_percentage": v.rollout_percentage}
                     for v in flag.variants],
        "evaluable_locally": flag.evaluable_locally,
        "local_problem": flag.local_problem,
    }


def cmd_flags_list(args: argparse.Namespace) -> int:
    """List flag definitions: key, active, rollout, and whether they evaluate locally."""
    definitions, source = load_definitions(args)
    flags = definitions.flags
    remote_only = [f for f in flags if not f.evaluable_locally]
    if wants_json(args):
        print_json({"source": source, "count": len(flags),
                     "not_evaluable_locally": [f.key for f in remote_only],
                     "flags": [_flag_json(f) for f in flags],
                     "problems": list(definitions.problems)})
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
    for problem in definitions.problems:
        print(f"warning: {problem}")
    return EXIT_OK


def _filter_json(spec: _Filter) -> Dict[str, Any]:
    return {"type": spec.type, "key": spec.key, "operator": spec.operator, "value": spec.value}


def result_json(result: FlagResult, explain_it: bool = False) -> Dict[str, Any]:
    """A FlagResult as JSON, with the structured evaluation trace when asked."""
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


def value_text(result: FlagResult) -> str:
    """A flag value for humans; "unknown" when it could not be decided."""
    return "unknown" if result.value is None else show(result.value)


def _evaluate_from_file(args: argparse.Namespace, person: Dict[str, Any], groups: Dict[str, str],
                        group_props: Dict[str, Dict[str, Any]]) -> FlagResult:
    definitions, _ = load_definitions(args)
    ctx = EvaluationContext(distinct_id=args.distinct_id, groups=groups,
                            person_properties=person, group_properties=group_props,
                            device_id=args.device_id)
    return definitions.evaluate(args.key, ctx)


def _evaluate_with_client(args: argparse.Namespace, person: Dict[str, Any],
                          groups: Dict[str, str], group_props: Dict[str, Dict[str, Any]]
                          ) -> Tuple[Optional[FlagResult], Optional[str]]:
    settings = resolve_settings(args)
    need_api_key(settings, "evaluating flags")
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
        if use_local and status is not None and status.state.value != "valid":
            warning = (f"flag definitions not loaded ({status.state.value}: "
                       f"{redact(status.last_error or 'no answer')}); ")
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
    if option_value(args, "file"):
        result: Optional[FlagResult] = _evaluate_from_file(args, person, groups, group_props)
    else:
        result, warning = _evaluate_with_client(args, person, groups, group_props)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    if result is None:
        raise CLIError(f"flag {args.key!r} could not be evaluated", EXIT_FAILURE)
    if wants_json(args):
        print_json({"distinct_id": args.distinct_id, **result_json(result, args.explain)})
    elif args.explain:
        print(explain(result))
        if not result.reason.trace and not result.locally_evaluated:
            print("note: the server sends no evaluation trace; with the personal API key the "
                  "flag is evaluated locally and fully explained", file=sys.stderr)
    else:
        where = "locally" if result.locally_evaluated else "by the server"
        if result.value is None:
            where = "not decided"
        print(f"{result.key}: {value_text(result)}")
        print(f"  reason:  {result.reason.code.value}: {result.reason.description} ({where})")
        if result.payload is not None:
            print(f"  payload: {show(result.payload)}")
    if result.value is None:
        error = result.reason.error or (
            result.reason.inconclusive.value if result.reason.inconclusive else "unknown")
        code = EXIT_CONFIG if error in ("connection_error", "timeout") else EXIT_FAILURE
        raise CLIError(f"flag {args.key!r} has no value for {args.distinct_id!r}: {error}", code,
                       reported=wants_json(args))
    return EXIT_OK
