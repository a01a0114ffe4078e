"""`golfq demo`: the whole loop on one machine, in about three minutes on two CPU cores.

It prepares the stdlib data (cached), queues a small sweep of tiny configurations of
the built-in trainer in the `cpu` pool, serves them with a local fleet until they are
done, and prints the Pareto front of the demo's own jobs (and draws it when matplotlib
is there). Specs carry no machine-specific settings, so their ids are stable: a second
run finds the same jobs (and the cached data) and only re-runs the ones that failed.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol, TextIO

import typer

from golfq.cli.console import (
    JsonOption,
    QueueOption,
    console,
    emit_json,
    note,
    print_table,
    queue,
    result_line,
    stdout_is_terminal,
)
from golfq.cli.data import prepare_here
from golfq.cli.pareto import front_doc, front_table, front_title
from golfq.core.broker import Broker
from golfq.core.errors import EXIT_JOB_FAILED, GolfqError
from golfq.core.job import Job, JobState
from golfq.core.pareto import Front, fold, observation
from golfq.core.pools import get_pool
from golfq.core.settings import settings
from golfq.core.spec import Budget, DataRef, ExperimentSpec, config_key
from golfq.producer.client import final_result
from golfq.workers.fleet import Fleet, FleetConfig
from golfq.workers.runner import LOG_NAME, attempt_dir

if TYPE_CHECKING:
    from rich.progress import TaskID

    from golfq.workers.golf.prepare import PreparedData

app = typer.Typer(add_completion=False)

POOL = "cpu"
SOURCE, VOCAB = "stdlib", 1024
DEFAULT_PLOT = Path(".golfq") / "demo-front.png"
POLL_SECONDS = 0.5
STEP_LINE = re.compile(rb"(?m)^step:(\d+)/(\d+) ")


@dataclass(frozen=True)
class DemoSweep:
    """(layers, width) shapes x seeds, sharing one set of hyperparameters."""

    shapes: tuple[tuple[int, int], ...]
    seeds: tuple[int, ...]
    env: dict[str, str]
    train_seconds: float  # a safety cap: ITERATIONS ends the runs well before it

    def specs(self, dataset: str, tokenizer: str) -> list[ExperimentSpec]:
        data = DataRef(dataset=dataset, tokenizer=tokenizer)
        return [ExperimentSpec(name=f"demo {layers}x{width}", pool=POOL, seed=seed, data=data,
                               env={**self.env, "NUM_LAYERS": str(layers), "MODEL_DIM": str(width)},
                               budget=Budget(train_seconds=self.train_seconds), tags=("demo",))
                for layers, width in self.shapes for seed in self.seeds]


# Tiny CPU settings: 4 heads (2 KV heads) fit every width here; one optimizer step per
# batch; no compile warm-up (CPU has nothing to compile); scores on the first 32k val tokens.
_TINY = {"NUM_HEADS": "4", "NUM_KV_HEADS": "2", "GRAD_ACCUM_STEPS": "1", "WARMUP_STEPS": "0", "VAL_LOSS_EVERY": "0",
         "DEVICE": "cpu"}
FULL = DemoSweep(shapes=((2, 64), (3, 96), (4, 128)), seeds=(1, 2), train_seconds=300.0,
                 env={**_TINY, "TRAIN_SEQ_LEN": "128", "TRAIN_BATCH_TOKENS": "4096", "ITERATIONS": "100",
                      "WARMDOWN_ITERS": "25", "TRAIN_LOG_EVERY": "10", "VAL_MAX_TOKENS": "32768"})
QUICK = DemoSweep(shapes=((1, 32), (2, 64)), seeds=(1,), train_seconds=60.0,
                  env={**_TINY, "TRAIN_SEQ_LEN": "64", "TRAIN_BATCH_TOKENS": "1024", "ITERATIONS": "8",
                       "WARMDOWN_ITERS": "2", "TRAIN_LOG_EVERY": "2", "VAL_MAX_TOKENS": "4096"})


def _prepare_data() -> PreparedData:
    for module in ("torch", "sentencepiece"):
        try:
            __import__(module)
        except ImportError:
            raise GolfqError(f"demo: the built-in trainer needs {module} (pip install 'golfq[train]')") from None
    return prepare_here(SOURCE, VOCAB, what=f"demo: preparing the {SOURCE} data failed")


@contextlib.contextmanager
def _threads_per_job(concurrency: int) -> Iterator[int]:
    """Give each training process its share of the cores (unless OMP_NUM_THREADS is set already).

    Two jobs that each take every core run about 5x slower than two that take one each.
    The setting travels in the workers' environment, not in the specs, so spec ids stay
    the same whatever the machine or --concurrency.
    """
    before = os.environ.get("OMP_NUM_THREADS")
    threads = int(before) if before and before.isdigit() else max(1, (os.cpu_count() or 1) // concurrency)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        yield threads
    finally:
        if before is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = before


def _step(log_path: Path) -> tuple[int, int] | None:
    """The last `step:N/M` line of a running job's log."""
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 4096))
            matches = STEP_LINE.findall(handle.read())
    except OSError:
        return None
    return (int(matches[-1][0]), int(matches[-1][1])) if matches else None


