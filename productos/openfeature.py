"""An OpenFeature provider backed by a productos client (the ``[openfeature]`` extra).

    from openfeature import api
    from productos.openfeature import ProductosProvider

    api.set_provider(ProductosProvider(productos.Client("phc_...", personal_api_key="phx_...")))
    flags = api.get_client()
    flags.get_boolean_value("new-checkout", False, EvaluationContext("user-1", {"plan": "pro"}))

The evaluation context's targeting key is the distinct id and its attributes are person
properties, except three reserved attributes:

* ``"$groups"``: the groups, ``{"company": "acme"}``, or with group properties
  ``{"company": {"key": "acme", "properties": {"plan": "enterprise"}}}``;
* ``"$group_properties"``: group properties by group type, the other way to give them;
* ``"$device_id"``: the device id, for flags bucketed by device.

What each read returns:

* boolean: the flag's state (a multivariate flag is on when a variant was chosen);
* string: the variant key (a plain boolean flag read as a string is a TYPE_MISMATCH);
* integer, float, object: the payload of the value the flag has for this person, which must
  be a number or a JSON object/array; a flag that is off gives the default, without error.

The variant is the variant key. Reasons: TARGETING_MATCH (a release condition matched), SPLIT
(a rollout percentage or a variant split decided), DEFAULT (no condition matched), DISABLED (an
inactive flag), ERROR otherwise, with the error codes FLAG_NOT_FOUND, TYPE_MISMATCH,
PROVIDER_NOT_READY (definitions are polled and the first load has not arrived) and GENERAL; an
error always returns the default value. ``flag_metadata`` has the flag's id and version, the
productos reason code, and whether it was evaluated locally.

The provider is ready once the client has its first definitions (at once for a client without
local evaluation, which asks the server, or one given ``flag_definitions``); when the first load
takes longer than ``ready_timeout``, initialisation reports an error and the provider emits
PROVIDER_READY later, when the definitions arrive. PROVIDER_CONFIGURATION_CHANGED is emitted
when the client reports changed definitions (``client.on_flags_changed``, where the client has
it). An ``AsyncClient`` works too: the async resolutions await it.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

try:
    from openfeature.evaluation_context import EvaluationContext
    from openfeature.event import ProviderEventDetails
    from openfeature.exception import ErrorCode, ProviderNotReadyError
    from openfeature.flag_evaluation import FlagResolutionDetails, Reason
    from openfeature.provider import AbstractProvider, Metadata
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("productos.openfeature needs the OpenFeature SDK: "
                      "pip install 'productos[openfeature]'") from exc

from productos.client import Client
from productos.flags import FlagResult, InconclusiveReason, ReasonCode

__all__ = ["ProductosProvider"]

GROUPS_ATTRIBUTE = "$groups"
GROUP_PROPERTIES_ATTRIBUTE = "$group_properties"
DEVICE_ID_ATTRIBUTE = "$device_id"
_RESERVED = frozenset({GROUPS_ATTRIBUTE, GROUP_PROPERTIES_ATTRIBUTE, DEVICE_ID_ATTRIBUTE})

Details = FlagResolutionDetails[Any]
FlagArgs = Tuple[str, Optional[Dict[str, str]], Mapping[str, Any],
                 Optional[Dict[str, Dict[str, Any]]], Any]

# productos reason codes that say "a release condition decided", and those that say "nothing
# matched, the flag is off for this person".
_MATCH = frozenset({ReasonCode.CONDITION_MATCH, ReasonCode.FEATURE_ENROLLMENT})
_NO_MATCH = frozenset({ReasonCode.NO_CONDITION_MATCH, ReasonCode.GROUP_NOT_PASSED})
_ROLLOUT = frozenset({ReasonCode.OUT_OF_ROLLOUT, ReasonCode.EARLY_EXIT, ReasonCode.HOLDOUT})


class ProductosProvider(AbstractProvider):
    """OpenFeature provider that evaluates flags with a productos ``Client`` (or AsyncClient)."""

    def __init__(self, client: Any, *, ready_timeout: float = 10.0,
                 shutdown_client: bool = False) -> None:
        super().__init__()
        sync = getattr(client, "sync", client)  # an AsyncClient wraps a Client
        if not isinstance(sync, Client):
            raise TypeError("ProductosProvider needs a productos.Client or AsyncClient")
        self.client: Client = sync
        self._async = client if client is not sync else None
        self._ready_timeout = ready_timeout
        self._shutdown_client = shutdown_client
        self._stop = threading.Event()
        self._ready = False
        self._announce_ready = False
        self._waiter: Optional[threading.Thread] = None
        self._unsubscribe: Optional[Callable[[], Any]] = None
        self._splits: Tuple[int, Dict[str, Tuple[bool, frozenset[int]]]] = (0, {})

    # --- lifecycle ------------------------------------------------------------------------

    def get_metadata(self) -> Metadata:
        """The provider's name: productos."""
        return Metadata(name="productos")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Wait (up to ready_timeout) for the first definitions; listen for changes."""
        self._stop.clear()
        self._listen_for_changes()
        if self._stop.wait(0) or self._wait_loaded(self._ready_timeout):
            return
        # Not loaded yet: the SDK marks the provider as errored; READY follows on arrival.
        self._announce_ready = True
        self._waiter = threading.Thread(target=self._wait_then_announce,
                                        name="productos-openfeature-ready", daemon=True)
        self._waiter.start()
        raise ProviderNotReadyError(
            f"productos: no flag definitions after {self._ready_timeout}s; "
            "PROVIDER_READY follows when they arrive")

    def shutdown(self) -> None:
        """Stop waiting and listening; shut the client down if the provider owns it."""
        self._stop.set()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            try:
                unsubscribe()
            except Exception:  # a listener left behind only emits to a detached provider
                pass
        waiter = self._waiter
        if waiter is not None and waiter is not threading.current_thread():
            waiter.join(2.0)
        if self._shutdown_client:
            self.client.shutdown()

    def _loaded(self) -> bool:
        if self._ready:
            return True
        client = self.client
        # Without a poller the client asks the server (or was given its definitions).
        ready = (client.flag_definitions_status() is None
                 or client.feature_flag_definitions() is not None)
        self._ready = ready
        return ready

    def _wait_loaded(self, timeout: float) -> bool:
        step = 0.02
        waited = 0.0
        while not self._loaded():
            if waited >= timeout or self._stop.wait(step):
                return False
            waited += step
            step = min(step * 2, 0.25)
        return True

    def _wait_then_announce(self) -> None:
        while not self._stop.is_set():
            if self._wait_loaded(3600.0):
                self._emit_ready()
                return

    def _emit_ready(self) -> None:
        if self._announce_ready and not self._stop.is_set():
            self._announce_ready = False
            self.emit_provider_ready(ProviderEventDetails(message="flag definitions loaded"))

    def _listen_for_changes(self) -> None:
        subscribe = getattr(self.client, "on_flags_changed", None)
        if subscribe is None or self._unsubscribe is not None:
            return
        self._unsubscribe = _as_unsubscribe(subscribe(self._flags_changed), self.client,
                                            self._flags_changed)

    def _flags_changed(self, *args: Any, **kwargs: Any) -> None:
        if self._stop.is_set():
            return
        if self._announce_ready and self._loaded():
            self._emit_ready()
            return
        keys = _changed_keys(args, kwargs)
        self.emit_provider_configuration_changed(ProviderEventDetails(
            flags_changed=keys, message="flag definitions changed"))

    # --- resolution -----------------------------------------------------------------------

    def resolve_boolean_details(self, flag_key: str, default_value: bool,
                                evaluation_context: Optional[EvaluationContext] = None
                                ) -> FlagResolutionDetails[bool]:
        """Resolve a flag's state."""
        return self._details(flag_key, default_value, evaluation_context, _as_boolean)

    def resolve_string_details(self, flag_key: str, default_value: str,
                               evaluation_context: Optional[EvaluationContext] = None
                               ) -> FlagResolutionDetails[str]:
        """Resolve a multivariate flag's variant key."""
        return self._details(flag_key, default_value, evaluation_context, _as_string)

    def resolve_integer_details(self, flag_key: str, default_value: int,
                                evaluation_context: Optional[EvaluationContext] = None
                                ) -> FlagResolutionDetails[int]:
        """Resolve an integer from the flag's payload."""
        return self._details(flag_key, default_value, evaluation_context, _as_integer)

    def resolve_float_details(self, flag_key: str, default_value: float,
                              evaluation_context: Optional[EvaluationContext] = None
                              ) -> FlagResolutionDetails[float]:
        """Resolve a number from the flag's payload."""
        return self._details(flag_key, default_value, evaluation_context, _as_float)

    def resolve_object_details(self, flag_key: str, default_value: Any,
                               evaluation_context: Optional[EvaluationContext] = None
                               ) -> FlagResolutionDetails[Any]:
        """Resolve the flag's payload (a JSON object or array)."""
        return self._details(flag_key, default_value, evaluation_context, _as_object)

    async def resolve_boolean_details_async(self, flag_key: str, default_value: bool,
                                            evaluation_context: Optional[EvaluationContext]
                                            = None) -> FlagResolutionDetails[bool]:
        """Resolve a flag's state without blocking the loop (with an AsyncClient)."""
        return await self._details_async(flag_key, default_value, evaluation_context,
                                         _as_boolean)

    async def resolve_string_details_async(self, flag_key: str, default_value: str,
                                           evaluation_context: Optional[EvaluationContext]
                                           = None) -> FlagResolutionDetails[str]:
        """Resolve a variant key without blocking the loop (with an AsyncClient)."""
        return await self._details_async(flag_key, default_value, evaluation_context,
                                         _as_string)

    async def resolve_integer_details_async(self, flag_key: str, default_value: int,
                                            evaluation_context: Optional[EvaluationContext]
                                            = None) -> FlagResolutionDetails[int]:
        """Resolve an integer payload without blocking the loop (with an AsyncClient)."""
        return await self._details_async(flag_key, default_value, evaluation_context,
                                         _as_integer)

    async def resolve_float_details_async(self, flag_key: str, default_value: float,
                                          evaluation_context: Optional[EvaluationContext]
                                          = None) -> FlagResolutionDetails[float]:
        """Resolve a number payload without blocking the loop (with an AsyncClient)."""
        return await self._details_async(flag_key, default_value, evaluation_context,
                                         _as_float)

    async def resolve_object_details_async(self, flag_key: str, default_value: Any,
                                           evaluation_context: Optional[EvaluationContext]
                                           = None) -> FlagResolutionDetails[Any]:
        """Resolve an object payload without blocking the loop (with an AsyncClient)."""
        return await self._details_async(flag_key, default_value, evaluation_context,
                                         _as_object)

    def _details(self, key: str, default: Any, context: Optional[EvaluationContext],
                 convert: Converter) -> Details:
        problem = self._precheck()
        if problem is not None:
            return _error(default, *problem)
        args = _flag_args(context)
        if args is None:
            return _error(default, ErrorCode.TARGETING_KEY_MISSING,
                          "the evaluation context has no targeting key (the distinct id)")
        try:
            # Boolean and string reads need no payload and no explanation: the value-only
            # evaluation (the one get_feature_flag makes) has the same value and reason.
            result = self.client.get_feature_flag_result(
                key, args[0], groups=args[1], person_properties=args[2],
                group_properties=args[3], device_id=args[4],
                detail=convert not in _VALUE_ONLY)
        except Exception as exc:  # debug=True clients raise; OpenFeature wants a GENERAL error
            return _error(default, ErrorCode.GENERAL, f"{type(exc).__name__}: {exc}")
        return self._finish(key, default, result, convert)

    async def _details_async(self, key: str, default: Any,
                             context: Optional[EvaluationContext],
                             convert: Converter) -> Details:
        if self._async is None:
            return self._details(key, default, context, convert)
        problem = self._precheck()
        if problem is not None:
            return _error(default, *problem)
        args = _flag_args(context)
        if args is None:
            return _error(default, ErrorCode.TARGETING_KEY_MISSING,
                          "the evaluation context has no targeting key (the distinct id)")
        try:
            result = await self._async.get_feature_flag_result(
                key, args[0], groups=args[1], person_properties=args[2],
                group_properties=args[3], device_id=args[4],
                detail=convert not in _VALUE_ONLY)
        except Exception as exc:
            return _error(default, ErrorCode.GENERAL, f"{type(exc).__name__}: {exc}")
        return self._finish(key, default, result, convert)

    def _precheck(self) -> Optional[Tuple[ErrorCode, str]]:
        if not self._loaded():
            return ErrorCode.PROVIDER_NOT_READY, "flag definitions are not loaded yet"
        if self.client.disabled:
            return ErrorCode.GENERAL, "the productos client is disabled"
        return None

    def _finish(self, key: str, default: Any, result: Optional[FlagResult],
                convert: Converter) -> Details:
        if result is None:
            return _error(default, ErrorCode.GENERAL, "the flag could not be evaluated")
        if result.value is None:
            return _unknown(default, result)
        reason = self._reason(result)
        metadata = _metadata(result)
        try:
            value, off = convert(result)
        except _Mismatch as exc:
            return _error(default, ErrorCode.TYPE_MISMATCH, str(exc), metadata)
        if off:  # the flag is off for this person: the default, for the reason it is off
            return FlagResolutionDetails(value=default, reason=reason, variant=result.variant,
                                         flag_metadata=metadata)
        return FlagResolutionDetails(value=value, reason=reason, variant=result.variant,
                                     flag_metadata=metadata)

    def _reason(self, result: FlagResult) -> str:
        code = result.reason.code
        if code is ReasonCode.DISABLED:
            return Reason.DISABLED
        if code in _NO_MATCH:
            return Reason.DEFAULT
        if code in _ROLLOUT:
            return Reason.SPLIT
        if code in _MATCH:
            threshold = result.reason.threshold
            if threshold is not None and threshold < 1.0:
                return Reason.SPLIT
            if result.variant is not None and self._variant_split(result):
                return Reason.SPLIT
            return Reason.TARGETING_MATCH
        if code is ReasonCode.REMOTE:
            return Reason.TARGETING_MATCH if result.enabled else Reason.DEFAULT
        return Reason.UNKNOWN

    def _variant_split(self, result: FlagResult) -> bool:
        """True when the variant came from the split, not from a condition that names it."""
        raw = self.client.feature_flag_definitions()
        if raw is None:
            return True
        stamp, table = self._splits
        if stamp != id(raw):
            table = {}
            self._splits = (id(raw), table)
        entry = table.get(result.key)
        if entry is None:
            entry = table[result.key] = _split_facts(raw, result.key)
        several_variants, forcing = entry
        index = result.reason.condition_index
        return several_variants and (index is None or index not in forcing)


