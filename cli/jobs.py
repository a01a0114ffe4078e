"""Reading jobs: `golfq status`, `logs`, `events` and `wait`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import msgspec
import typer

from golfq.cli.budget import budget_lines
from golfq.cli.console import (
    Col,
    JsonOption,
    QueueOption,
    WideOption,
    WorkDirOption,
    console,
    emit_json,
    fitted_table,
    fmt_bytes,
    fmt_float,
    fmt_seconds,
    note,
    print_table,
    queue,
    result_line,
    shown,
    stdout_is_terminal,
    work_dir,
)
from golfq.cli.progress import (
    ProgressFollower,
    curve_lines,
    progress_doc,
    progress_line,
)
from golfq.core.broker import iter_events
from golfq.core.errors import EXIT_JOB_FAILED, GolfqError
from golfq.core.events import Event
from golfq.core.job import Job, JobState
from golfq.core.result import Phases, ProgressPoint, Result
from golfq.producer.client import Client, WaitTimeout
from golfq.producer.loop import find_job

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(add_completion=False)


# -- status ---------------------------------------------------------------------------------------


def job_row(job: Job) -> dict:
    """A job in one flat row, as `status --json` and the MCP tools list jobs."""
    r = job.result
    return {"id": job.id, "state": job.state.value, "pool": job.pool, "attempt": job.attempt, "name": job.spec.name,
            "val_bpb": r.val_bpb if r else None, "artifact_bytes": r.artifact_bytes if r else None,
            "train_seconds": r.train_seconds if r else None, "error": job.error}


JOB_COLUMNS = (Col("id"), Col("state"), Col("pool", 40), Col("try", 10, right=True), Col("val_bpb", right=True),
               Col("size", 30, right=True), Col("train", 20, right=True), Col("name / error", 50, flex=True))


def _job_table(jobs: list[Job], wide: bool) -> Table:
    rows = []
    for job in jobs:
        r = job.result
        text = shown(job.error or job.spec.name)
        rows.append((job.id, job.state.value, job.pool, str(job.attempt), fmt_float(r.val_bpb if r else None),
                     fmt_bytes(r.artifact_bytes if r else None), fmt_seconds(r.train_seconds if r else None),
                     text if wide else text[:60]))
    return fitted_table(JOB_COLUMNS, rows, wide)


def phase_line(phases: Phases | None) -> str:
    """`setup 2.0 s, startup 1.5 min, train 10.0 min, ...`: the phases the log marked, in order."""
    if phases is None:
        return ""
    marked = [(name, getattr(phases, name)) for name in Phases.__struct_fields__]
    return ", ".join(f"{name} {fmt_seconds(value)}" for name, value in marked if value is not None)


def _print_job(job: Job, curve: list[ProgressPoint]) -> None:
    spec, r = job.spec, job.result
    lines = [("id", job.id), ("state", job.state.value), ("pool", spec.pool), ("name", shown(spec.name)),
             ("attempt", str(job.attempt)), ("worker", shown(job.worker_id)), ("seed", str(spec.seed)),
             ("trainer", spec.trainer + (f" (runs {shown(spec.entry)})" if spec.is_code_folder else "")),
             ("budget", f"{spec.budget.train_seconds:g} s train, {spec.budget.hard_timeout:g} s hard timeout"),
             ("env", shown(" ".join(f"{k}={v}" for k, v in sorted(spec.env.items())))),
             ("tags", shown(", ".join(spec.tags))),
             ("failures", ", ".join(f"{k}={n}" for k, n in job.failures.items())),
             ("error", shown(job.error))]
    if r is not None:
        lines += [("val_bpb", fmt_float(r.val_bpb, 8)), ("val_loss", fmt_float(r.val_loss, 8)),
                  ("artifact", f"{r.artifact_bytes:,} bytes" if r.artifact_bytes is not None else "-"),
                  ("train time", fmt_seconds(r.train_seconds)), ("eval time", fmt_seconds(r.eval_seconds)),
                  ("wall time", fmt_seconds(r.total_seconds)), ("phases", phase_line(r.phases)),
                  ("cost", f"${r.cost_usd:.4f}" if r.cost_usd is not None else "-"), ("log", shown(r.log_path)),
                  ("code env", shown(r.environment)), *[("env note", shown(note)) for note in r.environment_notes]]
    for key, value in lines:
        if value:
            print(f"{key:>10}  {value}")
    rows = curve_lines(curve)
    for key, row in zip(["curve", *[""] * len(rows)], rows, strict=False):
        print(f"{key:>10}  {row}")
    if rows:
        print(f"{'':>10}  ({len(curve)} point(s) of attempt {job.attempt})")


@app.command()
def status(
    job_id: Annotated[str | None, typer.Argument(metavar="ID", help="One job's details.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="Most recent jobs to list.")] = 20,
    wide: WideOption = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """The queue at a glance (per-pool counts, recent jobs), or one job in full.

    Example: golfq status; golfq status 3ijlhcjuqo22wavv --json
    """
    with queue(queue_url) as broker:
        if job_id is not None:
            job = find_job(broker, job_id)
            curve = broker.curve(job.id)
            emit_json({**msgspec.to_builtins(job), "curve": curve}) if as_json else _print_job(job, curve)
            return
        stats = broker.stats()
        jobs = broker.list()
        recent = jobs[-limit:] if limit > 0 else []
        spend = broker.budget()
    if as_json:
        emit_json({"stats": stats, "jobs": [job_row(j) for j in recent], "budget": spend})
        return
    states = [s.value for s in JobState]
    columns = [Col("pool"), *(Col(s, right=True) for s in states), Col("draining", 10)]
    rows = [(name, *(str(getattr(pool, s)) for s in states), "yes" if pool.draining else "")
            for name, pool in stats.pools.items()]
    print_table(f"{broker.url}  (backend {stats.backend}, last event #{stats.last_seq})",
                fitted_table(columns, rows, wide), wide)
    if recent:
        print_table(f"last {len(recent)} of {len(jobs)} jobs", _job_table(recent, wide), wide)
    for line in budget_lines(spend):  # the caps, and each pool's first job a cap holds, with why
        print(line)


# -- logs -----------------------------------------------------------------------------------------


def job_log(job: Job, runs: Path) -> Path | None:
    """A job's latest train log on this machine, if it is here."""
    from golfq.workers.runner import LOG_NAME, attempt_dir

    r = job.result
    candidates = [Path(r.log_path)] if r is not None and r.log_path and r.attempt == job.attempt else []
    if job.attempt:
        candidates.append(attempt_dir(runs, job.id, job.attempt) / LOG_NAME)
    return next((p for p in candidates if p.is_file()), None)


