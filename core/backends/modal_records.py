"""The Modal backend's records in the `APP-state` Dict, and the transaction that keeps them in step.

Keys: `meta` (counters, pools, tracks), `pool/NAME` (the pool's claim order, leases,
counts, drain flag, GPU usage), `job/ID`, `events/N` (128 events a page), `obs/TRACK`
and `front/TRACK` (the reducer's input and output), `script/SHA` (a Volume path).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import msgspec

from core.broker import Job, JobState
from core.events import Event
from core.backends.modal_store import DictLike, Txn

EVENTS_PER_PAGE = 128


class Meta(msgspec.Struct):
    seq: int = 0  # the last event's number
    order: int = 0  # the last FIFO position handed out
    pools: list[str] = []
    tracks: list[str] = []


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


class StateTxn(Txn):
    """A write transaction over the state Dict: records, pool indexes and the events to append."""

    def __init__(self, store: DictLike, now: float) -> None:
        super().__init__(store, now)
        self.events: list[Event] = []

    def meta(self) -> Meta:
        meta = self.get("meta", Meta)
        if meta is None:
            meta = Meta()
            self.seed_over("meta", meta)
        return meta

    def job(self, job_id: str) -> Job | None:
        return self.get(f"job/{job_id}", Job)

    def require(self, job_id: str) -> Job:
        job = self.job(job_id)
        if job is None:
            raise KeyError(f"job {job_id}: not found (purged?)")
        return job

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
