"""The arguments of the public flag calls, checked and shaped for the flag service (pure)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Union

from productos._capture.arguments import check_groups, check_mapping, distinct_id_or, to_id
from productos._capture.events import describe
from productos._flags.results import CallContext, Context
from productos._flags.snapshot import Snapshot
from productos.context import DEVICE_IDS_IN_USE, current_scope
from productos.errors import ConfigurationError, EventError
from productos.flags import EvaluationContext, FlagResult, parse_definitions

_NONE: Mapping[str, Any] = MappingProxyType({})
_new_object = object.__new__


def check_flag_key(key: Any) -> str:
    """Return a flag key: a non-empty string."""
    if key is None:
        raise EventError("a flag key is required")
    if type(key) is not str or not key:
        raise EventError(f"a flag key must be a non-empty string, not {describe(key)}")
    return key


def evaluation_context(distinct_id: Any, groups: Any, person_properties: Any,
                       group_properties: Any, device_id: Any,
                       disable_geoip: Any = None) -> EvaluationContext:
    """Return who a flag call is for; the context's distinct id stands in for a missing one."""
    if type(distinct_id) is str and distinct_id:  # the common case, without the scope
        owner: Optional[str] = distinct_id
    else:
        owner = distinct_id_or(distinct_id, current_scope().distinct_id)
        if owner is None:
            raise EventError("a distinct_id (argument or context) is needed for flags")
    # The evaluator only reads these mappings, so plain dicts are passed through as they are.
    if groups is None:
        group_map: Mapping[str, str] = _NONE
    elif type(groups) is dict:
        group_map = groups
        for k, v in groups.items():  # a loop, not all(): no generator per call
            if type(k) is not str or type(v) is not str:
                group_map = check_groups(groups) or _NONE
                break
    else:
        group_map = check_groups(groups) or _NONE
    if person_properties is None:
        person_properties = _NONE
    elif type(person_properties) is not dict:
        person_properties = check_mapping("person_properties", person_properties)
    if group_properties is None:
        gprops: Mapping[str, Mapping[str, Any]] = _NONE
    else:
        gprops = group_properties  # read only, like the mappings above
        if type(group_properties) is dict:
            for k, v in group_properties.items():
                if type(k) is not str or type(v) is not dict:
                    gprops = _group_properties(group_properties)
                    break
        else:
            gprops = _group_properties(group_properties)
    if device_id is None and DEVICE_IDS_IN_USE[0]:
        device_id = current_scope().device_id  # set_context_device_id(), as in posthog
    context = _new_object(EvaluationContext)
    # A frozen dataclass's __init__ costs one object.__setattr__ per field; this runs on
    # every flag read, so the instance dict is filled in one step (no __post_init__).
    context.__dict__.update(
        distinct_id=owner, groups=group_map, person_properties=person_properties,
        group_properties=gprops,
        device_id=None if device_id is None else to_id(device_id), now=None,
        disable_geoip=None if disable_geoip is None else bool(disable_geoip))
    return context


def _group_properties(given: Any) -> Mapping[str, Mapping[str, Any]]:
    return {str(k): check_mapping("group_properties", v) or _NONE
            for k, v in (check_mapping("group_properties", given) or {}).items()}


def flag_values(flags: Any) -> Dict[str, Union[bool, str, None]]:
    """Return capture()'s ``flags=`` (key → value, or ``get_all_flags_results()``) as values."""
    given = check_mapping("flags", flags) or {}
    return {str(k): (v.value if isinstance(v, FlagResult) else v) for k, v in given.items()}


def parse_given_definitions(definitions: Any) -> Snapshot:
    """Parse definitions handed over in code; a wrong shape is a configuration error."""
    if not isinstance(definitions, Mapping) or not isinstance(definitions.get("flags"), list):
        raise ConfigurationError(
            "flag definitions must be a mapping with a 'flags' list (the body of the "
            "definitions endpoint)")
    return parse_definitions(definitions)


def call_context(distinct_id: Any, groups: Any, person_properties: Any,
                 group_properties: Any, device_id: Any, disable_geoip: Any) -> Context:
    """``evaluation_context()``, made as the cheaper CallContext for the common calls.

    The checks are the same: mappings of the right types are taken as they are. The public
    EvaluationContext is made from it (``CallContext.full()``) only if something outside the
    evaluator needs it, such as the server or a hook. Raises EventError for bad arguments.
    """
    if (distinct_id.__class__ is str and distinct_id and device_id is None
            and disable_geoip is None and not DEVICE_IDS_IN_USE[0]
            and (person_properties is None or person_properties.__class__ is dict)
            and (groups is None or groups.__class__ is dict)
            and (group_properties is None or group_properties.__class__ is dict)):
        call = _new_object(CallContext)
        call.distinct_id = distinct_id
        if person_properties is not None:
            call.person_properties = person_properties
        if groups is not None:
            call.groups = groups
            for k, v in groups.items():
                if k.__class__ is not str or v.__class__ is not str:
                    return evaluation_context(distinct_id, groups, person_properties,
                                              group_properties, device_id, disable_geoip)
        if group_properties is not None:
            call.group_properties = group_properties
            for k, v in group_properties.items():
                if k.__class__ is not str or v.__class__ is not dict:
                    return evaluation_context(distinct_id, groups, person_properties,
                                              group_properties, device_id, disable_geoip)
        return call
    return evaluation_context(distinct_id, groups, person_properties, group_properties,
                              device_id, disable_geoip)
