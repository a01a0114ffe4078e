"""RQ workers on a real redis-server: a worker machine dies, the server restarts, RQ's tools.

Each test starts its own server (append-only on) in a tmp dir, and runs `golfq worker`'s
RQ path (golfq.workers.rq.worker) with the real runner on a tiny training script.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from golfq.core.backends.redis.broker import RedisBroker
from golfq.core.backends.redis.rq import queue_name, token
from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.spec import Budget, ExperimentSpec
from golfq.workers.rq.worker import _exited
from tests import redis_server

pytestmark = [
    pytest.mark.redis_server,
    pytest.mark.skipif(not Path(redis_server.REDIS_SERVER).exists(),
                       reason="redis-server is not installed (/usr/bin/redis-server); .ci/run installs it"),
]
ROOT = Path(__file__).resolve().parents[1]
DETECT = 4.0

# Writes its pid and its parent's (the RQ work horse) where the test can find them.
TRAIN = b"""import os, pathlib, time
pathlib.Path("pids").write_text(f"{os.getpid()} {os.getppid()}")
time.sleep(float(os.environ["TRAIN_SLEEP"]))
print(f"final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:{1 + int(os.environ['SEED']) / 1000}")
print("Total submission size int8+zlib: 4096 bytes")
"""


@pytest.fixture
def server(tmp_path):
    srv = redis_server.RedisServer(tmp_path / "redis").start()
    yield srv
    srv.stop()


class Workers:
    """`golfq worker --queue URL --pool cpu` as a subprocess (the RQ supervisor)."""

    def __init__(self, url: str, work_dir: Path, concurrency: int) -> None:
        code = ("import sys; from golfq.workers.rq.worker import run_rq_workers; "
                f"sys.exit(run_rq_workers({url!r}, 'cpu', concurrency={concurrency}, work_dir={str(work_dir)!r}, "
                f"detect_seconds={DETECT}))")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.log: list[str] = []
        threading.Thread(target=lambda: self.log.extend(self.proc.stderr), daemon=True).start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def submit(broker: RedisBroker, n: int, sleep: float) -> list:
    ref = broker.put_script(TRAIN)
    return broker.submit([ExperimentSpec(pool="cpu", trainer=ref, seed=i, env={"TRAIN_SLEEP": str(sleep)},
                                         budget=Budget(train_seconds=30)) for i in range(n)])


def wait_for(condition, timeout: float, what: str):
    give_up = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.05)


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def events_by_job(broker: RedisBroker) -> dict[str, list]:
    by_job = collections.defaultdict(list)
    after = 0
    while batch := broker.events(after_seq=after, limit=1000):
        for e in batch:
            by_job[e.job_id].append(e)
        after = batch[-1].seq
    return by_job


def assert_each_succeeded_once(broker: RedisBroker, jobs: list) -> dict[str, list]:
    by_job = events_by_job(broker)
    for job in jobs:
        final = broker.get(job.id)
        assert final.state is JobState.SUCCEEDED, (job.id, final.state, final.error)
        kinds = [e.kind for e in by_job[job.id]]
        assert kinds.count(EventKind.SUCCEEDED) == 1 and kinds.count(EventKind.SUBMITTED) == 1
        assert final.result.attempt == final.attempt and final.result.val_bpb == 1 + job.spec.seed / 1000
    assert broker.front("cpu").results == len(jobs)
    return by_job


def test_a_killed_worker_and_horse_rerun_the_job_once_within_detection_time(server, tmp_path):
    broker = RedisBroker(server.url)
    (job,) = submit(broker, 1, sleep=2.5)
    workers = Workers(server.url, tmp_path / "runs", concurrency=1)
    try:
        pids = wait_for(lambda: next((p for p in (tmp_path / "runs").glob("*-1/pids")), None), 30, "attempt 1")
        train = int(wait_for(lambda: pids.read_text().split() or None, 5, "pids")[0])
        horse = parent_of(train)
        rq_worker = parent_of(horse)
        assert broker.get(job.id).state is JobState.LEASED
        for pid in (rq_worker, horse, train):  # what a machine dying does to them
            os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        wait_for(lambda: broker.get(job.id).state is JobState.SUCCEEDED, 30, "the re-run")
    finally:
        workers.stop()
    by_job = assert_each_succeeded_once(broker, [job])
    (lost,) = [e for e in by_job[job.id] if e.kind is EventKind.FAILED]
    assert lost.attempt == 1 and lost.failure is FailureKind.INFRA and "lease expired" in lost.error
    assert lost.ts - killed_at <= DETECT + 0.5  # detected within the configured time, not RQ's ~10 min
    assert broker.get(job.id).attempt == 2
    q = broker.rq.queue("cpu")
    assert broker.redis.zcard(q.started_job_registry.key) == 0  # golfq ran RQ's clean-up itself
    assert q.failed_job_registry.get_job_ids() == [token(job.id, 1)]


def test_restarting_the_server_mid_sweep_loses_no_job_and_no_result(server, tmp_path):
    broker = RedisBroker(server.url)
    jobs = submit(broker, 12, sleep=0.4)
    workers = Workers(server.url, tmp_path / "runs", concurrency=2)
    try:
        wait_for(lambda: broker.stats().total(JobState.SUCCEEDED) >= 3, 60, "the sweep to start")
        assert broker.stats().total(JobState.SUCCEEDED) < len(jobs)
        server.restart(down_seconds=1.0)
        wait_for(lambda: broker.stats().total(JobState.SUCCEEDED) == len(jobs), 90, "the sweep to finish")
    finally:
        workers.stop()
    assert_each_succeeded_once(broker, jobs)
    stats = broker.stats()
    assert stats.total(JobState.QUEUED) == stats.total(JobState.LEASED) == 0


def test_rq_tools_see_golfq_queues_and_rq_stop_cancels_a_running_job(server, tmp_path):
    broker = RedisBroker(server.url)
    (job,) = submit(broker, 1, sleep=60)
    info = subprocess.run([sys.executable, "-m", "rq.cli", "info", "-u", server.url, queue_name("cpu")],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "golfq:cpu" in info.stdout and "1" in info.stdout, info.stderr
    workers = Workers(server.url, tmp_path / "runs", concurrency=1)
    try:
        wait_for(lambda: broker.get(job.id).state is JobState.LEASED and list((tmp_path / "runs").glob("*/pids")),
                 30, "the job to start")
        train = int(next((tmp_path / "runs").glob("*/pids")).read_text().split()[0])
        assert broker.cancel([job.id]) == [job.id]
        wait_for(lambda: _exited(train), 25, "RQ's stop to end the training process (it would sleep 60 s)")
        q = broker.rq.queue("cpu")
        wait_for(lambda: broker.redis.zcard(q.started_job_registry.key) == 0, 20, "the RQ job to end")
    finally:
        workers.stop()
    assert broker.get(job.id).state is JobState.CANCELLED
    assert broker.stats().extra["rq.cpu.started"] == 0


def test_a_token_taken_by_a_worker_that_died_before_claiming_comes_back_within_detection_time(server, tmp_path):
    """The window: RQ moved the token into its started registry, then the machine died before the
    work horse claimed golfq's attempt. No lease exists, so only the stranded-token sweep can help."""
    broker = RedisBroker(server.url)
    (job,) = submit(broker, 1, sleep=0.1)
    q = broker.rq.queue("cpu")
    tok = token(job.id, 1)
    assert broker.redis.lpop(q.key).decode() == tok  # what a worker's dequeue does ...
    broker.redis.zadd(q.started_job_registry.key, {f"{tok}:dead-execution": time.time() + 3600})
    broker.redis.hset(f"rq:job:{tok}", "status", "started")  # ... and then it died
    died_at = time.time()
    workers = Workers(server.url, tmp_path / "runs", concurrency=1)
    try:
        wait_for(lambda: broker.get(job.id).state is JobState.SUCCEEDED, DETECT + 20, "the stranded job to run")
    finally:
        workers.stop()
    by_job = assert_each_succeeded_once(broker, [job])
    claimed = next(e for e in by_job[job.id] if e.kind is EventKind.CLAIMED)
    assert claimed.attempt == 1 and claimed.ts - died_at <= DETECT + 2.0  # back within detection, not RQ's ~11 min
    assert not [e for e in by_job[job.id] if e.kind is EventKind.FAILED]  # nothing ran, so nothing failed
    assert broker.redis.zcard(q.started_job_registry.key) == 0


