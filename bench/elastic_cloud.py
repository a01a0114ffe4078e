"""A simulated Modal workspace in virtual time: functions, containers, GPU capacity, billing.

It is the Spawner the real golfq.workers.modal.dispatch.Dispatcher drives, and its
containers run the real pool-function protocol (golfq.workers.modal.call.serve_call:
run token, start, heartbeats, complete) against the real ModalBroker over the fakes in
tests/modal_fakes.py; only training is replaced by sleeping for the job's length.

Modal as modelled: a spawned call waits until a warm container of its function is free
or a new one may start (under the function's max_containers and the GPUs the region
has free); a new container is billed from the moment it is placed, through its cold
start, until it has idled `scaledown_window` seconds; a preempted container's input is
run again by Modal (same input id) on a new container after 10 s, while retries last.

Checkpoints as golfq keeps them (golfq.workers.checkpoints): with `checkpoint_seconds` set, a
run saves its progress on the job's Volume folder every that many seconds of training, each
save costing `save_seconds` of billed time that is not training; a re-run of the same attempt
(Modal's, after a preemption) or an attempt whose lease says resume goes on from the last
save, any other attempt starts from zero. Without, every restart starts from zero.
"""

from __future__ import annotations

import functools
import itertools
import math
import random
import threading
from dataclasses import dataclass, field

from golfq.core.backends.modal.broker import ModalBroker
from golfq.core.job import Lease
from golfq.core.pools import known_pools
from golfq.core.result import FailureKind, Result
from golfq.workers.modal.call import ContainerLife, serve_call
from golfq.workers.modal.config import ModalConfig
from golfq.workers.modal.dispatch import read_lease
from tests.modal_fakes import FakeModal
from tests.modal_net import VirtualClock

RETRY_DELAY = 10.0  # the app's modal.Retries(initial_delay=10)


class Preempted(Exception):
    pass


@dataclass
class Input:
    call_id: str
    input_id: str
    function: str
    payload: bytes
    retries_left: int
    not_before: float = 0.0
    done: bool = False
    cancelled: bool = False


@dataclass
class Container:
    id: str
    function: str
    gpus: int
    placed_at: float
    preempt_at: float
    ended_at: float | None = None
    next: Input | None = None
    inputs: int = 0
    busy: bool = False
    work_gpu_seconds: float = 0.0  # billed to training, redone training and saves


@dataclass
class Figures:
    billed_gpu_seconds: float = 0.0
    training_gpu_seconds: float = 0.0  # every attempt's run, preempted ones included
    lost_gpu_seconds: float = 0.0  # training done again: since the last checkpoint (or all of it) when preempted
    saves: int = 0
    resumed: int = 0  # attempts or re-runs that went on from a checkpoint
    containers: int = 0
    preemptions: int = 0
    big_preemptions: int = 0  # of 8-GPU containers
    duplicate_spawns: int = 0
    trained: dict[tuple[str, int], set[str]] = field(default_factory=dict)  # attempt -> inputs that trained it
    spawn_at: dict[str, float] = field(default_factory=dict)  # first spawn per job
    claim_to_spawn: list[float] = field(default_factory=list)
    billed_by: dict[tuple[str, str], float] = field(default_factory=dict)  # (pool, BILLED_PARTS) -> GPU-seconds
    warm_starts: dict[str, int] = field(default_factory=dict)  # pool -> inputs a warm container took

    def bill(self, pool: str, part: str, gpu_seconds: float) -> None:
        self.billed_by[pool, part] = self.billed_by.get((pool, part), 0.0) + gpu_seconds


# Where a container's billed time goes. "training" is kept progress; "redone" is training lost to a preemption (done
# again from the last save); "calls" is an input's time outside training and saves (the run token, start, heartbeats
# and result at call latency); "warm idle" is idle time that ended in another input, "scale-down" idle time that ended
# the container (or a preemption while idle).
BILLED_PARTS = ("training", "redone", "saves", "cold start", "calls", "warm idle", "scale-down")