def remote_log(broker: object, job: Job) -> str | None:
    """A backend that keeps logs off this machine offers read_log(job) (the Modal backend does)."""
    read_log = getattr(broker, "read_log", None)
    return read_log(job) if callable(read_log) else None


def log_text(broker: object, job: Job, runs: Path) -> tuple[str, str] | None:
    """(text, where it came from) of a job's latest log: this machine's file, the backend's copy, or the tail
    stored with its result; None when there is none yet."""
    path = job_log(job, runs)
    if path is not None:
        return path.read_text(encoding="utf-8", errors="replace"), str(path)
    if (remote := remote_log(broker, job)) is not None:
        return remote, "backend"
    if job.result is not None and job.result.log_tail:
        return job.result.log_tail + "\n", f"the tail stored with attempt {job.result.attempt}"
    return None


def _write(text: str, as_json: bool) -> None:
    if not text:
        return
    if as_json:
        for line in text.splitlines():
            emit_json({"line": line})
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


@app.command()
def logs(
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job finishes.")] = False,
    work_dir_option: WorkDirOption = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's training log (its latest attempt); --follow streams it while it runs.

    Example: golfq logs 3ijlhcjuqo22wavv --follow
    """
    runs = work_dir(work_dir_option)
    with queue(queue_url) as broker:
        job = find_job(broker, job_id)
        path = job_log(job, runs)
        while follow and path is None and not job.state.terminal:
            time.sleep(0.5)
            job = find_job(broker, job_id)
            path = job_log(job, runs)
        if path is None and (remote := remote_log(broker, job)) is not None:
            _write(remote, as_json)  # kept by the backend (Modal: on the artifacts Volume)
            return
        if path is None:
            if job.result is None or not job.result.log_tail:
                raise GolfqError(f"job {job_id}: no log on this machine yet (state {job.state.value}, "
                                 f"attempt {job.attempt})")
            note(f"# log not on this machine; the tail stored with attempt {job.result.attempt}:")
            _write(job.result.log_tail + "\n", as_json)
            return
        with open(path, encoding="utf-8", errors="replace") as handle:
            _write(handle.read(), as_json)
            while follow:
                chunk = handle.read()
                if chunk:
                    _write(chunk, as_json)
                    continue
                job = find_job(broker, job_id)
                if job.state.terminal or job.state is JobState.QUEUED:
                    _write(handle.read(), as_json)
                    return
                time.sleep(0.3)


# -- events ---------------------------------------------------------------------------------------


def _event_line(e: Event) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts))
    detail = []
    if e.worker_id:
        detail.append(f"worker={shown(e.worker_id)}")
    if e.failure:
        detail.append(f"failure={e.failure.value}")
    if e.result is not None and e.result.val_bpb is not None:
        detail.append(f"val_bpb={e.result.val_bpb:.4f}")
    if e.error:
        detail.append(f"error={shown(e.error[:80])}")
    job = f"{e.job_id}#{e.attempt}" if e.job_id else f"pool {e.pool}"
    return f"{e.seq:>6}  {stamp}  {e.kind.value:<10}  {job:<20}  {' '.join(detail)}".rstrip()


@app.command()
def events(
    after: Annotated[int, typer.Option(metavar="SEQ", help="Only events after this sequence number.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C stops).")] = False,
    limit: Annotated[int, typer.Option(metavar="N", help="Most events per read.")] = 1000,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """The append-only event log, oldest first; with --follow, running jobs' progress too.

    Example: golfq events --after 120 --json
    """
    if after < 0 or limit < 1:
        raise GolfqError("events: --after must be >= 0 and --limit >= 1")
    with queue(queue_url) as broker:
        seq = after
        progress = ProgressFollower(broker) if follow else None
        while True:
            for event in iter_events(broker, after_seq=seq, page=limit):
                emit_json(event) if as_json else print(_event_line(event), flush=True)
                seq = event.seq
            if progress is None:
                return
            for job_id, attempt, point in progress.poll():
                if as_json:
                    emit_json(progress_doc(job_id, attempt, point))
                else:
                    print(progress_line(job_id, attempt, point), flush=True)
            time.sleep(0.5)


# -- wait -----------------------------------------------------------------------------------------


class _Reporter:
    """Where finished jobs are announced: JSON lines, a rich progress bar, or plain lines."""

    def __init__(self, total: int, as_json: bool) -> None:
        self.as_json = as_json
        self.progress = None
        if not as_json and stdout_is_terminal():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.progress = Progress(TextColumn("waiting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=console(), transient=False)
            self.task = self.progress.add_task("jobs", total=total)
            self.progress.start()

    def done(self, job: Job, result: Result) -> None:
        if self.as_json:  # `id` and the job's end state as every verb says them; the Result's spec_id stays too
            emit_json({"id": job.id, "state": job.state.value, **msgspec.to_builtins(result)})
            return
        line = result_line(job.id, job.spec.name, result, job.state.value)
        if self.progress is not None:
            self.progress.console.print(line, markup=False, highlight=False)
            self.progress.advance(self.task)
        else:
            print(line, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


@app.command()
def wait(
    ids: Annotated[list[str] | None, typer.Argument(metavar="ID", help="Jobs to wait for.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job queued or running now.")] = False,
    timeout: Annotated[float | None, typer.Option(metavar="SECONDS", help="Give up after this long (exit 1).")] = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until jobs finish. Exit 0 if none failed (a job its stopping rule ended is not a failure), 1 if any
    failed or the timeout passed.

    Example: golfq wait --all --timeout 3600
    """
    if bool(ids) == all_jobs:
        raise GolfqError("wait: give job IDs or --all (not both)")
    if timeout is not None and timeout < 0:
        raise GolfqError("wait: --timeout must be >= 0")
    with queue(queue_url) as broker:
        if all_jobs:
            ids = [j.id for j in broker.list(states=[JobState.QUEUED, JobState.LEASED])]
        ids = ids or []
        missing = [i for i in ids if broker.get(i) is None]
        if missing:
            raise GolfqError(f"wait: job(s) not found in {broker.url}: {', '.join(missing)}")
        if not ids:
            note("nothing to wait for")
            return
        reporter = _Reporter(len(ids), as_json)
        try:
            url = broker.url

            def unserved(pool: str, jobs: int) -> None:
                note(f"golfq: wait: no worker is serving pool {pool}, where {jobs} job(s) wait; still waiting "
                     f"(start one: golfq worker --pool {pool} --queue {url})")

            results = Client(broker=broker).wait(ids, timeout, on_done=reporter.done, on_unserved=unserved)
        except WaitTimeout as error:
            raise GolfqError(f"wait: {error}", exit_code=EXIT_JOB_FAILED) from None
        finally:
            reporter.close()
    stopped = sum(r.status == JobState.STOPPED.value for r in results)  # a rule's decision, not a failure
    failed = [r for r in results if not r.succeeded and r.status != JobState.STOPPED.value]
    summary = f"{len(results) - len(failed) - stopped} succeeded, {len(failed)} failed" + (
        f", {stopped} stopped" if stopped else "")
    if failed:
        raise GolfqError(f"wait: {summary}", exit_code=EXIT_JOB_FAILED)
    if not as_json:
        note(summary)
