"""golfq on Modal at real latency, in virtual time: the seed's five stages and the backend's limits.

    python -m bench.elastic                  # every section
    python -m bench.elastic --only stages    # stages | stream | sweep | submit | writers | idle
    python -m bench.elastic --quick          # fewer configurations, for a smoke run

The real Dispatcher, ModalBroker and pool-function protocol run against the Modal
stand-ins (tests/modal_fakes.py) on a VirtualClock: every Dict, Queue, Volume and
Function call costs its latency, some requests and responses are lost and retried as
modal's client does, containers pay a cold start, GPUs are finite and containers get
preempted (bench/elastic_cloud.py). Nothing sleeps for real: a 30-hour replay takes
about a minute. Figures are virtual seconds, so they do not depend on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import platform
import sys
import time

from bench.elastic_billing import breakdown, stream_table
from bench.elastic_cloud import SimCloud
from bench.elastic_workload import Outcome, Wave, fixed_boxes, seed_workload, training_gpu_hours
from golfq.core.events import EventKind
from golfq.core.spec import Budget, ExperimentSpec
from golfq.workers.modal.config import DEFAULT_POOLS, ModalConfig
from golfq.workers.modal.dispatch import Dispatcher
from tests.modal_fakes import FakeModal, MiB
from tests.modal_net import Network, VirtualClock

URL = "modal://golfq-bench"
DISPATCH_EVERY, DISPATCH_LISTEN, DISPATCH_COLD = 60.0, 20.0, 2.0  # the app's schedule, listen window, CPU boot
POLL_SECONDS = 30.0  # how often the agent looks at its wave
PREEMPT_PER_GPU_HOUR = (0.001, 0.005)  # "preemptions are rare" (Modal's guide): the rate and five times it
CHECKPOINT_SECONDS = 400.0  # the trainer's default (bench/checkpoint.py)
SAVE_SECONDS = 1.0  # one save of the baseline's state: bench/checkpoint.py's 0.73 s, rounded up
GIVE_UP_SECONDS = 7 * 86400.0  # a replay that has not finished in a virtual week is stuck: fail it


def bench_config(scaledown: dict[str, int] | None = None) -> ModalConfig:
    """golfq's caps in the replay: 48 single GPUs and five 8xH100 boxes at most; each pool's scale-down window is
    the app's (workers/modal/config.py) unless `scaledown` names another."""
    import msgspec

    pools = dict(DEFAULT_POOLS)
    pools["h100"] = msgspec.structs.replace(pools["h100"], max_containers=48, max_gpus=48)
    pools["h100x8"] = msgspec.structs.replace(pools["h100x8"], max_containers=5, max_gpus=40)
    for name, window in (scaledown or {}).items():
        pools[name] = msgspec.structs.replace(pools[name], scaledown_window=window)
    return ModalConfig(pools=pools)


