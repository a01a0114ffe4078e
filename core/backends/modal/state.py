"""The folded state of a Modal queue: a snapshot plus the log entries after it, with indexes.

Every process folds the same entries in the same order, so every process holds the
same state at the same position; `apply` knows no job rules, it writes what the
entry says (golfq.core.lifecycle ran in the step that made the entry).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import TypeVar

from golfq.core.backends.modal.records import (
    EVENTS_PER_PAGE,
    OBSERVATIONS_PER_PAGE,
    Call,
    Entry,
    Outcome,
    Snapshot,
    Usage,
)
from golfq.core.budget import Hold
from golfq.core.events import Event
from golfq.core.job import Job, JobState
from golfq.core.pareto import Observation

V = TypeVar("V")
DONE_KEEP_SECONDS = 3600.0  # how long a request's outcome stays in the state for its writer to read
QueueKey = tuple[int, int, str]  # (-priority, order, job id): the claim order inside a pool


def queue_key(job: Job) -> QueueKey:
    return (-job.spec.priority, job.order, job.id)


class State:
    """Jobs, indexes, event and observation tails, call records and pool usage at log position `pos`."""

    def __init__(self, snap: Snapshot | None = None) -> None:
        snap = snap or Snapshot()
        self.gen, self.pos, self.rid, self.ts = snap.gen, snap.pos, snap.rid, snap.ts
        self.seq, self.order, self.observed = snap.seq, snap.order, snap.observed
        self.pools: set[str] = set(snap.pools)
        self.draining: set[str] = set(snap.draining)
        self.events: list[Event] = list(snap.events)
        self.events_paged = snap.events_paged
        self.observations: list[Observation] = list(snap.observations)
        self.obs_paged = snap.obs_paged
        self.page_gens: list[int] = list(snap.page_gens)
        self.obs_page_gens: list[int] = list(snap.obs_page_gens)
        self.calls: dict[str, Call] = dict(snap.calls)
        self.usage: dict[str, Usage] = dict(snap.usage)
        self.caps: dict[str, float] = dict(snap.caps)
        self.spent: dict[str, float] = dict(snap.spent)
        self.holds: dict[str, Hold] = dict(snap.holds)
        self.done: dict[str, tuple[float, Outcome]] = {rid: (ts, out) for rid, ts, out in snap.done}
        self.jobs: dict[str, Job] = {}
        self.queued: dict[str, list[QueueKey]] = {}
        self.leased: dict[str, dict[str, None]] = {}  # pool -> leased job ids, in the order they were leased
        self.counts: dict[str, dict[str, int]] = {}
        for job in snap.jobs:
            self._put(job)

    # -- folding -------------------------------------------------------------------------------

    def apply(self, entry: Entry) -> None:
        for job in entry.jobs:
            self._put(job)
        for job_id in entry.deleted:
            self._remove(job_id)
        if entry.events:
            self.events.extend(entry.events)
            self.seq = entry.events[-1].seq
        if entry.observations:
            self.observations.extend(entry.observations)
            self.observed += len(entry.observations)
        if entry.order:
            self.order = entry.order
        for pool, draining in entry.draining.items():
            self.pools.add(pool)
            (self.draining.add if draining else self.draining.discard)(pool)
        for key, call in entry.calls.items():
            if call is None:
                self.calls.pop(key, None)
            else:
                self.calls[key] = call
        self.usage.update(entry.usage)
        self.spent.update(entry.spent)
        merge(self.caps, entry.caps)
        merge(self.holds, entry.holds)
        if entry.paged is not None:
            self._page(*entry.paged)
        self.pos += 1
        self.rid = entry.rid
        self.ts = max(self.ts, entry.ts)
        if entry.outcomes:
            self.done.update((rid, (self.ts, out)) for rid, out in entry.outcomes.items())
            while self.done and (first := next(iter(self.done.items())))[1][0] < self.ts - DONE_KEEP_SECONDS:
                del self.done[first[0]]

    def _page(self, events_upto: int, obs_upto: int) -> None:
        """Events and observations up to these positions now live on pages written by this generation."""
        self.page_gens += [self.gen] * (events_upto // EVENTS_PER_PAGE - len(self.page_gens))
        self.events = [e for e in self.events if e.seq > events_upto]
        self.events_paged = max(self.events_paged, events_upto)
        self.obs_page_gens += [self.gen] * (obs_upto // OBSERVATIONS_PER_PAGE - len(self.obs_page_gens))
        self.observations = self.observations[max(obs_upto - self.obs_paged, 0):]
        self.obs_paged = max(self.obs_paged, obs_upto)

    def _put(self, job: Job) -> None:
        self._remove(job.id)
        self.jobs[job.id] = job
        self.pools.add(job.pool)
        counts = self.counts.setdefault(job.pool, {})
        counts[job.state.value] = counts.get(job.state.value, 0) + 1
        if job.state is JobState.QUEUED:
            bisect.insort(self.queued.setdefault(job.pool, []), queue_key(job))
        elif job.state is JobState.LEASED:
            self.leased.setdefault(job.pool, {})[job.id] = None

    def _remove(self, job_id: str) -> None:
        old = self.jobs.pop(job_id, None)
        if old is None:
            return
        counts = self.counts[old.pool]
        counts[old.state.value] -= 1
        if old.state is JobState.QUEUED:
            queue = self.queued[old.pool]
            del queue[bisect.bisect_left(queue, queue_key(old))]
        elif old.state is JobState.LEASED:
            self.leased[old.pool].pop(job_id, None)

    # -- reads ---------------------------------------------------------------------------------

    def leased_jobs(self) -> Iterator[Job]:
        for pool in sorted(self.leased):
            for job_id in self.leased[pool]:
                yield self.jobs[job_id]

    def snapshot(self) -> Snapshot:
        return Snapshot(
            gen=self.gen, pos=self.pos, rid=self.rid, ts=self.ts, seq=self.seq, order=self.order,
            observed=self.observed, jobs=sorted(self.jobs.values(), key=lambda j: (j.order, j.id)),
            pools=sorted(self.pools), draining=sorted(self.draining), events=list(self.events),
            events_paged=self.events_paged, observations=list(self.observations), obs_paged=self.obs_paged,
            page_gens=list(self.page_gens), obs_page_gens=list(self.obs_page_gens),
            calls=dict(sorted(self.calls.items())), usage=dict(sorted(self.usage.items())),
            caps=dict(sorted(self.caps.items())), spent=dict(sorted(self.spent.items())),
            holds=dict(sorted(self.holds.items())),
            done=[(rid, ts, out) for rid, (ts, out) in self.done.items()])


def merge(into: dict[str, V], changes: dict[str, V | None]) -> None:
    for key, value in changes.items():
        if value is None:
            into.pop(key, None)
        else:
            into[key] = value
