"""The whole backend contract: what every storage backend (SQLite, Redis, Modal) implements.

A backend is a subclass of Broker plus a Txn, like Optuna's storages behind `_base.py`:

- `Txn` is one atomic step's view of the store. The backend's `_atomic(step)` runs
  `step(txn)` as one read-modify-write (SQLite: a BEGIN IMMEDIATE transaction; Redis:
  WATCH on every key the step reads, then one MULTI/EXEC; Modal: see its broker) and
  appends, numbered, the events the step queued in `txn.events`, in the same commit.
- `Broker` writes every state change once, here, as lifecycle rules applied inside
  `_atomic`: submit, claim, heartbeat, complete, fail, reap, cancel, requeue, drain
  and resume. A backend supplies the store (`_atomic`, the reads, scripts, purge) and
  may override three hooks: `_worth_claiming` and `_wait_for_work` (how an idle claim
  looks and sleeps) and `_after_commit` (side effects outside the store: RQ's lists,
  Modal's wake-ups).
- The front is kept one way: a counted success appends an Observation in its commit,
  and each process folds the ones it has not seen into its own Reducer (the fold is
  order-independent, so this equals a fold from scratch).

tests/contract/ proves the semantics on every backend.
"""

from __future__ import annotations

import abc
import builtins
import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from golfq.core import budget, lifecycle
from golfq.core.budget import BudgetView, LedgerTxn
from golfq.core.errors import GolfqError
from golfq.core.events import Event, EventKind
from golfq.core.job import CompleteOutcome, Job, JobState, Lease, Stats
from golfq.core.pareto import Front, FrontPoint, Observation, Reducer, observation
from golfq.core.pools import known_pools
from golfq.core.promotion import apply_rule
from golfq.core.result import FailureKind, ProgressPoint, Result
from golfq.core.spec import ExperimentSpec, SpecError, check_pool

T = TypeVar("T")
Step = Callable[[Job, float], "tuple[Job, list[Event]]"]


class BrokerError(GolfqError, RuntimeError):
    """A backend problem the caller can act on (unreachable, bad URL): one line."""


class Txn(LedgerTxn):
    """One atomic step: reads see one state, writes commit together with `events` (and the spend
    ledger's reads and writes, golfq.core.budget.LedgerTxn)."""

    now: float  # read once, under the backend's lock, so times follow commit order
    events: builtins.list[Event]  # appended (and numbered) by the backend in the same commit
    reaped: builtins.list[Lease]  # attempts this step reaped (a backend may tell its runners after the commit)

    @abc.abstractmethod
    def load_many(self, ids: Sequence[str]) -> dict[str, Job]: ...

    @abc.abstractmethod
    def jobs_in(self, states: Sequence[JobState]) -> builtins.list[Job]:
        """Every job in one of the states, in submission order."""

    @abc.abstractmethod
    def expired(self) -> builtins.list[Job]:
        """Leased jobs whose lease deadline is at or before `now`."""

    @abc.abstractmethod
    def next_queued(self, pool: str) -> Job | None:
        """The pool's next job by priority, then FIFO."""

    @abc.abstractmethod
    def queued(self, pool: str, limit: int) -> builtins.list[Job]:
        """The pool's first `limit` queued jobs in claim order (a cap may hold the first ones)."""

    @abc.abstractmethod
    def save(self, old: Job | None, new: Job, events: Iterable[Event]) -> None:
        """Write a transition's outcome (nothing when new is old) and queue its events."""

    @abc.abstractmethod
    def reserve_orders(self, count: int) -> int:
        """The first of `count` fresh FIFO positions."""

    @abc.abstractmethod
    def insert(self, jobs: builtins.list[Job]) -> None:
        """Write new jobs (their events are already in `events`)."""

    @abc.abstractmethod
    def draining(self, pool: str) -> bool: ...

    @abc.abstractmethod
    def set_draining(self, pool: str, draining: bool) -> None: ...

    @abc.abstractmethod
    def observe(self, obs: Observation) -> None:
        """Append a counted success's observation for the fronts."""

    def load(self, job_id: str) -> Job | None:
        return self.load_many([job_id]).get(job_id)

    def require(self, job_id: str) -> Job:
        job = self.load(job_id)
        if job is None:
            raise KeyError(f"job {job_id}: not found (purged?)")
        return job


