"""Local feature-flag evaluation: the public face of :mod:`productos._flags`.

``parse_definitions(body)`` compiles the body of the definitions endpoint into an immutable
:class:`Snapshot`; ``evaluate(snapshot, key, ctx)`` reproduces the server's result for one flag,
or says precisely why it cannot (an *inconclusive* result, which the caller resolves
remotely). Evaluation does no I/O, no logging, takes no locks and never raises: every outcome,
including an internal error, comes back as a :class:`FlagResult` whose :class:`Reason`
explains the decision condition by condition (:func:`explain` prints it).

When only the value matters, ``evaluate(..., detail=False)`` and ``evaluate_all(...,
detail=False)`` give the same values and reason codes without the explanation or the payload
(``payload_of`` fetches it), and ``evaluate_values`` returns just the values of every flag.

The rules are those of PostHog's flags service as observed through its official Python SDK
(``docs/protocol.md`` §4); the conformance vectors in ``tests/data`` pin them down.
"""

from __future__ import annotations

from typing import Any

from productos._flags.calls import evaluate, evaluate_all, evaluate_values, payload_of
from productos._flags.evaluations import FeatureFlagEvaluations, FlagRecord
from productos._flags.explain import explain
from productos._flags.filters import FilterSpec
from productos._flags.hashing import flag_hash
from productos._flags.results import (
    ConditionTrace,
    EvaluationContext,
    FilterTrace,
    FlagResult,
    InconclusiveReason,
    Reason,
    ReasonCode,
    TraceOutcome,
)
from productos._flags.snapshot import CompiledFlag, Snapshot

__all__ = [
    "CompiledFlag",
    "ConditionTrace",
    "EvaluationContext",
    "FeatureFlagEvaluations",
    "FilterSpec",
    "FilterTrace",
    "FlagRecord",
    "FlagResult",
    "InconclusiveReason",
    "Reason",
    "ReasonCode",
    "Snapshot",
    "TraceOutcome",
    "evaluate",
    "evaluate_all",
    "evaluate_values",
    "explain",
    "flag_hash",
    "parse_definitions",
    "payload_of",
]


def parse_definitions(raw: Any) -> Snapshot:
    """Compile a definitions response body into a Snapshot (see ``_flags.compiler``).

    Bad data never raises: a body that is not an object gives an empty, unloaded snapshot,
    and problems stay with the flag or section they concern.
    """
    # The compiler (the filter compiler, the regex analysis) is loaded by the first parse,
    # not by ``import productos``: a process that evaluates no flag locally never needs it.
    from productos._flags.compiler import parse_definitions as compile_definitions

    return compile_definitions(raw)
