"""The job rules as pure functions (golfq.core.lifecycle), tested directly: no store, no clock but the argument."""

from __future__ import annotations

import msgspec
import pytest

from golfq.core import lifecycle
from golfq.core.events import EventKind
from golfq.core.job import CompleteOutcome, Job, JobState, Lease
from golfq.core.result import FailureKind, Result
from golfq.core.spec import Budget, ExperimentSpec, Retries

T0 = 1_800_000_000.0


def queued(retries: Retries | None = None) -> Job:
    spec = ExperimentSpec(seed=7, budget=Budget(retries=retries or Retries()))
    job, events = lifecycle.new_job(spec, T0, order=3)
    assert [e.kind for e in events] == [EventKind.SUBMITTED] and events[0].spec == spec and events[0].seq == 0
    return job


def claimed(job: Job | None = None, now: float = T0 + 1, worker: str = "w") -> tuple[Job, Lease]:
    job, lease, events = lifecycle.claim(job or queued(), worker, 60.0, now)
    assert [e.kind for e in events] == [EventKind.CLAIMED] and events[0].worker_id == worker
    return job, lease


def result(lease: Lease, status: str = "succeeded", **fields) -> Result:
    return Result(spec_id=lease.job_id, attempt=lease.attempt, status=status, **fields)


def kinds(events) -> list[EventKind]:
    return [e.kind for e in events]


def test_a_new_job_is_queued_under_its_spec_id_and_order():
    job = queued()
    assert (job.state, job.attempt, job.order, job.id) == (JobState.QUEUED, 0, 3, job.spec.id)
    assert job.submitted_at == job.updated_at == T0


def test_a_claim_leases_the_next_attempt_with_a_deadline_and_only_from_queued():
    job, lease = claimed()
    assert (job.state, job.attempt, job.worker_id, job.lease_deadline) == (JobState.LEASED, 1, "w", T0 + 61)
    assert (lease.attempt, lease.deadline, lease.spec) == (1, T0 + 61, job.spec)
    with pytest.raises(ValueError, match="leased, not queued"):
        lifecycle.claim(job, "other", 60.0, T0 + 2)


def test_a_heartbeat_extends_only_the_lease_it_holds():
    job, lease = claimed()
    extended = lifecycle.heartbeat(job, lease, 60.0, T0 + 30)
    assert extended is not None and extended.lease_deadline == T0 + 90
    stranger = msgspec.structs.replace(lease, worker_id="someone else")
    assert lifecycle.heartbeat(job, stranger, 60.0, T0 + 30) is None
    assert lifecycle.heartbeat(job, msgspec.structs.replace(lease, attempt=2), 60.0, T0 + 30) is None


def test_complete_counts_once_then_is_a_duplicate_and_a_stale_attempt_is_superseded():
    job, lease = claimed()
    done, events, outcome = lifecycle.complete(job, lease, result(lease, val_bpb=1.2), T0 + 5)
    assert outcome is CompleteOutcome.COUNTED and done.state is JobState.SUCCEEDED and done.result.val_bpb == 1.2
    assert kinds(events) == [EventKind.SUCCEEDED] and done.lease_deadline is None
    again, events, outcome = lifecycle.complete(done, lease, result(lease, val_bpb=1.2), T0 + 6)
    assert outcome is CompleteOutcome.DUPLICATE and again is done and events == []
    old = msgspec.structs.replace(lease, attempt=1, worker_id="late")
    requeued, _ = lifecycle.requeue(msgspec.structs.replace(done, state=JobState.FAILED), T0 + 7)
    running, lease2 = claimed(requeued, T0 + 8)
    same, events, outcome = lifecycle.complete(running, old, result(old), T0 + 9)
    assert outcome is CompleteOutcome.SUPERSEDED and same is running
    assert kinds(events) == [EventKind.SUPERSEDED] and events[0].attempt == 1 and events[0].result is not None


