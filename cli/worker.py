"""`golfq worker`: run a local fleet of claim loops (or RQ workers for a Redis queue)."""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Annotated

import typer

from golfq.cli.console import (
    JsonOption,
    QueueOption,
    WorkDirOption,
    emit_json,
    note,
    queue,
    result_line,
    shown,
    work_dir,
)
from golfq.core.errors import GolfqError
from golfq.core.job import Lease
from golfq.core.pools import get_pool
from golfq.core.result import Result
from golfq.core.settings import settings
from golfq.workers.fleet import Fleet, FleetConfig, gpu_slots, parse_devices

app = typer.Typer(add_completion=False)

REDIS_SCHEMES = ("redis", "rediss", "unix")


def _run_rq(url: str, **options: object) -> None:
    """Redis queues are served by RQ workers (golfq.workers.rq)."""
    try:
        module = importlib.import_module("golfq.workers.rq.worker")
    except ImportError as error:
        raise GolfqError(f"worker --queue {url}: Redis workers are not available here ({error}); "
                         f"install golfq[redis]") from None
    module.run_rq_workers(url=url, **options)


def _announce(as_json: bool) -> tuple[Callable[[Lease, str | None], None], Callable[[Lease, Result], None]]:
    lock = threading.Lock()

    def started(lease: Lease, gpus: str | None) -> None:
        with lock:
            if as_json:
                emit_json({"event": "started", "id": lease.job_id, "attempt": lease.attempt, "gpus": gpus})
            else:
                on = f" on GPU {gpus}" if gpus else ""
                line = f"{lease.job_id}  started (attempt {lease.attempt}){on}  {shown(lease.spec.name)}"
                print(line.rstrip(), flush=True)

    def finished(lease: Lease, result: Result) -> None:
        with lock:
            if as_json:
                emit_json({"event": "finished", "result": result})
            else:
                print(result_line(lease.job_id, lease.spec.name, result), flush=True)

    return started, finished


@app.command()
def worker(
    pool: Annotated[str, typer.Option(metavar="POOL", help="The pool to serve (cpu, h100, h100x8, ...).")],
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Jobs at once (default: one per GPU group, or 1)."),
    ] = None,
    burst: Annotated[bool, typer.Option("--burst", help="Exit once the pool is empty.")] = False,
    max_idle: Annotated[
        float | None,
        typer.Option(min=0, metavar="SECONDS", help="Exit after this long with nothing to run."),
    ] = None,
    gpus: Annotated[
        str | None,
        typer.Option(metavar="DEVICES", help="GPUs to share out, e.g. 0,1,2,3: each job gets its own."),
    ] = None,
    work_dir_option: WorkDirOption = None,
    lease_seconds: Annotated[
        float,
        typer.Option(min=1, metavar="SECONDS", help="Lease length; renewed by heartbeats."),
    ] = 60.0,
    heartbeat_seconds: Annotated[
        float,
        typer.Option(min=0.1, metavar="SECONDS", help="Seconds between heartbeats."),
    ] = 10.0,
    grace: Annotated[
        float,
        typer.Option(min=0, metavar="SECONDS", help="On SIGTERM/SIGINT, how long running jobs may finish."),
    ] = 60.0,
    progress_seconds: Annotated[
        float | None,
        typer.Option(min=0.1, metavar="SECONDS",
                     help="Live curves keep one point per this many seconds "
                          "(default: $GOLFQ_PROGRESS_SECONDS, else 10)."),
    ] = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Run jobs from one pool until stopped (SIGTERM/SIGINT: finish running jobs, then release them).

    Example: golfq worker --pool h100 --gpus 0,1,2,3 --max-idle 600
    """
    try:
        spec_pool = get_pool(pool)
    except KeyError as error:
        raise GolfqError(f"worker --pool: {error.args[0]}") from None
    devices = parse_devices(gpus)
    concurrency, _ = gpu_slots(devices, spec_pool.gpus, concurrency)
    if heartbeat_seconds >= lease_seconds:
        raise GolfqError(f"worker: --heartbeat-seconds ({heartbeat_seconds:g}) must be shorter than "
                         f"--lease-seconds ({lease_seconds:g})")
    url = queue_url or settings().queue
    runs = work_dir(work_dir_option)
    if url.split("://", 1)[0] in REDIS_SCHEMES:
        _run_rq(url, pool=pool, concurrency=concurrency, burst=burst, max_idle=max_idle, gpus=gpus, work_dir=runs,
                progress_seconds=progress_seconds)
        return
    with queue(url):  # fail fast, with one line, on a queue that cannot be opened
        pass
    logging.basicConfig(level=logging.WARNING, format="golfq worker: %(message)s")
    started, finished = _announce(as_json)
    config = FleetConfig(queue=url, pool=pool, concurrency=concurrency, burst=burst, max_idle=max_idle,
                         gpus=devices, work_root=runs, lease_seconds=lease_seconds,
                         heartbeat_seconds=heartbeat_seconds, grace_seconds=grace, progress_seconds=progress_seconds)
    fleet = Fleet(config, on_start=started, on_finish=finished)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if fleet.stopping:
            note("golfq worker: stopping now; releasing running jobs")
            fleet.abort()
        else:
            note(f"golfq worker: {signal.Signals(signum).name}: no new jobs; running jobs get {grace:g} s "
                 "(signal again to release them now)")
            fleet.stop()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not as_json:
            note(f"golfq worker: pool {pool}, {fleet.concurrency} slot(s)"
                 + (f", GPUs {gpus}" if gpus else "") + (" (burst)" if burst else ""))
        summary = fleet.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = summary.counts()
    if not as_json:
        note(f"golfq worker: done: {counts.get('succeeded', 0)} succeeded, {counts.get('failed', 0)} failed"
             + (f", {counts['stopped']} stopped" if counts.get("stopped") else "")
             + (f", {len(summary.errors)} runner error(s)" if summary.errors else ""))
