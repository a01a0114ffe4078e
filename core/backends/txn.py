"""The write path every backend shares: read jobs -> golfq.core.lifecycle -> save them and their events, atomically.

A backend supplies two things: `_write(work)`, which runs `work(txn)` as one atomic
step (SQLite: one BEGIN IMMEDIATE transaction; Redis: WATCH on every key the step
reads, then one MULTI/EXEC; Modal: the writer lock and one Dict.update), and the
transaction object it passes, which meets the small JobTxn interface below.
TxnBroker then implements the Broker methods that have the same shape on every
backend. A backend overrides a method where its shape really differs (Redis's
claim follows RQ's delivery tokens; Modal's heartbeat writes a lock-free key).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from golfq.core import lifecycle
from golfq.core.broker import CompleteOutcome, Job, JobState, Lease
from golfq.core.events import Event, EventKind
from golfq.core.pareto import Observation, observation
from golfq.core.result import FailureKind, Result
from golfq.core.spec import ExperimentSpec, SpecError, check_pool

T = TypeVar("T")
Step = Callable[[Job, float], "tuple[Job, list[Event]]"]


class JobTxn(Protocol):
    """What TxnBroker needs from one backend transaction."""

    now: float  # read once, under the backend's lock, so times follow commit order
    events: list[Event]  # appended (and numbered) by the backend in the same atomic step

    def load(self, job_id: str) -> Job | None: ...
    def require(self, job_id: str) -> Job:
        """KeyError when the job does not exist (purged)."""
    def load_many(self, ids: Sequence[str]) -> dict[str, Job]: ...
    def jobs_in(self, states: Sequence[JobState]) -> list[Job]:
        """Every job in one of the states, in submission order."""
    def save(self, old: Job | None, new: Job, events: Iterable[Event]) -> None:
        """Write a transition's outcome (nothing when new is old) and queue its events."""
    def reserve_orders(self, count: int) -> int:
        """The first of `count` fresh FIFO positions."""
    def insert(self, jobs: list[Job]) -> None:
        """Write new jobs (their events are already in `events`)."""
    def draining(self, pool: str) -> bool: ...
    def set_draining(self, pool: str, draining: bool) -> None: ...
    def observe(self, obs: Observation) -> None:
        """Keep a counted success's observation for the track's front."""
    def next_queued(self, pool: str) -> Job | None:
        """The pool's next job by priority, then FIFO (only the base claim asks)."""


class RequireMixin:
    """JobTxn.require over the transaction's own load."""

    def require(self, job_id: str) -> Job:
        job = self.load(job_id)
        if job is None:
            raise KeyError(f"job {job_id}: not found (purged?)")
        return job


def checked(specs: Sequence[ExperimentSpec]) -> tuple[list[ExperimentSpec], list[str]]:
    """The specs and their ids; SpecError before anything is written if one is not a spec."""
    specs = list(specs)
    for spec in specs:
        if not isinstance(spec, ExperimentSpec):
            raise SpecError(f"spec: expected an ExperimentSpec, got {type(spec).__name__}")
        check_pool(spec)
    return specs, [spec.id for spec in specs]


def backoff(waits: int, first: float, cap: float) -> float:
    """The pause before an idle claimer's next look: first, doubling, capped."""
    return min(first * 2 ** min(waits, 30), cap)