def _rq_worker_pids(broker: RedisBroker) -> list[int]:
    from rq import Worker

    return [w.pid for w in Worker.all(connection=broker.redis, queue=broker.rq.queue("cpu")) if w.pid]


def test_killing_the_supervisor_takes_its_rq_workers_and_releases_their_job(server, tmp_path):
    broker = RedisBroker(server.url)
    (job,) = submit(broker, 1, sleep=60)
    workers = Workers(server.url, tmp_path / "runs", concurrency=2)
    pids = wait_for(lambda: len(_rq_worker_pids(broker)) == 2 and _rq_worker_pids(broker), 30, "2 RQ workers")
    wait_for(lambda: broker.get(job.id).state is JobState.LEASED, 30, "the job to start")
    train = int(wait_for(lambda: next((tmp_path / "runs").glob("*-1/pids"), None), 10, "pids").read_text().split()[0])
    workers.proc.send_signal(signal.SIGKILL)  # the supervisor dies without a word
    workers.proc.wait()
    wait_for(lambda: all(_exited(pid) for pid in pids), 20, "its RQ workers to exit")
    wait_for(lambda: _exited(train), 20, "the training process to stop")
    after = broker.get(job.id)
    assert after.state is JobState.QUEUED and after.failures == {}  # released at once, not counted as a failure
    assert "released" in after.error
