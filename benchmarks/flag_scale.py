"""How flag costs grow: the scale cases of bench_flags.py (definitions, users, worker, rows).

Three sets of definitions, served to both SDKs by the project's loopback server:

* one flag with a 10,000-value ``exact`` list and one with a 10,000-value ``is_not`` list;
* 2,000 flags with value lists, regexes (in flags and in cohorts), cohorts, multivariate
  variants with payloads, numeric, semver and date filters, group flags and holdouts.

Measured, each SDK in fresh worker processes: ``get_feature_flag`` on the long lists (µs per
evaluation); fetch + parse of the 2,000 flags (``Client()`` + ``load_feature_flags()``, one
load per fresh process, so no cache helps); ``get_all_flags`` over the 2,000 flags (ms per
user); and the Python memory the SDK holds once those definitions are loaded (tracemalloc,
traced while the client is built and loads, counted after a collection).
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from typing import Any, Callable, Dict, List, Tuple

SCALE_FLAGS = 2000
LIST_SIZE = 10_000
# (metric key, label, unit, target ratio (productos / posthog, lower is better) or None)
SCALE_ROWS = (
    ("big_list_us", f"`get_feature_flag`, {LIST_SIZE:,}-value exact / is_not list", "µs",
     0.004),
    ("load_ms", f"fetch + parse of {SCALE_FLAGS:,} flags", "ms", 0.5),
    ("all_scale_ms", f"`get_all_flags` over {SCALE_FLAGS:,} flags, per user", "ms", 0.2),
    ("memory_mb", f"memory held with {SCALE_FLAGS:,} flags loaded", "MB", None),
)

_COUNTRIES = ("US", "CA", "DE", "FR", "GB", "BR", "IN", "JP", "AU", "ES", "IT", "NL", "SE", "MX")
_PLANS = ("free", "pro", "enterprise", "team", "trial", "startup", "scale")


def _person(key: str, value: Any, operator: str = "exact") -> Dict[str, Any]:
    return {"key": key, "value": value, "operator": operator, "type": "person"}


def make_big_list_definitions() -> Dict[str, Any]:
    """Two flags over 10,000-value lists: account ids in (exact), e-mail addresses out (is_not)."""
    accounts = list(range(100_000, 100_000 + 7 * LIST_SIZE, 7))
    blocked = [f"blocked-{i}@example.com" for i in range(LIST_SIZE)]
    flags = [
        {"id": 1, "key": "big-list", "active": True, "version": 1,
         "filters": {"groups": [{"properties": [_person("account_id", accounts)],
                                 "rollout_percentage": 100}]}},
        {"id": 2, "key": "big-not-list", "active": True, "version": 1,
         "filters": {"groups": [{"properties": [_person("email", blocked, "is_not")],
                                 "rollout_percentage": 100}]}},
    ]
    return {"flags": flags, "group_type_mapping": {}, "cohorts": {}}


def big_list_user(i: int) -> Tuple[str, Dict[str, Any]]:
    """Every third user's account and address are on the lists (the address in another case)."""
    listed = i % 3 == 0
    account = 100_000 + 7 * i if listed else 99_999 - i
    email = f"Blocked-{i}@Example.com" if listed else f"someone-{i}@example.org"
    return f"list-user-{i}", {"person_properties": {"account_id": account, "email": email}}