class Replay:
    """One replay of the workload on golfq + simulated Modal."""

    def __init__(self, waves: list[Wave], *, cold_start: float = 60.0, latency: float = 0.03, seed: int = 1,
                 preempt_per_gpu_hour: float = PREEMPT_PER_GPU_HOUR[0], duplicate_spawn: float = 0.02,
                 checkpoint_seconds: float | None = CHECKPOINT_SECONDS, save_seconds: float = SAVE_SECONDS,
                 scaledown: dict[str, int] | None = None) -> None:
        self.waves = waves
        self.clock = VirtualClock()
        net = Network(latency, bandwidth=50 * MiB, lost_responses=0.01, lost_requests=0.005, seed=seed,
                      clock=self.clock)
        self.fake = FakeModal(clock=self.clock, net=net)
        self.config = bench_config(scaledown)
        self.cloud = SimCloud(self.clock, self.fake, self.config, URL, cold_start=cold_start, gpu_capacity=96,
                              placement_delay={1: 5.0, 8: 60.0}, preempt_per_gpu_hour=preempt_per_gpu_hour,
                              duplicate_spawn=duplicate_spawn, seed=seed, checkpoint_seconds=checkpoint_seconds,
                              save_seconds=save_seconds)
        self.kicks = 0
        self.submitted: dict[str, float] = {}
        self.waves_at: list[float] = []
        self.started = self.finished = 0.0

    def kick(self) -> None:
        self.fake.net.pause(self.fake.net.latency)  # Function.spawn of the dispatcher
        self.kicks += 1
        self.clock.notify()

    def dispatcher(self) -> None:
        """The scheduled `dispatch` function (max_containers=1): every minute and on a kick, a fresh
        container serves for DISPATCH_LISTEN seconds."""
        next_tick, warm_until = self.clock(), -1.0
        while not self.cloud.stopping:
            self.clock.wait_until(lambda: self.kicks > 0 or self.cloud.stopping,
                                  timeout=max(next_tick - self.clock(), 0.0))
            if self.cloud.stopping:
                return
            self.kicks = 0
            if self.clock() >= next_tick:
                next_tick = self.clock() + DISPATCH_EVERY
            if self.clock() > warm_until:
                self.clock.sleep(DISPATCH_COLD)
            broker = self.fake.broker(URL, clock=self.clock, kick=lambda: None, writer="dispatch")
            Dispatcher(broker, self.cloud, self.config).serve(DISPATCH_LISTEN)
            warm_until = self.clock() + 60.0

    def agent(self) -> None:
        broker = self.fake.broker(URL, clock=self.clock, kick=self.kick, writer="agent")
        self.started = self.clock()
        for index, wave in enumerate(self.waves):
            specs = [ExperimentSpec(pool=run.pool, name=f"{run.stage}-{index}-{i}",
                                    budget=Budget(train_seconds=run.seconds),
                                    env={"SIM_SECONDS": f"{run.seconds:.1f}", "RUN": f"{index}-{i}"})
                     for i, run in enumerate(wave)]
            ids = [job.id for job in broker.submit(specs)]
            self.submitted.update(dict.fromkeys(ids, self.clock()))
            self.waves_at.append(self.clock())
            while True:
                self.clock.sleep(POLL_SECONDS)
                jobs = broker.view().jobs
                if all(jobs[i].state.terminal for i in ids):
                    break
                if self.clock() - self.started > GIVE_UP_SECONDS:
                    self.cloud.stopping = True
                    raise RuntimeError(f"wave {index} has not finished after a virtual week")
            self.finished = max(jobs[i].result.finished_at or 0.0 for i in ids if jobs[i].result is not None)
            if index < len(self.waves) - 1:
                self.clock.sleep(max(self.finished + 120.0 - self.clock(), 0.0))
        for _ in range(20):  # let the dispatcher charge the last calls before the books close
            if all(call.ended_at is not None for call in broker.view().calls.values()):
                break
            self.clock.sleep(POLL_SECONDS)
        self.cloud.stopping = True
        self.clock.notify()

    def run(self) -> dict:
        real = time.perf_counter()
        self.clock.join()
        actors = [self.clock.start(self.cloud.placer, name="placer"),
                  self.clock.start(self.dispatcher, name="dispatch"), self.clock.start(self.agent, name="agent")]
        self.clock.leave()
        for actor in actors:
            actor.join(timeout=3600)
        return self.figures(time.perf_counter() - real)

    def figures(self, real_seconds: float) -> dict:
        reader = self.fake.broker(URL, clock=self.clock)
        state = reader.view()
        events = [e for e in reader.events(0, 10**9)]
        succeeded: dict[str, int] = {}
        for e in events:
            if e.kind is EventKind.SUCCEEDED:
                succeeded[e.job_id] = succeeded.get(e.job_id, 0) + 1
        f = self.cloud.figures
        waits = [f.spawn_at[j] - t for j, t in self.submitted.items() if j in f.spawn_at]
        return {
            "outcome": Outcome("golfq on Modal", self.finished - self.started, f.billed_gpu_seconds / 3600,
                               f.training_gpu_seconds / 3600),
            "jobs": len(self.submitted), "succeeded_once": sum(1 for n in succeeded.values() if n == 1),
            "counted_twice": sum(1 for n in succeeded.values() if n > 1),
            "stuck": sum(1 for j in self.submitted if not state.jobs[j].state.terminal),
            "charged_gpu_hours": sum(u.gpu_seconds for u in state.usage.values()) / 3600,
            "claim_to_spawn": sorted(f.claim_to_spawn), "submit_to_spawn": sorted(waits),
            "containers": f.containers, "preemptions": f.preemptions, "duplicate_spawns": f.duplicate_spawns,
            "big_preemptions": f.big_preemptions, "resumed": f.resumed, "saves": f.saves,
            "lost_gpu_hours": f.lost_gpu_seconds / 3600, "billed_by": f.billed_by, "warm_starts": f.warm_starts,
            "duplicates_trained": sum(1 for inputs in f.trained.values() if len(inputs) > 1),
            "calls": self.fake.net.calls,
            "lost": self.fake.net.responses_lost + self.fake.net.requests_lost, "log_entries": state.pos,
            "real_seconds": real_seconds,
        }


