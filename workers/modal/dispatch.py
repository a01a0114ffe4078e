"""The Modal dispatcher: claims queued jobs and spawns one call per job on its pool's function.

It runs as one Modal function (max_containers=1) on a schedule and whenever a client
kicks it. Each pass:

1. reaps expired leases (a container that died or never started: the job is queued
   again as an infra failure, by golfq.core.lifecycle);
2. retires call records whose attempt has ended, cancelling calls whose job was
   reaped or cancelled (so no GPU container runs for a lease nobody holds), and
   charges the pool the GPU time the call held;
3. for each pool, claims jobs while the pool's caps allow (containers, concurrent
   GPUs, total GPU-hours: past a cap jobs wait, they are never dropped) and spawns
   one call per lease. The lease goes to the container as msgspec bytes. A failed
   spawn is an infra failure of that attempt (the job is queued again by its
   budget) and stops the pool for this pass;
4. once a day, reads every record so Modal's 7-day idle expiry never meets one.

A spawn is at-least-once: Modal re-runs a call after a preemption. The pool function
heartbeats before it starts, so a re-run of a lease that is still held runs the
attempt again from scratch, and a re-run of a finished or superseded lease exits
at once; completion is idempotent per (job, attempt) either way.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

import msgspec

from golfq.core.job import Job, JobState, Lease
from golfq.core.pools import known_pools
from golfq.core.result import FailureKind
from golfq.core.backends.modal.broker import ModalBroker
from golfq.workers.modal.config import ModalConfig, ModalConfigError, PoolConfig, call_timeout
from golfq.core.backends.modal.store import decode, encode, scan

log = logging.getLogger("golfq.modal.dispatch")

WAKE_DRAIN = 5_000  # a partition's item limit: one get_many empties it


class Spawner(Protocol):
    """Starts and stops calls of the app's pool functions (tests inject their own)."""

    def spawn(self, function: str, payload: bytes, timeout_seconds: int | None) -> str:
        """Spawn one call; return its call id."""

    def cancel(self, call_id: str) -> None: ...


class CallRecord(msgspec.Struct, frozen=True):
    call_id: str
    job_id: str
    attempt: int
    pool: str
    gpus: int
    spawned_at: float


class PoolReport(msgspec.Struct, frozen=True, kw_only=True):
    spawned: list[str] = []
    waiting: int = 0  # queued jobs left behind
    blocked: str = ""  # why claiming stopped while jobs wait: draining, max_containers, max_gpus, max_gpu_hours, spawn


class DispatchReport(msgspec.Struct, frozen=True, kw_only=True):
    reaped: list[str] = []
    retired: list[str] = []  # "JOB/ATTEMPT" of calls whose attempt ended
    cancelled: list[str] = []  # call ids cancelled because their lease was lost
    woken: dict[str, int] = {}  # wake-ups drained per pool
    pools: dict[str, PoolReport] = {}
    touched: int = 0


def lease_payload(lease: Lease) -> bytes:
    return encode(lease)


def read_lease(payload: bytes) -> Lease:
    return msgspec.msgpack.decode(payload, type=Lease)


