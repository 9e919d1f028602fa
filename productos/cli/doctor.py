"""Check connectivity, keys, flag definitions and clock skew: productos doctor."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import List, Optional

import productos
from productos import diagnostics
from productos.cli._errors import EXIT_FAILURE, EXIT_OK, CLIError, describe_error
from productos.cli._output import print_json, wants_json
from productos.cli._settings import (
    ENV_API_KEY,
    ENV_FLAG_DEFINITIONS_CACHE,
    ENV_PERSONAL_API_KEY,
    Settings,
    resolve_settings,
)


@dataclass
class Check:
    """One doctor check: PASS, WARN, FAIL or SKIP, with a detail line and optional items."""

    name: str
    status: str
    detail: str
    items: List[str] = field(default_factory=list)


def run_doctor(settings: Settings, cache: Optional[str] = None) -> List[Check]:
    """Run every check against the configured host; never raises for network trouble.

    ``cache`` (a flag_definitions_cache setting) adds a check of that shared cache.
    """
    checks: List[Check] = []
    skews: List[float] = []

    def seen(probe: diagnostics.Probe) -> diagnostics.Probe:
        if probe.clock_skew is not None:
            skews.append(probe.clock_skew)
        return probe

    host = seen(diagnostics.check_host(settings.host, timeout=settings.timeout))
    if host.error is not None:
        checks.append(Check("host reachable", "FAIL", describe_error(host.error)))
        for name in ("project API key", "personal API key", "flag definitions", "clock skew"):
            checks.append(Check(name, "SKIP", "host not reachable"))
        return checks
    checks.append(Check("host reachable", "PASS",
                        f"{settings.host} answered HTTP {host.status} in "
                        f"{host.elapsed * 1000:.0f} ms"))

    if not settings.api_key:
        checks.append(Check("project API key", "FAIL",
                            f"not set: pass --api-key or set {ENV_API_KEY}"))
    else:
        probe = seen(diagnostics.check_project_key(settings.api_key, settings.host,
                                                   timeout=settings.timeout))
        if probe.error is not None:
            checks.append(Check("project API key", "FAIL",
                                f"/flags request failed: {describe_error(probe.error)}"))
        else:
            checks.append(_project_key_check(probe, settings))

    if not settings.personal_api_key:
        checks.append(Check("personal API key", "SKIP",
                            f"not set: flags are evaluated by the server (set "
                            f"{ENV_PERSONAL_API_KEY} for local evaluation)"))
        checks.append(Check("flag definitions", "SKIP", "needs the personal API key"))
        if cache is not None:
            checks.append(Check("definitions cache", "SKIP", "needs the personal API key"))
    elif not settings.api_key:
        checks.append(Check("personal API key", "SKIP", "needs the project API key too"))
        checks.append(Check("flag definitions", "SKIP", "needs both keys"))
    else:
        fetched = diagnostics.fetch_definitions(settings.api_key, settings.personal_api_key,
                                                settings.host, timeout=settings.timeout)
        source = settings.personal_api_key_source
        if fetched.definitions is not None:
            checks.append(Check("personal API key", "PASS",
                                f"accepted for flag definitions (from {source})"))
            checks.append(_definitions_check(fetched.definitions))
            if cache is not None:
                checks.append(_definitions_cache_check(settings, cache))
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
    return checks


def _project_key_check(probe: diagnostics.Probe, settings: Settings) -> Check:
    source = settings.api_key_source
    if probe.status == 200:
        data = probe.body
        if isinstance(data, dict) and "feature_flags" in (data.get("quotaLimited") or []):
            return Check("project API key", "WARN",
                         f"accepted by /flags, but flags are quota limited (from {source})")
        return Check("project API key", "PASS", f"accepted by /flags (from {source})")
    if probe.status in (401, 403):
        return Check("project API key", "FAIL",
                     f"refused by /flags (HTTP {probe.status}: {probe.message}): "
                     f"check --api-key or {ENV_API_KEY} (from {source})")
    return Check("project API key", "FAIL",
                 f"/flags answered HTTP {probe.status}: {probe.message}")


def _definitions_check(definitions: diagnostics.Definitions) -> Check:
    flags = definitions.flags
    remote_only = [f for f in flags if not f.evaluable_locally]
    items = [f"{f.key}: {f.local_problem}" for f in remote_only]
    items += [f"problem: {p}" for p in definitions.problems]
    if not remote_only and not definitions.problems:
        return Check("flag definitions", "PASS",
                     f"{len(flags)} flag(s), all can be evaluated locally")
    return Check("flag definitions", "WARN",
                 f"{len(flags)} flag(s); {len(remote_only)} cannot be evaluated locally "
                 f"(the server is asked for those)", items)


def _definitions_cache_check(settings: Settings, cache: str) -> Check:
    """Join the fleet behind ``cache`` for one load, as an application process would."""
    try:
        client = productos.Client(settings.api_key, host=settings.host,
                                  personal_api_key=settings.personal_api_key,
                                  flag_definitions_cache=cache, send=False,
                                  feature_flags_request_timeout_seconds=settings.timeout)
    except ValueError as exc:
        return Check("definitions cache", "FAIL", str(exc))
    try:
        loaded = client.load_feature_flags()
        status = client.flag_definitions_status()
    finally:
        client.shutdown(settings.timeout)
    if status is None:
        return Check("definitions cache", "FAIL", "no definitions source was started")
    age = "no definitions" if status.age is None else f"definitions {status.age:.1f} s old"
    detail = (f"this process would be {status.source}; {age}; {status.polls} poll(s) "
              f"by this check; cache: {status.cache or 'not used'}")
    if loaded and status.cache == "ok":
        return Check("definitions cache", "PASS", detail)
    return Check("definitions cache", "WARN" if loaded else "FAIL", detail)


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
    cache = getattr(args, "flag_definitions_cache", None)
    if cache is None:  # given on the command line, even blank, it is checked as given
        cache = os.environ.get(ENV_FLAG_DEFINITIONS_CACHE, "").strip() or None
    checks = run_doctor(settings, cache)
    failed = [c for c in checks if c.status == "FAIL"]
    if wants_json(args):
        print_json({"host": settings.host, "ok": not failed,
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
