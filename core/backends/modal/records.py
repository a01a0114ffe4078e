"""The Modal backend's records in the `APP-state` Dict, and the transaction that keeps them in step.

Keys: `meta` (counters, pools), `pool/NAME` (the pool's claim order, leases, counts,
drain flag, GPU usage), `job/ID`, `events/N` (128 events a page), `obs/N` (128
observations a page: the fronts' input), `script/SHA` (a Volume path).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

import msgspec

from golfq.core.job import Job, JobState, Lease
from golfq.core.events import Event
from golfq.core.pareto import Observation
from golfq.core.backends.modal.store import DictLike, DictTxn, scan
from golfq.core.broker import Txn

EVENTS_PER_PAGE = 128
OBSERVATIONS_PER_PAGE = 128


class Meta(msgspec.Struct):
    seq: int = 0  # the last event's number
    order: int = 0  # the last FIFO position handed out
    pools: list[str] = []
    observed: int = 0  # observations appended so far


class PoolDoc(msgspec.Struct):
    """One pool's index, kept beside the records so claims and stats read one value."""

    queued: list[tuple[int, int, str]] = []  # (-priority, order, job id), sorted: the claim order
    leased: dict[str, float] = {}  # job id -> lease deadline as last seen (heartbeats may extend it)
    counts: dict[str, int] = {}  # state -> jobs
    draining: bool = False
    gpu_seconds: float = 0.0  # charged by the dispatcher: what the GPU-hours cap compares against


class ScriptEntry(msgspec.Struct, frozen=True):
    path: str
    size: int


class StateTxn(DictTxn, Txn):
    """A write transaction over the state Dict (golfq.core.broker.Txn): records, pool
    indexes, observations and the events to append. `overlay` gives a leased job's
    deadline as its holder's heartbeats last set it."""

    def __init__(self, store: DictLike, now: float, overlay: Callable[[Job], Job]) -> None:
        super().__init__(store, now)
        self.overlay = overlay
        self.events: list[Event] = []
        self.reaped: list[Lease] = []

    def meta(self) -> Meta:
        meta = self.get("meta", Meta)
        if meta is None:
            meta = Meta()
            self.seed_over("meta", meta)
        return meta

    def load(self, job_id: str) -> Job | None:
        return self.get(f"job/{job_id}", Job)

    def load_many(self, ids: Sequence[str]) -> dict[str, Job]:
        return {job.id: job for job_id in ids if (job := self.load(job_id)) is not None}

    def jobs_in(self, states: Sequence[JobState]) -> list[Job]:
        matching = [(key, job) for key, job in scan(self.store, "job/", Job) if job.state in states]
        for key, job in matching:
            self.seed(key, job)  # later reads in this transaction share what the scan saw
        return [self.require(job.id) for _, job in sorted(matching, key=lambda kj: kj[1].order)]

    def expired(self) -> list[Job]:
        due = []
        for pool in self.meta().pools:
            doc = self.pool(pool)
            for job_id, seen in list(doc.leased.items()):
                if seen > self.now:
                    continue
                record = self.require(job_id)
                job = self.overlay(record)
                if job.lease_deadline is not None and job.lease_deadline > self.now:
                    self.save(record, job, ())  # heartbeats moved it: note that, so the index is looked at less
                else:
                    due.append(job)
        return due

    def next_queued(self, pool: str) -> Job | None:
        doc = self.get(f"pool/{pool}", PoolDoc)
        return self.require(doc.queued[0][2]) if doc is not None and doc.queued else None

    def draining(self, pool: str) -> bool:
        doc = self.get(f"pool/{pool}", PoolDoc)
        return doc is not None and doc.draining

    def set_draining(self, pool: str, draining: bool) -> None:
        doc = self.pool(pool)
        doc.draining = draining
        self.put(f"pool/{pool}", doc)

    def reserve_orders(self, count: int) -> int:
        meta = self.meta()
        meta.order += count
        self.put("meta", meta)
        return meta.order - count + 1

    def insert(self, jobs: list[Job]) -> None:
        for job in jobs:
            self.save(None, job, ())

    def observe(self, obs: Observation) -> None:
        meta = self.meta()
        key = f"obs/{meta.observed // OBSERVATIONS_PER_PAGE}"
        self.put(key, [*(self.get(key, list[Observation]) or []), obs])
        meta.observed += 1
        self.put("meta", meta)

    def pool(self, name: str) -> PoolDoc:
        doc = self.get(f"pool/{name}", PoolDoc)
        if doc is None:
            doc = PoolDoc()
            meta = self.meta()
            meta.pools = sorted({*meta.pools, name})
            self.put("meta", meta)
            self.put(f"pool/{name}", doc)
        return doc

    def save(self, old: Job | None, new: Job, events: Sequence[Event]) -> None:
        """Write a transition's outcome and keep the pool index in step with it."""
        self.events.extend(events)
        if new is old:
            return
        self.put(f"job/{new.id}", new)
        doc = self.pool(new.pool)
        if old is not None:
            doc.counts[old.state.value] = doc.counts.get(old.state.value, 0) - 1
            if old.state is JobState.QUEUED:
                doc.queued = [entry for entry in doc.queued if entry[2] != old.id]
            doc.leased.pop(old.id, None)
        doc.counts[new.state.value] = doc.counts.get(new.state.value, 0) + 1
        if new.state is JobState.QUEUED:
            bisect.insort(doc.queued, (-new.spec.priority, new.order, new.id))
        elif new.state is JobState.LEASED:
            doc.leased[new.id] = new.lease_deadline or self.now
        self.put(f"pool/{new.pool}", doc)

    def append_events(self) -> None:
        if not self.events:
            return
        meta = self.meta()
        for event in self.events:
            meta.seq += 1
            key = f"events/{(meta.seq - 1) // EVENTS_PER_PAGE}"
            page = self.get(key, list[Event]) or []
            page.append(msgspec.structs.replace(event, seq=meta.seq))
            self.put(key, page)
        self.put("meta", meta)


def hb_key(job_id: str, attempt: int) -> str:
    return f"hb/{job_id}/{attempt}"
