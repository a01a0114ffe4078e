"""The Modal backend: modal://APP[?env=ENV].

No process holds a lock. Every state change is golfq.core.broker's shared write path
(lifecycle rules applied once, in a step) committed as the next entry of an
append-only log in the `APP-state` Dict by put(skip_if_exists=True); a writer that
loses the slot folds the winner's entry and runs its step again (log.py). Every
process folds the same log, from the newest snapshot on, so reads and outcomes are
exact, and a batch is one entry however many specs it holds.

The `APP-leases` Dict holds keys that exactly one writer owns, never folded: an
attempt's heartbeat (`hb/JOB/ATTEMPT`, written by its runner), its revocation
marker (`revoked/JOB/ATTEMPT`), its run token (`run/JOB/ATTEMPT`, so a duplicated
spawn never trains twice) and its live curve. The `APP-wake` Queue only wakes
claimers and the dispatcher. Scripts, logs, snapshots and event pages live on the
`APP-artifacts` Volume. docs/modal.md explains the design and its limits.
"""

from __future__ import annotations

import builtins
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from golfq.core import lifecycle
from golfq.core.backends.modal.curves import append_points, read_points
from golfq.core.backends.modal.effects import DISPATCH_PARTITION, Effects
from golfq.core.backends.modal.group import GroupCommit
from golfq.core.backends.modal.log import Log
from golfq.core.backends.modal.pages import events_after, observations_after
from golfq.core.backends.modal.records import Call, Pointer, hb_key
from golfq.core.backends.modal.state import State
from golfq.core.backends.modal.store import (
    MAX_VALUE_BYTES,
    BlobStore,
    DictLike,
    VolumeBlobStore,
    decode,
    encode,
    modal_dict,
    modal_queue,
    parse_url,
)
from golfq.core.backends.modal.txn import StateTxn
from golfq.core.backends.modal.usage import waiting_for_capacity
from golfq.core.broker import Broker, BrokerError, Txn
from golfq.core.events import Event
from golfq.core.job import Job, JobState, Lease, PoolStats, Stats
from golfq.core.pareto import Observation
from golfq.core.result import ProgressPoint
from golfq.core.settings import settings
from golfq.core.spec import ExperimentSpec, blob_ref, stored_ref

log = logging.getLogger("golfq.modal")

T = TypeVar("T")
__all__ = ["DISPATCH_PARTITION", "ModalBroker"]
VIEW_SECONDS = 60.0  # a view older than this re-reads snap/ptr before it is trusted again
RELOAD_GAP = 64  # entries behind the newest snapshot past which loading it beats folding them
MAX_CONFLICTS = 500
STARTED_CALL_GRACE = 1800.0  # a silent started call may be Modal re-running it after a preemption (the longest
# start-up lease): the dispatcher asks Modal; any other reaper waits this long past the last beat
Factory = Callable[[str, "str | None"], Any]
# The dispatcher's verdict on a spawned call whose lease ran out: a new deadline, or None to reap it.
Probe = Callable[[Job, Call, float, "float | None"], "float | None"]


