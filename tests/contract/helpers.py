"""Small builders shared by the contract tests (backend-agnostic: Broker protocol only)."""

from __future__ import annotations

import hashlib

from golfq.core.broker import Broker
from golfq.core.events import Event, EventKind
from golfq.core.job import Lease
from golfq.core.pareto import Front, fold, observation
from golfq.core.result import FailureKind, Result
from golfq.core.spec import Budget, ExperimentSpec, Retries


def spec(seed: int = 1, pool: str = "cpu", priority: int = 0, tags: tuple[str, ...] = (), name: str = "",
         retries: Retries | None = None, **env: str) -> ExperimentSpec:
    budget = Budget(retries=retries) if retries is not None else Budget()
    return ExperimentSpec(name=name, pool=pool, seed=seed, priority=priority, tags=tags, budget=budget, env=env)


def scores(job_id: str, attempt: int) -> tuple[float, int, float]:
    """Deterministic but varied (val_bpb, artifact_bytes, train_seconds) for one attempt."""
    digest = hashlib.sha256(f"{job_id}#{attempt}".encode()).digest()
    return 1.0 + digest[0] / 256, 1_000_000 + digest[1] * 50_000, 100.0 + digest[2]


def success(lease: Lease, val_bpb: float | None = None, artifact_bytes: int | None = None,
            train_seconds: float | None = None) -> Result:
    bpb, size, seconds = scores(lease.job_id, lease.attempt)
    return Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", worker_id=lease.worker_id,
                  val_bpb=bpb if val_bpb is None else val_bpb,
                  artifact_bytes=size if artifact_bytes is None else artifact_bytes,
                  train_seconds=seconds if train_seconds is None else train_seconds)


def failure(lease: Lease, kind: FailureKind = FailureKind.USER, error: str = "exit 1") -> Result:
    return Result(spec_id=lease.job_id, attempt=lease.attempt, status="failed", failure=kind, error=error,
                  worker_id=lease.worker_id)


def all_events(broker: Broker, page: int = 1000) -> list[Event]:
    """The whole log, read through the cursor the way a follower would."""
    events: list[Event] = []
    while True:
        batch = broker.events(after_seq=events[-1].seq if events else 0, limit=page)
        if not batch:
            return events
        events += batch


def kinds(events: list[Event], job_id: str) -> list[EventKind]:
    return [e.kind for e in events if e.job_id == job_id]


def replayed_front(broker: Broker, track: str) -> Front:
    """The front from scratch: every SUCCEEDED event's result, with its spec from SUBMITTED."""
    events = all_events(broker)
    specs = {e.job_id: e.spec for e in events if e.kind is EventKind.SUBMITTED}
    observations = [observation(e.job_id, specs[e.job_id], e.result) for e in events
                    if e.kind is EventKind.SUCCEEDED and e.result is not None]
    return fold([o for o in observations if o is not None], track)
