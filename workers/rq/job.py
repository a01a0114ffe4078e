"""The function every golfq RQ job runs, and the callbacks that map RQ's failures.

RQ jobs carry only [job id, attempt] (JSON). The work horse claims exactly that
attempt in golfq's record and runs it with the same runner as every worker kind; a
token for an attempt that is no longer next (claimed elsewhere, cancelled, replaced)
does nothing. How the horse runs (lease, heartbeat, GPUs, work dir) is the RQ worker
process's `HorseConfig`, set from its command line before it forks horses.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from rq import get_current_job
from rq.timeouts import JobTimeoutException

from golfq.core.backends.redis.broker import RedisBroker
from golfq.core.backends.redis.rq import parse_token
from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.settings import settings

log = logging.getLogger("golfq.rq")

RUNNER = "golfq.workers.runner:run_claimed"


class HorseConfig(msgspec.Struct, frozen=True, kw_only=True):
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    gpus: str | None = None  # this RQ worker's CUDA_VISIBLE_DEVICES slice
    work_dir: Path | None = None  # default: settings' work dir
    runner: str = RUNNER  # module:function with run_claimed's signature (benchmarks swap in a no-op)
    progress_seconds: float | None = None  # a live curve keeps one point per this (default: settings)


config = HorseConfig()  # replaced by the RQ worker process at start (workers.rq.worker)


def _runner() -> Callable[..., Any]:
    module, _, name = config.runner.partition(":")
    runner: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return runner


_brokers: dict[int, RedisBroker] = {}


def _broker(connection: Any) -> RedisBroker:
    """The broker on this RQ connection, made once per worker process (horses inherit it by fork)."""
    broker = _brokers.get(id(connection))
    if broker is None or broker.redis is not connection:
        broker = _brokers[id(connection)] = RedisBroker.from_connection(connection)
    return broker


def run_attempt(job_id: str, attempt: int) -> dict[str, Any]:
    """RQ's entry point (by dotted path): claim this attempt, run it, report it."""
    rq_job = get_current_job()
    assert rq_job is not None, "run_attempt runs inside an RQ work horse"
    broker = _broker(rq_job.connection)
    worker_id = rq_job.worker_name or f"{socket.gethostname()}.{os.getpid()}"
    lease = broker.claim_attempt(job_id, attempt, worker_id, config.lease_seconds)
    if lease is None:
        job = broker.get(job_id)
        state = f"{job.state.value} at attempt {job.attempt}" if job else "gone"
        return {"job_id": job_id, "attempt": attempt, "skipped": f"not the next attempt (job is {state})"}
    # RQ's stop command and a cold shutdown reach the horse as SIGTERM first (GolfqWorker),
    # so the runner stops its training process group instead of orphaning it.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    result = _runner()(broker, lease, work_root=config.work_dir or settings().work_dir, gpus=config.gpus,
                       worker_id=worker_id, lease_seconds=config.lease_seconds,
                       heartbeat_seconds=config.heartbeat_seconds, stop=stop,
                       progress_seconds=config.progress_seconds)
    return {"job_id": job_id, "attempt": attempt, "status": result.status, "val_bpb": result.val_bpb,
            "failure": result.failure.value if result.failure else None}


def _fail_from_rq(rq_job_id: str, connection: Any, error: str, kind: FailureKind) -> JobState | None:
    parsed = parse_token(rq_job_id)
    if parsed is None:
        return None
    state = _broker(connection).fail_attempt(*parsed, error=error, kind=kind)
    if state is not None:
        log.warning("golfq job %s attempt %d: %s (%s) -> %s", *parsed, error, kind.value, state.value)
    return state


def on_failure(job: Any, connection: Any, exc_type: Any, exc_value: Any, traceback: Any) -> None:
    """RQ failed the job (its timeout, an abandoned job, an error outside the runner).

    The runner reports every failure of the training itself, so only attempts that
    still hold their lease here are failed: RQ's timeout as `timeout`, the rest `infra`.
    """
    timed_out = exc_type is not None and issubclass(exc_type, JobTimeoutException)
    kind = FailureKind.TIMEOUT if timed_out else FailureKind.INFRA
    name = exc_type.__name__ if exc_type is not None else "failure"
    _fail_from_rq(job.id, connection, f"RQ: {name}: {exc_value}".strip().rstrip(":"), kind)


def on_stopped(job: Any, connection: Any) -> None:
    """RQ's stop command: golfq's cancel sends it; one sent with RQ's tools cancels the job too."""
    parsed = parse_token(job.id)
    if parsed is None:
        return
    broker = _broker(connection)
    current = broker.get(parsed[0])
    if current is not None and current.state is JobState.LEASED and current.attempt == parsed[1]:
        broker.cancel([parsed[0]])


def on_horse_killed(job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
    """The work horse died (a crash, the OOM killer, a signal): an infra failure of the attempt."""
    signalled = bool(ret_val) and os.WIFSIGNALED(ret_val)
    signal_note = f" by signal {os.WTERMSIG(ret_val)}" if signalled else f" (status {ret_val})"
    _fail_from_rq(job.id, job.connection, f"RQ work horse {retpid} died{signal_note}", FailureKind.INFRA)