def _finished_line(job: Job) -> str:
    return result_line(job.id, job.spec.name, final_result(job), job.state.value)


class _Display(Protocol):
    def started(self, job: Job, log_path: Path) -> None: ...

    def running(self, job: Job, step: tuple[int, int] | None) -> None: ...

    def finished(self, job: Job) -> None: ...

    def close(self) -> None: ...


class _PlainDisplay:
    """One line per start and per finish (not a terminal, or --json: then on stderr)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def started(self, job: Job, log_path: Path) -> None:
        print(f"{job.id}  started (attempt {job.attempt})  {job.spec.name}", file=self.stream, flush=True)

    def finished(self, job: Job) -> None:
        print(_finished_line(job), file=self.stream, flush=True)

    def running(self, job: Job, step: tuple[int, int] | None) -> None:
        pass

    def close(self) -> None:
        pass


class _RichDisplay:
    """A bar for the sweep and one per running job (its training step), with finished jobs printed above."""

    def __init__(self, total: int, done: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=console(), transient=False)
        self.progress.start()
        self.sweep = self.progress.add_task("demo jobs done", total=total, completed=done)
        self.tasks: dict[str, TaskID] = {}

    def started(self, job: Job, log_path: Path) -> None:
        iterations = int(job.spec.env.get("ITERATIONS", "0")) or None
        self.tasks[job.id] = self.progress.add_task(f"{job.id} {job.spec.name} step", total=iterations)

    def running(self, job: Job, step: tuple[int, int] | None) -> None:
        if job.id in self.tasks and step is not None:
            self.progress.update(self.tasks[job.id], completed=step[0], total=step[1])

    def finished(self, job: Job) -> None:
        if job.id in self.tasks:
            self.progress.remove_task(self.tasks.pop(job.id))
        self.progress.advance(self.sweep)
        self.progress.console.print(_finished_line(job), highlight=False)

    def close(self) -> None:
        self.progress.stop()


def _watch(broker: Broker, ids: Sequence[str], fleet_thread: threading.Thread, display: _Display,
           work_root: Path) -> list[Job]:
    """Poll the demo's jobs until every one is finished; tell the display what changed."""
    seen: dict[str, tuple[JobState, int]] = {}
    while True:
        jobs = []
        for job_id in ids:
            job = broker.get(job_id)
            if job is None:
                raise GolfqError(f"demo: job {job_id} vanished from the queue (purged?)")
            jobs.append(job)
            key = (job.state, job.attempt)
            log_path = attempt_dir(work_root, job.id, job.attempt) / LOG_NAME
            if seen.get(job.id) != key:
                if job.state is JobState.LEASED:
                    display.started(job, log_path)
                elif job.state.terminal and job.id in seen:
                    display.finished(job)
                seen[job.id] = key
            if job.state is JobState.LEASED:
                display.running(job, _step(log_path))
        if all(job.state.terminal for job in jobs):
            return jobs
        if not fleet_thread.is_alive():
            raise GolfqError("demo: the local worker stopped before the demo's jobs finished")
        time.sleep(POLL_SECONDS)


def _run_fleet(url: str, ids: Sequence[str], concurrency: int, display: _Display) -> list[Job]:
    work_root = settings().work_dir.absolute()
    fleet = Fleet(FleetConfig(queue=url, pool=POOL, concurrency=concurrency, work_root=work_root, grace_seconds=30.0))
    thread = threading.Thread(target=fleet.run, name="golfq-demo-fleet", daemon=True)
    thread.start()
    try:
        with queue(url) as broker:
            return _watch(broker, ids, thread, display, work_root)
    except BaseException:
        fleet.abort()  # Ctrl-C or an error: kill the runs and release their leases, so a re-run picks them up
        raise
    finally:
        fleet.stop()  # our jobs are done; a foreign cpu job this fleet took gets the grace period
        thread.join()
        display.close()


