"""Job semantics as pure functions: (job, action, now) -> (new job, events).

Every backend calls these inside its own atomic read-modify-write (a SQLite
transaction, a Redis WATCH/MULTI, the Modal dispatcher's single writer), so the
rules in docs/design.md's "Job semantics" are written exactly once. Events come back
with seq=0; the backend numbers them as it appends them.
"""

from __future__ import annotations

import msgspec

from golfq.core.events import Event, EventKind
from golfq.core.job import CompleteOutcome, Job, JobState, Lease
from golfq.core.result import FailureKind, Result
from golfq.core.spec import ExperimentSpec

Transition = tuple[Job, list[Event]]
_replace = msgspec.structs.replace


def _event(kind: EventKind, job: Job, now: float, **fields) -> Event:
    return Event(seq=0, ts=now, kind=kind, job_id=job.id, pool=job.pool, attempt=job.attempt, **fields)


def new_job(spec: ExperimentSpec, now: float, order: int = 0, job_id: str | None = None) -> Transition:
    """A queued job; pass job_id when the caller already has spec.id (hashing a spec is not free)."""
    job = Job(id=job_id or spec.id, spec=spec, state=JobState.QUEUED, submitted_at=now, updated_at=now, order=order)
    return job, [_event(EventKind.SUBMITTED, job, now, spec=spec)]


def holds(job: Job, lease: Lease) -> bool:
    return job.state is JobState.LEASED and job.attempt == lease.attempt and job.worker_id == lease.worker_id


def claim(job: Job, worker_id: str, lease_seconds: float, now: float) -> tuple[Job, Lease, list[Event]]:
    if job.state is not JobState.QUEUED:
        raise ValueError(f"job {job.id} is {job.state.value}, not queued")
    deadline = now + lease_seconds
    job = _replace(job, state=JobState.LEASED, attempt=job.attempt + 1, worker_id=worker_id,
                   lease_deadline=deadline, updated_at=now)
    lease = Lease(job_id=job.id, attempt=job.attempt, worker_id=worker_id, pool=job.pool, deadline=deadline,
                  spec=job.spec, resume=job.resume)
    return job, lease, [_event(EventKind.CLAIMED, job, now, worker_id=worker_id)]


def heartbeat(job: Job, lease: Lease, lease_seconds: float, now: float) -> Job | None:
    """The extended job, or None when the lease is no longer held."""
    if not holds(job, lease):
        return None
    return _replace(job, lease_deadline=now + lease_seconds, updated_at=now)


def complete(job: Job, lease: Lease, result: Result, now: float) -> tuple[Job, list[Event], CompleteOutcome]:
    if result.spec_id != job.id or result.attempt != lease.attempt:
        raise ValueError(f"result is for {result.spec_id}#{result.attempt}, lease is {job.id}#{lease.attempt}")
    if not holds(job, lease):
        if job.state is JobState.SUCCEEDED and job.result is not None and job.result.attempt == lease.attempt:
            return job, [], CompleteOutcome.DUPLICATE
        superseded = _event(EventKind.SUPERSEDED, job, now, worker_id=lease.worker_id, result=result)
        return job, [msgspec.structs.replace(superseded, attempt=lease.attempt)], CompleteOutcome.SUPERSEDED
    if not result.succeeded:
        job, events = fail(job, lease, result.error or "failed", result.failure or FailureKind.USER, now, result)
        return job, events, CompleteOutcome.COUNTED
    job = _replace(job, state=JobState.SUCCEEDED, result=result, lease_deadline=None, error=None, resume=False,
                   updated_at=now)
    events = [_event(EventKind.SUCCEEDED, job, now, worker_id=lease.worker_id, result=result)]
    return job, events, CompleteOutcome.COUNTED


def fail(job: Job, lease: Lease, error: str, kind: FailureKind, now: float, result: Result | None = None) -> Transition:
    if not holds(job, lease):
        late = _event(EventKind.SUPERSEDED, job, now, worker_id=lease.worker_id, failure=kind, error=error,
                      result=result)
        return job, [msgspec.structs.replace(late, attempt=lease.attempt)]
    return _count_failure(job, error, kind, now, result)


