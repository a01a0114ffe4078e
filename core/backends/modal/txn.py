"""One atomic step over a Modal queue's folded state (golfq.core.broker.Txn).

Reads see the State at the log position the step started from, plus the step's own
writes; the writes are collected into the Entry the broker then tries to commit as
the next log slot. If another writer took that slot first, the step runs again on
the newer state, like a Redis transaction after a WATCH conflict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import msgspec

from golfq.core import budget
from golfq.core.backends.modal.records import Call, Entry, Outcome, Usage, call_key
from golfq.core.backends.modal.state import State, merge, queue_key
from golfq.core.broker import Txn
from golfq.core.budget import Hold
from golfq.core.events import Event
from golfq.core.job import Job, JobState, Lease
from golfq.core.pareto import Observation

V = TypeVar("V")

# Whether a leased job whose recorded deadline has passed is really gone (its heartbeat key
# may say otherwise, or the dispatcher's look at its call). A judge may record a new deadline
# with txn.save, so a call that waits for a GPU is not asked about again at once.
Judge = Callable[["StateTxn", Job], bool]


class StateTxn(Txn):
    def __init__(self, state: State, now: float, judge: Judge) -> None:
        self.state, self.now = state, now
        self.events: list[Event] = []
        self.reaped: list[Lease] = []
        self.saved: list[tuple[Job | None, Job]] = []  # (old, new) of each write, for the after-commit hooks
        self.judge = judge
        self._jobs: dict[str, Job | None] = {}
        self._order = 0
        self._draining: dict[str, bool] = {}
        self._obs: list[Observation] = []
        self._calls: dict[str, Call | None] = {}
        self._usage: dict[str, Usage] = {}
        self._caps: dict[str, float | None] = {}
        self._spent: dict[str, float] = {}
        self._holds: dict[str, Hold | None] = {}
        self._paged: tuple[int, int] | None = None
        self.outcomes: dict[str, Outcome] = {}  # the requests this step carried out (group commit)
        self.own_ends: set[tuple[str, int]] = set()  # attempts ended by their own runner: no revocation marker

    def mark(self) -> tuple:
        """Where the step's writes stand, so a request that raises can be undone (rollback)."""
        return (dict(self._jobs), len(self.events), len(self.reaped), len(self.saved), self._order,
                dict(self._draining), len(self._obs), dict(self._calls), dict(self._usage), dict(self._caps),
                dict(self._spent), dict(self._holds))

    def rollback(self, mark: tuple) -> None:
        (jobs, events, reaped, saved, self._order, self._draining, obs, self._calls, self._usage, self._caps,
         self._spent, self._holds) = mark
        self._jobs = jobs
        del self.events[events:], self.reaped[reaped:], self.saved[saved:], self._obs[obs:]

    # -- the contract's Txn --------------------------------------------------------------------

    def job(self, job_id: str) -> Job | None:
        return self._jobs[job_id] if job_id in self._jobs else self.state.jobs.get(job_id)

    def load_many(self, ids: Sequence[str]) -> dict[str, Job]:
        return {job_id: job for job_id in ids if (job := self.job(job_id)) is not None}

    def jobs_in(self, states: Sequence[JobState]) -> list[Job]:
        wanted = set(states)
        ids = self.state.jobs.keys() | {k for k, v in self._jobs.items() if v is not None}
        return sorted((job for job_id in ids if (job := self.job(job_id)) is not None and job.state in wanted),
                      key=lambda job: job.order)

    def expired(self) -> list[Job]:
        due = []
        candidates = [*self.state.leased_jobs(), *(j for j in self._jobs.values() if j is not None)]
        seen: set[str] = set()
        for candidate in candidates:
            job = self.job(candidate.id)
            if job is None or job.id in seen or job.state is not JobState.LEASED:
                continue
            seen.add(job.id)
            if job.lease_deadline is None or job.lease_deadline > self.now:
                continue
            if self.judge(self, job):
                due.append(job)
        return sorted(due, key=lambda job: job.order)

    def next_queued(self, pool: str) -> Job | None:
        best = None
        for key in self.state.queued.get(pool, ()):
            if key[2] not in self._jobs:
                best = key
                break
        for job in self._jobs.values():
            if job is not None and job.pool == pool and job.state is JobState.QUEUED:
                if best is None or queue_key(job) < best:
                    best = queue_key(job)
        return None if best is None else self.job(best[2])

    def queued(self, pool: str, limit: int) -> list[Job]:
        keys = [k for k in self.state.queued.get(pool, ())[:limit + len(self._jobs)] if k[2] not in self._jobs]
        keys += [queue_key(j) for j in self._jobs.values()
                 if j is not None and j.pool == pool and j.state is JobState.QUEUED]
        return [job for k in sorted(keys)[:limit] if (job := self.job(k[2])) is not None]

    def save(self, old: Job | None, new: Job, events: Iterable[Event]) -> None:
        self.events.extend(events)
        if new is old:
            return
        self.saved.append((old, new))
        self._jobs[new.id] = new

    def reserve_orders(self, count: int) -> int:
        base = self._order or self.state.order
        self._order = base + count
        return base + 1

    def insert(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.saved.append((None, job))
            self._jobs[job.id] = job

    def draining(self, pool: str) -> bool:
        return self._draining.get(pool, pool in self.state.draining)

    def set_draining(self, pool: str, draining: bool) -> None:
        self._draining[pool] = draining

    def observe(self, obs: Observation) -> None:
        self._obs.append(obs)

    def caps(self) -> dict[str, float]:
        return _merged(self.state.caps, self._caps)

    def set_cap(self, scope: str, usd: float | None) -> None:
        self._caps[scope] = usd

    def spent(self) -> dict[str, float]:
        return {**self.state.spent, **self._spent}

    def add_spent(self, scopes: Sequence[str], usd: float) -> None:
        for scope in scopes:
            if usd:
                self._spent[scope] = self._spent.get(scope, self.state.spent.get(scope, 0.0)) + usd

    def holds(self) -> dict[str, Hold]:
        return _merged(self.state.holds, self._holds)

    def set_hold(self, key: str, hold: Hold | None) -> None:
        self._holds[key] = hold

    def billed_later(self, key: str) -> bool:
        job_id, attempt = key.rsplit("/", 1)
        call = self.call(job_id, int(attempt))  # end_calls bills a call that started and has not ended
        return call is not None and call.ended_at is None and call.billing_since is not None

    # -- what only the Modal backend writes ----------------------------------------------------

    def delete(self, job_id: str) -> None:
        self._jobs[job_id] = None

    def leased(self, pool: str) -> list[Job]:
        ids = [*self.state.leased.get(pool, {}), *(k for k, v in self._jobs.items() if v is not None)]
        jobs = {job.id: job for i in ids if (job := self.job(i)) is not None and job.state is JobState.LEASED
                and job.pool == pool}
        return list(jobs.values())

    def call(self, job_id: str, attempt: int) -> Call | None:
        key = call_key(job_id, attempt)
        return self._calls[key] if key in self._calls else self.state.calls.get(key)

    def calls(self) -> dict[str, Call]:
        merged = {**self.state.calls, **self._calls}
        return {k: v for k, v in merged.items() if v is not None}

    def set_call(self, job_id: str, attempt: int, call: Call | None) -> None:
        self._calls[call_key(job_id, attempt)] = call

    def usage(self, pool: str) -> Usage:
        return self._usage.get(pool) or self.state.usage.get(pool) or Usage()

    def set_usage(self, pool: str, usage: Usage) -> None:
        self._usage[pool] = usage

    def mark_paged(self, events_upto: int, obs_upto: int) -> None:
        self._paged = (events_upto, obs_upto)

    # -- the entry -----------------------------------------------------------------------------

    @property
    def empty_but_outcomes(self) -> bool:
        """Nothing written but request outcomes."""
        return not (self._jobs or self.events or self._obs or self._order or self._draining or self._calls
                    or self._usage or self._paged or self._caps or self._spent or self._holds)

    @property
    def empty(self) -> bool:
        return self.empty_but_outcomes and not self.outcomes

    def entry(self, rid: str, writer: str) -> Entry:
        """The step's writes as the next log entry; event numbers and times follow log order."""
        budget.settle(self)  # the spend ledger of requests a group commit carried (the rest are settled)
        ts = max(self.now, self.state.ts)  # a writer whose clock runs behind never dates an event before the last
        events = [msgspec.structs.replace(event, seq=self.state.seq + i, ts=max(event.ts, self.state.ts))
                  for i, event in enumerate(self.events, start=1)]
        jobs = [job for job in self._jobs.values() if job is not None]
        deleted = [job_id for job_id, job in self._jobs.items() if job is None]
        return Entry(rid=rid, prev=self.state.rid, ts=ts, writer=writer, jobs=jobs, deleted=deleted, events=events,
                     observations=list(self._obs), order=self._order, draining=dict(self._draining),
                     calls=dict(self._calls), usage=dict(self._usage), paged=self._paged,
                     outcomes=dict(self.outcomes), caps=dict(self._caps), spent=dict(self._spent),
                     holds=dict(self._holds))


def _merged(base: dict[str, V], changes: dict[str, V | None]) -> dict[str, V]:
    out = dict(base)
    merge(out, changes)
    return out
