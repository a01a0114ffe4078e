"""Modal backend: round trips per broker operation (counted on the stand-ins in tests/modal_fakes.py).

Each modal.Dict, Queue or Function call is one network round trip (20-100 ms from a
laptop, less from a container), so the count is what bounds latency on real Modal.
Every count includes reading the entries other writers committed since the process
last looked (here: none, one process), and the Queue wake-ups a commit sends. The
end-to-end figures at real latency are in bench/elastic.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from golfq.core.result import Result
from golfq.core.spec import ExperimentSpec

RTT_MS = 30.0


def rows(quick: bool) -> list[tuple[str, str, str]]:
    from golfq.workers.modal.config import load_config
    from golfq.workers.modal.dispatch import Dispatcher
    from tests.modal_fakes import FakeModal
    from tests.test_modal_dispatch import FakeSpawner

    batch = 1000 if quick else 10_000
    fake = FakeModal()
    broker = fake.broker("modal://bench")
    worker = fake.broker("modal://bench")
    broker.view()
    out = []

    def measure(what: str, action: Callable[[], object], per: int = 1) -> None:
        before, started = fake.net.calls, time.perf_counter()
        action()
        calls = (fake.net.calls - before) / per
        local_us = (time.perf_counter() - started) / per * 1e6
        note = f"~{calls * RTT_MS:,.0f} ms at {RTT_MS:g} ms/call; {local_us:,.0f} us local"
        out.append((what, f"{calls:.1f} calls", note))

    measure("submit 1 spec", lambda: broker.submit([ExperimentSpec(pool="h100", seed=0)]))
    measure(f"submit {batch:,} specs (the whole batch)",
            lambda: broker.submit([ExperimentSpec(pool="h100", seed=s) for s in range(1, batch + 1)]))
    leases = []
    measure("claim", lambda: leases.append(broker.claim("h100", "w", lease_seconds=900)))
    worker.view()
    measure("first heartbeat of a lease (a commit: start)", lambda: worker.heartbeat(leases[0], 120))
    measure("later heartbeat (own key + revocation marker)", lambda: worker.heartbeat(leases[0], 120))
    lease = leases[0]
    result = Result(spec_id=lease.job_id, attempt=1, status="succeeded", val_bpb=1.2, artifact_bytes=10**6,
                    train_seconds=60.0)
    measure("complete (folds the front)", lambda: worker.complete(lease, result))
    measure(f"cancel {batch:,} jobs", lambda: broker.cancel([ExperimentSpec(pool="h100", seed=s).id
                                                             for s in range(1, batch + 1)]))
    broker.submit([ExperimentSpec(pool="h100", seed=s, tags=("x",)) for s in range(8)])
    spawner = FakeSpawner()
    dispatcher = Dispatcher(broker, spawner, load_config())
    measure("dispatcher pass spawning 8 h100 calls (+ 8 spawns)", dispatcher.run_once)
    measure("idle dispatcher pass (8 running)", dispatcher.run_once)
    measure("get", lambda: broker.get(lease.job_id))
    measure(f"list ({batch + 9:,} jobs)", broker.list)
    measure("events(after=0, limit=1000)", lambda: broker.events(0, 1000))
    measure("checkpoint (pages + snapshot, Dict and Volume)", broker.checkpoint)
    return out
