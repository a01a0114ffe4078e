"""Claim order, pool isolation, blocking claims, drain and resume."""

from __future__ import annotations

import time

from golfq.core.events import EventKind
from golfq.core.job import CompleteOutcome, JobState
from tests.contract.helpers import all_events, spec, success


def claim_all(broker, pool: str) -> list[str]:
    ids = []
    while (lease := broker.claim(pool, "w")) is not None:
        ids.append(lease.job_id)
    return ids


def test_higher_priority_first_then_fifo(broker, clock):
    low, high_a = spec(seed=1, priority=-5), spec(seed=2, priority=10)
    mid, high_b = spec(seed=3), spec(seed=4, priority=10)
    broker.submit([low, high_a])
    clock.advance(1)
    broker.submit([mid, high_b])
    assert claim_all(broker, "cpu") == [high_a.id, high_b.id, mid.id, low.id]


def test_pools_are_isolated(broker):
    cpu, gpu = spec(seed=1, pool="cpu"), spec(seed=1, pool="h100")
    broker.submit([cpu, gpu])
    assert claim_all(broker, "h100x8") == []
    assert claim_all(broker, "h100") == [gpu.id]
    assert claim_all(broker, "cpu") == [cpu.id]


def test_claim_returns_a_fenced_lease(broker, clock):
    job = broker.submit([spec(seed=1)])[0]
    lease = broker.claim("cpu", "worker-1", lease_seconds=30)
    assert (lease.job_id, lease.attempt, lease.worker_id, lease.pool) == (job.id, 1, "worker-1", "cpu")
    assert lease.deadline == clock.now + 30 and lease.spec == job.spec
    stored = broker.get(job.id)
    assert (stored.state, stored.attempt, stored.worker_id, stored.lease_deadline) == (JobState.LEASED, 1, "worker-1",
                                                                                      lease.deadline)
    assert broker.claim("cpu", "worker-2") is None  # a leased job is not handed out twice


def test_claim_on_an_empty_pool_waits_at_most_the_timeout(broker):
    started = time.monotonic()
    assert broker.claim("cpu", "w", timeout=0.3) is None
    waited = time.monotonic() - started
    assert 0.25 <= waited < 5.0


def test_draining_refuses_new_claims_but_leased_jobs_finish(broker):
    first, second = broker.submit([spec(seed=1), spec(seed=2)])
    lease = broker.claim("cpu", "w")
    broker.submit([spec(seed=1, pool="h100")])
    broker.drain("cpu")
    assert broker.stats().pools["cpu"].draining
    assert broker.claim("cpu", "w") is None
    assert broker.claim("h100", "w") is not None  # other pools carry on
    assert broker.heartbeat(lease)
    assert broker.complete(lease, success(lease)) is CompleteOutcome.COUNTED
    assert broker.get(first.id).state is JobState.SUCCEEDED
    assert broker.get(second.id).state is JobState.QUEUED
    broker.resume("cpu")
    assert not broker.stats().pools["cpu"].draining
    assert broker.claim("cpu", "w").job_id == second.id
    pool_events = [(e.kind, e.pool) for e in all_events(broker) if not e.job_id]
    assert pool_events == [(EventKind.DRAINED, "cpu"), (EventKind.RESUMED, "cpu")]