def demo_front(jobs: Sequence[Job]) -> Front:
    """The front of the demo's own jobs (the queue may hold other cpu results)."""
    observations = [o for j in jobs if j.result is not None and (o := observation(j.id, j.spec, j.result))]
    return fold(observations, get_pool(POOL).track)


def _draw(front: Front, plot: Path, names: dict[str, str]) -> tuple[str | None, str | None]:
    """(where the plot went, or None; why it was skipped, or None)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None, "plot skipped: matplotlib is not installed (pip install 'golfq[plot]')"
    from golfq.ops.plot import plot_fronts

    try:
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot_fronts([front], plot, names=names)
    except OSError as error:
        return None, f"plot skipped: {plot}: {error}"
    return str(plot), None


@app.command()
def demo(
    quick: Annotated[
        bool,
        typer.Option("--quick", help="A much smaller sweep (2 jobs, seconds each): for CI."),
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Jobs at once (default: 2, or 1 on a one-core machine)."),
    ] = None,
    plot: Annotated[
        Path,
        typer.Option(metavar="FILE.png", help="Where to draw the front (needs matplotlib)."),
    ] = DEFAULT_PLOT,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Prepare the stdlib data, train a small sweep of the built-in trainer locally, print the Pareto front.

    The jobs go into the queue (default .golfq/golfq.db), pool cpu, served by a local worker until they are done.

    Run it again and it reuses the jobs and the data. Example: golfq demo --concurrency 2
    """
    began = time.monotonic()
    url = queue_url or settings().queue
    concurrency = concurrency or min(2, os.cpu_count() or 1)
    sweep = QUICK if quick else FULL
    say: Callable[[str], None]
    if as_json:
        say = note
    elif stdout_is_terminal():
        say = lambda line: console().print(line, highlight=False)
    else:
        say = lambda line: print(line, flush=True)
    with queue(url):  # a bad --queue fails in one line before any data work
        pass
    data = _prepare_data()
    say(f"golfq demo: data {data.dataset} {'reused' if data.reused else 'prepared'} in {data.data_path.parent.parent}")
    with queue(url) as broker:
        jobs = broker.submit(sweep.specs(data.dataset, data.tokenizer))
        retry = [j.id for j in jobs if j.state in (JobState.FAILED, JobState.DEAD, JobState.CANCELLED)]
        if retry:
            broker.requeue(retry)
    ids = [j.id for j in jobs]
    done = sum(j.state is JobState.SUCCEEDED for j in jobs)
    say(f"golfq demo: {len(ids)} job(s) in {url} (pool {POOL}): {done} already done, {len(ids) - done} to run "
        f"on {concurrency} slot(s)")
    with _threads_per_job(concurrency):
        display = (_RichDisplay(len(ids), done) if stdout_is_terminal() and not as_json
                   else _PlainDisplay(sys.stderr if as_json else sys.stdout))
        final = _run_fleet(url, ids, concurrency, display)
    front = demo_front(final)
    drawn, skipped = _draw(front, plot, {config_key(j.spec): j.spec.name for j in final})
    failed = [j for j in final if j.state is not JobState.SUCCEEDED]
    seconds = time.monotonic() - began
    if as_json:
        emit_json({"queue": url, "data_path": str(data.data_path), "tokenizer_path": str(data.tokenizer_path),
                   "jobs": [{"id": j.id, "name": j.spec.name, "seed": j.spec.seed, "state": j.state.value,
                             "result": j.result} for j in final],
                   **front_doc(front, False), "plot": drawn, "seconds": seconds})
    else:
        print_table(front_title(front, False), front_table(front, False))
        print(f"plot written to {drawn}" if drawn else skipped)
        print(f"golfq demo: {len(final) - len(failed)} of {len(final)} job(s) succeeded in {seconds:.0f} s; "
              f"next: golfq pareto, golfq status ID, golfq logs ID", flush=True)
    if skipped and as_json:
        note(skipped)
    if failed:
        first = failed[0]
        raise GolfqError(f"demo: {len(failed)} job(s) did not succeed; {first.id}: {first.state.value}: "
                         f"{first.error or 'see golfq logs ' + first.id}", exit_code=EXIT_JOB_FAILED)