# --- pure helpers ---------------------------------------------------------------------------


class _Mismatch(Exception):
    """The flag's value is not of the type that was asked for."""


Converter = Callable[[FlagResult], Tuple[Any, bool]]


def _as_boolean(result: FlagResult) -> Tuple[Any, bool]:
    return result.enabled, False


def _as_string(result: FlagResult) -> Tuple[Any, bool]:
    if result.value is True:
        raise _Mismatch(f"flag {result.key!r} is a boolean flag, not a multivariate one")
    return result.variant, result.variant is None


def _payload(result: FlagResult, kinds: Any, what: str) -> Tuple[Any, bool]:
    if not result.enabled:
        return None, True
    payload = result.payload
    if isinstance(payload, bool) or not isinstance(payload, kinds):
        raise _Mismatch(f"flag {result.key!r} has no {what} payload for "
                        f"{result.value!r} (it has {type(payload).__name__})")
    return payload, False


_VALUE_ONLY = (_as_boolean, _as_string)


def _as_integer(result: FlagResult) -> Tuple[Any, bool]:
    return _payload(result, int, "integer")


def _as_float(result: FlagResult) -> Tuple[Any, bool]:
    value, off = _payload(result, (int, float), "number")
    return (None if off else float(value)), off


def _as_object(result: FlagResult) -> Tuple[Any, bool]:
    return _payload(result, (dict, list), "object")


