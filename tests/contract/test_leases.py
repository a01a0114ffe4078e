"""Leases: heartbeats, expiry and re-delivery, fencing of superseded attempts, idempotent completion."""

from __future__ import annotations

import pytest

from golfq.core.events import EventKind
from golfq.core.job import CompleteOutcome, JobState
from golfq.core.result import FailureKind, Result
from tests.contract.helpers import all_events, failure, kinds, spec, success


def test_heartbeat_extends_the_lease(broker, clock):
    job = broker.submit([spec()])[0]
    lease = broker.claim("cpu", "w", lease_seconds=10)
    clock.advance(8)
    assert broker.heartbeat(lease, lease_seconds=10)
    assert broker.get(job.id).lease_deadline == clock.now + 10
    clock.advance(8)  # past the first deadline, inside the extended one
    assert broker.reap() == []
    assert broker.get(job.id).state is JobState.LEASED


def test_expired_lease_is_reaped_and_delivered_again(broker, clock):
    job = broker.submit([spec()])[0]
    first = broker.claim("cpu", "w1", lease_seconds=10)
    clock.advance(9.5)
    assert broker.reap() == []
    clock.advance(1)
    assert broker.reap() == [job.id]
    assert broker.reap() == []
    reaped = broker.get(job.id)
    assert reaped.state is JobState.QUEUED and reaped.failures == {"infra": 1} and reaped.error
    assert not broker.heartbeat(first)  # the worker learns to stop
    second = broker.claim("cpu", "w2", lease_seconds=10)
    assert (second.job_id, second.attempt) == (job.id, 2)
    assert kinds(all_events(broker), job.id) == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.FAILED,
                                                  EventKind.REQUEUED, EventKind.CLAIMED]
    failed = [e for e in all_events(broker) if e.kind is EventKind.FAILED]
    assert (failed[0].attempt, failed[0].failure) == (1, FailureKind.INFRA)


def test_late_result_of_a_superseded_attempt_is_kept_but_not_counted(broker, clock):
    job = broker.submit([spec()])[0]
    stale = broker.claim("cpu", "w1", lease_seconds=10)
    clock.advance(11)
    broker.reap()
    fresh = broker.claim("cpu", "w2", lease_seconds=10)
    late = success(stale, val_bpb=0.5)  # better than anything: it must still not count
    assert broker.complete(stale, late) is CompleteOutcome.SUPERSEDED
    assert broker.get(job.id).state is JobState.LEASED and broker.get(job.id).attempt == 2
    assert broker.complete(fresh, success(fresh, val_bpb=1.5)) is CompleteOutcome.COUNTED
    assert broker.complete(stale, late) is CompleteOutcome.SUPERSEDED  # still not counted after the fact
    done = broker.get(job.id)
    assert done.state is JobState.SUCCEEDED and done.result.attempt == 2 and done.result.val_bpb == 1.5
    events = all_events(broker)
    superseded = [e for e in events if e.kind is EventKind.SUPERSEDED]
    assert [(e.attempt, e.worker_id, e.result.val_bpb) for e in superseded] == [(1, "w1", 0.5), (1, "w1", 0.5)]
    assert [e.attempt for e in events if e.kind is EventKind.SUCCEEDED] == [2]
    assert [p.val_bpb for p in broker.front("cpu").points] == [1.5]


def test_late_failure_of_a_superseded_attempt_changes_nothing(broker, clock):
    job = broker.submit([spec()])[0]
    stale = broker.claim("cpu", "w1", lease_seconds=10)
    clock.advance(11)
    broker.reap()
    fresh = broker.claim("cpu", "w2")
    assert broker.fail(stale, "boom", FailureKind.USER) is JobState.LEASED
    current = broker.get(job.id)
    assert (current.attempt, current.worker_id, current.failures) == (2, "w2", {"infra": 1})
    assert broker.heartbeat(fresh)
    assert all_events(broker)[-1].kind is EventKind.SUPERSEDED


def test_completion_is_idempotent_per_attempt(broker):
    job = broker.submit([spec()])[0]
    lease = broker.claim("cpu", "w")
    result = success(lease)
    assert broker.complete(lease, result) is CompleteOutcome.COUNTED
    assert broker.complete(lease, result) is CompleteOutcome.DUPLICATE
    assert kinds(all_events(broker), job.id).count(EventKind.SUCCEEDED) == 1
    assert broker.front("cpu").results == 1
    assert not broker.heartbeat(lease)


def test_complete_refuses_a_result_for_another_attempt(broker):
    broker.submit([spec()])
    lease = broker.claim("cpu", "w")
    wrong = Result(spec_id=lease.job_id, attempt=lease.attempt + 1, status="succeeded")
    with pytest.raises(ValueError):
        broker.complete(lease, wrong)
    assert broker.get(lease.job_id).state is JobState.LEASED


def test_heartbeat_is_refused_after_cancel(broker):
    job = broker.submit([spec()])[0]
    lease = broker.claim("cpu", "w")
    assert broker.cancel([job.id]) == [job.id]
    assert not broker.heartbeat(lease)
    assert broker.complete(lease, success(lease)) is CompleteOutcome.SUPERSEDED
    assert broker.get(job.id).state is JobState.CANCELLED


def test_failed_result_counts_against_its_class(broker):
    job = broker.submit([spec()])[0]
    lease = broker.claim("cpu", "w")
    assert broker.complete(lease, failure(lease, FailureKind.TIMEOUT)) is CompleteOutcome.COUNTED
    stored = broker.get(job.id)
    assert stored.state is JobState.QUEUED and stored.failures == {"timeout": 1}
