"""The fault matrix: each failure mode, with and without the spool, against a real server.

For every scenario: count delivered (by uuid), duplicates and drops by reason, check that
the books balance, and that nothing is lost where the policy promises it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Dict

import pytest

import productos

try:
    from tests.faults import HANG, PASS, REFUSE, FaultGate
except ModuleNotFoundError:  # pragma: no cover - plain `pytest` from the tests folder
    from faults import HANG, PASS, REFUSE, FaultGate  # type: ignore

N_EVENTS = 500


def outage(server: Any, gate: FaultGate) -> None:
    server.set_down(True)
    threading.Timer(1.0, server.set_down, args=(False,)).start()


def gate_fault(mode: str) -> Callable[[Any, FaultGate], None]:
    def apply(server: Any, gate: FaultGate) -> None:
        gate.set_mode(mode)
        threading.Timer(1.5, gate.set_mode, args=(PASS,)).start()
    return apply


SCENARIOS: Dict[str, Callable[[Any, FaultGate], None]] = {
    "20% 503": lambda s, g: s.fail_rate(p503=0.2, seed=11),
    "10% 429 + Retry-After": lambda s, g: s.fail_rate(p429=0.1, retry_after=0.1, seed=12),
    "503 after storing (lost reply)": lambda s, g: s.fail_rate(p_store_then_503=0.2, seed=13),
    "down 1 s then up": outage,
    "slow endpoint (200 ms)": lambda s, g: s.set_delay(0.2),
    "connection resets": lambda s, g: s.fail_rate(p_drop=0.2, seed=14),
    "endpoint refuses 1.5 s then up": gate_fault(REFUSE),
    "endpoint hangs 1.5 s then up": gate_fault(HANG),
}


@pytest.mark.parametrize("spool", [False, True], ids=["memory", "spool"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_fault_matrix(live_server, tmp_path, scenario, spool):
    gate = FaultGate(live_server.port)
    SCENARIOS[scenario](live_server, gate)
    options: Dict[str, Any] = {"retry_base_delay": 0.05, "retry_max_delay": 0.3,
                               "max_retries": 12, "flush_at": 50, "max_batch_size": 100,
                               "timeout": 0.5}
    if spool:
        options["spool_path"] = str(tmp_path / "spool.db")
    client = productos.Client("phc_matrix", host=gate.url, **options)
    try:
        uuids = {client.capture("matrix", distinct_id=str(i), properties={"i": i})
                 for i in range(N_EVENTS)}
        deadline = time.monotonic() + 30
        while client.stats()["sent"] < N_EVENTS and time.monotonic() < deadline:
            client.flush(5)
        stats = client.stats()
    finally:
        client.shutdown(10)
        gate.close()
    got = live_server.uuids()
    delivered = set(got) & uuids
    duplicates = len(got) - len(set(got))
    assert None not in uuids and len(uuids) == N_EVENTS
    assert stats["captured"] == (stats["sent"] + stats["queued"] + stats["in_flight"]
                                 + stats["spooled"] + stats["dropped_total"]
                                 + stats["filtered"]), stats
    # the retry budget outlasts every scenario: nothing may be lost
    assert len(delivered) == N_EVENTS, (scenario, stats)
    assert stats["dropped_total"] == 0
    if "lost reply" not in scenario:
        assert duplicates == 0  # only a reply lost after storing may resend (same uuid)
