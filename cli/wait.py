"""`golfq wait`: block until jobs finish, with a progress bar on a terminal and plain lines elsewhere."""

from __future__ import annotations

from typing import Annotated

import typer

from golfq.core.broker import Job, JobState
from golfq.core.result import Result
from golfq.producer.client import Client, WaitTimeout
from golfq.cli.console import (EXIT_JOB_FAILED, CliError, JsonOption, QueueOption, console, emit_json, fmt_bytes,
                              fmt_float, fmt_seconds, note, queue, stdout_is_terminal)


def result_line(job: Job, result: Result) -> str:
    if result.succeeded:
        return (f"{job.id}  succeeded  val_bpb={fmt_float(result.val_bpb)}  size={fmt_bytes(result.artifact_bytes)}"
                f"  train={fmt_seconds(result.train_seconds)}  {job.spec.name}").rstrip()
    kind = f" ({result.failure.value})" if result.failure else ""
    return f"{job.id}  {job.state.value}{kind}  {result.error or ''}".rstrip()


class _Reporter:
    """Where finished jobs are announced: JSON lines, a rich progress bar, or plain lines."""

    def __init__(self, total: int, as_json: bool) -> None:
        self.as_json = as_json
        self.progress = None
        if not as_json and stdout_is_terminal():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(TextColumn("waiting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                     console=console(), transient=False)
            self.task = self.progress.add_task("jobs", total=total)
            self.progress.start()

    def done(self, job: Job, result: Result) -> None:
        if self.as_json:
            emit_json(result)
        elif self.progress is not None:
            self.progress.console.print(result_line(job, result), markup=False, highlight=False)
            self.progress.advance(self.task)
        else:
            print(result_line(job, result), flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def wait_command(
    ids: Annotated[list[str] | None, typer.Argument(metavar="[ID...]", help="Jobs to wait for.")] = None,
    all_jobs: Annotated[bool, typer.Option("--all", help="Every job queued or running now.")] = False,
    timeout: Annotated[float | None, typer.Option(metavar="SECONDS", help="Give up after this long (exit 1).")] = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until jobs finish. Exit 0 if all succeeded, 1 if any failed or the timeout passed.

    Example: golfq wait --all --timeout 3600
    """
    if bool(ids) == all_jobs:
        raise CliError("wait: give job IDs or --all (not both)")
    if timeout is not None and timeout < 0:
        raise CliError("wait: --timeout must be >= 0")
    with queue(queue_url) as broker:
        if all_jobs:
            ids = [j.id for j in broker.list(states=[JobState.QUEUED, JobState.LEASED])]
        missing = [i for i in ids if broker.get(i) is None]
        if missing:
            raise CliError(f"wait: job(s) not found in {broker.url}: {', '.join(missing)}")
        if not ids:
            note("nothing to wait for")
            return
        reporter = _Reporter(len(ids), as_json)
        try:
            results = Client(broker=broker).wait(ids, timeout, on_done=reporter.done)
        except WaitTimeout as error:
            raise CliError(f"wait: {error}", code=EXIT_JOB_FAILED) from None
        finally:
            reporter.close()
    failed = [r for r in results if not r.succeeded]
    if not as_json:
        note(f"{len(results) - len(failed)} succeeded, {len(failed)} failed")
    if failed:
        raise typer.Exit(EXIT_JOB_FAILED)