def _error(default: Any, code: ErrorCode, message: str,
           metadata: Optional[Mapping[str, Union[bool, int, float, str]]] = None) -> Details:
    return FlagResolutionDetails(value=default, reason=Reason.ERROR, error_code=code,
                                 error_message=message, flag_metadata=dict(metadata or {}))


def _unknown(default: Any, result: FlagResult) -> Details:
    reason = result.reason
    metadata = _metadata(result)
    if reason.inconclusive is InconclusiveReason.FLAG_MISSING or reason.error == "flag_missing":
        return _error(default, ErrorCode.FLAG_NOT_FOUND, f"no flag {result.key!r}", metadata)
    if reason.inconclusive is InconclusiveReason.NOT_LOADED and reason.error is None:
        return _error(default, ErrorCode.PROVIDER_NOT_READY,
                      "flag definitions are not loaded yet", metadata)
    return _error(default, ErrorCode.GENERAL,
                  reason.error or reason.description or "the flag could not be decided",
                  metadata)


def _metadata(result: FlagResult) -> Dict[str, Union[bool, int, float, str]]:
    metadata: Dict[str, Union[bool, int, float, str]] = {
        "reason_code": result.reason.code.value,
        "locally_evaluated": result.locally_evaluated,
    }
    if result.flag_id is not None:
        metadata["flag_id"] = result.flag_id
    if result.flag_version is not None:
        metadata["flag_version"] = result.flag_version
    return metadata


