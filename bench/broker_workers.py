"""What the SQLite and Redis broker benchmarks share: bench specs, the no-op claim loop,
and worker processes released together so start-up is not in the figure."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable

from golfq.core.result import Result
from golfq.core.spec import ExperimentSpec


def bench_specs(count: int, salt: str, **env: str) -> list[ExperimentSpec]:
    return [ExperimentSpec(name=f"bench-{i}", seed=i, env={"RUN": salt, "NUM_LAYERS": "9", **env}, tags=("bench",))
            for i in range(count)]


def claim_noops(broker, worker_id: str) -> int:
    """Claim and complete no-op jobs until the pool is empty; how many."""
    done = 0
    while (lease := broker.claim("cpu", worker_id, lease_seconds=60)) is not None:
        broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded"))
        done += 1
    return done


def timed_workers(target: Callable, args: tuple, workers: int) -> tuple[list[tuple[int, float]], float]:
    """Run target(*args, worker_id, ready, report) in `workers` spawned processes, released together
    once all are up; each puts (jobs done, time.monotonic() at its end) on report.
    Returns those reports and the wall seconds from the release to the last end."""
    context = multiprocessing.get_context("spawn")
    ready, report = context.Barrier(workers + 1), context.Queue()
    procs = [context.Process(target=target, args=(*args, f"w{i}", ready, report)) for i in range(workers)]
    for proc in procs:
        proc.start()
    ready.wait()
    started = time.monotonic()
    finished = [report.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    return finished, max(end for _, end in finished) - started