class Dispatcher:
    def __init__(self, broker: ModalBroker, spawner: Spawner, config: ModalConfig) -> None:
        self.broker, self.spawner, self.config = broker, spawner, config

    def run_once(self) -> DispatchReport:
        reaped = self.broker.reap()
        retired, cancelled = self._retire_calls()
        woken = {name: self._drain_wakeups(name) for name in self.config.pools}
        pools = {name: self._fill(name, pool) for name, pool in self.config.pools.items()}
        return DispatchReport(reaped=reaped, retired=retired, cancelled=cancelled, woken=woken, pools=pools,
                              touched=self._keepalive())

    def serve(self, seconds: float, poll: float = 2.0) -> list[DispatchReport]:
        """Dispatch, then keep listening on the wake partitions for up to `seconds` more."""
        reports = [self.run_once()]
        give_up = time.monotonic() + seconds
        while time.monotonic() < give_up:
            if any(self.broker.wake.len(partition=name) for name in self.config.pools):
                reports.append(self.run_once())
            else:
                time.sleep(poll)
        return reports

    # -- steps ---------------------------------------------------------------------------------

    def _drain_wakeups(self, pool: str) -> int:
        try:
            return len(self.broker.wake.get_many(WAKE_DRAIN, block=False, partition=pool))
        except Exception as error:  # wake-ups are hints; the Dict is the truth
            log.info("could not drain wake-ups of %s: %s", pool, error)
            return 0

    def _retire_calls(self) -> tuple[list[str], list[str]]:
        retired, cancelled = [], []
        now = self.broker.clock()
        for key, call in list(scan(self.broker.leases, "call/", CallRecord)):
            job = self.broker.get(call.job_id)
            if job is not None and job.state is JobState.LEASED and job.attempt == call.attempt:
                continue  # still running (or still starting)
            reported = job is not None and job.result is not None and job.result.attempt == call.attempt
            if not reported:
                try:
                    self.spawner.cancel(call.call_id)
                    cancelled.append(call.call_id)
                except Exception as error:
                    log.warning("could not cancel call %s: %s", call.call_id, error)
            held = (job.result.gpu_seconds if reported and job.result.gpu_seconds is not None
                    else call.gpus * max(now - call.spawned_at, 0.0))
            if held:
                self.broker.charge(call.pool, held)
            self.broker.leases.pop(key, None)
            retired.append(f"{call.job_id}/{call.attempt}")
        return retired, cancelled

    def _fill(self, name: str, pool: PoolConfig) -> PoolReport:
        gpus = known_pools()[name].gpus
        doc = self.broker.pool_doc(name)
        if doc.draining:
            return PoolReport(waiting=len(doc.queued), blocked="draining" if doc.queued else "")
        running = [job for job_id in doc.leased if (job := self.broker.get(job_id)) is not None]
        spawned: list[str] = []
        blocked = ""
        while True:
            doc = self.broker.pool_doc(name)
            if not doc.queued:
                break
            blocked = self._cap_reached(pool, gpus, running, doc.queued[0][2], doc.gpu_seconds)
            if blocked:
                break
            lease = self.broker.claim(name, f"modal/{name}", lease_seconds=pool.startup_seconds)
            if lease is None:
                break
            if not self._spawn(pool, lease, gpus):
                blocked = "spawn"
                break
            spawned.append(lease.job_id)
            running.append(self.broker.get(lease.job_id))
        return PoolReport(spawned=spawned, waiting=len(self.broker.pool_doc(name).queued), blocked=blocked)

    def _cap_reached(self, pool: PoolConfig, gpus: int, running: list[Job], next_id: str, used_seconds: float) -> str:
        if len(running) >= pool.max_containers:
            return "max_containers"
        if gpus and pool.max_gpus is not None and (len(running) + 1) * gpus > pool.max_gpus:
            return "max_gpus"
        if gpus and pool.max_gpu_hours is not None:
            upcoming = self.broker.get(next_id)
            reserved = sum(gpus * job.spec.budget.hard_timeout for job in running if job is not None)
            need = gpus * upcoming.spec.budget.hard_timeout if upcoming else 0.0
            if used_seconds + reserved + need > pool.max_gpu_hours * 3600:
                return "max_gpu_hours"
        return ""

    def _spawn(self, pool: PoolConfig, lease: Lease, gpus: int) -> bool:
        try:
            timeout = call_timeout(pool, lease.spec.budget.hard_timeout)
        except ModalConfigError as error:
            self.broker.fail(lease, str(error), FailureKind.USER)
            return True  # this job was refused; the pool itself is fine
        try:
            call_id = self.spawner.spawn(pool.function, lease_payload(lease), timeout)
        except Exception as error:
            reason = " ".join(str(error).split())[:300] or type(error).__name__
            state = self.broker.fail(lease, f"spawn on {pool.function} failed: {reason}", FailureKind.INFRA)
            log.warning("spawn of %s failed (%s); job is %s", lease.job_id, reason, state.value)
            return False
        record = CallRecord(call_id, lease.job_id, lease.attempt, lease.pool, gpus, self.broker.clock())
        self.broker.leases.put(f"call/{lease.job_id}/{lease.attempt}", encode(record))
        return True

    def _keepalive(self) -> int:
        now = self.broker.clock()
        last = decode(self.broker.leases.get("keepalive/at"), float) or 0.0
        if now - last < self.config.keepalive_hours * 3600:
            return 0
        touched = self.broker.touch_all()
        self.broker.leases.put("keepalive/at", encode(now))
        return touched


class ModalSpawner:
    """Spawns calls of a deployed app's functions, looked up by name."""

    def __init__(self, app: str, environment: str | None = None) -> None:
        self.app, self.environment = app, environment
        self._functions: dict[str, object] = {}

    def _function(self, name: str):
        import modal

        if name not in self._functions:
            self._functions[name] = modal.Function.from_name(self.app, name, environment_name=self.environment)
        return self._functions[name]

    def spawn(self, function: str, payload: bytes, timeout_seconds: int | None) -> str:
        fn = self._function(function)
        if timeout_seconds is not None:
            fn = fn.with_options(timeout=timeout_seconds)
        return fn.spawn(payload).object_id

    def cancel(self, call_id: str) -> None:
        import modal

        modal.FunctionCall.from_id(call_id).cancel()