def _flag_args(context: Optional[EvaluationContext]) -> Optional[FlagArgs]:
    """Return the client's arguments (distinct id, groups, person and group properties...)."""
    if context is None or not context.targeting_key:
        return None
    attributes = context.attributes or {}
    if _RESERVED.isdisjoint(attributes):
        # The client only reads person properties: the attributes can be passed as they are.
        return context.targeting_key, None, attributes, None, None
    person = {k: v for k, v in attributes.items() if k not in _RESERVED}
    groups: Dict[str, str] = {}
    group_properties: Dict[str, Dict[str, Any]] = {}
    raw_groups = attributes.get(GROUPS_ATTRIBUTE)
    if isinstance(raw_groups, Mapping):
        for group_type, value in raw_groups.items():
            if isinstance(value, Mapping):
                if value.get("key") is not None:
                    groups[str(group_type)] = str(value["key"])
                props = value.get("properties")
                if isinstance(props, Mapping):
                    group_properties[str(group_type)] = dict(props)
            elif value is not None:
                groups[str(group_type)] = str(value)
    raw_props = attributes.get(GROUP_PROPERTIES_ATTRIBUTE)
    if isinstance(raw_props, Mapping):
        for group_type, props in raw_props.items():
            if isinstance(props, Mapping):
                group_properties.setdefault(str(group_type), {}).update(props)
    device = attributes.get(DEVICE_ID_ATTRIBUTE)
    return (context.targeting_key, groups or None, person, group_properties or None,
            None if device is None else str(device))


