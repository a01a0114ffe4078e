"""The Modal backend when a whole wave finishes at once, at real latency, in virtual time.

    python -m bench.modal_wave                 # every section
    python -m bench.modal_wave --only writers  # writers | wave | behind

The real ModalBroker runs against the Modal stand-ins (tests/modal_fakes.py) on a
VirtualClock: every Dict, Queue and Volume call costs its latency (half out, half
back), 1% of responses and 0.5% of requests are lost and retried as modal's client
does. Figures are virtual seconds: they do not depend on this machine.
"""

from __future__ import annotations

import argparse
import collections
import threading
import time

from golfq.core.job import CompleteOutcome, JobState
from golfq.core.result import Result
from golfq.core.spec import ExperimentSpec
from tests.modal_fakes import FakeModal, MiB
from tests.modal_net import Network, VirtualClock

URL = "modal://golfq-wave"
START = 1_800_000_000.0


def _fake(latency: float, seed: int) -> tuple[VirtualClock, FakeModal]:
    clock = VirtualClock(START)
    net = Network(latency, bandwidth=50 * MiB, lost_responses=0.01, lost_requests=0.005, seed=seed, clock=clock)
    return clock, FakeModal(clock=clock, net=net)


def _spec(i: int) -> ExperimentSpec:
    return ExperimentSpec(pool="cpu", name=f"wave-{i}", seed=i, env={"I": str(i)})


def _result(lease, now: float) -> Result:
    return Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.3,
                  artifact_bytes=10**6, train_seconds=30.0, finished_at=now)


def _race(clock: VirtualClock, actors: list) -> float:
    clock.join()
    begin = clock()
    threads = [clock.start(actor, name=f"a{i}") for i, actor in enumerate(actors)]
    clock.leave()
    for thread in threads:
        thread.join()
    return clock() - begin


def writers(latency: float, workers: int = 4, jobs: int = 800) -> dict:
    """`workers` threads, each its own broker, claim and complete until the queue is empty."""
    clock, fake = _fake(latency, seed=3)
    fake.broker(URL, clock=clock, kick=lambda: None, writer="submit").submit([_spec(i) for i in range(jobs)])
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()
    before = fake.net.calls

    def worker(name: str):
        def run() -> None:
            broker = fake.broker(URL, clock=clock, kick=lambda: None, writer=name)
            while (lease := broker.claim("cpu", name, lease_seconds=3600)) is not None:
                outcome = broker.complete(lease, _result(lease, clock()))
                with lock:
                    outcomes[outcome.value] += 1
        return run

    seconds = _race(clock, [worker(f"w{i}") for i in range(workers)])
    reader = fake.broker(URL, clock=clock, writer="reader")
    succeeded = reader.stats().total(JobState.SUCCEEDED)
    stuck = len(reader.list([JobState.QUEUED, JobState.LEASED]))
    return {"seconds": seconds, "counted": outcomes[CompleteOutcome.COUNTED.value], "other": sum(outcomes.values())
            - outcomes[CompleteOutcome.COUNTED.value], "succeeded": succeeded, "stuck": stuck,
            "calls_per_job": (fake.net.calls - before) / jobs, "entries": reader.view().pos}


def wave(latency: float, writers: int = 200) -> dict:
    """`writers` runners holding one lease each complete at the same virtual instant."""
    clock, fake = _fake(latency, seed=5)
    setup = fake.broker(URL, clock=clock, kick=lambda: None, writer="setup")
    setup.submit([_spec(i) for i in range(writers)])
    leases = [setup.claim("cpu", f"w{i}", lease_seconds=3600) for i in range(writers)]
    brokers = [fake.broker(URL, clock=clock, kick=lambda: None, writer=f"w{i}") for i in range(writers)]
    for broker in brokers:
        broker.view()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def finish(index: int):
        def run() -> None:
            begin = clock()
            try:
                outcome = brokers[index].complete(leases[index], _result(leases[index], begin))
                ok = outcome is CompleteOutcome.COUNTED
            except Exception as error:  # noqa: BLE001 - counted as a failure, the figure this measures
                ok, outcome = False, error
            with lock:
                latencies.append(clock() - begin)
                if not ok:
                    failures.append(str(outcome))
        return run

    start = clock()
    entries = setup.view().pos
    _race(clock, [finish(i) for i in range(writers)])
    ordered = sorted(latencies)
    reader = fake.broker(URL, clock=clock, writer="reader")
    return {"failures": len(failures), "p50": ordered[len(ordered) // 2], "p99": ordered[int(len(ordered) * 0.99)
            - 1 if len(ordered) >= 100 else -1], "max": ordered[-1], "seconds": clock() - start,
            "succeeded": reader.stats().total(JobState.SUCCEEDED), "entries": reader.view().pos - entries}


def behind(latency: float, entries: int = 1000) -> dict:
    """A fresh process opens a queue whose log has `entries` entries, none of them read by a dispatcher."""
    clock, fake = _fake(latency, seed=9)
    writer = fake.broker(URL, clock=clock, kick=lambda: None, writer="writer")
    clock.join()
    for i in range(entries):
        writer.submit([_spec(i)])
    calls, begin = fake.net.calls, clock()
    fresh = fake.broker(URL, clock=clock, writer="fresh")
    jobs = len(fresh.list())
    seconds = clock() - begin
    clock.leave()
    return {"seconds": seconds, "calls": fake.net.calls - calls, "jobs": jobs, "pos": fresh.view().pos}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=["writers", "wave", "behind"])
    args = parser.parse_args(argv)
    wall = time.monotonic()
    for name in args.only or ["writers", "wave", "behind"]:
        if name == "writers":
            print("## 4 writers x 200 jobs, claim + complete until empty (virtual seconds)")
            print("| latency | done in | counted | other outcomes | succeeded | stuck | round trips/job | entries |")
            print("|---|---|---|---|---|---|---|---|")
            for latency in (0.03, 0.1):
                r = writers(latency)
                print(f"| {latency * 1000:.0f} ms | {r['seconds']:.1f} s | {r['counted']} | {r['other']} | "
                      f"{r['succeeded']} | {r['stuck']} | {r['calls_per_job']:.1f} | {r['entries']} |")
        elif name == "wave":
            print("\n## 200 writers completing at the same instant, 30 ms a call (virtual seconds)")
            r = wave(0.03)
            print("| failures | p50 | p99 | max | succeeded | entries for 200 completions |")
            print("|---|---|---|---|---|---|")
            print(f"| {r['failures']} | {r['p50']:.2f} s | {r['p99']:.2f} s | {r['max']:.2f} s | {r['succeeded']} | "
                  f"{r['entries']} |")
        else:
            print("\n## a fresh process 1,000 entries behind the log, 30 ms a call (virtual seconds)")
            r = behind(0.03)
            print("| read in | calls | jobs | position |")
            print("|---|---|---|---|")
            print(f"| {r['seconds']:.2f} s | {r['calls']} | {r['jobs']} | {r['pos']} |")
    print(f"\n(wall time {time.monotonic() - wall:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