class ModalBroker(Broker):
    """The broker contract over a commit log in modal.Dict; see the module docstring."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time, *, dict_factory: Factory | None = None,
                 queue_factory: Factory | None = None, blob_store: BlobStore | None = None,
                 kick: Callable[[], None] | None = None, writer: str = "") -> None:
        super().__init__(url, clock)
        self.app, self.environment = parse_url(url)
        real = dict_factory is None
        dict_factory = dict_factory or modal_dict
        queue_factory = queue_factory or modal_queue
        self.store: DictLike = dict_factory(f"{self.app}-state", self.environment)
        self.leases: DictLike = dict_factory(f"{self.app}-leases", self.environment)
        self.wake = queue_factory(f"{self.app}-wake", self.environment)
        self.blobs = blob_store if blob_store is not None else self._volume_store()
        self.kick = kick if kick is not None or not real else self._kick_dispatcher
        self.writer = writer or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.log = Log(self.store, self.blobs, self.writer, clock, self.pause)
        self.group = GroupCommit(self, dict_factory(f"{self.app}-requests", self.environment))
        self.effects = Effects(self.leases, self.wake, clock, self.kick, self.checkpoint, self._publish)
        self.probe: Probe | None = None  # set by the dispatcher, the one process that can ask Modal about calls
        self.commits = self.conflicts = 0
        self._state: State | None = None
        self._viewed = 0.0
        self._mutex = threading.RLock()  # this process's view: one step at a time (never held by another process)
        self._beats: dict[tuple[str, int], float] = {}  # heartbeat deadlines this process has read
        self._started: set[tuple[str, int]] = set()  # leases this process has started (their later beats are cheap)

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

    def pause(self, seconds: float) -> None:
        """Wait between tries (in the clock's own time when it has one: the stand-ins' virtual clock)."""
        getattr(self.clock, "sleep", time.sleep)(seconds)

    # -- the view and the write path -----------------------------------------------------------

    def view(self) -> State:
        """This process's folded state, caught up with the log (do not mutate it)."""
        with self._mutex:
            return self._sync()

    def _sync(self, optimistic: bool = False) -> State:
        """Catch up with the log; `optimistic` trusts a recent view as it is, for a step about to commit
        (a commit lands only on the state it read, so a stale view costs a lost slot, never a wrong write)."""
        now = self.clock()
        if optimistic and self._state is not None and abs(now - self._viewed) <= VIEW_SECONDS:
            return self._state
        try:
            if self._state is None:
                self._state = self.log.load()
            elif abs(now - self._viewed) > VIEW_SECONDS:
                ptr = self.log.pointer()
                if ptr is None or ptr.gen != self._state.gen or ptr.pos > self._state.pos + RELOAD_GAP:
                    self._state = self.log.load()
                else:
                    self._state = self.log.advance(self._state)
            else:
                self._state = self.log.advance(self._state)
        except BrokerError:
            self._state = None  # a broken chain: start again from the newest snapshot
            raise
        self._viewed = now
        return self._state

    def _atomic(self, step: Callable[[StateTxn], T]) -> T:
        rid = uuid.uuid4().hex
        with self._mutex:
            for _ in range(MAX_CONFLICTS):
                state = self._sync()
                tx = self._txn(state)
                out = step(tx)
                if tx.empty:
                    return out
                if self.log.append(state, tx.entry(rid, self.writer)):
                    self.commits += 1
                    return out
                self.conflicts += 1
        raise BrokerError(f"{self.url}: lost the race for the log's next slot {MAX_CONFLICTS} times in a row")

    def _txn(self, state: State) -> StateTxn:
        return StateTxn(state, self.clock(), self._judge)

    def _request(self, op: str, **args: Any) -> Any:
        """The lease cycle's steps commit by group commit (group.py): no race for each slot under a wave."""
        return self.group.request(op, args)

    def transact(self, step: Callable[[StateTxn], T]) -> T:
        """Run a Modal-specific step (the dispatcher's) through the shared write path."""
        return self._write(step)  # type: ignore[arg-type]  # our _atomic hands every step a StateTxn

    def _judge(self, tx: StateTxn, job: Job) -> bool:
        """Is this leased job, past its recorded deadline, really gone? Heartbeat keys first, then
        (for a call the dispatcher spawned) the dispatcher's look at the call."""
        key = (job.id, job.attempt)
        seen = self._beats.get(key)
        if seen is not None and seen > tx.now:
            return False
        beat = decode(self.leases.get(hb_key(job.id, job.attempt)), float)
        if beat is not None:
            self._beats[key] = beat
            if beat > tx.now:
                return False
        call = tx.call(job.id, job.attempt)
        if call is None:
            return True
        if self.probe is None:  # not the dispatcher: it cannot ask Modal whether the call is being re-run
            if call.ran_at is None:
                return False  # a spawned call that has not started is the dispatcher's to judge
            return tx.now > max(beat or 0.0, job.lease_deadline or 0.0) + STARTED_CALL_GRACE
        alive_until = self.probe(job, call, tx.now, beat)
        if alive_until is None:
            return True
        tx.save(job, msgspec.structs.replace(job, lease_deadline=alive_until), ())
        return False

    def _after_commit(self, txn: Txn) -> None:
        """Revocation markers, wake-ups, the dispatcher's kick, a snapshot now and then (effects.py): hints
        that never raise, since the step has committed."""
        assert isinstance(txn, StateTxn)
        self.effects.after(txn)

    def _publish(self) -> None:
        self.log.publish(self.view())

    def mark_revoked(self, attempts: Sequence[tuple[str, int]]) -> None:
        self.effects.mark_revoked(attempts)

    def dispatcher_listening(self) -> bool:
        return self.effects.no_kick_until() > self.clock()

    def set_listening(self, until: float) -> None:
        self.effects.hold(until)

    # -- submit and scripts --------------------------------------------------------------------

    def submit_new(self, specs: Sequence[ExperimentSpec]) -> builtins.list[tuple[Job, bool]]:
        specs = list(specs)
        if specs and all(isinstance(s, ExperimentSpec) for s in specs):
            sample = specs[:: max(len(specs) // 50, 1)]
            per_spec = max(len(msgspec.msgpack.encode(s)) for s in sample) * 3 + 200  # job + event + framing
            self.submit_chunk = max(1, min(5000, MAX_VALUE_BYTES // per_spec))
        return super().submit_new(specs)

    def put_script(self, content: bytes) -> str:
        ref = stored_ref(bytes(content))
        self.blobs.put(f"scripts/{ref.removeprefix('sha256:')}.py", bytes(content))
        return ref

    def get_script(self, ref: str) -> bytes:
        ref = blob_ref(ref)
        path = f"scripts/{ref.removeprefix('sha256:')}.py"
        content = self.blobs.get(path)  # KeyError when it was never stored
        if stored_ref(content) != ref:
            raise BrokerError(f"script {ref}: the copy at {path} does not match its hash")
        return content

    # -- the lease cycle -----------------------------------------------------------------------

    def _wait_for_work(self, pool: str, left: float, waits: int) -> None:
        try:  # sleep until a commit wakes the pool, re-polling now and then in case a wake-up was lost
            self.wake.get(block=True, timeout=min(left, 1.0), partition=pool)
        except queue.Empty:
            pass

    def _worth_claiming(self, pool: str) -> bool:
        """A look at this process's folded view, so an idle claimer commits nothing. A recent view that shows
        queued work is trusted without a read: the claim's commit finds out if it is gone."""
        with self._mutex:
            recent = self._sync(optimistic=True)
        if recent.queued.get(pool) and pool not in recent.draining:
            return True
        state = self.view()
        now = self.clock()
        if state.queued.get(pool) and pool not in state.draining:
            return True
        return any(job.lease_deadline is not None and job.lease_deadline <= now
                   and self._beats.get((job.id, job.attempt), 0.0) <= now for job in state.leased_jobs())

    def heartbeat(self, lease: Lease, lease_seconds: float = 60.0) -> bool:
        """The first beat of a lease in this process is a commit (it records the start and may shorten a
        start-up lease); later beats write the runner's own key and read its revocation marker."""
        key = (lease.job_id, lease.attempt)
        if key not in self._started:
            return self.start(lease, lease_seconds)
        self.leases.put(hb_key(*key), encode(self.clock() + lease_seconds))
        if self.leases.get(f"revoked/{lease.job_id}/{lease.attempt}") is not None:
            self._started.discard(key)
            return False
        return True

    def start(self, lease: Lease, lease_seconds: float = 60.0, *, container: str = "",
              billing_since: float | None = None, cold: bool = True) -> bool:
        """The attempt's runner has started: lease_seconds from now, and (for a spawned call) since when its
        container bills for it (boot, or the end of its previous input). False when the lease is gone."""
        started = self._request("start", lease=lease, lease_seconds=lease_seconds, container=container,
                                billing_since=billing_since, cold=cold)
        if started:
            self._started.add((lease.job_id, lease.attempt))
        return bool(started)

    def _start_in(self, tx: StateTxn, lease: Lease, lease_seconds: float, container: str,
                  billing_since: float | None, cold: bool) -> bool:
        from golfq.core.backends.modal.usage import record_start

        job = tx.load(lease.job_id)
        extended = lifecycle.heartbeat(job, lease, lease_seconds, tx.now) if job is not None else None
        if job is None or extended is None:
            return False
        tx.save(job, extended, ())
        record_start(tx, lease, container, tx.now if billing_since is None else billing_since, cold)
        return True

    def forget_attempts(self, keys: Sequence[str]) -> None:
        """Delete the per-attempt keys of calls long over (heartbeat, run token, revocation marker), so the
        leases Dict holds only live attempts; their curves stay until Modal's idle expiry."""
        for key in keys:
            for prefix in ("hb", "run", "revoked"):
                self.leases.pop(f"{prefix}/{key}", None)

    def reap_step(self, tx: StateTxn) -> builtins.list[str]:
        """Reap inside a Modal-specific step (the dispatcher's plan)."""
        return self._reap_in(tx)

    def take_run(self, lease: Lease, token: str) -> bool:
        """Claim the right to run this attempt (put-if-absent): a duplicated spawn gets False and must not
        train; Modal's re-run of the same input brings the same token and gets True."""
        key = f"run/{lease.job_id}/{lease.attempt}"
        if self.leases.put(key, encode(token), skip_if_exists=True):
            return True
        return decode(self.leases.get(key), str) == token

    # -- operations ----------------------------------------------------------------------------

    def purge(self, before: float) -> int:
        """Delete terminal job records (one entry however many); events, observations and fronts stay."""
        def step(tx: StateTxn) -> int:
            old = [job for job in tx.jobs_in([s for s in JobState if s.terminal]) if job.updated_at < before]
            for job in old:
                tx.delete(job.id)
            return len(old)

        return self.transact(step)

    def checkpoint(self) -> Pointer:
        """Page out full event and observation pages, then snapshot the state (Dict, and Volume)."""
        with self._mutex:
            state = self._sync()
            paged = self.log.write_pages(state)
        if paged is not None:
            self.transact(lambda tx: tx.mark_paged(*paged))
        with self._mutex:
            return self.log.checkpoint(self._sync())

    def snapshot_info(self) -> Pointer | None:
        """The newest published snapshot (its position and when its last entry was written)."""
        return self.log.pointer()

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        job = self.view().jobs.get(job_id)
        if job is None or job.state is not JobState.LEASED:
            return job
        beat = decode(self.leases.get(hb_key(job.id, job.attempt)), float)
        if beat is None or beat <= (job.lease_deadline or 0.0):
            return job
        return msgspec.structs.replace(job, lease_deadline=beat)

    def list(self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None,
             limit: int | None = None) -> builtins.list[Job]:
        """From the folded view (deadlines as recorded: heartbeat keys are read by get only)."""
        wanted = {JobState(s) for s in states}
        jobs = sorted((job for job in self.view().jobs.values()
                       if (not wanted or job.state in wanted) and (pool is None or job.pool == pool)
                       and (tag is None or tag in job.spec.tags)), key=lambda job: job.order)
        return jobs if limit is None else jobs[:max(int(limit), 0)]

    def stats(self) -> Stats:
        state = self.view()
        pools = {}
        for name in sorted(state.pools):
            counts = state.counts.get(name, {})
            pools[name] = PoolStats(**{s.value: counts.get(s.value, 0) for s in JobState},
                                    draining=name in state.draining)
        waiting = sum(len(v) for v in waiting_for_capacity(state.calls).values())
        return Stats(pools=pools, last_seq=state.seq, backend="modal",
                     extra={"log_position": state.pos, "generation": state.gen, "waiting_for_capacity": waiting})

    def events(self, after_seq: int = 0, limit: int = 1000) -> builtins.list[Event]:
        return events_after(self.log, self.view(), after_seq, limit)

    def _observations(self, after: int) -> builtins.list[tuple[int, Observation]]:
        return observations_after(self.log, self.view(), after)

    def read_log(self, job: Job) -> str | None:
        """The latest attempt's training log from the artifacts Volume (what `golfq logs` shows)."""
        candidates = []
        if job.result is not None and job.result.log_path and job.result.attempt == job.attempt:
            mount = str(settings().artifacts_mount or "/artifacts").rstrip("/")
            candidates.append(job.result.log_path.removeprefix(mount))
        if job.attempt:
            candidates.append(f"runs/{job.id}-{job.attempt}/train.log")
        for path in candidates:
            try:
                return self.blobs.get(path).decode("utf-8", errors="replace")
            except KeyError:
                continue
        return None

    def announce(self, pool: str, worker_id: str, seconds: float) -> None:
        pass  # the deployed app serves every configured pool, scaling from zero

    def serving(self, pool: str) -> int | None:
        return None

    # -- live curves: each attempt's runner alone writes its keys --------------------------------

    def report_progress(self, job_id: str, attempt: int, points: Sequence[ProgressPoint]) -> None:
        append_points(self.leases, job_id, attempt, points)

    def _curve(self, job_id: str, attempt: int) -> builtins.list[ProgressPoint]:
        return read_points(self.leases, job_id, attempt)

    def close(self) -> None:
        pass