def _split_facts(raw: Mapping[str, Any], key: str) -> Tuple[bool, frozenset[int]]:
    """Whether a flag splits between variants, and which conditions force one."""
    for flag in raw.get("flags") or ():
        if isinstance(flag, Mapping) and flag.get("key") == key:
            filters = flag.get("filters") or {}
            variants = ((filters.get("multivariate") or {}).get("variants")) or []
            shares = [v for v in variants
                      if isinstance(v, Mapping) and (v.get("rollout_percentage") or 0) > 0]
            groups = filters.get("groups") or []
            forcing = frozenset(i for i, g in enumerate(groups)
                                if isinstance(g, Mapping) and g.get("variant"))
            return len(shares) > 1, forcing
    return True, frozenset()


def _changed_keys(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Optional[list[str]]:
    """The flag keys a change listener was told about, however it was called."""
    keys: list[str] = []
    for value in (*args, *kwargs.values()):
        for attribute in ("added", "removed", "changed"):
            part = getattr(value, attribute, None)
            if part:
                keys.extend(str(k) for k in part)
        if isinstance(value, (set, frozenset, list, tuple)):
            keys.extend(str(k) for k in value)
    return sorted(set(keys)) or None


def _as_unsubscribe(handle: Any, client: Any,
                    callback: Callable[..., Any]) -> Optional[Callable[[], Any]]:
    if callable(handle):
        return handle  # type: ignore[no-any-return]
    remove = getattr(client, "remove_flags_changed_listener", None) or getattr(
        client, "off_flags_changed", None)
    if remove is None:
        return None
    return lambda: remove(callback)
