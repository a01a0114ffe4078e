"""Modal backend: Dict round trips per broker operation (counted on the in-memory stand-ins).

Each modal.Dict call is one network round trip (~5-30 ms from a container), so the
count is what bounds throughput on real Modal. The comparison column converts it at
an assumed 20 ms per round trip.
"""

from __future__ import annotations

import time

from golfq.core.result import Result
from golfq.core.spec import ExperimentSpec

RTT_MS = 20.0


def _calls(fake) -> int:
    return sum(d.calls for d in fake.dicts.values())


def rows(quick: bool) -> list[tuple[str, str, str]]:
    from golfq.workers.modal.config import load_config
    from golfq.workers.modal.dispatch import Dispatcher
    from tests.modal_fakes import FakeModal
    from tests.test_modal_dispatch import FakeSpawner

    batch = 50 if quick else 200
    fake = FakeModal()
    broker = fake.broker("modal://bench")
    out = []

    def measure(what: str, action, per: int = 1):
        before, started = _calls(fake), time.perf_counter()
        action()
        calls = (_calls(fake) - before) / per
        local_us = (time.perf_counter() - started) / per * 1e6
        out.append((what, f"{calls:.1f} calls", f"~{calls * RTT_MS:.0f} ms at {RTT_MS:g} ms/RTT; {local_us:.0f} us local"))

    measure("submit 1 spec", lambda: broker.submit([ExperimentSpec(pool="h100", seed=0)]))
    measure(f"submit {batch} specs (per spec)",
            lambda: broker.submit([ExperimentSpec(pool="h100", seed=s) for s in range(1, batch + 1)]), batch)
    leases = []
    measure("claim", lambda: leases.append(broker.claim("h100", "w", lease_seconds=900)))
    measure("heartbeat (shortens the start-up lease: locked)", lambda: broker.heartbeat(leases[0], 120))
    measure("heartbeat (extends: lock-free)", lambda: broker.heartbeat(leases[0], 120))
    lease = leases[0]
    result = Result(spec_id=lease.job_id, attempt=1, status="succeeded", val_bpb=1.2, artifact_bytes=10**6,
                    train_seconds=60.0)
    measure("complete (folds the front)", lambda: broker.complete(lease, result))
    spawner = FakeSpawner()
    dispatcher = Dispatcher(broker, spawner, load_config())
    measure("dispatcher pass spawning 8 h100 calls (per call)", dispatcher.run_once, 8)
    measure("idle dispatcher pass (8 running)", dispatcher.run_once)
    measure("events(after=0, limit=1000)", lambda: broker.events(0, 1000))
    return out