def pct(values: list[float], q: float) -> float:
    return values[min(int(q * len(values)), len(values) - 1)] if values else float("nan")


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h"


def _row(o: Outcome) -> str:
    return (f"{o.setup:<48} {hours(o.makespan):>9} {o.billed_gpu_hours:>12.1f} {o.training_gpu_hours:>14.1f} "
            f"{'$' + format(o.cost_usd, ',.0f'):>9} {o.utilisation:>6.0%}")


def stages(quick: bool, rates: tuple[float, ...] = PREEMPT_PER_GPU_HOUR,
           checkpoint_seconds: float | None = CHECKPOINT_SECONDS, scaledown: dict[str, int] | None = None) -> None:
    """The five stages at each preemption rate, five replays each, beside the same replays without preemption
    (and without checkpoints: nothing to save when nothing is lost)."""
    waves = seed_workload()
    seeds = (1,) if quick else (1, 2, 3, 4, 5)
    training = training_gpu_hours(waves)
    calm = {seed: Replay(waves, seed=seed, preempt_per_gpu_hour=0.0, checkpoint_seconds=None, scaledown=scaledown).run()
            for seed in seeds}
    box = fixed_boxes(waves, 1, one_at_a_time=True, setup="one 8xH100 box, one run at a time")
    packed = fixed_boxes(waves, 1, setup="one 8xH100 box, 1-GPU runs packed 8 at a time")
    cluster = fixed_boxes(waves, 5, setup="fixed 5x8xH100 cluster")
    saving = (f"a checkpoint every {checkpoint_seconds:g} s of training ({SAVE_SECONDS:g} s a save, billed)"
              if checkpoint_seconds else "no checkpoints: a preempted run restarts from zero")
    windows = ", ".join(f"{name} {pool.scaledown_window} s" for name, pool in bench_config(scaledown).pools.items())
    print(f"\n## the seed's five stages: {sum(len(w) for w in waves)} runs, {training:.1f} GPU-h of training; "
          f"cold start 60 s, 30 ms a call; {saving}; scale-down windows: {windows}")
    print(f"{'setup':<48} {'makespan':>9} {'billed GPU-h':>12} {'training GPU-h':>14} {'cost':>9} {'util':>6}")
    calm_median = sorted((r["outcome"] for r in calm.values()), key=lambda o: o.makespan)[len(calm) // 2]
    for o in (dataclasses.replace(calm_median, setup="golfq on Modal, no preemption (median)"), box, packed, cluster):
        print(_row(o))
    replays = {"no preemption": calm}
    for rate in rates:
        runs = replays[f"{rate:g} / GPU-h"] = {
            seed: Replay(waves, seed=seed, preempt_per_gpu_hour=rate, checkpoint_seconds=checkpoint_seconds,
                         scaledown=scaledown).run() for seed in seeds}
        print(f"\n### preemption {rate} per GPU-hour: each replay beside the same replay (seed) without preemption")
        print("| seed | makespan | without preemption | ratio | one box / golfq | billed GPU-h | billed / training "
              "| billed / training run | preempted (8xH100) | resumed | training lost GPU-h | twice / stuck |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        fast = near = thrifty = strict = 0
        for seed, r in runs.items():
            o, c = r["outcome"], calm[seed]["outcome"]
            speedup, ratio, billed = box.makespan / o.makespan, o.makespan / c.makespan, o.billed_gpu_hours / training
            fast, near = fast + (speedup >= 5.0), near + (ratio <= 1.05)
            thrifty += o.billed_gpu_hours <= 1.05 * o.training_gpu_hours
            strict += billed <= 1.05
            print(f"| {seed} | {hours(o.makespan)} | {hours(c.makespan)} | {ratio:.3f} | {speedup:.2f}x | "
                  f"{o.billed_gpu_hours:.1f} | {billed:.3f} | {o.billed_gpu_hours / o.training_gpu_hours:.3f} | "
                  f"{r['preemptions']} ({r['big_preemptions']}) | "
                  f"{r['resumed']} | {r['lost_gpu_hours']:.2f} | {r['counted_twice']} / {r['stuck']} |")
        print(f"at least 5x one box: {fast} of {len(runs)}; makespan within 5% of the replay without preemption: "
              f"{near} of {len(runs)}; billed at most 1.05x the training run (redone work included): {thrifty} of "
              f"{len(runs)}, at most 1.05x the workload's {training:.1f} GPU-h: {strict} of {len(runs)}")
    breakdown(replays, training)
    result = calm[seeds[0]]
    c2s, s2s = result["claim_to_spawn"], result["submit_to_spawn"]
    print(f"\nseed {seeds[0]} without preemption: {result['jobs']} jobs: {result['succeeded_once']} succeeded once; "
          f"claim -> spawn p50 {pct(c2s, .5):.2f} s, p99 {pct(c2s, .99):.2f} s, max {c2s[-1]:.2f} s (target < 2 s); "
          f"submit -> spawn p50 {pct(s2s, .5):.1f} s, p99 {pct(s2s, .99):.1f} s; {result['calls']:,} calls, "
          f"{result['lost']} lost and retried, {result['log_entries']:,} log entries")


def stream(quick: bool) -> None:
    stream_table(lambda waves, scaledown: Replay(waves, preempt_per_gpu_hour=0.0, checkpoint_seconds=None,
                                                 scaledown=scaledown).run(), quick)


def sweep(quick: bool) -> None:
    """How golfq's figures move with cold start, call latency and preemption (one replay each, seed 1)."""
    waves = seed_workload()
    box = fixed_boxes(waves, 1, one_at_a_time=True)
    grid = [(60.0, 0.03, 0.0)] if quick else (  # cold start and latency alone, then preemption
        [(cold, 0.03, 0.0) for cold in (30.0, 60.0, 120.0, 180.0)]
        + [(60.0, latency, 0.0) for latency in (0.02, 0.05, 0.1)]
        + [(60.0, 0.03, rate) for rate in PREEMPT_PER_GPU_HOUR])
    print("\n## sensitivity: golfq on Modal, one replay each (seed 1)")
    print(f"{'cold start':>10} {'latency':>8} {'preempt/GPU-h':>13} {'makespan':>9} {'vs box':>7} {'billed GPU-h':>12} "
          f"{'billed/train':>12} {'cost':>8} {'util':>5} {'claim->spawn p99':>16} {'preempted':>9}")
    for cold, latency, preempt in grid:
        r = Replay(waves, cold_start=cold, latency=latency, preempt_per_gpu_hour=preempt).run()
        o: Outcome = r["outcome"]
        print(f"{cold:>9.0f}s {latency * 1000:>6.0f}ms {preempt:>13.3f} {hours(o.makespan):>9} "
              f"{box.makespan / o.makespan:>6.1f}x {o.billed_gpu_hours:>12.1f} "
              f"{o.billed_gpu_hours / o.training_gpu_hours:>12.3f} {'$' + format(o.cost_usd, ',.0f'):>8} "
              f"{o.utilisation:>5.0%} {pct(r['claim_to_spawn'], .99):>15.2f}s {r['preemptions']:>9}")


def submit(quick: bool) -> None:
    """A 10,000-spec sweep from a laptop at 100 ms a call (20 MiB/s up), into an empty queue and a full one."""
    print("\n## submit a 10,000-spec sweep at 100 ms a call")
    for existing in (0, 10_000):
        clock = VirtualClock()
        fake = FakeModal(clock=clock, net=Network(0.1, bandwidth=20 * MiB, seed=3, clock=clock))
        if existing:
            seeder = fake.broker(URL, clock=clock, kick=lambda: None)
            seeder.submit([_sweep_spec(i, "old") for i in range(existing)])
            seeder.checkpoint()
        laptop = fake.broker(URL, clock=clock, kick=lambda: None)
        specs = [_sweep_spec(i, "new") for i in range(10_000)]
        calls, started = fake.net.calls, clock()
        jobs = laptop.submit(specs)
        took = clock() - started
        assert len({j.id for j in jobs}) == 10_000 and all(j.state.value == "queued" for j in jobs)
        print(f"into a queue of {existing:>6,} jobs: committed in {took:5.2f} s of virtual time (target < 10 s), "
              f"{fake.net.calls - calls} calls, {laptop.commits} log entries")


def _sweep_spec(i: int, tag: str) -> ExperimentSpec:
    return ExperimentSpec(pool="h100", seed=i % 3, tags=(tag,), env={
        "NUM_LAYERS": str(8 + i % 5), "MODEL_DIM": str(384 + 64 * (i % 4)), "MATRIX_LR": f"{0.02 + i * 1e-6:.6f}",
        "WARMDOWN_ITERS": str(1000 + i % 7 * 100), "RUN": f"{tag}-{i}"})
def writers(quick: bool) -> None:
    """1,000 jobs through 4 racing workers at 30 ms a call, with 5% of responses and 2% of requests lost, while a
    laptop an hour ahead submits in batches: none lost, none counted twice, none stuck."""
    jobs_total, workers = (200 if quick else 1000), 4
    clock = VirtualClock()
    net = Network(0.03, lost_responses=0.05, lost_requests=0.02, seed=11, clock=clock)
    fake = FakeModal(clock=clock, net=net)
    brokers = []
    done = {"submitting": True}

    def laptop() -> None:
        broker = fake.broker(URL, clock=lambda: clock() + 3600.0, kick=lambda: None, writer="laptop")
        brokers.append(broker)
        for batch in range(10):
            broker.submit([ExperimentSpec(pool="cpu", seed=batch * 1000 + i, env={"RUN": str(i)})
                           for i in range(jobs_total // 10)])
            clock.sleep(60.0)
        done["submitting"] = False

    def worker(name: str, skew: float) -> None:
        import random

        rng = random.Random(name)
        broker = fake.broker(URL, clock=lambda: clock() + skew, kick=lambda: None, writer=name)
        brokers.append(broker)
        while True:
            lease = _retrying(clock, lambda: broker.claim("cpu", name, lease_seconds=60.0))
            if lease is None:
                state = broker.view()
                if not done["submitting"] and not state.queued.get("cpu") and not state.leased.get("cpu"):
                    return
                clock.sleep(1.0)
                continue
            for _ in range(rng.randint(1, 4)):  # 15-60 s of work, a beat every 15 s
                clock.sleep(15.0)
                _retrying(clock, functools.partial(broker.heartbeat, lease, 60.0))
            _retrying(clock, lambda held=lease: broker.complete(held, _result(held, clock())))

    clock.join()
    actors = [clock.start(laptop, name="laptop")] + [clock.start(worker, f"w{i}", skew, name=f"w{i}")
                                                     for i, skew in enumerate((0.0, 1.5, -2.0, 0.5))]
    started = clock()
    clock.leave()
    for actor in actors:
        actor.join(timeout=1800)
    reader = fake.broker(URL, clock=clock)
    events = reader.events(0, 10**9)
    counted: dict[str, int] = {}
    for e in events:
        if e.kind is EventKind.SUCCEEDED:
            counted[e.job_id] = counted.get(e.job_id, 0) + 1
    submitted = {e.job_id for e in events if e.kind is EventKind.SUBMITTED}
    stuck = [j for j in reader.list() if not j.state.terminal]
    print(f"\n## {jobs_total:,} jobs, {workers} racing workers and a laptop 1 h ahead, 30 ms a call, "
          f"{net.responses_lost} responses and {net.requests_lost} requests lost")
    print(f"submitted {len(submitted):,}, succeeded {len(counted):,}, lost {jobs_total - len(counted)}, counted twice "
          f"{sum(1 for n in counted.values() if n > 1)}, stuck {len(stuck)}; "
          f"{sum(1 for e in events if e.kind is EventKind.CLAIMED):,} claims, "
          f"{sum(1 for e in events if e.kind is EventKind.SUPERSEDED)} superseded reports")
    print(f"{clock() - started:,.0f} s of virtual time; {sum(b.commits for b in brokers):,} commits, "
          f"{sum(b.conflicts for b in brokers):,} lost races for a slot (step run again), {net.calls:,} calls")


def _retrying(clock: VirtualClock, call):
    """As the runner and the fleet do: a call whose retries all failed is tried again a little later."""
    from grpclib.exceptions import GRPCError

    while True:
        try:
            return call()
        except GRPCError:
            clock.sleep(2.0)


def _result(lease, now: float):
    from golfq.core.result import Result

    return Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.3,
                  artifact_bytes=10**6, train_seconds=30.0, finished_at=now)


def idle(quick: bool) -> None:
    """A queue left alone for 30 virtual days: every Dict entry expires; the next client restores it."""
    clock = VirtualClock()
    fake = FakeModal(clock=clock, net=Network(0.1, bandwidth=20 * MiB, seed=5, clock=clock))
    broker = fake.broker(URL, clock=clock, kick=lambda: None)
    total = 500 if quick else 2000
    broker.submit([ExperimentSpec(pool="h100", seed=i, env={"RUN": str(i)}) for i in range(total)])
    for _ in range(total // 4):
        lease = broker.claim("h100", "w")
        broker.complete(lease, _result(lease, clock()))
    broker.checkpoint()  # the dispatcher's last pass before the app went quiet
    before = (broker.list(), broker.front("1xH100"), broker.events(0, 10**9))
    clock.advance(30 * 86400.0)
    expired = all(d.len() == 0 for d in fake.dicts.values())
    fresh = fake.broker(URL, clock=clock, kick=lambda: None)
    calls, started = fake.net.calls, clock()
    state = fresh.view()
    took = clock() - started
    after = (fresh.list(), fresh.front("1xH100"), fresh.events(0, 10**9))
    print(f"\n## 30 idle days: {total:,} jobs, {total // 4:,} results; every Dict entry expired: {expired}")
    print(f"restored from the Volume in {took:.1f} s of virtual time at 100 ms a call "
          f"({fake.net.calls - calls} calls); "
          f"jobs intact: {after[0] == before[0]}, front intact: {after[1] == before[1]}, "
          f"events intact: {after[2] == before[2]}; now generation {state.gen} at entry {state.pos}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=["stages", "stream", "sweep", "submit", "writers", "idle"])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--preempt", type=float, action="append", metavar="RATE",
                        help=f"stages: preemptions per GPU-hour, repeatable (default {PREEMPT_PER_GPU_HOUR})")
    parser.add_argument("--checkpoint-seconds", type=float, default=CHECKPOINT_SECONDS, metavar="S",
                        help="stages: a run saves every S seconds of training; 0: no checkpoints (restart from zero)")
    parser.add_argument("--scaledown-window", action="append", default=[], metavar="POOL=S",
                        help="stages: this pool's scale-down window instead of the app's (e.g. h100x8=120), repeatable")
    args = parser.parse_args(argv)
    try:
        scaledown = {pool: int(seconds) for pool, _, seconds in (w.partition("=") for w in args.scaledown_window)}
    except ValueError:
        parser.error("--scaledown-window: expected POOL=SECONDS")
    logging.getLogger("golfq").setLevel(logging.ERROR)  # restores and lost wake-ups are expected here
    print(f"# golfq bench/elastic.py  python {platform.python_version()}  {time.strftime('%Y-%m-%d %H:%M')}  "
          "(figures in virtual time)")
    for name in args.only or ["submit", "writers", "idle", "stages", "stream", "sweep"]:
        if name == "stages":
            stages(args.quick, tuple(args.preempt or PREEMPT_PER_GPU_HOUR), args.checkpoint_seconds or None, scaledown)
        else:
            globals()[name](args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