def make_scale_definitions(count: int = SCALE_FLAGS, cohort_count: int = 100) -> Dict[str, Any]:
    """``count`` flags of eight kinds (lists, regexes, cohorts, variants, ...); deterministic."""
    rng = random.Random(20240601)
    cohorts = {}
    for c in range(cohort_count):
        cohorts[str(c + 1)] = {"type": "OR", "values": [
            {"type": "AND", "values": [_person("plan", rng.sample(_PLANS, 2)),
                                       _person("purchases", rng.randrange(5, 30), "gte")]},
            {"type": "AND", "values": [_person("country", rng.sample(_COUNTRIES, 3)),
                                       _person("email", f"@corp{c}\\.example$", "regex")]},
        ]}
    flags = []
    for i in range(count):
        kind = i % 8
        filters: Dict[str, Any] = {}
        if kind == 0:
            props = [_person("country", rng.sample(_COUNTRIES, 5)),
                     _person("user_id", [f"id-{rng.randrange(10**6)}" for _ in range(20)],
                             "is_not")]
        elif kind == 1:
            props = [_person("email", rf"^[a-z]+{i % 97}[0-9]*@(example|test)\.(com|org)$",
                             "regex")]
        elif kind == 2:
            props = [{"key": "id", "value": rng.randrange(1, cohort_count + 1), "type": "cohort"}]
        elif kind == 3:
            props = [_person("plan", rng.sample(_PLANS, 3))]
            names = [f"variant-{j}" for j in range(rng.choice((2, 3, 4)))]
            share = 100 // len(names)
            filters["multivariate"] = {"variants": [
                {"key": name, "rollout_percentage": share + (100 - share * len(names)) * (j == 0)}
                for j, name in enumerate(names)]}
            filters["payloads"] = {name: f'{{"variant": "{name}", "n": {i}}}' for name in names}
        elif kind == 4:
            props = [_person("email", f"@domain{i % 31}.com", "icontains"),
                     _person("purchases", rng.randrange(50), "gt")]
        elif kind == 5:
            props = [_person("app_version", f"{rng.randrange(1, 4)}.{rng.randrange(10)}.0",
                             "semver_gte"),
                     _person("signup_date", f"2024-{rng.randrange(1, 13):02d}-01T00:00:00Z",
                             "is_date_after")]
            if rng.random() < 0.3:
                filters["holdout"] = {"id": i, "exclusion_percentage": 10}
        elif kind == 6:
            props = [_person("email", [f"blocked{j}@spam.example" for j in range(50)], "is_not"),
                     _person("plan", "", "is_set")]
        else:
            props = [{"key": "employees", "value": rng.randrange(10, 1000), "operator": "gte",
                      "type": "group", "group_type_index": 0}]
            filters["aggregation_group_type_index"] = 0
        groups = [{"properties": props, "rollout_percentage": rng.choice((None, 100, 80, 50))}]
        if rng.random() < 0.3:
            groups.append({"properties": [_person("plan", "enterprise")],
                           "rollout_percentage": 100})
        flags.append({"id": 10000 + i, "key": f"scale-flag-{i:04d}", "name": f"flag {i}",
                      "version": rng.randrange(1, 9), "active": rng.random() > 0.05,
                      "ensure_experience_continuity": False,
                      "filters": {"groups": groups, **filters}})
    return {"flags": flags, "group_type_mapping": {"0": "company"}, "cohorts": cohorts}


def scale_user(i: int) -> Tuple[str, Dict[str, Any]]:
    """A user with every property the 2,000 flags read (so nothing is left to the server)."""
    rng = random.Random(f"scale-{i}")
    props = {
        "email": f"{rng.choice(('ann', 'bo', 'cy'))}{rng.randrange(100)}@"
                 f"{rng.choice(('example.com', 'test.org', 'corp7.example', 'domain3.com'))}",
        "plan": rng.choice(_PLANS), "country": rng.choice(_COUNTRIES),
        "purchases": rng.randrange(60), "user_id": f"id-{rng.randrange(10**6)}",
        "app_version": f"{rng.randrange(1, 4)}.{rng.randrange(10)}.{rng.randrange(5)}",
        "signup_date": f"2024-{rng.randrange(1, 13):02d}-15T10:00:00Z",
    }
    company = f"co-{rng.randrange(50)}"
    return f"scale-user-{i}", {
        "person_properties": props, "groups": {"company": company},
        "group_properties": {"company": {"employees": rng.randrange(2000)}},
    }


