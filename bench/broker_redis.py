"""Redis broker figures beside plain RQ and redis-benchmark, on one local redis-server.

- submit 10,000 specs in one batch, against RQ's own enqueue_many of 10,000 no-op jobs;
- claim->complete per no-op job with 1 and 4 worker processes, min/median/max of several runs (Broker.claim/complete,
  as for SQLite), and through RQ (SimpleWorker running golfq's job function with a
  no-op runner), against plain RQ (enqueue + SimpleWorker on no-op jobs);
- redis-benchmark LPUSH+LPOP (one client, unpipelined): the physical limit of a queue hop.
The server runs with append-only on (fsync every second), as .ci/run and the README set it.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.broker_workers import bench_specs, claim_noops, timed_workers
from golfq.core.backends.redis.broker import RedisBroker
from golfq.core.result import Result
from tests.redis_server import RedisServer

Row = tuple[str, str, str]
RQ_QUEUE = "bench-plain"


def noop(_: int = 0) -> None:
    """Plain RQ's job."""


def noop_runner(broker, lease, **_):
    """golfq's job function with nothing to train: heartbeat-free claim -> complete."""
    result = Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded")
    broker.complete(lease, result)
    return result


def _fresh(url: str) -> RedisBroker:
    broker = RedisBroker(url)
    broker.redis.flushdb()
    return broker


def _time_submits(url: str, count: int, repeats: int) -> tuple[float, float]:
    """(best golfq submit, best RQ enqueue_many), seconds, each on an empty db."""
    from rq import Queue

    golfq = rq = float("inf")
    for round_ in range(repeats):
        broker = _fresh(url)
        specs = bench_specs(count, str(round_))
        started = time.perf_counter()
        broker.submit(specs)
        golfq = min(golfq, time.perf_counter() - started)
        broker.redis.flushdb()
        q = Queue(RQ_QUEUE, connection=broker.redis, serializer="json")
        datas = [Queue.prepare_data(noop, args=[i]) for i in range(count)]
        started = time.perf_counter()
        q.enqueue_many(datas)
        rq = min(rq, time.perf_counter() - started)
        broker.close()
    return golfq, rq


def _work(kind: str, url: str, worker_id: str, ready, report) -> None:
    from rq import SimpleWorker

    from golfq.workers.rq.worker import PromptExit

    class Simple(PromptExit, SimpleWorker):
        """RQ's SimpleWorker with golfq's prompt exit (both kinds: the figure is per job, not RQ's exit)."""

    broker = RedisBroker(url)
    done = 0
    if kind == "claim":
        ready.wait()
        done = claim_noops(broker, worker_id)
    else:
        from golfq.workers.rq import job as rq_job

        rq_job.config = rq_job.HorseConfig(runner="bench.broker_redis:noop_runner")
        queue = broker.rq.queue("cpu") if kind == "golfq-rq" else RQ_QUEUE
        worker = Simple([queue], connection=broker.redis, serializer="json", name=f"{worker_id}-{os.getpid()}")
        ready.wait()
        worker.work(burst=True, logging_level="ERROR")
    report.put((done, time.monotonic()))


def _time_jobs(kind: str, url: str, jobs: int, workers: int) -> float:
    """Wall seconds for `workers` processes to run `jobs` no-op jobs, start-up excluded."""
    from rq import Queue

    broker = _fresh(url)
    if kind == "rq":
        Queue(RQ_QUEUE, connection=broker.redis, serializer="json").enqueue_many(
            [Queue.prepare_data(noop, args=[i]) for i in range(jobs)])
    else:
        broker.submit(bench_specs(jobs, f"{kind}{workers}"))
    finished, wall = timed_workers(_work, (kind, url), workers)
    if kind == "claim":
        assert sum(done for done, _ in finished) == jobs
    if kind == "rq":
        assert Queue(RQ_QUEUE, connection=broker.redis).finished_job_registry.get_job_count() == jobs
    else:
        assert broker.stats().pools["cpu"].succeeded == jobs
    broker.close()
    return wall


def _redis_benchmark(port: int, requests: int) -> dict[str, float]:
    """requests/s for LPUSH and LPOP, one client, no pipelining."""
    out = subprocess.run(["redis-benchmark", "-p", str(port), "-c", "1", "-n", str(requests), "-q", "-t", "lpush,lpop"],
                         capture_output=True, text=True, timeout=300).stdout
    rates = dict(re.findall(r"^(LPUSH|LPOP)[^:]*:\s*([\d.]+) requests per second", out.replace("\r", "\n"), re.M))
    return {name: float(rate) for name, rate in rates.items()}


def _spread(kind: str, url: str, jobs: int, workers: int, runs: int) -> list[float]:
    """ms per job of each of `runs` runs, sorted."""
    return sorted(_time_jobs(kind, url, jobs, workers) / jobs * 1000 for _ in range(runs))


def _mmm(values: list[float]) -> str:
    return f"{values[0]:.2f}/{statistics.median(values):.2f}/{values[-1]:.2f}"


def rows(quick: bool) -> list[Row]:
    count, noop_jobs, repeats = 10_000, 300 if quick else 2_000, 1 if quick else 3
    runs = 2 if quick else 5
    with tempfile.TemporaryDirectory(prefix="golfq-bench-redis-") as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            url = server.url
            limit = _redis_benchmark(server.port, 20_000 if quick else 100_000)
            hop_ms = 1000 / limit["LPUSH"] + 1000 / limit["LPOP"]
            golfq_submit, rq_submit = _time_submits(url, count, repeats)
            out: list[Row] = [
                (f"submit {count:,} specs, one batch (best of {repeats})", f"{golfq_submit * 1000:,.0f} ms",
                 f"RQ enqueue_many {count:,}: {rq_submit * 1000:,.0f} ms -> {golfq_submit / rq_submit:.1f}x RQ; "
                 f"{golfq_submit / count * limit['LPUSH']:.0f}x an LPUSH per spec"),
            ]
            for workers in (1, 4):
                plain = _spread("rq", url, noop_jobs, workers, runs)
                for kind, label in (("claim", "Broker.claim->complete"), ("golfq-rq", "via RQ SimpleWorker")):
                    per_job = _spread(kind, url, noop_jobs, workers, runs)
                    ratio = statistics.median(per_job) / statistics.median(plain)
                    out.append((f"{label}, no-op job, {workers} worker process{'es' if workers > 1 else ''}",
                                f"{statistics.median(per_job):.2f} ms/job",
                                f"min/median/max of {runs} runs {_mmm(per_job)}; plain RQ {_mmm(plain)} -> "
                                f"{ratio:.2f}x RQ; {statistics.median(per_job) / hop_ms:.0f}x an LPUSH+LPOP "
                                f"({hop_ms * 1000:.0f} us)"))
            out.append(("redis-benchmark LPUSH / LPOP, 1 client (physical limit)",
                        f"{limit['LPUSH']:,.0f} / {limit['LPOP']:,.0f} ops/s",
                        f"one queue hop = {hop_ms * 1000:.0f} us"))
        finally:
            server.stop()
    return out
