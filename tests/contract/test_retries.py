"""Retry budgets per failure class, dead letter, requeue, cancel."""

from __future__ import annotations

import pytest

from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.spec import Retries
from tests.contract.helpers import all_events, kinds, spec, success


def fail_until_final(broker, clock, kind: FailureKind) -> int:
    """Fail every attempt with this class until the job stops coming back; return the attempts."""
    attempts = 0
    while (lease := broker.claim("cpu", "w", lease_seconds=10)) is not None:
        attempts += 1
        if kind is FailureKind.INFRA:
            clock.advance(11)
            broker.reap()
        else:
            broker.fail(lease, f"{kind.value} #{attempts}", kind)
    return attempts


@pytest.mark.parametrize(("kind", "attempts", "final"), [
    (FailureKind.INFRA, 4, JobState.DEAD),  # default budgets: infra 3 retries, timeout 1, user 0
    (FailureKind.TIMEOUT, 2, JobState.DEAD),
    (FailureKind.USER, 1, JobState.FAILED),
])
def test_default_budget_of_each_class(broker, clock, kind, attempts, final):
    job = broker.submit([spec()])[0]
    assert fail_until_final(broker, clock, kind) == attempts
    done = broker.get(job.id)
    assert done.state is final and done.failures == {kind.value: attempts} and done.error
    events = kinds(all_events(broker), job.id)
    assert events.count(EventKind.FAILED) == attempts and events.count(EventKind.REQUEUED) == attempts - 1
    assert events[-1] is (EventKind.DEAD if final is JobState.DEAD else EventKind.FAILED)


def test_budgets_are_separate_per_class(broker, clock):
    job = broker.submit([spec(retries=Retries(infra=1, timeout=1, user=1))])[0]
    for kind in (FailureKind.INFRA, FailureKind.TIMEOUT, FailureKind.USER):
        lease = broker.claim("cpu", "w")
        assert broker.fail(lease, "once", kind) is JobState.QUEUED
    assert broker.get(job.id).failures == {"infra": 1, "timeout": 1, "user": 1}
    lease = broker.claim("cpu", "w")
    assert broker.fail(lease, "twice", FailureKind.TIMEOUT) is JobState.DEAD


def test_requeue_by_id_gives_a_fresh_budget(broker, clock):
    dead, other = broker.submit([spec(seed=1, retries=Retries(infra=0)), spec(seed=2)])
    fail_until_final(broker, clock, FailureKind.INFRA)
    assert broker.get(dead.id).state is JobState.DEAD
    assert broker.requeue(ids=[dead.id, "zzzzzzzzzzzzzzzz"]) == [dead.id]
    again = broker.get(dead.id)
    assert again.state is JobState.QUEUED and again.failures == {} and again.error is None
    assert kinds(all_events(broker), dead.id)[-1] is EventKind.REQUEUED
    lease = broker.claim("cpu", "w")
    assert (lease.job_id, lease.attempt) == (dead.id, 2)  # attempts keep counting: fencing stays unique
    assert broker.fail(lease, "again", FailureKind.INFRA) is JobState.DEAD
    assert broker.get(other.id).state is JobState.DEAD


def test_requeue_by_state_leaves_live_and_succeeded_jobs_alone(broker, clock):
    jobs = broker.submit([spec(seed=i) for i in range(5)])
    user = broker.claim("cpu", "w")
    broker.fail(user, "exit 1", FailureKind.USER)  # -> failed
    ok = broker.claim("cpu", "w")
    broker.complete(ok, success(ok))  # -> succeeded
    broker.cancel([jobs[2].id])  # -> cancelled
    running = broker.claim("cpu", "w")  # -> leased
    assert broker.requeue(states=[JobState.FAILED, JobState.CANCELLED]) == [jobs[0].id, jobs[2].id]
    assert broker.requeue(ids=[ok.job_id, running.job_id, jobs[4].id]) == []
    states = [broker.get(j.id).state for j in jobs]
    assert states == [JobState.QUEUED, JobState.SUCCEEDED, JobState.QUEUED, JobState.LEASED, JobState.QUEUED]


def test_cancel_queued_and_leased_but_not_finished(broker):
    queued, leased, finished = broker.submit([spec(seed=1), spec(seed=2), spec(seed=3)])
    broker.cancel([queued.id])
    lease = broker.claim("cpu", "w")
    assert lease.job_id == leased.id
    done = broker.claim("cpu", "w")
    broker.complete(done, success(done))
    assert broker.cancel([queued.id, leased.id, finished.id, "zzzzzzzzzzzzzzzz"]) == [leased.id]
    assert [broker.get(j.id).state for j in (queued, leased, finished)] == [
        JobState.CANCELLED, JobState.CANCELLED, JobState.SUCCEEDED]
    assert broker.claim("cpu", "w") is None
    events = all_events(broker)
    assert kinds(events, queued.id) == [EventKind.SUBMITTED, EventKind.CANCELLED]
    assert kinds(events, leased.id)[-1] is EventKind.CANCELLED


def test_the_next_lease_resumes_after_an_infra_failure_or_requeue_resume_only(broker, clock):
    job = broker.submit([spec(retries=Retries(infra=1, user=1))])[0]
    lease = broker.claim("cpu", "w", lease_seconds=10)
    assert not lease.resume
    clock.advance(11)
    broker.reap()  # the worker vanished: an infra failure, so the run so far stands
    lease = broker.claim("cpu", "w", lease_seconds=10)
    assert lease.resume and lease.attempt == 2
    broker.fail(lease, "exit 1", FailureKind.USER)  # the experiment's own failure: start afresh
    lease = broker.claim("cpu", "w", lease_seconds=10)
    assert not lease.resume
    broker.fail(lease, "exit 1", FailureKind.USER)
    assert broker.get(job.id).state is JobState.FAILED
    assert broker.requeue([job.id], resume=True) == [job.id]
    assert broker.claim("cpu", "w", lease_seconds=10).resume
    clock.advance(11)
    broker.reap()
    broker.cancel([job.id])
    assert broker.requeue([job.id]) == [job.id]  # a plain requeue starts from zero
    assert not broker.claim("cpu", "w", lease_seconds=10).resume


def test_a_released_attempt_is_queued_again_and_never_counts_as_a_failure(broker, clock):
    job = broker.submit([spec(retries=Retries(infra=0))])[0]
    for attempt in range(1, 6):  # five graceful worker stops: more than any budget
        lease = broker.claim("cpu", f"w{attempt}")
        assert (lease.job_id, lease.attempt) == (job.id, attempt)
        assert lease.resume == (attempt > 1)  # a released run goes on from what it saved on the way down
        assert broker.release(lease, "released: worker stopped") is JobState.QUEUED
        again = broker.get(job.id)
        assert again.state is JobState.QUEUED and again.failures == {} and again.worker_id == ""
        assert again.error == "released: worker stopped"
    assert broker.release(lease, "late") is JobState.QUEUED  # the same attempt again: fenced off, no change
    events = kinds(all_events(broker), job.id)
    assert EventKind.FAILED not in events and EventKind.DEAD not in events
    assert events.count(EventKind.REQUEUED) == 5 and events[-1] is EventKind.SUPERSEDED
    last = broker.claim("cpu", "w")
    broker.complete(last, success(last))
    assert broker.get(job.id).state is JobState.SUCCEEDED and broker.get(job.id).attempt == 6
