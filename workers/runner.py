"""The runner: one leased spec -> one training process -> one Result.

The worker never imports training code. Each attempt gets a fresh working
directory, the spec's script (if it has one), the hyperparameters as environment
variables under the challenge's names, and a process group of its own that is
heartbeated while it lives and killed at the hard timeout, on a lost lease, or
when the worker shuts down. The Result is read from the log (golfq.workers.metrics).
While it runs, its progress lines become the attempt's live curve in the queue, and
the spec's stopping rule, if any, may end it early (golfq.workers.curves).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from golfq.core import cost
from golfq.core.broker import Broker
from golfq.core.job import CompleteOutcome, JobState, Lease
from golfq.core.pools import known_pools
from golfq.core.result import FailureKind, Phases, Result
from golfq.core.settings import settings
from golfq.core.spec import BUILTIN
from golfq.workers.attempt import (
    LOG_NAME,
    SCRIPT_NAME,
    attempt_dir,
    attempt_env,
    missing_data,
    process_count,
    training_command,
)
from golfq.workers.buildonce import BuildError, BuildGuard
from golfq.workers.checkpoints import CheckpointFolder
from golfq.workers.codedir import Provisioned, provision, unpack
from golfq.workers.curves import CurveWatch, References
from golfq.workers.metrics import Metrics, parse_log_file, usable_score
from golfq.workers.phases import PhaseWatch
from golfq.workers.process import DEFAULT_LOG_MAX_BYTES, GroupProcess

log = logging.getLogger("golfq.runner")

KILL_GRACE_SECONDS = 10.0
LOG_TAIL_LINES = 40
# How long a finished attempt's result is held while the queue cannot be reached, retried
# every few seconds: a result is worth more than the worker's time.
HOLD_RESULT_SECONDS = 3600.0
HOLD_RETRY_SECONDS = 2.0


def _tail(path: Path, lines: int = LOG_TAIL_LINES, max_chars: int = 4000) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])[-max_chars:]


def _last_line(tail: str) -> str:
    for line in reversed(tail.splitlines()):
        if line.strip() and not line.startswith("[golfq]"):
            return line.strip()[:300]
    return ""


STOP_POLL_SECONDS = 0.2  # how soon a stop is seen while a build runs
RELEASED_REASON = "released: the worker was stopped before the job finished; queued again, not counted as a failure"


class _Outcome:
    """How the process ended, as the supervision loop saw it."""

    EXITED, TIMEOUT, LEASE_LOST, RELEASED, STOPPED = "exited", "timeout", "lease lost", "released", "stopped"


def _supervise(proc: GroupProcess, broker: Broker, lease: Lease, *, hard_timeout: float, heartbeat_seconds: float,
               lease_seconds: float, stop: threading.Event | None, watch: CurveWatch, clock: Callable[[], float],
               started: float, checkpoints: CheckpointFolder) -> str:
    next_beat = started + heartbeat_seconds
    deadline = started + hard_timeout
    while True:
        if proc.wait(timeout=0.05) is not None:
            return _Outcome.EXITED
        now = clock()
        if stop is not None and stop.is_set():
            return _Outcome.RELEASED
        if watch.poll() is not None:
            return _Outcome.STOPPED
        if now >= deadline:
            return _Outcome.TIMEOUT
        if now >= next_beat:
            next_beat = now + heartbeat_seconds
            checkpoints.poll()
            try:
                if not broker.heartbeat(lease, lease_seconds):
                    return _Outcome.LEASE_LOST
            except Exception as error:  # a blip: the lease outlives a few missed beats
                log.warning("heartbeat for %s failed: %s", lease.job_id, error)


def _classify(outcome: str, returncode: int | None, metrics: Metrics, hard_timeout: float,
              tail: str) -> tuple[FailureKind | None, str | None]:
    if outcome == _Outcome.TIMEOUT:
        return FailureKind.TIMEOUT, f"killed at the hard timeout of {hard_timeout:g} s"
    if outcome == _Outcome.LEASE_LOST:
        return FailureKind.INFRA, "lease lost (cancelled or reaped); training process killed"
    if returncode:
        last = _last_line(tail)
        kind, how = _exit_cause(returncode)
        return kind, f"training process {how}" + (f": {last}" if last else "")
    if metrics.val_bpb is None:
        return FailureKind.USER, ("training process exited 0 but reported no val_bpb (expected a "
                                  "'final_..._exact val_loss:X val_bpb:Y' line or a 'GOLFQ_RESULT {json}' line)")
    if not usable_score(metrics):
        return FailureKind.USER, f"training process reported an unusable val_bpb ({metrics.val_bpb})"
    return None, None


def _exit_cause(returncode: int) -> tuple[FailureKind, str]:
    """How a non-zero exit reads, and whose fault it is.

    SIGKILL from outside the worker is almost always the kernel's OOM killer: the
    experiment asked for more memory than the machine has, and would again, so it is a
    `user` failure (not retried unless the spec asks). Other signals (SIGTERM from a
    preempted or shut-down machine, SIGHUP) say nothing against the experiment: `infra`.
    torchrun reports a rank killed by a signal as exit code 128 + the signal.
    """
    sig = -returncode if returncode < 0 else returncode - 128 if 128 < returncode < 128 + 65 else 0
    if not sig:
        return FailureKind.USER, f"exited with code {returncode}"
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
    if sig == signal.SIGKILL:
        return FailureKind.USER, f"killed by signal {sig} ({name}: out of memory?)"
    return FailureKind.INFRA, f"killed by signal {sig} ({name})"


def _report(call: Callable[[], object], what: str) -> object:
    """Deliver a result, holding it through a queue outage: retried every few seconds until delivered.

    A worker that gives up throws away a finished training run, so it waits for the store;
    should the lease have expired meanwhile, the broker keeps the late result as superseded.
    """
    give_up = time.monotonic() + HOLD_RESULT_SECONDS
    held_since: float | None = None
    while True:
        try:
            outcome = call()
        except Exception as error:
            if time.monotonic() >= give_up:
                raise
            if held_since is None:
                held_since = time.monotonic()
                log.warning("%s: queue unreachable (%s); holding the result and retrying every %g s",
                            what, " ".join(str(error).split())[:200], HOLD_RETRY_SECONDS)
            time.sleep(HOLD_RETRY_SECONDS)
            continue
        if held_since is not None:
            log.warning("%s: delivered after holding it %.0f s", what, time.monotonic() - held_since)
        return outcome


def _build_result(lease: Lease, *, metrics: Metrics, failure: FailureKind | None, error: str | None,
                  started_at: float, wall_seconds: float, nproc: int, log_path: Path, tail: str,
                  worker_id: str, artifact_dir: Path, phases: Phases | None = None, stopped: bool = False,
                  released: bool = False, provisioned: Provisioned | None = None, resumed: bool = False) -> Result:
    pool = known_pools().get(lease.spec.pool)
    fields = {"resumed": resumed, **metrics.fields()}  # the script's own word on resuming, when it says
    if stopped:  # ended before its evaluation: the curve's figures stay (steps, pre-quant val_bpb), no score
        fields.pop("val_bpb", None)
        fields.pop("val_loss", None)
    uses_gpus = bool(pool and pool.gpus) or bool(fields.get("gpu_count"))
    gpu_count = fields.pop("gpu_count", None)
    gpu_count = gpu_count if gpu_count else (nproc if pool and pool.gpus else 0)
    gpu_name = fields.pop("gpu_name", None) or (pool.gpu_type if pool and pool.gpu_type else None)
    if "train_seconds" not in fields and failure is None and not released:
        fields["train_seconds"] = round(wall_seconds, 3)  # no timing line: the whole run is an upper bound
    artifact_path = fields.pop("artifact_path", None)
    if artifact_path is None and artifact_dir.is_dir() and any(artifact_dir.iterdir()):
        artifact_path = str(artifact_dir)
    return Result(
        spec_id=lease.job_id,
        attempt=lease.attempt,
        status="stopped" if stopped else "released" if released else "failed" if failure else "succeeded",
        **fields,
        score_source=metrics.score_label if metrics.val_bpb is not None else None,
        total_seconds=round(wall_seconds, 3),
        phases=phases,
        gpu_name=gpu_name,
        gpu_count=gpu_count if uses_gpus else 0,
        gpu_seconds=round(wall_seconds * gpu_count, 3) if uses_gpus else 0.0,
        cost_usd=cost.cost_usd(gpu_name, gpu_count, wall_seconds) if uses_gpus else 0.0,
        worker_id=worker_id or lease.worker_id,
        started_at=started_at,
        finished_at=started_at + wall_seconds,
        log_path=str(log_path),
        log_tail=tail,
        artifact_path=artifact_path,
        error=error,
        failure=failure,
        environment=provisioned.environment if provisioned else None,
        environment_notes=provisioned.notes if provisioned else (),
    )


def _prepare(broker: Broker, lease: Lease, workdir: Path) -> Path | None:
    """A fresh working directory holding the spec's script or code folder; the script's path, or None for the
    builtin. A script is a one-file folder: it runs as train_gpt.py."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    ref = lease.spec.trainer
    if ref != BUILTIN:
        blob = broker.get_script(ref)
        if lease.spec.is_code_folder:
            unpack(blob, workdir)
        else:
            (workdir / SCRIPT_NAME).write_bytes(blob)
    (workdir / "artifacts").mkdir(exist_ok=True)
    if ref == BUILTIN:
        return None
    return workdir / (lease.spec.entry if lease.spec.is_code_folder else SCRIPT_NAME)


