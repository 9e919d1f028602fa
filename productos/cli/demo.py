"""The end-to-end demo: sample flags and events sent through a real Client to a dev server."""

from __future__ import annotations

import argparse
from typing import Any, Callable, Dict, List, Optional, Tuple

from productos import Client
from productos.cli._errors import EXIT_FAILURE, EXIT_OK, CLIError
from productos.cli._output import print_json, redact, show, wants_json
from productos.cli.devserver import start_devserver, wait_until_interrupted
from productos.cli.flags import value_text
from productos.flags import FlagResult, explain

DEMO_PROJECT_API_KEY = "phc_productos_demo"
DEMO_PERSONAL_API_KEY = "phx_productos_demo"

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


def _demo_events(client: Client) -> List[Tuple[str, str, Optional[str]]]:
    """Send the sample events; return (kind, label, uuid) for each."""
    sent: List[Tuple[str, str, Optional[str]]] = []
    for name, props in DEMO_COMPANIES.items():
        sent.append(("group_identify", f"company {name}",
                     client.group_identify("company", name, props)))
    sent.append(("alias", "anon-7f3a -> alice", client.alias("alice", "anon-7f3a")))
    for user, person, company in DEMO_USERS:
        sent.append(("set", f"{user} {show(person)}",
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
    quiet = wants_json(args)
    say: Callable[..., None] = (lambda *a, **k: None) if quiet else print
    server = start_devserver(host="127.0.0.1", port=args.port, db_path=args.db,
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
                        on_error=lambda exc, batch: failures.append(redact(str(exc))))
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
                    theirs = "missing" if other is None else value_text(other)
                    disagree.append(f"{user}/{key}: local {value_text(result)}, "
                                    f"server {theirs}")
        width = max(len(k) for k in keys)
        say(("  " + f"{'FLAG':<{width}}  " + "  ".join(f"{u:<14}" for u, _, _ in DEMO_USERS))
            .rstrip())
        for key in keys:
            cells = []
            for user, _, _ in DEMO_USERS:
                result = table[user].get(key)
                text = "error" if result is None else value_text(result)
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
        say(f"  events: {stats['captured']} captured, {stats['sent']} delivered, "
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
            print_json({
                "url": server.url, "viewer": server.url + "/", "db": db,
                "events": {"captured": stats["captured"], "delivered": stats["sent"],
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
            wait_until_interrupted()
        elif not quiet:
            print("\nRun `productos demo --keep-running` to browse the events in the viewer.")
    finally:
        for client_ in clients:
            client_.shutdown(1.0)
        server.stop()
    if failures:
        raise CLIError("demo: " + "; ".join(failures), EXIT_FAILURE, reported=quiet)
    return EXIT_OK