def test_complete_refuses_a_result_for_another_attempt():
    job, lease = claimed()
    with pytest.raises(ValueError, match="result is for"):
        lifecycle.complete(job, lease, Result(spec_id=job.id, attempt=2, status="succeeded"), T0 + 5)


def test_a_failed_result_counts_as_a_failure_of_its_class():
    job, lease = claimed(queued(Retries(user=0)))
    failed, events, outcome = lifecycle.complete(job, lease, result(lease, "failed", error="exit 1",
                                                                    failure=FailureKind.USER), T0 + 5)
    assert outcome is CompleteOutcome.COUNTED and failed.state is JobState.FAILED and failed.error == "exit 1"


@pytest.mark.parametrize(("kind", "budget", "ends"), [
    (FailureKind.USER, Retries(user=0), JobState.FAILED),  # the experiment is at fault
    (FailureKind.INFRA, Retries(infra=0), JobState.DEAD),  # the system gave up
    (FailureKind.TIMEOUT, Retries(timeout=0), JobState.DEAD),
])
def test_each_failure_class_has_its_own_budget_and_end(kind, budget, ends):
    job, lease = claimed(queued(budget))
    gone, events = lifecycle.fail(job, lease, "boom", kind, T0 + 5)
    assert gone.state is ends and gone.failures == {kind.value: 1} and gone.error == "boom"
    assert kinds(events) == ([EventKind.FAILED, EventKind.DEAD] if ends is JobState.DEAD else [EventKind.FAILED])
    retried, events = lifecycle.fail(*claimed(queued(Retries(**{kind.value: 1}))), "boom", kind, T0 + 5)
    assert retried.state is JobState.QUEUED and retried.worker_id == "" and retried.lease_deadline is None
    assert kinds(events) == [EventKind.FAILED, EventKind.REQUEUED]


def test_budgets_count_per_class_across_attempts():
    job = queued(Retries(infra=1, user=1))
    job, _ = lifecycle.fail(*claimed(job), "lost", FailureKind.INFRA, T0 + 2)
    job, _ = lifecycle.fail(*claimed(job, T0 + 3), "exit 1", FailureKind.USER, T0 + 4)
    assert job.state is JobState.QUEUED and job.failures == {"infra": 1, "user": 1} and job.attempt == 2
    job, _ = lifecycle.fail(*claimed(job, T0 + 5), "lost", FailureKind.INFRA, T0 + 6)
    assert job.state is JobState.DEAD and job.failures == {"infra": 2, "user": 1}


def test_a_late_failure_is_superseded_and_changes_nothing():
    job, lease = claimed()
    done, _, _ = lifecycle.complete(job, lease, result(lease), T0 + 5)
    same, events = lifecycle.fail(done, lease, "late", FailureKind.INFRA, T0 + 6)
    assert same is done and kinds(events) == [EventKind.SUPERSEDED] and events[0].failure is FailureKind.INFRA


def test_expire_reaps_only_a_lease_past_its_deadline():
    job, _ = claimed()
    assert lifecycle.expire(job, T0 + 60) == (job, [])  # deadline T0 + 61
    assert not lifecycle.is_expired(job, T0 + 60) and lifecycle.is_expired(job, T0 + 61)
    reaped, events = lifecycle.expire(job, T0 + 61)
    assert reaped.state is JobState.QUEUED and reaped.failures == {"infra": 1}
    assert "lease expired (worker w stopped heartbeating)" in reaped.error
    assert kinds(events) == [EventKind.FAILED, EventKind.REQUEUED]
    assert lifecycle.expire(queued(), T0 + 10**6)[1] == []


def test_cancel_ends_queued_and_leased_jobs_only():
    cancelled, events = lifecycle.cancel(queued(), T0 + 1)
    assert cancelled.state is JobState.CANCELLED and kinds(events) == [EventKind.CANCELLED]
    running, _ = claimed()
    assert lifecycle.cancel(running, T0 + 2)[0].state is JobState.CANCELLED
    assert lifecycle.cancel(cancelled, T0 + 3) == (cancelled, [])