def _while_heartbeating(build: Callable[[], Provisioned], broker: Broker, lease: Lease, heartbeat_seconds: float,
                        lease_seconds: float, stop: threading.Event | None) -> Provisioned | None:
    """Run a build that may take long (an environment, a data command) and keep the lease alive meanwhile;
    None when `stop` is set first (the build goes on in the background: a later job may use it)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = build()
        except BaseException as error:
            box["error"] = error

    thread = threading.Thread(target=target, name=f"provision:{lease.job_id}", daemon=True)
    thread.start()
    next_beat = time.monotonic() + heartbeat_seconds
    while True:
        thread.join(min(heartbeat_seconds, STOP_POLL_SECONDS))
        if not thread.is_alive():
            break
        if stop is not None and stop.is_set():
            return None
        if time.monotonic() < next_beat:
            continue
        next_beat = time.monotonic() + heartbeat_seconds
        try:
            broker.heartbeat(lease, lease_seconds)
        except Exception as error:  # a blip: the lease outlives a few missed beats
            log.warning("heartbeat for %s failed: %s", lease.job_id, error)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _end_early(broker: Broker, lease: Lease, error: str, kind: FailureKind | None, worker_id: str,
               log_path: Path | None = None) -> Result:
    """Report an attempt that ended before its process started: failed (kind), or released (None)."""
    now = time.time()
    result = Result(spec_id=lease.job_id, attempt=lease.attempt, status="failed" if kind else "released",
                    error=error, failure=kind, worker_id=worker_id or lease.worker_id, started_at=now,
                    finished_at=now, total_seconds=0.0, log_path=str(log_path) if log_path is not None else None,
                    log_tail=_tail(log_path) if log_path is not None else "")
    if kind is None:  # no figure of its own: the ledger counts the time it held the lease
        _report(lambda: broker.release(lease, error), f"release {lease.job_id}")
    else:
        _report(lambda: broker.fail(lease, error, kind, result), f"fail {lease.job_id}")
    return result


def run_lease(broker: Broker, lease: Lease, *, work_root: Path, gpus: str | None = None,
              heartbeat_seconds: float = 10, lease_seconds: float = 60, worker_id: str = "",
              stop: threading.Event | None = None, kill_grace: float = KILL_GRACE_SECONDS,
              log_max_bytes: int = DEFAULT_LOG_MAX_BYTES, python: str = sys.executable,
              progress_seconds: float | None = None, references: References | None = None,
              clock: Callable[[], float] = time.monotonic, on_checkpoint: Callable[[], None] | None = None,
              data_guard: BuildGuard | None = None) -> Result:
    """Run one attempt end to end, report it to the broker, and return its Result.

    `stop`, when set, kills the process and releases the lease (Broker.release: no failure counted,
    and the job is queued again at once rather than after the lease expires).
    `progress_seconds` (default: settings) is the live curve's interval: one point each.
    A stopping rule that fires sends SIGTERM, waits kill_grace, then SIGKILL, and
    reports the attempt `stopped` (not a failure). `on_checkpoint` runs after the process saved a
    checkpoint in the job's folder (golfq.workers.checkpoints; on Modal: the Volume's commit).
    `clock` times the hard timeout, heartbeats and the phases (tests run it faster than real time).
    `data_guard` decides who makes a spec's data (golfq.workers.buildonce; default: a file lock).
    """
    spec = lease.spec
    attempt_start = clock()
    workdir = attempt_dir(Path(work_root).absolute(), lease.job_id, lease.attempt)
    if problem := missing_data(spec):
        return _end_early(broker, lease, problem, FailureKind.USER, worker_id)
    try:
        script = _prepare(broker, lease, workdir)
    except KeyError:
        return _end_early(broker, lease, f"trainer {spec.trainer}: script not stored in this queue", FailureKind.USER,
                           worker_id)
    except OSError as error:
        return _end_early(broker, lease, f"could not prepare {workdir}: {error}", FailureKind.INFRA, worker_id)
    except ValueError as error:  # a pack that is not one (golfq.workers.codedir.unpack)
        return _end_early(broker, lease, f"trainer {spec.trainer}: {error}", FailureKind.USER, worker_id)
    try:
        checkpoints = CheckpointFolder(Path(work_root).absolute(), lease, on_checkpoint)
    except OSError as error:
        return _end_early(broker, lease, f"could not prepare the checkpoint folder: {error}", FailureKind.INFRA,
                           worker_id)
    log_path = workdir / LOG_NAME
    provisioned = Provisioned(python=python)
    if spec.is_code_folder:
        root = settings().env_dir or Path(work_root).absolute() / "envs"
        try:
            built = _while_heartbeating(
                lambda: provision(spec, workdir, env_root=root, data_root=settings().data_dir, log_path=log_path,
                                  python=python, data_guard=data_guard), broker, lease, heartbeat_seconds,
                lease_seconds, stop)
        except BuildError as error:  # the folder's declaration or command failed: the experiment's fault
            return _end_early(broker, lease, str(error), FailureKind.USER, worker_id, log_path)
        if built is None:
            return _end_early(broker, lease, RELEASED_REASON, None, worker_id, log_path)
        provisioned = built
    nproc = process_count(spec, gpus)
    command = training_command(script, nproc, provisioned.python)
    with open(log_path, "a") as handle:
        handle.write(f"[golfq] job {lease.job_id} attempt {lease.attempt} worker {worker_id or lease.worker_id}: "
                     f"{' '.join(command)}\n")
    watch = CurveWatch(broker, lease, interval=progress_seconds or settings().progress_seconds, references=references)
    marks = PhaseWatch(clock)

    def tap(chunk: bytes) -> None:
        watch.feed(chunk)
        marks.feed(chunk)

    started_at, started = time.time(), clock()
    try:
        proc = GroupProcess(command, cwd=workdir,
                            env={**attempt_env(lease, workdir, gpus, extra=provisioned.env), **checkpoints.env()},
                            log_path=log_path, log_max_bytes=log_max_bytes, orphan_grace=kill_grace, on_output=tap)
    except OSError as error:
        return _end_early(broker, lease, f"could not start {command[0]}: {error}", FailureKind.INFRA, worker_id)
    hard_timeout = spec.budget.hard_timeout
    try:
        outcome = _supervise(proc, broker, lease, hard_timeout=hard_timeout, heartbeat_seconds=heartbeat_seconds,
                             lease_seconds=lease_seconds, stop=stop, watch=watch, clock=clock, started=started,
                             checkpoints=checkpoints)
        if outcome != _Outcome.EXITED:
            proc.stop(kill_grace)  # SIGTERM first: a stopped script may save what it has
    except BaseException:
        proc.stop(kill_grace)  # the worker itself is going (Modal's preemption interrupt): let the run save first
        checkpoints.poll()
        raise
    finally:
        proc.finish(min(kill_grace, 2.0))
    watch.close()
    ended = clock()
    wall_seconds = ended - started
    returncode = proc.popen.returncode
    with open(log_path, "a") as handle:
        handle.writelines(f"[golfq] {note}\n" for note in watch.notes)
        handle.write(f"[golfq] {outcome}: return code {returncode} after {wall_seconds:.1f} s\n")
    metrics = parse_log_file(log_path)
    tail = _tail(log_path)
    if outcome == _Outcome.STOPPED:
        failure, why = None, watch.stop_reason
    elif outcome == _Outcome.RELEASED:
        failure, why = None, RELEASED_REASON
    else:
        failure, why = _classify(outcome, returncode, metrics, hard_timeout, tail)
    result = _build_result(lease, metrics=metrics, failure=failure, error=why, started_at=started_at,
                           wall_seconds=wall_seconds, nproc=nproc, log_path=log_path, tail=tail,
                           worker_id=worker_id, artifact_dir=workdir / "artifacts",
                           phases=marks.phases(attempt_start=attempt_start, process_start=started, process_end=ended,
                                               metrics=metrics),
                           stopped=outcome == _Outcome.STOPPED, released=outcome == _Outcome.RELEASED,
                           provisioned=provisioned, resumed=checkpoints.handed)
    if outcome == _Outcome.STOPPED:
        end_state = _report(lambda: broker.stop(lease, why or "stopped", result), f"stop {lease.job_id}")
    elif outcome == _Outcome.RELEASED:
        end_state = _report(lambda: broker.release(lease, RELEASED_REASON, result), f"release {lease.job_id}")
    elif failure is None:
        counted = _report(lambda: broker.complete(lease, result), f"complete {lease.job_id}")
        end_state = JobState.SUCCEEDED if counted in (CompleteOutcome.COUNTED, CompleteOutcome.DUPLICATE) else None
    else:
        end_state = _report(lambda: broker.fail(lease, why or "failed", failure, result), f"fail {lease.job_id}")
    checkpoints.settle(end_state if isinstance(end_state, JobState) else None)
    return result



def run_claimed(broker: Broker, lease: Lease, **options: Any) -> Result:
    """run_lease for a lease just claimed, as every worker kind runs one (local fleet, RQ work
    horse, Modal pool function): a crash of the runner itself fails the attempt at once with its
    message (an `infra` failure: retried by its budget), rather than leaving the lease to expire
    and the same crash to come round again unexplained."""
    try:
        return run_lease(broker, lease, **options)
    except Exception as error:
        log.exception("runner crashed on %s attempt %d", lease.job_id, lease.attempt)
        message = f"runner error: {type(error).__name__}: {' '.join(str(error).split())}"[:500]
        return _end_early(broker, lease, message, FailureKind.INFRA, options.get("worker_id", ""))
