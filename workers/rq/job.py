"""The function every golfq RQ job runs, and the callbacks that map RQ's failures.

RQ jobs carry only [job id, attempt] (JSON). The work horse claims exactly that
attempt in golfq's record and runs it through the runner; a token for an attempt
that is no longer next (claimed elsewhere, cancelled, replaced) does nothing.
Settings come from the environment the golfq worker gives its RQ workers.
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

from rq import get_current_job
from rq.timeouts import JobTimeoutException

from golfq.core.backends.redis.broker import RedisBroker
from golfq.core.backends.redis.rq import parse_token
from golfq.core.job import JobState
from golfq.core.result import FailureKind

log = logging.getLogger("golfq.rq")

RUNNER = "golfq.workers.runner:run_lease"
ENV_RUNNER = "GOLFQ_RQ_RUNNER"  # module:function with run_lease's signature
ENV_LEASE = "GOLFQ_RQ_LEASE_SECONDS"
ENV_HEARTBEAT = "GOLFQ_RQ_HEARTBEAT_SECONDS"
ENV_GPUS = "GOLFQ_RQ_GPUS"
ENV_WORK_DIR = "GOLFQ_WORK_DIR"
DEFAULT_WORK_DIR = Path(".golfq") / "runs"


def _runner() -> Callable:
    module, _, name = os.environ.get(ENV_RUNNER, RUNNER).partition(":")
    return getattr(importlib.import_module(module), name)


def _broker(connection) -> RedisBroker:
    return RedisBroker.from_connection(connection)


def run_attempt(job_id: str, attempt: int) -> dict:
    """RQ's entry point (by dotted path): claim this attempt, run it, report it."""
    rq_job = get_current_job()
    broker = _broker(rq_job.connection)
    worker_id = rq_job.worker_name or f"{socket.gethostname()}.{os.getpid()}"
    lease_seconds = float(os.environ.get(ENV_LEASE, "60"))
    lease = broker.claim_attempt(job_id, attempt, worker_id, lease_seconds)
    if lease is None:
        job = broker.get(job_id)
        state = f"{job.state.value} at attempt {job.attempt}" if job else "gone"
        return {"job_id": job_id, "attempt": attempt, "skipped": f"not the next attempt (job is {state})"}
    # RQ's stop command and a cold shutdown reach the horse as SIGTERM first (GolfqWorker),
    # so the runner stops its training process group instead of orphaning it.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    result = _runner()(broker, lease, work_root=Path(os.environ.get(ENV_WORK_DIR) or DEFAULT_WORK_DIR),
                       gpus=os.environ.get(ENV_GPUS) or None, worker_id=worker_id, lease_seconds=lease_seconds,
                       heartbeat_seconds=float(os.environ.get(ENV_HEARTBEAT, "10")), stop=stop)
    return {"job_id": job_id, "attempt": attempt, "status": result.status, "val_bpb": result.val_bpb,
            "failure": result.failure.value if result.failure else None}


def _fail_from_rq(rq_job_id: str, connection, error: str, kind: FailureKind) -> JobState | None:
    parsed = parse_token(rq_job_id)
    if parsed is None:
        return None
    state = _broker(connection).fail_attempt(*parsed, error=error, kind=kind)
    if state is not None:
        log.warning("golfq job %s attempt %d: %s (%s) -> %s", *parsed, error, kind.value, state.value)
    return state


def on_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """RQ failed the job (its timeout, an abandoned job, an error outside the runner).

    The runner reports every failure of the training itself, so only attempts that
    still hold their lease here are failed: RQ's timeout as `timeout`, the rest `infra`.
    """
    kind = FailureKind.TIMEOUT if exc_type is not None and issubclass(exc_type, JobTimeoutException) else FailureKind.INFRA
    name = exc_type.__name__ if exc_type is not None else "failure"
    _fail_from_rq(job.id, connection, f"RQ: {name}: {exc_value}".strip().rstrip(":"), kind)


def on_stopped(job, connection) -> None:
    """RQ's stop command: golfq's cancel sends it; one sent with RQ's tools cancels the job too."""
    parsed = parse_token(job.id)
    if parsed is None:
        return
    broker = _broker(connection)
    current = broker.get(parsed[0])
    if current is not None and current.state is JobState.LEASED and current.attempt == parsed[1]:
        broker.cancel([parsed[0]])


def on_horse_killed(job, retpid, ret_val, rusage) -> None:
    """The work horse died (a crash, the OOM killer, a signal): an infra failure of the attempt."""
    signal_note = f" by signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f" (status {ret_val})"
    _fail_from_rq(job.id, job.connection, f"RQ work horse {retpid} died{signal_note}", FailureKind.INFRA)