class SimCloud:
    """The Spawner for the dispatcher, and the containers that run what it spawns."""

    def __init__(self, clock: VirtualClock, fake: FakeModal, config: ModalConfig, url: str, *, cold_start: float,
                 gpu_capacity: int = 96, placement_delay: dict[int, float] | None = None,
                 preempt_per_gpu_hour: float = 0.0, duplicate_spawn: float = 0.0, seed: int = 0,
                 checkpoint_seconds: float | None = None, save_seconds: float = 0.0) -> None:
        self.clock, self.fake, self.config, self.url = clock, fake, config, url
        self.cold_start, self.gpu_capacity = cold_start, gpu_capacity
        self.placement_delay = placement_delay or {}
        self.preempt_rate, self.duplicate_spawn = preempt_per_gpu_hour, duplicate_spawn
        self.rng = random.Random(seed)
        self.checkpoint_seconds, self.save_seconds = checkpoint_seconds, save_seconds
        self.saved: dict[str, float] = {}  # job id -> seconds of training its checkpoint holds (the Volume)
        self.owner: dict[str, int] = {}  # job id -> the attempt that last used its checkpoint folder
        self.functions = {pool.function: (name, pool) for name, pool in config.pools.items()}
        self.calls: dict[str, list[Input]] = {}
        self.pending: list[Input] = []
        self.containers: list[Container] = []
        self.figures = Figures()
        self.stopping = False
        self.changes = 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()  # pending inputs and containers: several actors touch them (never held asleep)

    # -- the Spawner protocol (what the dispatcher calls) ----------------------------------------

    def spawn(self, function: str, payload: bytes, timeout_seconds: int | None) -> str:
        self.fake.net.pause(self.fake.net.latency)  # one API round trip
        name, pool = self.functions[function]
        call_id = f"fc-{next(self._ids)}"
        copies = 2 if self.rng.random() < self.duplicate_spawn else 1
        self.figures.duplicate_spawns += copies - 1
        inputs = [Input(call_id, f"in-{next(self._ids)}", function, payload, pool.retries) for _ in range(copies)]
        self.calls[call_id] = inputs
        lease = read_lease(payload)
        self.figures.spawn_at.setdefault(lease.job_id, self.clock())
        self.figures.claim_to_spawn.append(self.clock() - (lease.deadline - pool.startup_seconds))
        with self._lock:
            self.pending += inputs
        self.changed()
        return call_id

    def alive(self, call_id: str) -> bool:
        self.fake.net.pause(self.fake.net.latency)
        return any(not i.done for i in self.calls.get(call_id, []))

    def cancel(self, call_id: str) -> None:
        self.fake.net.pause(self.fake.net.latency)
        with self._lock:
            for inp in self.calls.get(call_id, []):
                inp.cancelled = True
            self.pending = [i for i in self.pending if not i.cancelled]
        self.changed()

    # -- placement ---------------------------------------------------------------------------

    def placer(self) -> None:
        """Place pending inputs on warm containers or new ones, as capacity allows (an actor). It waits for
        a change (a spawn, a container freed or gone) rather than looking again at once: time only moves
        when every actor sleeps."""
        while not self.stopping:
            seen = self.changes
            self._place()
            self.clock.wait_until(lambda seen=seen: self.stopping or self.changes != seen, timeout=RETRY_DELAY)

    def changed(self) -> None:
        self.changes += 1
        self.clock.notify()

    def _gpus_in_use(self) -> int:
        return sum(c.gpus for c in self.containers if c.ended_at is None)

    def _place(self) -> None:
        with self._lock:
            self._place_locked()

    def _place_locked(self) -> None:
        now = self.clock()
        for inp in list(self.pending):
            if inp.not_before > now or inp.cancelled:
                continue
            name, pool = self.functions[inp.function]
            warm = [c for c in self.containers if c.ended_at is None and c.function == inp.function
                    and c.next is None and c.inputs > 0 and not c.busy]
            live = [c for c in self.containers if c.ended_at is None and c.function == inp.function]
            gpus = known_pools()[name].gpus
            if warm:
                warm[0].next = inp
                self.pending.remove(inp)
                self.clock.notify()
            elif len(live) < pool.max_containers and self._gpus_in_use() + gpus <= self.gpu_capacity:
                self.pending.remove(inp)
                self._boot(inp, gpus)

    def _boot(self, first: Input, gpus: int) -> None:
        now = self.clock()
        rate = self.preempt_rate * max(gpus, 1) / 3600
        preempt_at = now + (self.rng.expovariate(rate) if rate > 0 else math.inf)
        container = Container(f"ta-{next(self._ids)}", first.function, gpus, now, preempt_at)
        self.containers.append(container)
        self.figures.containers += 1
        self.clock.start(self._container, container, first, name=container.id)

    # -- a container -------------------------------------------------------------------------

    def _container(self, c: Container, first: Input) -> None:
        name, pool = self.functions[c.function]
        self.clock.sleep(self.placement_delay.get(c.gpus, 0.0))  # waiting for a machine: not billed
        c.placed_at = self.clock()
        c.preempt_at = max(c.preempt_at, c.placed_at)
        inp: Input | None = first
        bill = functools.partial(self._bill, c)
        try:
            self.clock.sleep(min(self.cold_start, c.preempt_at - c.placed_at))
            bill("cold start", c.gpus * (self.clock() - c.placed_at))
            if self.clock() >= c.preempt_at:
                self._retry(first)
                raise Preempted()
            life = ContainerLife(c.placed_at, c.id)
            while inp is not None:
                c.busy, inp_now = True, inp
                c.inputs += 1
                if c.inputs > 1:
                    self.figures.warm_starts[name] = self.figures.warm_starts.get(name, 0) + 1
                began, work = self.clock(), c.work_gpu_seconds
                try:
                    self._run_input(c, life, inp_now)
                finally:
                    bill("calls", c.gpus * (self.clock() - began) - (c.work_gpu_seconds - work))
                c.busy = False
                self.changed()  # a warm container is free: the placer may give it work
                idle = min(pool.scaledown_window, c.preempt_at - self.clock())
                began = self.clock()
                self.clock.wait_until(lambda: c.next is not None or self.stopping, timeout=idle)
                inp, c.next = c.next, None
                bill("warm idle" if inp is not None else "scale-down", c.gpus * (self.clock() - began))
                if self.clock() >= c.preempt_at:
                    if inp is not None:
                        self._retry(inp)
                    raise Preempted()
        except Preempted:
            self.figures.preemptions += 1
            self.figures.big_preemptions += c.gpus >= 8
        finally:
            c.ended_at = self.clock()
            self.figures.billed_gpu_seconds += c.gpus * (c.ended_at - c.placed_at)
            self.changed()

    def _bill(self, c: Container, part: str, gpu_seconds: float) -> None:
        self.figures.bill(self.functions[c.function][0], part, gpu_seconds)
        if part in ("training", "redone", "saves"):
            c.work_gpu_seconds += gpu_seconds

    def _retry(self, inp: Input) -> None:
        """Modal runs a preempted input again, elsewhere, while its retries last."""
        if inp.retries_left > 0 and not inp.cancelled:
            inp.retries_left -= 1
            inp.not_before = self.clock() + RETRY_DELAY
            with self._lock:
                self.pending.append(inp)
            self.changed()
        else:
            inp.done = True

    def _run_input(self, c: Container, life: ContainerLife, inp: Input) -> None:
        lease = read_lease(inp.payload)
        broker = self.fake.broker(self.url, clock=self.clock, kick=lambda: None)
        try:
            serve_call(broker, lease, token=inp.input_id, life=life, lease_seconds=self.config.lease_seconds,
                       run=lambda: self._train(c, broker, lease, inp))
            inp.done = True
        except Preempted:
            self._retry(inp)
            raise

    def _resume_point(self, lease: Lease) -> float:
        """Seconds of training the attempt starts from, by the rule of golfq.workers.checkpoints."""
        if self.checkpoint_seconds is None:
            return 0.0
        if not (lease.resume or self.owner.get(lease.job_id) == lease.attempt):
            self.saved.pop(lease.job_id, None)
        self.owner[lease.job_id] = lease.attempt
        return self.saved.get(lease.job_id, 0.0)

    def _lose(self, bill, gpu_seconds: float) -> None:
        """A preemption: the training since the last save was billed for nothing and is done again."""
        self.figures.lost_gpu_seconds += gpu_seconds
        bill("training", -gpu_seconds)
        bill("redone", gpu_seconds)
        raise Preempted()

    def _train(self, c: Container, broker: ModalBroker, lease: Lease, inp: Input) -> str:
        self.figures.trained.setdefault((lease.job_id, lease.attempt), set()).add(inp.input_id)
        length = float(lease.spec.env["SIM_SECONDS"])
        done = start = self._resume_point(lease)
        self.figures.resumed += start > 0
        gpus, started = c.gpus, self.clock()
        bill = functools.partial(self._bill, c)
        next_save = done + (self.checkpoint_seconds or math.inf)
        next_beat = self.clock() + self.config.heartbeat_seconds
        while done < length:
            step = max(min(next_beat - self.clock(), length - done, next_save - done, c.preempt_at - self.clock()), 0.0)
            self.clock.sleep(step)
            done += step
            self.figures.training_gpu_seconds += gpus * step
            bill("training", gpus * step)
            if self.clock() >= c.preempt_at:
                self._lose(bill, gpus * (done - self.saved.get(lease.job_id, 0.0)))
            if done >= next_save and done < length:
                self.clock.sleep(self.save_seconds)  # billed, not training
                bill("saves", gpus * self.save_seconds)
                if self.clock() >= c.preempt_at:  # gone mid-save: the previous checkpoint stands
                    self._lose(bill, gpus * (done - self.saved.get(lease.job_id, 0.0)))
                self.saved[lease.job_id] = done
                self.figures.saves += 1
                next_save = done + (self.checkpoint_seconds or math.inf)
            if self.clock() >= next_beat and done < length:
                next_beat = self.clock() + self.config.heartbeat_seconds
                if inp.cancelled or not broker.heartbeat(lease, self.config.lease_seconds):
                    broker.fail(lease, "lease lost (cancelled or reaped); training process killed", FailureKind.INFRA)
                    return "lease lost"
        self.saved.pop(lease.job_id, None)  # the job succeeded: its checkpoints go
        result = Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.2,
                        artifact_bytes=15_000_000, train_seconds=length, gpu_count=gpus, gpu_seconds=gpus * length,
                        started_at=started, finished_at=self.clock(), resumed=start > 0)
        broker.complete(lease, result)
        return "succeeded"
