"""The flag questions a client answers: its public flag methods (a mixin of Client).

They shape each call for the flag service (``_flags.service``) and turn its answers into the
values posthog's API returns; they never raise into the application (see ``_flag_failed``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Union

from productos._capture.events import describe
from productos._flags.arguments import check_flag_key
from productos._flags.evaluations import FeatureFlagEvaluations
from productos._flags.poller import SnapshotHolder
from productos._flags.remote_config import remote_config_payload
from productos._flags.service import FlagService, FlagSet, payload_for
from productos._flags.shapes import evaluation_records, payloads_as_posthog
from productos._flags.snapshot import Snapshot
from productos.flags import EvaluationContext, FlagResult

if TYPE_CHECKING:
    from productos._delivery.transport import Transport
    from productos._runtime.options import Options

__all__ = ["FlagQueries"]

log = logging.getLogger("productos")


class FlagQueries:
    """Client's flag methods; the client provides the service, definitions and error path."""

    disabled: bool
    options: Options
    transport: Transport
    _flags: FlagService
    _definitions: SnapshotHolder[Snapshot]

    if TYPE_CHECKING:
        def _flag_context(self, distinct_id: Any, groups: Any, person_properties: Any,
                          group_properties: Any, device_id: Any, sends: bool = True,
                          disable_geoip: Optional[bool] = None) -> EvaluationContext: ...

        def _flag_failed(self, exc: Exception, what: str) -> None: ...

        def set_flag_definitions(self, definitions: Mapping[str, Any]) -> None: ...

    def get_feature_flag_result(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                                person_properties: Any = None, group_properties: Any = None,
                                device_id: Any = None, only_evaluate_locally: bool = False,
                                send_feature_flag_events: bool = True,
                                disable_geoip: Optional[bool] = None,
                                detail: bool = True) -> Optional[FlagResult]:
        """Evaluate one flag and return the full result: value, variant, payload and reason.

        ``detail=False`` leaves out the payload and the reason's explanation (its
        description, bucket and trace) and keeps the value, variant and reason code: the
        evaluation ``get_feature_flag`` makes, at about half the cost of a detailed one.
        """
        return self._flag_result(key, distinct_id, groups, person_properties, group_properties,
                                 device_id, only_evaluate_locally, send_feature_flag_events,
                                 detail, disable_geoip)

    def _flag_result(self, key: Any, distinct_id: Any, groups: Any, person_properties: Any,
                     group_properties: Any, device_id: Any, only_local: bool, send_event: bool,
                     detail: bool, disable_geoip: Optional[bool] = None
                     ) -> Optional[FlagResult]:
        if self.disabled:
            return None
        try:
            key = check_flag_key(key)
            ctx = self._flag_context(distinct_id, groups, person_properties, group_properties,
                                     device_id, True, disable_geoip)
            return self._flags.result(key, ctx, only_local=only_local, send_event=send_event,
                                      detail=detail)
        except Exception as exc:
            self._flag_failed(exc, f"evaluating flag {describe(key)}")
            return None

    def get_feature_flag(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                         person_properties: Any = None, group_properties: Any = None,
                         device_id: Any = None, only_evaluate_locally: bool = False,
                         send_feature_flag_events: bool = True,
                         disable_geoip: Optional[bool] = None) -> Union[bool, str, None]:
        """Return a flag's value: True/False, the variant key, or None when unknown."""
        if self.disabled:
            return None
        try:
            if disable_geoip is None:
                return self._flags.value(key, distinct_id, groups, person_properties,
                                         group_properties, device_id, only_evaluate_locally,
                                         send_feature_flag_events)
            return self._flags.value(key, distinct_id, groups, person_properties,
                                     group_properties, device_id, only_evaluate_locally,
                                     send_feature_flag_events, disable_geoip=disable_geoip)
        except Exception as exc:
            self._flag_failed(exc, f"evaluating flag {describe(key)}")
            return None

    def feature_enabled(self, key: str, distinct_id: Any = None, *, groups: Any = None,
                        person_properties: Any = None, group_properties: Any = None,
                        device_id: Any = None, only_evaluate_locally: bool = False,
                        send_feature_flag_events: bool = True,
                        disable_geoip: Optional[bool] = None) -> Optional[bool]:
        """Return whether a flag is on for this person (None when it cannot be known)."""
        if self.disabled:
            return None
        try:
            if disable_geoip is None:
                value = self._flags.value(key, distinct_id, groups, person_properties,
                                          group_properties, device_id, only_evaluate_locally,
                                          send_feature_flag_events)
            else:
                value = self._flags.value(key, distinct_id, groups, person_properties,
                                          group_properties, device_id, only_evaluate_locally,
                                          send_feature_flag_events, disable_geoip=disable_geoip)
        except Exception as exc:
            self._flag_failed(exc, f"evaluating flag {describe(key)}")
            return None
        return None if value is None else bool(value)

    def get_feature_flag_payload(self, key: str, distinct_id: Any = None, *,
                                 match_value: Any = None, groups: Any = None,
                                 person_properties: Any = None, group_properties: Any = None,
                                 only_evaluate_locally: bool = False,
                                 send_feature_flag_events: bool = False,
                                 disable_geoip: Optional[bool] = None,
                                 device_id: Any = None) -> Any:
        """Return the decoded payload of the flag's value for this person, if any.

        ``match_value`` reads the payload of that value (True or a variant) without
        evaluating, when the definitions have one.
        """
        if match_value is not None and type(key) is str:
            # A key of another type goes the normal way below, which reports it.
            try:
                payload = payload_for(self._definitions.get(), key, match_value)
            except Exception as exc:
                self._flag_failed(exc, f"reading the payload of flag {describe(key)}")
                return None
            if payload is not None:
                return payload
        result = self.get_feature_flag_result(
            key, distinct_id, groups=groups, person_properties=person_properties,
            group_properties=group_properties, device_id=device_id,
            only_evaluate_locally=only_evaluate_locally,
            send_feature_flag_events=send_feature_flag_events, disable_geoip=disable_geoip)
        return None if result is None else result.payload

    def get_all_flags_results(self, distinct_id: Any = None, *, groups: Any = None,
                              person_properties: Any = None, group_properties: Any = None,
                              device_id: Any = None, only_evaluate_locally: bool = False,
                              disable_geoip: Optional[bool] = None,
                              flag_keys_to_evaluate: Optional[Sequence[str]] = None
                              ) -> Optional[Dict[str, FlagResult]]:
        """Evaluate every flag (or those named) with at most one remote request; full results."""
        if flag_keys_to_evaluate is not None:
            flag_set = self._flag_set(distinct_id, groups, person_properties, group_properties,
                                      device_id, only_evaluate_locally, disable_geoip,
                                      flag_keys_to_evaluate)
            return None if flag_set is None else flag_set.results
        if self.disabled:
            return None
        try:
            ctx = self._flag_context(distinct_id, groups, person_properties, group_properties,
                                     device_id, True, disable_geoip)
            return self._flags.all_results(ctx, only_local=only_evaluate_locally)
        except Exception as exc:
            self._flag_failed(exc, "evaluating all flags")
            return None

    def _flag_set(self, distinct_id: Any, groups: Any, person_properties: Any,
                  group_properties: Any, device_id: Any, only_local: bool,
                  disable_geoip: Optional[bool], keys: Optional[Sequence[str]],
                  ask_for_missing: bool = False,
                  ctx: Optional[EvaluationContext] = None,
                  detail: bool = True) -> Optional[FlagSet]:
        if self.disabled:
            return None
        try:
            if ctx is None:  # evaluate_flags() has made it already
                ctx = self._flag_context(distinct_id, groups, person_properties,
                                         group_properties, device_id, True, disable_geoip)
            wanted = None if keys is None else [check_flag_key(k) for k in keys]
            return self._flags.evaluate_set(ctx, only_local=only_local, keys=wanted,
                                            ask_for_missing=ask_for_missing, detail=detail)
        except Exception as exc:
            self._flag_failed(exc, "evaluating all flags")
            return None

    def get_all_flags(self, distinct_id: Any = None, *, groups: Any = None,
                      person_properties: Any = None, group_properties: Any = None,
                      device_id: Any = None, only_evaluate_locally: bool = False,
                      disable_geoip: Optional[bool] = None,
                      flag_keys_to_evaluate: Optional[Sequence[str]] = None
                      ) -> Optional[Dict[str, Union[bool, str]]]:
        """Return every flag's known value for this person (at most one remote request).

        ``flag_keys_to_evaluate`` restricts the evaluation (and the server's) to those keys.
        """
        if self.disabled:
            return None
        try:
            if flag_keys_to_evaluate is None:
                values = self._flags.values(distinct_id, groups, person_properties,
                                            group_properties, device_id, only_evaluate_locally,
                                            disable_geoip)
            else:
                ctx = self._flag_context(distinct_id, groups, person_properties,
                                         group_properties, device_id, not only_evaluate_locally,
                                         disable_geoip)
                keys = [check_flag_key(k) for k in flag_keys_to_evaluate]
                values = self._flags.all_values(ctx, only_local=only_evaluate_locally,
                                                keys=keys, known_only=True)
        except Exception as exc:
            self._flag_failed(exc, "evaluating all flags")
            return None
        return values  # known_only: the service and the layers in front leave unknowns out

    def get_all_flags_and_payloads(self, distinct_id: Any = None, *, groups: Any = None,
                                   person_properties: Any = None, group_properties: Any = None,
                                   device_id: Any = None, only_evaluate_locally: bool = False,
                                   disable_geoip: Optional[bool] = None,
                                   flag_keys_to_evaluate: Optional[Sequence[str]] = None
                                   ) -> Dict[str, Any]:
        """Return ``{"featureFlags": {...}, "featureFlagPayloads": {...}}`` as posthog does.

        Payloads are the JSON text of each flag's value as defined (or as the server sent
        it), undecoded; a disabled client returns ``None`` for both.
        """
        flag_set = self._flag_set(distinct_id, groups, person_properties, group_properties,
                                  device_id, only_evaluate_locally, disable_geoip,
                                  flag_keys_to_evaluate, ask_for_missing=False,
                                  detail=False)  # values and raw payloads only
        if flag_set is None:
            if self.disabled:
                return {"featureFlags": None, "featureFlagPayloads": None}
            return {"featureFlags": {}, "featureFlagPayloads": {}}
        results = flag_set.results
        return {
            "featureFlags": {k: r.value for k, r in results.items() if r.value is not None},
            "featureFlagPayloads": payloads_as_posthog(results, flag_set.answer,
                                                       self._definitions.get()),
        }

    def evaluate_flags(self, distinct_id: Any = None, *, groups: Any = None,
                       person_properties: Any = None, group_properties: Any = None,
                       only_evaluate_locally: bool = False,
                       disable_geoip: Optional[bool] = None,
                       flag_keys: Optional[Sequence[str]] = None,
                       device_id: Any = None) -> FeatureFlagEvaluations:
        """Evaluate every flag (or ``flag_keys``) once and return a snapshot to branch on.

        Reading a flag from it sends ``$feature_flag_called``; ``capture(..., flags=snapshot)``
        tags an event with the same values. At most one remote request (for the flags local
        evaluation could not decide, or named keys without a definition).
        """
        if self.disabled:
            return FeatureFlagEvaluations("", {})
        try:
            report = self._flags.report_called
            ctx = self._flag_context(distinct_id, groups, person_properties, group_properties,
                                     device_id, True, disable_geoip)
        except Exception as exc:
            if distinct_id is None or distinct_id == "":  # posthog: an empty snapshot
                log.debug("productos: evaluate_flags() without a distinct id: %s", exc)
            else:
                self._flag_failed(exc, "evaluating flags")
            return FeatureFlagEvaluations("", {})
        if flag_keys is not None and not flag_keys:
            return FeatureFlagEvaluations(ctx.distinct_id, {}, groups=ctx.groups,
                                          disable_geoip=disable_geoip, report=report)
        flag_set = self._flag_set(ctx.distinct_id, ctx.groups, ctx.person_properties,
                                  ctx.group_properties, ctx.device_id, only_evaluate_locally,
                                  disable_geoip, flag_keys, ask_for_missing=True, ctx=ctx,
                                  detail=False)  # the records keep no explanation
        if flag_set is None:
            return FeatureFlagEvaluations("", {}, report=report)
        answer = flag_set.answer
        records, unresolved = evaluation_records(flag_set.results, answer,
                                                 self._definitions.get())
        return FeatureFlagEvaluations(
            ctx.distinct_id, records, groups=ctx.groups, disable_geoip=disable_geoip,
            request_id=None if answer is None else answer.request_id,
            errors_while_computing=bool(answer and answer.errors_while_computing),
            quota_limited=bool(answer and answer.quota_limited),
            unresolved_flags=unresolved, report=report)

    def get_remote_config_payload(self, key: str) -> Any:
        """Return a remote-config flag's payload as the server sends it (decrypted), or None.

        Needs ``personal_api_key`` (a personal or project secret key), as in posthog.
        """
        if self.disabled:
            return None
        if not self.options.personal_api_key:
            log.warning("productos: get_remote_config_payload() needs personal_api_key")
            return None
        try:
            return remote_config_payload(
                self.transport, self.options.project_api_key or "",
                self.options.personal_api_key, check_flag_key(key),
                self.options.feature_flags_request_timeout_seconds)
        except Exception as exc:
            self._flag_failed(exc, f"reading the remote config of flag {describe(key)}")
            return None

    @property
    def feature_flags(self) -> Optional[List[Dict[str, Any]]]:
        """The loaded flag definitions, as posthog's attribute of the same name (None before
        the first load). Assigning a list replaces the definitions in force."""
        snap = self._definitions.get()
        if not snap.loaded:
            return None
        raw = snap.raw.get("flags")
        return list(raw) if isinstance(raw, list) else []

    @feature_flags.setter
    def feature_flags(self, flags: Optional[Sequence[Mapping[str, Any]]]) -> None:
        raw = self._definitions.get().raw
        self.set_flag_definitions({
            "flags": list(flags or []),
            "group_type_mapping": dict(raw.get("group_type_mapping") or {}),
            "cohorts": dict(raw.get("cohorts") or {}),
        })