# --------------------------------------------------------------------------------------
# Worker side (a fresh interpreter per call of these).
# --------------------------------------------------------------------------------------


def _client(sdk: str, host: str, api_key: str, personal_api_key: str) -> Any:
    if sdk == "productos":
        import productos

        return productos.Client(api_key, host=host, personal_api_key=personal_api_key)
    from posthog import Posthog

    return Posthog(api_key, host=host, personal_api_key=personal_api_key)


def _loaded(sdk: str, client: Any) -> int:
    if sdk == "productos":
        definitions = client.feature_flag_definitions() or {}
        return len(definitions.get("flags") or ())
    return len(getattr(client, "feature_flags", None) or ())


def _shutdown(sdk: str, client: Any) -> None:
    client.shutdown(5.0) if sdk == "productos" else client.shutdown()


def work_load(sdk: str, host: str, api_key: str, personal_api_key: str) -> Dict[str, Any]:
    """Time one ``Client()`` + ``load_feature_flags()`` of the 2,000 flags, in a fresh process."""
    import requests  # noqa: F401  (both SDKs send with it: imported before the clock)
    from _logs import quiet_logger

    log = quiet_logger(sdk)

    if sdk == "productos":
        import productos  # noqa: F401
    else:
        import posthog  # noqa: F401
    gc.collect()
    started = time.perf_counter()
    client = _client(sdk, host, api_key, personal_api_key)
    client.load_feature_flags()
    elapsed = time.perf_counter() - started
    flags = _loaded(sdk, client)
    _shutdown(sdk, client)
    return {"load_ms": elapsed * 1000, "flags_loaded": flags, "log_records": log.count}


def work_scale(sdk: str, list_host: str, scale_host: str, api_key: str, personal_api_key: str,
               list_users: int, scale_users: int, values: Dict[str, str],
               encode: Callable[[Any], str]) -> Dict[str, Any]:
    """Memory with the 2,000 flags loaded, then get_all_flags over them, then the long lists."""
    out: Dict[str, Any] = {}
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    client = _client(sdk, scale_host, api_key, personal_api_key)
    client.load_feature_flags()
    gc.collect()
    out["memory_mb"] = (tracemalloc.get_traced_memory()[0] - before) / 1e6
    tracemalloc.stop()
    out["flags_loaded"] = _loaded(sdk, client)

    clock = time.perf_counter_ns
    samples: List[int] = []
    warm_id, warm_kwargs = scale_user(10**6)  # first-call costs are not what is measured
    client.get_all_flags(warm_id, only_evaluate_locally=True, **warm_kwargs)
    for i in range(scale_users):
        distinct_id, kwargs = scale_user(i)
        t0 = clock()
        answer = client.get_all_flags(distinct_id, only_evaluate_locally=True, **kwargs)
        samples.append(clock() - t0)
        for key, value in (answer or {}).items():
            values[f"scale\t{key}\t{distinct_id}"] = encode(value)
    out["all_scale_ms"] = statistics.mean(samples) / 1e6
    _shutdown(sdk, client)

    client = _client(sdk, list_host, api_key, personal_api_key)
    client.load_feature_flags()
    samples = []
    warm_id, warm_kwargs = big_list_user(10**6)
    for key in ("big-list", "big-not-list"):
        client.get_feature_flag(key, warm_id, only_evaluate_locally=True,
                                send_feature_flag_events=False, **warm_kwargs)
    for i in range(list_users):
        distinct_id, kwargs = big_list_user(i)
        for key in ("big-list", "big-not-list"):
            t0 = clock()
            value = client.get_feature_flag(key, distinct_id, only_evaluate_locally=True,
                                            send_feature_flag_events=False, **kwargs)
            samples.append(clock() - t0)
            values[f"list\t{key}\t{distinct_id}"] = encode(value)
    out["big_list_us"] = statistics.mean(samples) / 1e3
    _shutdown(sdk, client)
    return out
