"""flags init: write a sample flag definitions file, with notes, for the dev server's --flags.

JSON has no comments, so the notes are ``"//"`` keys, which the dev server and the SDK ignore.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict

from productos.cli._errors import EXIT_CONFIG, EXIT_OK, CLIError
from productos.cli._output import print_json, wants_json

__all__ = ["SAMPLE_FLAGS_FILE", "cmd_flags_init"]

SAMPLE_FLAGS_FILE: Dict[str, Any] = {
    "//": [
        "Flag definitions for `productos devserver --flags THIS_FILE` (re-read when it changes).",
        "The format is PostHog's local-evaluation answer: {flags, group_type_mapping, cohorts}.",
        "Keys named // are notes and are ignored. `productos flags list --file THIS_FILE` and",
        "`productos flags eval KEY --distinct-id ID --file THIS_FILE --explain` check it.",
    ],
    "flags": [
        {
            "//": "On for 100% of persons whose plan is pro, and for 20% of everyone else.",
            "id": 1, "key": "new-checkout", "name": "New checkout flow", "active": True,
            "version": 1,
            "filters": {
                "groups": [
                    {"//": "Conditions are ORed; properties inside one are ANDed.",
                     "properties": [{"key": "plan", "value": ["pro"], "operator": "exact",
                                     "type": "person"}],
                     "rollout_percentage": 100},
                    {"properties": [], "rollout_percentage": 20},
                ],
            },
        },
        {
            "//": "A multivariate experiment: variants split persons 50/50; payloads are JSON "
                  "text per variant.",
            "id": 2, "key": "pricing-page", "name": "Pricing page test", "active": True,
            "version": 1,
            "filters": {
                "groups": [{"properties": [], "rollout_percentage": 100}],
                "multivariate": {"variants": [
                    {"key": "control", "rollout_percentage": 50},
                    {"key": "annual-first", "rollout_percentage": 50},
                ]},
                "payloads": {"annual-first": "{\"highlight\": \"annual\"}"},
            },
        },
        {
            "//": "A group (company) flag: aggregation_group_type_index names a group type from "
                  "group_type_mapping; group properties come from $groupidentify.",
            "id": 3, "key": "bulk-export", "name": "Bulk export", "active": True, "version": 1,
            "filters": {
                "aggregation_group_type_index": 0,
                "groups": [{"properties": [{"key": "seats", "value": 50, "operator": "gte",
                                            "type": "group", "group_type_index": 0}],
                            "rollout_percentage": 100}],
            },
        },
        {
            "//": "A cohort condition: the cohort's id refers to `cohorts` below.",
            "id": 4, "key": "beta-banner", "name": "Beta banner", "active": True, "version": 1,
            "filters": {"groups": [{"properties": [{"key": "id", "value": 1, "type": "cohort"}],
                                    "rollout_percentage": 100}]},
        },
        {
            "//": "Inactive flags are false for everyone.",
            "id": 5, "key": "old-sidebar", "name": "Old sidebar", "active": False, "version": 1,
            "filters": {"groups": [{"properties": [], "rollout_percentage": 100}]},
        },
    ],
    "group_type_mapping": {"0": "company"},
    "cohorts": {
        "1": {"type": "OR", "values": [{"type": "AND", "values": [
            {"key": "email", "operator": "icontains", "value": "@example.com",
             "type": "person"}]}]},
    },
}


def cmd_flags_init(args: argparse.Namespace) -> int:
    """Write the sample definitions file (refusing to overwrite unless --force)."""
    path = args.file
    if os.path.exists(path) and not args.force:
        raise CLIError(f"{path} exists; pass --force to overwrite it", EXIT_CONFIG)
    try:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(SAMPLE_FLAGS_FILE, out, indent=2, ensure_ascii=False)
            out.write("\n")
    except OSError as exc:
        raise CLIError(f"cannot write {path}: {exc.strerror or exc}", EXIT_CONFIG) from None
    flags = [flag["key"] for flag in SAMPLE_FLAGS_FILE["flags"]]
    if wants_json(args):
        print_json({"ok": True, "file": path, "flags": flags})
    else:
        print(f"wrote {path} with {len(flags)} sample flags: {', '.join(flags)}")
        print(f"  serve it:  productos devserver --flags {path}", file=sys.stdout)
        print(f"  check it:  productos flags list --file {path}")
    return EXIT_OK