class TxnBroker:
    """The Broker methods whose shape is the same on every backend (see the module docstring)."""

    clock: Callable[[], float]
    poll_first, poll_cap = 0.005, 0.02  # an idle claimer's pauses between looks, in seconds

    def _write(self, work: Callable[[Any], T]) -> T:
        raise NotImplementedError

    # -- submit ---------------------------------------------------------------------------------

    def submit(self, specs: Sequence[ExperimentSpec]) -> list[Job]:
        specs, ids = checked(specs)
        return self._write(lambda tx: self._submit_in(tx, specs, ids))

    def _submit_in(self, tx: JobTxn, specs: list[ExperimentSpec], ids: list[str]) -> list[Job]:
        jobs = tx.load_many(list(dict.fromkeys(ids)))
        fresh: dict[str, ExperimentSpec] = {}
        for spec, job_id in zip(specs, ids):
            if job_id not in jobs:
                fresh.setdefault(job_id, spec)  # the first of equal specs in a batch makes the job
        if fresh:
            first = tx.reserve_orders(len(fresh))
            for offset, (job_id, spec) in enumerate(fresh.items()):
                job, events = lifecycle.new_job(spec, tx.now, first + offset, job_id=job_id)
                jobs[job_id] = job
                tx.events.extend(events)
            tx.insert([jobs[job_id] for job_id in fresh])
        return [jobs[job_id] for job_id in ids]

    # -- the lease cycle ------------------------------------------------------------------------

    def claim(self, pool: str, worker_id: str, lease_seconds: float = 60.0, timeout: float = 0.0) -> Lease | None:
        give_up = time.monotonic() + max(timeout, 0.0)
        waits = 0
        while True:
            lease = self._try_claim(pool, worker_id, lease_seconds)
            left = give_up - time.monotonic()
            if lease is not None or left <= 0:
                return lease
            self._wait_for_work(pool, left, waits)
            waits += 1

    def _try_claim(self, pool: str, worker_id: str, lease_seconds: float) -> Lease | None:
        """One look; the write step only when a lock-free read says it is worth it."""
        if not self._worth_claiming(pool):
            return None
        return self._write(lambda tx: self._claim_in(tx, pool, worker_id, lease_seconds))

    def _worth_claiming(self, pool: str) -> bool:
        return True

    def _wait_for_work(self, pool: str, left: float, waits: int) -> None:
        time.sleep(min(backoff(waits, self.poll_first, self.poll_cap), left))

    def _claim_in(self, tx: JobTxn, pool: str, worker_id: str, lease_seconds: float) -> Lease | None:
        self._reap_in(tx)  # claimers re-deliver lost work without a reaper process
        if tx.draining(pool):
            return None
        job = tx.next_queued(pool)
        if job is None:
            return None
        claimed, lease, events = lifecycle.claim(job, worker_id, lease_seconds, tx.now)
        tx.save(job, claimed, events)
        return lease

    def heartbeat(self, lease: Lease, lease_seconds: float = 60.0) -> bool:
        def work(tx: JobTxn) -> bool:
            job = tx.load(lease.job_id)
            extended = lifecycle.heartbeat(job, lease, lease_seconds, tx.now) if job else None
            if extended is None:
                return False
            tx.save(job, extended, ())
            return True

        return self._write(work)

    def complete(self, lease: Lease, result: Result) -> CompleteOutcome:
        def work(tx: JobTxn) -> CompleteOutcome:
            job = tx.require(lease.job_id)
            done, events, outcome = lifecycle.complete(job, lease, result, tx.now)
            tx.save(job, done, events)
            if outcome is CompleteOutcome.COUNTED and done.state is JobState.SUCCEEDED:
                obs = observation(done.id, done.spec, result)
                if obs is not None:
                    tx.observe(obs)
            return outcome

        return self._write(work)

    def fail(self, lease: Lease, error: str, kind: FailureKind, result: Result | None = None) -> JobState:
        def work(tx: JobTxn) -> JobState:
            job = tx.require(lease.job_id)
            failed, events = lifecycle.fail(job, lease, error, FailureKind(kind), tx.now, result)
            tx.save(job, failed, events)
            return failed.state

        return self._write(work)

    def reap(self) -> list[str]:
        return self._write(self._reap_in)

    def _reap_in(self, tx: JobTxn) -> list[str]:
        raise NotImplementedError

    # -- operations -----------------------------------------------------------------------------

    def _transition_each(self, ids: Sequence[str], states: Sequence[JobState], step: Step) -> list[str]:
        """Apply one lifecycle step to the named jobs and to every job in the given states."""
        wanted = [JobState(s) for s in states]

        def work(tx: JobTxn) -> list[str]:
            unique = list(dict.fromkeys(ids))
            named = tx.load_many(unique)
            jobs = [named[job_id] for job_id in unique if job_id in named]
            if wanted:
                jobs += [job for job in tx.jobs_in(wanted) if job.id not in named]
            changed = []
            for job in jobs:
                new, events = step(job, tx.now)
                if new is not job:
                    tx.save(job, new, events)
                    changed.append(job.id)
            return changed

        return self._write(work)

    def cancel(self, ids: Sequence[str]) -> list[str]:
        return self._transition_each(ids, (), lifecycle.cancel)

    def requeue(self, ids: Sequence[str] = (), states: Sequence[JobState] = ()) -> list[str]:
        return self._transition_each(ids, states, lifecycle.requeue)

    def drain(self, pool: str) -> None:
        self._set_draining(pool, True, EventKind.DRAINED)

    def resume(self, pool: str) -> None:
        self._set_draining(pool, False, EventKind.RESUMED)

    def _set_draining(self, pool: str, draining: bool, kind: EventKind) -> None:
        def work(tx: JobTxn) -> None:
            if tx.draining(pool) == draining:
                return  # already so: no event, so the log holds changes only
            tx.set_draining(pool, draining)
            tx.events.append(lifecycle.pool_event(kind, pool, tx.now))

        self._write(work)
