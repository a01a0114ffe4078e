"""Real worker processes on one queue: SIGKILL and SIGSTOP them mid-job, lose nothing, count nothing twice.

Runs on every backend in conftest.URL_BACKENDS, in real time (short leases).
"""

from __future__ import annotations

import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.result import FailureKind
from tests.contract.helpers import all_events, replayed_front, spec
from tests.modal_server import open_url as open_broker  # open_broker, plus the fake Modal workspace

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.0


class WorkerProc:
    """One worker_proc subprocess whose output lines arrive on a queue.

    Gated workers (--gate) hold each claim until the test opens the gate, so "the
    claim just read is in progress" is a fact, not a matter of timing.
    """

    def __init__(self, url: str, worker_id: str, *flags: str) -> None:
        self.worker_id = worker_id
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        command = [sys.executable, "-m", "tests.contract.worker_proc", url, "cpu", worker_id, *flags]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def held_claim(self, timeout: float = 30.0) -> tuple[str, int]:
        """The next claim this gated worker makes; it stays mid-job until open_gate(). (job id, attempt)."""
        give_up = time.monotonic() + timeout
        while (left := give_up - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line.startswith("claimed "):
                _, job_id, attempt = line.split()
                return job_id, int(attempt)
        raise AssertionError(f"worker {self.worker_id} claimed nothing in {timeout} s")

    def open_gate(self) -> None:
        """Let this worker go on with its held claim and every later one (end of its input)."""
        self.proc.stdin.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.lines.get(timeout=timeout) == "ready"

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if not self.proc.stdin.closed:
            self.proc.stdin.close()


def wait_until(condition, timeout: float, broker=None) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            jobs = [(j.id[:6], j.state.value, j.attempt, j.worker_id) for j in broker.list()] if broker else None
            raise AssertionError(f"timed out after {timeout} s; jobs: {jobs}")
        if broker is not None:
            broker.reap()  # backend-agnostic: some backends reap only when asked
        time.sleep(0.05)


def all_finished(broker, count: int):
    return lambda: broker.stats().total(JobState.SUCCEEDED) == count


def test_killed_and_stopped_workers_lose_and_duplicate_nothing(broker_url):
    broker = open_broker(broker_url)
    jobs = broker.submit([spec(seed=i) for i in range(24)])
    lease = ("--lease", str(LEASE), "--work", "0.2")
    # w0, w1 and the zombie w2 hold their first claim at the gate, so each signal lands mid-job.
    workers = [WorkerProc(broker_url, name, *lease, "--gate") for name in ("w0", "w1")]
    workers.append(WorkerProc(broker_url, "w3", *lease))
    try:
        killed = []
        for victim in workers[:2]:
            killed.append(victim.held_claim())
            victim.signal(signal.SIGKILL)
        zombie = WorkerProc(broker_url, "w2", *lease, "--gate")
        workers.append(zombie)
        stalled = zombie.held_claim()
        zombie.signal(signal.SIGSTOP)  # it misses its heartbeat and loses the lease...
        wait_until(lambda: broker.get(stalled[0]).attempt > stalled[1], 30, broker)
        zombie.signal(signal.SIGCONT)  # ...then wakes up and reports anyway
        zombie.open_gate()
        wait_until(all_finished(broker, len(jobs)), 60, broker)
        wait_until(lambda: any(e.kind is EventKind.SUPERSEDED for e in broker.events(limit=100_000)), 10)
    finally:
        for worker in workers:
            worker.stop()

    events = all_events(broker)
    by_job = collections.defaultdict(list)
    for e in events:
        by_job[e.job_id].append(e)
    for job in jobs:
        final = broker.get(job.id)
        assert final.state is JobState.SUCCEEDED
        kinds = [e.kind for e in by_job[job.id]]
        assert kinds.count(EventKind.SUBMITTED) == 1 and kinds.count(EventKind.SUCCEEDED) == 1
        (won,) = [e for e in by_job[job.id] if e.kind is EventKind.SUCCEEDED]
        assert final.result.attempt == won.attempt == final.attempt
        assert kinds.count(EventKind.CLAIMED) == final.attempt  # every attempt but the last failed visibly
        assert kinds.count(EventKind.FAILED) == final.attempt - 1
    for job_id, attempt in killed + [stalled]:
        lost = [e for e in by_job[job_id] if e.attempt == attempt and e.kind is EventKind.FAILED]
        assert [e.failure for e in lost] == [FailureKind.INFRA]
    late = [(e.job_id, e.attempt, e.worker_id) for e in events if e.kind is EventKind.SUPERSEDED]
    assert late == [(stalled[0], stalled[1], "w2")]
    front = broker.front("cpu")
    assert front.results == len(jobs) and front == replayed_front(broker, "cpu")
    broker.close()


def test_racing_workers_claim_each_job_once(broker_url):
    broker = open_broker(broker_url)
    workers = [WorkerProc(broker_url, f"w{i}", "--work", "0.01", "--lease", "30", "--idle-exit", "3", "--gate")
               for i in range(4)]
    try:
        for worker in workers:
            worker.wait_ready()
        jobs = broker.submit([spec(seed=i, priority=i % 3) for i in range(200)])  # all four are polling now
        held = [worker.held_claim() for worker in workers]  # each holds one claim: all four are in the race
        assert len({job_id for job_id, _ in held}) == len(workers)
        for worker in workers:
            worker.open_gate()
        wait_until(all_finished(broker, len(jobs)), 60)
    finally:
        for worker in workers:
            worker.stop()
    claims = collections.Counter(e.job_id for e in all_events(broker) if e.kind is EventKind.CLAIMED)
    assert claims == {job.id: 1 for job in jobs}
    claimers = {e.worker_id for e in all_events(broker) if e.kind is EventKind.CLAIMED}
    assert len(claimers) > 1
    assert claimers == {worker.worker_id for worker in workers}
    broker.close()
