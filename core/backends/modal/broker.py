"""The Modal backend: modal://APP[?env=ENV].

Job records, events, observations and fronts live in the `APP-state` modal.Dict as
msgspec MessagePack bytes (never cloudpickled objects, so producers and workers need
not share library versions). Heartbeats, call records and the writer lock live in
`APP-leases`. Spec ids go into the `APP-wake` modal.Queue, one partition per pool,
only to wake claimers and the dispatcher: a Queue get is a destructive pop with no
ack, so the Queue is never the source of truth. Scripts go to the `APP-artifacts`
Volume and the Dict holds their paths.

Every mutation runs under the WriterLock (store.py), applies golfq.core.lifecycle to
the records it read, and commits records, indexes and events in one Dict.update:
golfq.core.broker's shared write path over records.StateTxn. Heartbeats are the
exception: the lease holder alone writes `hb/JOB/ATTEMPT`, and every read of a leased
job takes its deadline from there, so busy workers never queue on the lock. docs/modal.md explains the design.
"""

from __future__ import annotations

import logging
import queue
import re
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from golfq.core import lifecycle
from golfq.core.broker import Broker, BrokerError, Txn
from golfq.core.job import Job, JobState, Lease, PoolStats, Stats
from golfq.core.events import Event, EventKind
from golfq.core.pareto import Observation
from golfq.core.result import ProgressPoint
from golfq.core.settings import settings
from golfq.core.spec import ExperimentSpec, script_ref
from golfq.core.backends.modal.records import (EVENTS_PER_PAGE, OBSERVATIONS_PER_PAGE, Meta, PoolDoc, ScriptEntry,
                                                StateTxn, hb_key)
from golfq.core.backends.modal.store import LOCK_SECONDS, BlobStore, DictLike, VolumeBlobStore, WriterLock, decode, encode, scan

log = logging.getLogger("golfq.modal")

WAKE_TTL_SECONDS = 24 * 3600
CURVE_PER_PAGE = 256
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
Factory = Callable[[str, "str | None"], Any]


def parse_url(url: str) -> tuple[str, str | None]:
    """modal://APP[?env=ENV] -> (app, environment)."""
    if not url.startswith("modal://"):
        raise BrokerError(f"queue URL {url!r}: not a modal:// URL")
    app, _, query = url.removeprefix("modal://").partition("?")
    app = app.rstrip("/")
    if not _APP_NAME.match(app):
        raise BrokerError(f"queue URL {url!r}: app name must be 1-48 of [A-Za-z0-9._-] (modal://APP[?env=ENV])")
    env = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "env" or not value:
            raise BrokerError(f"queue URL {url!r}: bad option {key}={value!r} (only env=ENVIRONMENT)")
        env = value
    return app, env


def _modal_dict(name: str, env: str | None) -> Any:
    import modal

    return modal.Dict.from_name(name, environment_name=env, create_if_missing=True)


def _modal_queue(name: str, env: str | None) -> Any:
    import modal

    return modal.Queue.from_name(name, environment_name=env, create_if_missing=True)


