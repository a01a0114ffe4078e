"""SQLite broker figures: one batch submit of 10,000 specs, claim-to-complete overhead per no-op job.

Workers are real processes (spawned, each opening the queue by URL), released together
once all are connected, so start-up is not in the figure.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.broker_workers import bench_specs, claim_noops, timed_workers
from golfq.core.backends import open_broker
from golfq.core.spec import ExperimentSpec

Row = tuple[str, str, str]
SUBMIT_TARGET_S = 1.0


def _specs(count: int, salt: str) -> list[ExperimentSpec]:
    return bench_specs(count, salt, MODEL_DIM="512")


def _time_submit(folder: Path, count: int, repeats: int) -> tuple[float, float]:
    """(best fresh submit, best resubmit of the same batch, all deduped), seconds."""
    fresh, again = float("inf"), float("inf")
    for round_ in range(repeats):
        broker = open_broker(f"sqlite:///{folder / f'submit-{round_}.db'}")
        specs = _specs(count, str(round_))
        started = time.perf_counter()
        jobs = broker.submit(specs)
        fresh = min(fresh, time.perf_counter() - started)
        started = time.perf_counter()
        assert broker.submit(specs) == jobs
        again = min(again, time.perf_counter() - started)
        assert broker.stats().total(jobs[0].state) == count
        broker.close()
    return fresh, again


def _drain(url: str, worker_id: str, ready, report) -> None:
    broker = open_broker(url)
    broker.stats()  # connect before the clock starts
    ready.wait()
    report.put((claim_noops(broker, worker_id), time.monotonic()))


def _time_noop_jobs(folder: Path, jobs: int, workers: int, options: str = "") -> float:
    """Wall seconds for `workers` processes to claim and complete `jobs` no-op jobs."""
    url = f"sqlite:///{folder / f'noop-{workers}-{len(options)}.db'}{options}"
    broker = open_broker(url)
    broker.submit(_specs(jobs, f"noop{workers}"))
    finished, wall = timed_workers(_drain, (url,), workers)
    assert sum(done for done, _ in finished) == jobs and broker.stats().pools["cpu"].succeeded == jobs
    broker.close()
    return wall


def rows(quick: bool) -> list[Row]:
    count, noop = 10_000, 500 if quick else 3_000
    with tempfile.TemporaryDirectory(prefix="golfq-bench-") as tmp:
        folder = Path(tmp)
        fresh, again = _time_submit(folder, count, 1 if quick else 3)
        verdict = "meets" if fresh < SUBMIT_TARGET_S else "MISSES"
        out: list[Row] = [
            (f"submit {count:,} specs, one batch (best of {1 if quick else 3})", f"{fresh * 1000:,.0f} ms",
             f"target < {SUBMIT_TARGET_S:.0f} s: {verdict} ({SUBMIT_TARGET_S / fresh:.1f}x headroom)"),
            (f"submit the same {count:,} again (all deduped)", f"{again * 1000:,.0f} ms", ""),
        ]
        one = _time_noop_jobs(folder, noop, 1)
        for workers in (1, 4):
            wall = one if workers == 1 else _time_noop_jobs(folder, noop, workers)
            out.append((f"claim->complete, no-op job, {workers} worker process{'es' if workers > 1 else ''}",
                        f"{wall / noop * 1000:.2f} ms/job",
                        f"{noop / wall:,.0f} jobs/s over {noop:,} jobs" +
                        ("" if workers == 1 else f"; {one / wall:.2f}x the 1-worker rate")))
        synced = _time_noop_jobs(folder, noop, 1, "?synchronous=full")
        out.append(("same, 1 worker, ?synchronous=full (fsync per commit)", f"{synced / noop * 1000:.2f} ms/job",
                    f"{noop / synced:,.0f} jobs/s; {synced / one:.1f}x the default's time"))
    return out