def backoff(waits: int, first: float, cap: float) -> float:
    """The pause before an idle claimer's next look: first, doubling, capped."""
    return min(first * 2 ** min(waits, 30), cap)


class Broker(abc.ABC):
    """The contract. Public methods are the API; see the module docstring for what a backend supplies."""

    url: str
    clock: Callable[[], float]
    poll_first, poll_cap = 0.005, 0.02  # an idle claimer's pauses between looks, in seconds
    submit_chunk: int | None = None  # specs per atomic step (None: one step for the whole batch)

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.url, self.clock = url, clock
        self._reducer, self._folded = Reducer(), 0
        self._front_lock = threading.Lock()

    # -- what a backend supplies --------------------------------------------------------------

    @abc.abstractmethod
    def _atomic(self, step: Callable[[Txn], T]) -> T:
        """Run step as one atomic read-modify-write; append txn.events in the same commit."""

    @abc.abstractmethod
    def get(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    def list(self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None,
             limit: int | None = None) -> builtins.list[Job]:
        """Jobs matching every given filter, in submission order."""

    @abc.abstractmethod
    def stats(self) -> Stats: ...

    @abc.abstractmethod
    def events(self, after_seq: int = 0, limit: int = 1000) -> builtins.list[Event]:
        """Events with seq > after_seq, oldest first."""

    @abc.abstractmethod
    def _observations(self, after: int) -> builtins.list[tuple[int, Observation]]:
        """Stored observations past position `after`, with their positions, in order."""

    @abc.abstractmethod
    def report_progress(self, job_id: str, attempt: int, points: Sequence[ProgressPoint]) -> None:
        """Append points to one attempt's curve. Only that attempt's runner writes it, so no lock."""

    @abc.abstractmethod
    def _curve(self, job_id: str, attempt: int) -> builtins.list[ProgressPoint]: ...

    @abc.abstractmethod
    def announce(self, pool: str, worker_id: str, seconds: float) -> None:
        """This worker serves the pool for the next `seconds` (its loop renews it; 0 withdraws it)."""

    @abc.abstractmethod
    def serving(self, pool: str) -> int | None:
        """How many workers serve the pool now; None when the backend cannot tell (pools that scale from zero)."""

    @abc.abstractmethod
    def put_script(self, content: bytes) -> str:
        """Store a training script or a packed code folder once under its sha256; return its 'sha256:...' ref."""

    @abc.abstractmethod
    def get_script(self, ref: str) -> bytes:
        """The blob a ref (or a trainer, 'code:' prefix and all) names; KeyError for an unknown ref."""

    @abc.abstractmethod
    def purge(self, before: float) -> int:
        """Delete terminal jobs last updated before this time; return how many. Events and fronts stay."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def _worth_claiming(self, pool: str) -> bool:
        """A cheap look before a claim's atomic step; a backend with a lock-free read says no sooner."""
        return True

    def _wait_for_work(self, pool: str, left: float, waits: int) -> None:
        time.sleep(min(backoff(waits, self.poll_first, self.poll_cap), left))

    def _after_commit(self, txn: Txn) -> None:  # noqa: B027 (a hook: most backends need nothing here)
        """Side effects outside the store, once a step has committed."""

    def _request(self, op: str, **args: Any) -> Any:
        """One of the lease cycle's steps (claim, complete, fail, release, stop) by name: `_OP_in(txn, **args)` as
        one atomic write. A backend whose writers contend may carry the request to whoever commits next."""
        return self._write(functools.partial(getattr(self, f"_{op}_in"), **args))

    def _write(self, step: Callable[[Txn], T]) -> T:
        txn_seen: builtins.list[Txn] = []

        def run(txn: Txn) -> T:
            txn_seen[:] = [txn]  # a retried step runs on a fresh txn: keep the one that committed
            return step(txn)

        out = self._atomic(self._settling(run))
        self._after_commit(txn_seen[0])
        return out

    @staticmethod
    def _settling(step: Callable[[Txn], T]) -> Callable[[Txn], T]:
        """The step, then its spend ledger writes (golfq.core.budget) in the same commit."""
        def run(txn: Txn) -> T:
            out = step(txn)
            budget.settle(txn)
            return out

        return run

    # -- submit --------------------------------------------------------------------------------

    def submit(self, specs: Sequence[ExperimentSpec]) -> builtins.list[Job]:
        """Queue each spec unless a job with its id exists; return the jobs in order."""
        return [job for job, _ in self.submit_new(specs)]

    def submit_new(self, specs: Sequence[ExperimentSpec]) -> builtins.list[tuple[Job, bool]]:
        """Like submit, with whether each job was created by this call (exact under races)."""
        specs = list(specs)
        pools = known_pools()
        for spec in specs:
            if not isinstance(spec, ExperimentSpec):
                raise SpecError(f"spec: expected an ExperimentSpec, got {type(spec).__name__}")
            check_pool(spec, pools)
        ids = [spec.id for spec in specs]
        out: dict[str, tuple[Job, bool]] = {}
        chunk = self.submit_chunk or max(len(specs), 1)
        for start in range(0, len(specs), chunk):
            part = [(s, i) for s, i in zip(specs[start:start + chunk], ids[start:start + chunk], strict=True)
                    if i not in out]
            if part:
                out.update(self._write(functools.partial(self._submit_in, part=part)))
        seen: set[str] = set()
        pairs = []
        for job_id in ids:  # of equal specs in one call, only the first made the job
            job, created = out[job_id]
            pairs.append((job, created and job_id not in seen))
            seen.add(job_id)
        return pairs

    def _submit_in(self, tx: Txn, part: builtins.list[tuple[ExperimentSpec, str]]) -> dict[str, tuple[Job, bool]]:
        found = tx.load_many(list(dict.fromkeys(job_id for _, job_id in part)))
        fresh: dict[str, ExperimentSpec] = {}
        for spec, job_id in part:
            if job_id not in found:
                fresh.setdefault(job_id, spec)  # the first of equal specs in a batch makes the job
        jobs = {job_id: (job, False) for job_id, job in found.items()}
        if fresh:
            first = tx.reserve_orders(len(fresh))
            created = []
            for offset, (job_id, spec) in enumerate(fresh.items()):
                job, events = lifecycle.new_job(spec, tx.now, first + offset, job_id=job_id)
                created.append(job)
                jobs[job_id] = (job, True)
                tx.events.extend(events)
            tx.insert(created)
        return jobs

    # -- the lease cycle -----------------------------------------------------------------------

    def claim(self, pool: str, worker_id: str, lease_seconds: float = 60.0, timeout: float = 0.0) -> Lease | None:
        """Lease the next job of the pool (priority, then FIFO); wait up to timeout seconds."""
        give_up = time.monotonic() + max(timeout, 0.0)
        waits = 0
        while True:
            lease = None
            if self._worth_claiming(pool):
                lease = self._request("claim", pool=pool, worker_id=worker_id, lease_seconds=lease_seconds)
            left = give_up - time.monotonic()
            if lease is not None or left <= 0:
                return lease
            self._wait_for_work(pool, left, waits)
            waits += 1

    def _claim_in(self, tx: Txn, pool: str, worker_id: str, lease_seconds: float) -> Lease | None:
        self._reap_in(tx)  # claimers re-deliver lost work without a reaper process
        if tx.draining(pool):
            return None
        job = budget.startable(tx, pool)  # the next job by priority that no spend cap holds
        if job is None:
            return None
        claimed, lease, events = lifecycle.claim(job, worker_id, lease_seconds, tx.now)
        tx.save(job, claimed, events)
        return lease

    def heartbeat(self, lease: Lease, lease_seconds: float = 60.0) -> bool:
        """Extend the lease; False when it is no longer held (cancelled, reaped): stop work."""
        def step(tx: Txn) -> bool:
            job = tx.load(lease.job_id)
            extended = lifecycle.heartbeat(job, lease, lease_seconds, tx.now) if job else None
            if job is None or extended is None:
                return False
            tx.save(job, extended, ())
            return True

        return self._write(step)

    def complete(self, lease: Lease, result: Result) -> CompleteOutcome:
        """Record the attempt's result; idempotent per (job, attempt)."""
        outcome = self._request("complete", lease=lease, result=result)
        if outcome is CompleteOutcome.COUNTED and result.succeeded and lease.spec.promote is not None:
            apply_rule(self, lease.spec)  # after the commit, so the rule sees this result on the front
        return outcome

    def _complete_in(self, tx: Txn, lease: Lease, result: Result) -> CompleteOutcome:
        job = tx.require(lease.job_id)
        done, events, outcome = lifecycle.complete(job, lease, result, tx.now)
        tx.save(job, done, events)
        if outcome is CompleteOutcome.COUNTED and done.state is JobState.SUCCEEDED:
            obs = observation(done.id, done.spec, result)
            if obs is not None:
                tx.observe(obs)
        return outcome

    def fail(self, lease: Lease, error: str, kind: FailureKind, result: Result | None = None) -> JobState:
        """Record a failed attempt; the job is queued again or ends, by its retry budget."""
        return self._request("fail", lease=lease, error=error, kind=FailureKind(kind), result=result)

    def _fail_in(self, tx: Txn, lease: Lease, error: str, kind: FailureKind, result: Result | None) -> JobState:
        return _end_attempt_in(tx, lease, lambda job, now: lifecycle.fail(job, lease, error, kind, now, result))

    def release(self, lease: Lease, reason: str, result: Result | None = None) -> JobState:
        """Give a held attempt back on a worker's graceful stop: queued again, no failure counted."""
        return self._request("release", lease=lease, reason=reason, result=result)

    def _release_in(self, tx: Txn, lease: Lease, reason: str, result: Result | None) -> JobState:
        return _end_attempt_in(tx, lease, lambda job, now: lifecycle.release(job, lease, reason, now, result))

    def stop(self, lease: Lease, reason: str, result: Result | None = None) -> JobState:
        """End the attempt early for a stopping rule (state `stopped`); a late call is superseded."""
        return self._request("stop", lease=lease, reason=reason, result=result)

    def _stop_in(self, tx: Txn, lease: Lease, reason: str, result: Result | None) -> JobState:
        return _end_attempt_in(tx, lease, lambda job, now: lifecycle.stop(job, lease, reason, now, result))

    def curve(self, job_id: str, attempt: int | None = None) -> builtins.list[ProgressPoint]:
        """One attempt's live curve (default: the job's latest attempt), oldest point first."""
        if attempt is None:
            job = self.get(job_id)
            attempt = job.attempt if job is not None else 0
        return self._curve(job_id, attempt) if attempt else []

    def reap(self) -> builtins.list[str]:
        """Treat every expired lease as an infra failure; return the affected job ids."""
        return self._write(self._reap_in)

    def _reap_in(self, tx: Txn) -> builtins.list[str]:
        reaped = []
        for job in tx.expired():
            tx.reaped.append(Lease(job_id=job.id, attempt=job.attempt, worker_id=job.worker_id, pool=job.pool,
                                   deadline=job.lease_deadline or tx.now, spec=job.spec))
            tx.save(job, *lifecycle.expire(job, tx.now))
            reaped.append(job.id)
        return reaped

    # -- operations ----------------------------------------------------------------------------

    def _transition_each(self, ids: Sequence[str], states: Sequence[JobState], step: Step) -> builtins.list[str]:
        """Apply one lifecycle step to the named jobs and to every job in the given states."""
        wanted = [JobState(s) for s in states]

        def work(tx: Txn) -> builtins.list[str]:
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

    def cancel(self, ids: Sequence[str]) -> builtins.list[str]:
        """Cancel queued or leased jobs; return those that changed."""
        return self._transition_each(ids, (), lifecycle.cancel)

    def requeue(self, ids: Sequence[str] = (), states: Sequence[JobState] = (),
                resume: bool = False) -> builtins.list[str]:
        """Queue again the named jobs and/or every job in the given terminal states; `resume`: from their last
        checkpoints."""
        return self._transition_each(ids, states, functools.partial(lifecycle.requeue, resume=resume))

    def drain(self, pool: str) -> None:
        """Stop new claims in the pool; leased jobs run to the end."""
        self._set_draining(pool, True, EventKind.DRAINED)

    def resume(self, pool: str) -> None:
        self._set_draining(pool, False, EventKind.RESUMED)

    def _set_draining(self, pool: str, draining: bool, kind: EventKind) -> None:
        def step(tx: Txn) -> None:
            if tx.draining(pool) == draining:
                return  # already so: no event, so the log holds changes only
            tx.set_draining(pool, draining)
            tx.events.append(lifecycle.pool_event(kind, pool, tx.now))

        self._write(step)

    # -- spend caps ----------------------------------------------------------------------------

    def set_budget(self, scope: str, usd: float | None) -> None:
        """Set (or, with None, clear) a scope's cap in dollars; the next claim sees it."""
        self._write(lambda tx: tx.set_cap(scope, usd))

    def budget(self, waiting: bool = True) -> BudgetView:
        """Caps, spent and committed dollars per scope, and (unless `waiting` is False: a cheaper read of
        the ledger alone) the pools whose next job a cap holds."""
        pools = sorted(self.stats().pools) if waiting else []
        return self._look(lambda tx: budget.read(tx, pools))

    def _look(self, step: Callable[[Txn], T]) -> T:
        """A step that writes nothing; a backend with a cheaper consistent read overrides it."""
        return self._atomic(step)

    # -- fronts --------------------------------------------------------------------------------

    def front(self, track: str) -> Front:
        """The Pareto front of a track (see golfq.core.pareto)."""
        with self._front_lock:
            self._catch_up()
            return self._reducer.front(track)

    def ranking(self, track: str) -> tuple[FrontPoint, ...]:
        """Every config group of a track as a point, on the front or not, best mean val_bpb first."""
        with self._front_lock:
            self._catch_up()
            return self._reducer.ranking(track)

    def tracks(self) -> builtins.list[str]:
        with self._front_lock:
            self._catch_up()
            return self._reducer.tracks()

    def _catch_up(self) -> None:
        """Fold in the observations other processes appended since this one last looked."""
        for position, obs in self._observations(self._folded):
            self._reducer.add(obs)
            self._folded = position


def iter_events(broker: Broker, after_seq: int = 0, page: int = 1000) -> Iterator[Event]:
    """Every event after after_seq, oldest first, read a page at a time: the one event pager."""
    while True:
        batch = broker.events(after_seq=after_seq, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after_seq = batch[-1].seq


def _end_attempt_in(tx: Txn, lease: Lease, rule: Step) -> JobState:
    """One of lifecycle's end-of-attempt rules applied to the leased job in a step; the job's new state."""
    job = tx.require(lease.job_id)
    ended, events = rule(job, tx.now)
    tx.save(job, ended, events)
    return ended.state