class ModalBroker(Broker):
    """The broker contract over modal.Dict and modal.Queue; see the module docstring."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time, *, dict_factory: Factory | None = None,
                 queue_factory: Factory | None = None, blob_store: BlobStore | None = None,
                 kick: Callable[[], None] | None = None, lock_seconds: float = LOCK_SECONDS) -> None:
        super().__init__(url, clock)
        self.app, self.environment = parse_url(url)
        real = dict_factory is None
        dict_factory = dict_factory or _modal_dict
        queue_factory = queue_factory or _modal_queue
        self.state: DictLike = dict_factory(f"{self.app}-state", self.environment)
        self.leases: DictLike = dict_factory(f"{self.app}-leases", self.environment)
        self.wake = queue_factory(f"{self.app}-wake", self.environment)
        self.blobs = blob_store if blob_store is not None else self._volume_store()
        self.kick = kick if kick is not None or not real else self._kick_dispatcher
        self._lock = WriterLock(self.leases, seconds=lock_seconds)

    def __repr__(self) -> str:
        return f"ModalBroker({self.url!r})"

    def _volume_store(self) -> BlobStore:
        import modal

        volume = modal.Volume.from_name(f"{self.app}-artifacts", environment_name=self.environment,
                                        create_if_missing=True)
        mount = settings().artifacts_mount
        return VolumeBlobStore(volume, str(mount) if mount else None)

    def _kick_dispatcher(self) -> None:
        import modal

        modal.Function.from_name(self.app, "dispatch", environment_name=self.environment).spawn()

    # -- the write path ------------------------------------------------------------------------

    def _atomic(self, step: Callable[[StateTxn], Any]) -> Any:
        epoch, deadline = self._lock.acquire()
        try:
            tx = StateTxn(self.state, self.clock(), self._overlay)
            out = step(tx)
            tx.append_events()
            if tx.dirty:
                if not self._lock.held(epoch, deadline):
                    raise BrokerError("lost the queue's writer lock before committing; nothing was written")
                tx.commit()
        finally:
            self._lock.release(epoch)
        return out

    def _after_commit(self, txn: Txn) -> None:
        """Wake claimers and the dispatcher for work that became claimable. Best effort: a lost
        wake-up only delays a claim until the next scheduled dispatch."""
        fresh = [e for e in txn.events if e.kind in (EventKind.SUBMITTED, EventKind.REQUEUED)]
        for event in fresh:
            try:
                self.wake.put(event.job_id, block=False, partition=event.pool, partition_ttl=WAKE_TTL_SECONDS)
            except Exception as error:  # queue.Full or a blip
                log.info("wake-up for %s not queued: %s", event.job_id, error)
        if fresh and self.kick is not None:
            try:
                self.kick()
            except Exception as error:
                log.warning("could not kick the dispatcher of %s: %s", self.app, error)

    # -- submit and scripts --------------------------------------------------------------------

    def put_script(self, content: bytes) -> str:
        ref = script_ref(bytes(content))
        key = f"script/{ref.removeprefix('sha256:')}"
        if not self.state.contains(key):
            path = f"scripts/{ref.removeprefix('sha256:')}.py"
            self.blobs.put(path, bytes(content))
            self.state.put(key, encode(ScriptEntry(path, len(content))))
        return ref

    def get_script(self, ref: str) -> bytes:
        entry = decode(self.state.get(f"script/{ref.removeprefix('sha256:')}"), ScriptEntry)
        if entry is None:
            raise KeyError(f"script {ref}: not stored in {self.url}")
        content = self.blobs.get(entry.path)
        if script_ref(content) != ref:
            raise BrokerError(f"script {ref}: the copy at {entry.path} does not match its hash")
        return content

    # -- the lease cycle -----------------------------------------------------------------------

    def _wait_for_work(self, pool: str, left: float, waits: int) -> None:
        try:  # sleep until a submit wakes the pool, re-polling now and then in case a wake-up was lost
            self.wake.get(block=True, timeout=min(left, 1.0), partition=pool)
        except queue.Empty:
            pass

    def _worth_claiming(self, pool: str) -> bool:
        """A lock-free look at the pool's index, so idle claimers never queue on the writer lock."""
        doc = decode(self.state.get(f"pool/{pool}"), PoolDoc)
        if doc is None:
            return False
        now = self.clock()
        return (bool(doc.queued) and not doc.draining) or any(d <= now for d in doc.leased.values())

    def heartbeat(self, lease: Lease, lease_seconds: float = 60.0) -> bool:
        record = decode(self.state.get(f"job/{lease.job_id}"), Job)
        if record is None:
            return False
        extended = lifecycle.heartbeat(self._overlay(record), lease, lease_seconds, self.clock())
        if extended is None or extended.lease_deadline is None:
            return False
        if extended.lease_deadline >= (record.lease_deadline or 0.0):
            # Only moves the deadline later than the record and index say: the reaper reads the
            # heartbeat key before it expires anything, so this needs no lock.
            self.leases.put(hb_key(lease.job_id, lease.attempt), encode(extended.lease_deadline))
            return True
        return bool(self._write(lambda tx: self._shorten_in(tx, lease, lease_seconds)))

    def _shorten_in(self, tx: StateTxn, lease: Lease, lease_seconds: float) -> bool:
        """A heartbeat that moves the deadline earlier (the first beat after a long start-up
        lease): the record and the reaper's index must learn it, so it goes through the lock."""
        record = tx.require(lease.job_id)
        extended = lifecycle.heartbeat(record, lease, lease_seconds, tx.now)
        if extended is None:
            return False
        self.leases.put(hb_key(lease.job_id, lease.attempt), encode(extended.lease_deadline))
        tx.save(record, extended, ())
        return True

    def _overlay(self, job: Job) -> Job:
        """A leased job's deadline as its holder's latest heartbeat set it."""
        if job.state is not JobState.LEASED:
            return job
        beat = decode(self.leases.get(hb_key(job.id, job.attempt)), float)
        return job if beat is None else msgspec.structs.replace(job, lease_deadline=beat)

    # -- operations ----------------------------------------------------------------------------

    def charge(self, pool: str, gpu_seconds: float) -> None:
        """Add GPU time to a pool's usage (the dispatcher's GPU-hours cap reads it)."""
        def work(tx: StateTxn) -> None:
            doc = tx.pool(pool)
            doc.gpu_seconds += gpu_seconds
            tx.put(f"pool/{pool}", doc)

        self._write(work)

    def purge(self, before: float) -> int:
        """Delete terminal job records; events, observations and fronts stay, as in every backend."""
        def work(tx: StateTxn) -> int:
            purged = 0
            for key, job in scan(self.state, "job/", Job):
                if job.state.terminal and job.updated_at < before:
                    doc = tx.pool(job.pool)
                    doc.counts[job.state.value] = doc.counts.get(job.state.value, 0) - 1
                    tx.put(f"pool/{job.pool}", doc)
                    tx.delete(key)
                    purged += 1
            return purged

        return self._write(work)

    def touch_all(self) -> int:
        """Read every record once, so Modal's 7-day idle expiry never meets a live project."""
        keys = list(self.state.keys())
        for key in keys:
            self.state.get(key)
        return len(keys)

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        job = decode(self.state.get(f"job/{job_id}"), Job)
        return None if job is None else self._overlay(job)

    def list(self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None,
             limit: int | None = None) -> list[Job]:
        wanted = {JobState(s) for s in states}
        jobs = sorted((job for _, job in scan(self.state, "job/", Job)
                       if (not wanted or job.state in wanted) and (pool is None or job.pool == pool)
                       and (tag is None or tag in job.spec.tags)), key=lambda job: job.order)
        if limit is not None:
            jobs = jobs[:max(int(limit), 0)]
        return [self._overlay(job) for job in jobs]

    def pool_doc(self, pool: str) -> PoolDoc:
        return decode(self.state.get(f"pool/{pool}"), PoolDoc) or PoolDoc()

    def stats(self) -> Stats:
        meta = decode(self.state.get("meta"), Meta) or Meta()
        pools = {}
        for name in meta.pools:
            doc = self.pool_doc(name)
            counts = {state.value: doc.counts.get(state.value, 0) for state in JobState}
            pools[name] = PoolStats(**counts, draining=doc.draining)
        return Stats(pools=pools, last_seq=meta.seq, backend="modal")

    def events(self, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        meta = decode(self.state.get("meta"), Meta) or Meta()
        last = min(meta.seq, after_seq + max(limit, 0))
        out: list[Event] = []
        page = max(after_seq, 0) // EVENTS_PER_PAGE
        while page * EVENTS_PER_PAGE < last:
            events = decode(self.state.get(f"events/{page}"), list[Event]) or []
            out += [e for e in events if after_seq < e.seq <= last]
            page += 1
        return out

    def announce(self, pool: str, worker_id: str, seconds: float) -> None:
        pass  # the deployed app serves every configured pool, scaling from zero

    def serving(self, pool: str) -> int | None:
        return None

    def report_progress(self, job_id: str, attempt: int, points: Sequence[ProgressPoint]) -> None:
        """The attempt's runner alone writes its curve keys: a page list and their count, no lock."""
        if not points:
            return
        count_key = f"curve/{job_id}/{attempt}"
        count = decode(self.leases.get(count_key), int) or 0
        page = count // CURVE_PER_PAGE
        stored = decode(self.leases.get(f"{count_key}/{page}"), list[ProgressPoint]) or []
        updates: dict[str, bytes] = {}
        for point in points:
            if len(stored) == CURVE_PER_PAGE:
                page, stored = page + 1, []
            stored.append(point)
            updates[f"{count_key}/{page}"] = encode(stored)
            count += 1
        updates[count_key] = encode(count)
        self.leases.update(updates)

    def _curve(self, job_id: str, attempt: int) -> list[ProgressPoint]:
        count = decode(self.leases.get(f"curve/{job_id}/{attempt}"), int) or 0
        out: list[ProgressPoint] = []
        for page in range((count + CURVE_PER_PAGE - 1) // CURVE_PER_PAGE):
            out += decode(self.leases.get(f"curve/{job_id}/{attempt}/{page}"), list[ProgressPoint]) or []
        return out[:count]

    def _observations(self, after: int) -> list[tuple[int, Observation]]:
        observed = (decode(self.state.get("meta"), Meta) or Meta()).observed
        out: list[tuple[int, Observation]] = []
        for page in range(after // OBSERVATIONS_PER_PAGE, (observed + OBSERVATIONS_PER_PAGE - 1) // OBSERVATIONS_PER_PAGE):
            stored = decode(self.state.get(f"obs/{page}"), list[Observation]) or []
            first = page * OBSERVATIONS_PER_PAGE
            out += [(first + i + 1, obs) for i, obs in enumerate(stored) if first + i >= after]
        return out

    def close(self) -> None:
        pass