def test_requeue_brings_back_finished_jobs_with_fresh_budgets_but_never_a_success():
    job, lease = claimed(queued(Retries(user=0)))
    failed, _ = lifecycle.fail(job, lease, "exit 1", FailureKind.USER, T0 + 2)
    back, events = lifecycle.requeue(failed, T0 + 3)
    assert back.state is JobState.QUEUED and back.failures == {} and back.error is None and back.attempt == 1
    assert kinds(events) == [EventKind.REQUEUED]
    done, _, _ = lifecycle.complete(*claimed(back, T0 + 4), result(Lease(
        job_id=back.id, attempt=2, worker_id="w", pool="cpu", deadline=0.0, spec=back.spec)), T0 + 5)
    assert done.state is JobState.SUCCEEDED and lifecycle.requeue(done, T0 + 6) == (done, [])
    assert lifecycle.requeue(queued(), T0)[1] == []


def test_a_stop_ends_the_attempt_in_its_own_state_keeping_the_result():
    job, lease = claimed()
    partial = result(lease, "failed", gpu_seconds=30.0)
    stopped, events = lifecycle.stop(job, lease, "median rule", T0 + 5, partial)
    assert stopped.state is JobState.STOPPED and stopped.state.terminal and stopped.result == partial
    assert stopped.error == "median rule" and kinds(events) == [EventKind.STOPPED]
    assert lifecycle.requeue(stopped, T0 + 6)[0].state is JobState.QUEUED
    same, events = lifecycle.stop(stopped, lease, "again", T0 + 7)
    assert same is stopped and kinds(events) == [EventKind.SUPERSEDED]


def test_a_release_queues_the_job_again_without_counting_a_failure():
    job, lease = claimed(queued(Retries(infra=0)))
    spent = result(lease, "released", gpu_seconds=12.0)
    released, events = lifecycle.release(job, lease, "worker stopped", T0 + 5, spent)
    assert released.state is JobState.QUEUED and released.failures == {} and released.worker_id == ""
    assert released.attempt == 1 and released.lease_deadline is None and released.error == "worker stopped"
    assert kinds(events) == [EventKind.REQUEUED] and events[0].result == spent and events[0].failure is None
    again, lease2 = claimed(released, T0 + 6)
    assert lease2.attempt == 2
    same, late = lifecycle.release(again, lease, "late", T0 + 7)  # the old attempt: fenced off
    assert same is again and kinds(late) == [EventKind.SUPERSEDED] and late[0].attempt == 1


def test_pool_events_name_the_pool_alone():
    event = lifecycle.pool_event(EventKind.DRAINED, "h100", T0)
    assert (event.kind, event.pool, event.job_id, event.seq) == (EventKind.DRAINED, "h100", "", 0)


def test_an_infra_retry_resumes_a_user_retry_does_not_and_requeue_chooses():
    job, lease = claimed(queued(Retries(infra=2, user=2)))
    assert not lease.resume
    preempted, _ = lifecycle.fail(job, lease, "preempted", FailureKind.INFRA, T0 + 2)
    again, lease, _ = lifecycle.claim(preempted, "w", 60, T0 + 3)
    assert preempted.resume and lease.resume and lease.attempt == 2
    crashed, _ = lifecycle.fail(again, lease, "exit 1", FailureKind.USER, T0 + 4)
    assert crashed.state is JobState.QUEUED and not crashed.resume
    job, lease = claimed(queued(Retries(user=0)))
    failed, _ = lifecycle.fail(job, lease, "exit 1", FailureKind.USER, T0 + 2)
    assert lifecycle.requeue(failed, T0 + 3, resume=True)[0].resume
    assert not lifecycle.requeue(failed, T0 + 3)[0].resume