def expire(job: Job, now: float) -> Transition:
    """Reap: a lease past its deadline is an infra failure of that attempt."""
    if not is_expired(job, now):
        return job, []
    why = f"lease expired (worker {job.worker_id} stopped heartbeating)"
    return _count_failure(job, why, FailureKind.INFRA, now, None)


def _count_failure(job: Job, error: str, kind: FailureKind, now: float, result: Result | None) -> Transition:
    failures = {**job.failures, kind.value: job.failures.get(kind.value, 0) + 1}
    budget = getattr(job.spec.budget.retries, kind.value, 0)
    retry = failures[kind.value] <= budget
    next_state = JobState.QUEUED if retry else (JobState.FAILED if kind is FailureKind.USER else JobState.DEAD)
    # An infra failure (preempted, lease lost, worker gone) says nothing against the run so far: go on from it.
    failed = _replace(job, failures=failures, error=error, result=result or job.result, lease_deadline=None,
                      resume=kind is FailureKind.INFRA, updated_at=now)
    events = [_event(EventKind.FAILED, failed, now, worker_id=job.worker_id, failure=kind, error=error, result=result)]
    failed = _replace(failed, state=next_state, worker_id="")
    if next_state is JobState.QUEUED:
        events.append(_event(EventKind.REQUEUED, failed, now, failure=kind))
    elif next_state is JobState.DEAD:
        events.append(_event(EventKind.DEAD, failed, now, failure=kind, error=error))
    return failed, events


def cancel(job: Job, now: float) -> Transition:
    if job.state.terminal:
        return job, []
    job = _replace(job, state=JobState.CANCELLED, lease_deadline=None, updated_at=now)
    return job, [_event(EventKind.CANCELLED, job, now)]


def stop(job: Job, lease: Lease, reason: str, now: float, result: Result | None = None) -> Transition:
    """A stopping rule ended the attempt: its own terminal state, its result (curve, GPU-seconds) kept."""
    if not holds(job, lease):
        late = _event(EventKind.SUPERSEDED, job, now, worker_id=lease.worker_id, error=reason, result=result)
        return job, [msgspec.structs.replace(late, attempt=lease.attempt)]
    job = _replace(job, state=JobState.STOPPED, result=result or job.result, error=reason, lease_deadline=None,
                   worker_id="", updated_at=now)
    return job, [_event(EventKind.STOPPED, job, now, worker_id=lease.worker_id, error=reason, result=result)]


def release(job: Job, lease: Lease, reason: str, now: float, result: Result | None = None) -> Transition:
    """A worker's graceful stop (SIGINT/SIGTERM) gave the attempt back: queued again at once and no failure
    counted, since an operator stopping a worker is no fault of the job. The attempt number has moved on,
    so the released attempt stays fenced off; its result (GPU time spent) goes with the event. The run saved
    its checkpoint on the way down (SIGTERM), so the next attempt goes on from it."""
    if not holds(job, lease):
        late = _event(EventKind.SUPERSEDED, job, now, worker_id=lease.worker_id, error=reason, result=result)
        return job, [msgspec.structs.replace(late, attempt=lease.attempt)]
    # Its result kept as a failed attempt's is: what it cost is found where the Modal dispatcher bills it.
    job = _replace(job, state=JobState.QUEUED, result=result or job.result, error=reason, worker_id="",
                   lease_deadline=None, resume=True, updated_at=now)
    return job, [_event(EventKind.REQUEUED, job, now, worker_id=lease.worker_id, error=reason, result=result)]


REQUEUEABLE = (JobState.FAILED, JobState.DEAD, JobState.CANCELLED, JobState.STOPPED)


def requeue(job: Job, now: float, resume: bool = False) -> Transition:
    """Queue a finished job again with fresh retry budgets (ops requeue and replay); `resume`: its next attempt
    goes on from the job's last checkpoint, else it starts afresh."""
    if job.state not in REQUEUEABLE:
        return job, []
    job = _replace(job, state=JobState.QUEUED, failures={}, error=None, worker_id="", lease_deadline=None,
                   resume=resume, updated_at=now)
    return job, [_event(EventKind.REQUEUED, job, now)]


def pool_event(kind: EventKind, pool: str, now: float) -> Event:
    return Event(seq=0, ts=now, kind=kind, pool=pool)


def is_expired(job: Job, now: float) -> bool:
    return job.state is JobState.LEASED and job.lease_deadline is not None and job.lease_deadline <= now
