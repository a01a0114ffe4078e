"""The producer's verbs: submit, sweep, status, logs, wait, events (mounted by golfq.cli.main)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from golfq.core.broker import Broker, Job, JobState
from golfq.core.events import Event
from golfq.cli.console import (CliError, JsonOption, QueueOption, console, emit_json, fmt_bytes, fmt_float,
                              fmt_seconds, note, queue)
from golfq.producer.grid import Sweep, expand
from golfq.producer.specfile import (InputError, Prepared, apply_override, parse_assignment, prepare_all, read_documents,
                               read_script)
from golfq.cli.wait import wait_command

app = typer.Typer(add_completion=False)


def _prepared_or_exit(build) -> list[Prepared]:
    try:
        return build()
    except InputError as error:
        raise CliError(str(error)) from None


def enqueue(broker: Broker, prepared: list[Prepared]) -> list[tuple[Job, bool]]:
    """Store scripts, then submit; (job, newly queued) pairs in order."""
    existing = {p.spec.id for p in prepared if broker.get(p.spec.id) is not None}
    for item in prepared:
        if item.script is not None:
            broker.put_script(item.script)
    jobs = broker.submit([p.spec for p in prepared])
    return [(job, job.id not in existing) for job in jobs]


def _print_submitted(pairs: list[tuple[Job, bool]], as_json: bool) -> None:
    for job, new in pairs:
        if as_json:
            emit_json({"id": job.id, "state": job.state.value, "new": new, "pool": job.pool, "name": job.spec.name,
                       "seed": job.spec.seed})
        else:
            verb = "queued" if new else f"exists ({job.state.value})"
            print(f"{job.id}  {verb:<20} pool={job.pool} seed={job.spec.seed}  {job.spec.name}".rstrip())


@app.command()
def submit(
    file: Annotated[str | None, typer.Argument(metavar="[FILE|-]", help="Spec file (.toml/.json); - reads stdin.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE",
                                                   help="NUM_LAYERS=9 sets a hyperparameter; budget.train_seconds=60 a field.")] = None,
    pool: Annotated[str | None, typer.Option(help="Pool to run in (cpu, h100, h100x8, ...).")] = None,
    seed: Annotated[list[int] | None, typer.Option(help="Seed; repeat for one job per seed.")] = None,
    script: Annotated[Path | None, typer.Option(help="A train_gpt.py-style script to run instead of the built-in trainer.")] = None,
    budget: Annotated[float | None, typer.Option(metavar="SECONDS", help="Training budget (MAX_WALLCLOCK_SECONDS).")] = None,
    priority: Annotated[int | None, typer.Option(help="Higher runs first within a pool.")] = None,
    tag: Annotated[list[str] | None, typer.Option(help="Tag; repeatable.")] = None,
    parent: Annotated[str | None, typer.Option(metavar="ID", help="The job this one derives from.")] = None,
    name: Annotated[str | None, typer.Option(help="A human name (does not change the job id).")] = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue one spec (or several: a JSON array or JSON lines). Nothing is queued unless every spec is valid.

    Example: echo '{"pool": "cpu", "NUM_LAYERS": 4}' | golfq submit - --seed 1 --seed 2
    """

    def build() -> list[Prepared]:
        docs, base = read_documents(file) if file else ([{}], Path.cwd())
        content = read_script(script) if script is not None else None
        out = []
        for doc in docs:
            if content is not None:
                doc.pop("script", None)
            for key, value in (("pool", pool), ("priority", priority), ("parent", parent), ("name", name),
                               ("budget.train_seconds", budget)):
                if value is not None:
                    apply_override(doc, key, value)
            if tag:
                doc["tags"] = [*doc.get("tags", []), *tag] if isinstance(doc.get("tags", []), list) else doc["tags"]
            for assignment in set_ or []:
                apply_override(doc, *parse_assignment(assignment), from_text=True)
            out.extend([{**doc, "seed": s} for s in seed] if seed else [doc])
        return prepare_all(out, base=base, script=content, where=file if file and file != "-" else "spec")

    prepared = _prepared_or_exit(build)
    with queue(queue_url) as broker:
        _print_submitted(enqueue(broker, prepared), as_json)


@app.command()
def sweep(
    grid_file: Annotated[Path, typer.Argument(metavar="GRID.toml", help="base, grid, points, seeds, script.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the specs; queue nothing.")] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue one spec per grid point (cartesian product, then explicit points) and seed.

    Example: golfq sweep lr.toml --dry-run
    """

    def build() -> list[Prepared]:
        docs, base = read_documents(str(grid_file))
        if len(docs) != 1:
            raise InputError(f"{grid_file}: expected one sweep document")
        plan = Sweep.from_document(docs[0], base, where=str(grid_file))
        return expand(plan, name=grid_file.stem)

    prepared = _prepared_or_exit(build)
    if dry_run:
        for item in prepared:
            spec = item.spec
            if as_json:
                emit_json({"id": spec.id, "spec": spec})
            else:
                env = " ".join(f"{k}={v}" for k, v in sorted(spec.env.items()))
                print(f"{spec.id}  pool={spec.pool} seed={spec.seed} train={spec.budget.train_seconds:g}s  {env}".rstrip())
        if not as_json:
            note(f"{len(prepared)} spec(s); nothing queued (--dry-run)")
        return
    with queue(queue_url) as broker:
        _print_submitted(enqueue(broker, prepared), as_json)


def _job_row(job: Job) -> dict:
    r = job.result
    return {"id": job.id, "state": job.state.value, "pool": job.pool, "attempt": job.attempt, "name": job.spec.name,
            "val_bpb": r.val_bpb if r else None, "artifact_bytes": r.artifact_bytes if r else None,
            "train_seconds": r.train_seconds if r else None, "error": job.error}


def _job_table(jobs: list[Job], title: str):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("id", "state", "pool", "try", "val_bpb", "size", "train", "name / error"):
        table.add_column(column, justify="right" if column in ("try", "val_bpb", "size", "train") else "left")
    for job in jobs:
        r = job.result
        table.add_row(job.id, job.state.value, job.pool, str(job.attempt), fmt_float(r.val_bpb if r else None),
                      fmt_bytes(r.artifact_bytes if r else None), fmt_seconds(r.train_seconds if r else None),
                      (job.error or job.spec.name or "")[:60])
    return table


def find_job(broker: Broker, job_id: str) -> Job:
    job = broker.get(job_id)
    if job is None:
        raise CliError(f"job {job_id}: not found in {broker.url}")
    return job


@app.command()
def status(
    job_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="One job's details.")] = None,
    limit: Annotated[int, typer.Option(help="Most recent jobs to list.")] = 20,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """The queue at a glance (per-pool counts, recent jobs), or one job in full.

    Example: golfq status; golfq status 3ijlhcjuqo22wavv --json
    """
    with queue(queue_url) as broker:
        if job_id is not None:
            job = find_job(broker, job_id)
            if as_json:
                emit_json(job)
                return
            _print_job(job)
            return
        stats = broker.stats()
        jobs = broker.list()
        recent = jobs[-limit:] if limit > 0 else []
    if as_json:
        emit_json({"stats": stats, "jobs": [_job_row(j) for j in recent]})
        return
    from rich.table import Table

    table = Table(title=f"{broker.url}  (backend {stats.backend}, last event #{stats.last_seq})", title_justify="left")
    states = [s.value for s in JobState]
    for column in ["pool", *states, "draining"]:
        table.add_column(column, justify="left" if column == "pool" else "right")
    for name, pool in stats.pools.items():
        table.add_row(name, *(str(getattr(pool, s)) for s in states), "yes" if pool.draining else "")
    out = console()
    out.print(table)
    if recent:
        out.print(_job_table(recent, f"last {len(recent)} of {len(jobs)} jobs"))


def _print_job(job: Job) -> None:
    spec, r = job.spec, job.result
    lines = [("id", job.id), ("state", job.state.value), ("pool", spec.pool), ("name", spec.name),
             ("attempt", str(job.attempt)), ("worker", job.worker_id), ("seed", str(spec.seed)),
             ("trainer", spec.trainer), ("budget", f"{spec.budget.train_seconds:g} s train, "
                                                    f"{spec.budget.hard_timeout:g} s hard timeout"),
             ("env", " ".join(f"{k}={v}" for k, v in sorted(spec.env.items()))),
             ("tags", ", ".join(spec.tags)), ("failures", ", ".join(f"{k}={n}" for k, n in job.failures.items())),
             ("error", job.error or "")]
    if r is not None:
        lines += [("val_bpb", fmt_float(r.val_bpb, 8)), ("val_loss", fmt_float(r.val_loss, 8)),
                  ("artifact", f"{r.artifact_bytes:,} bytes" if r.artifact_bytes is not None else "-"),
                  ("train time", fmt_seconds(r.train_seconds)), ("wall time", fmt_seconds(r.total_seconds)),
                  ("cost", f"${r.cost_usd:.4f}" if r.cost_usd is not None else "-"), ("log", r.log_path or "")]
    for key, value in lines:
        if value:
            print(f"{key:>10}  {value}")


def _log_path(job: Job, work_dir: Path | None) -> Path | None:
    from golfq.workers.fleet import work_root_default
    from golfq.workers.runner import LOG_NAME, attempt_dir

    r = job.result
    candidates = [Path(r.log_path)] if r is not None and r.log_path and r.attempt == job.attempt else []
    if job.attempt:
        candidates.append(attempt_dir(work_dir or work_root_default(), job.id, job.attempt) / LOG_NAME)
    return next((p for p in candidates if p.is_file()), None)


@app.command()
def logs(
    job_id: Annotated[str, typer.Argument(metavar="ID")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job finishes.")] = False,
    work_dir: Annotated[Path | None, typer.Option(envvar="GOLFQ_WORK_DIR", help="Where local workers keep runs.")] = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print a job's training log (its latest attempt); --follow streams it while it runs.

    Example: golfq logs 3ijlhcjuqo22wavv --follow
    """
    with queue(queue_url) as broker:
        job = find_job(broker, job_id)
        path = _log_path(job, work_dir)
        while follow and path is None and not job.state.terminal:
            time.sleep(0.5)
            job = find_job(broker, job_id)
            path = _log_path(job, work_dir)
        if path is None:
            tail = job.result.log_tail if job.result is not None else ""
            if not tail:
                raise CliError(f"job {job_id}: no log on this machine yet (state {job.state.value}, "
                               f"attempt {job.attempt})")
            note(f"# log not on this machine; the tail stored with attempt {job.result.attempt}:")
            _write(tail + "\n", as_json)
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


def _write(text: str, as_json: bool) -> None:
    if not text:
        return
    if as_json:
        for line in text.splitlines():
            emit_json({"line": line})
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def _event_line(e: Event) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.ts))
    detail = []
    if e.worker_id:
        detail.append(f"worker={e.worker_id}")
    if e.failure:
        detail.append(f"failure={e.failure.value}")
    if e.result is not None and e.result.val_bpb is not None:
        detail.append(f"val_bpb={e.result.val_bpb:.4f}")
    if e.error:
        detail.append(f"error={e.error[:80]}")
    job = f"{e.job_id}#{e.attempt}" if e.job_id else f"pool {e.pool}"
    return f"{e.seq:>6}  {stamp}  {e.kind.value:<10}  {job:<20}  {' '.join(detail)}".rstrip()


app.command("wait")(wait_command)


@app.command()
def events(
    after: Annotated[int, typer.Option(metavar="SEQ", help="Only events after this sequence number.")] = 0,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events (Ctrl-C stops).")] = False,
    limit: Annotated[int, typer.Option(help="Most events per read.")] = 1000,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """The append-only event log, oldest first.

    Example: golfq events --after 120 --json
    """
    if after < 0 or limit < 1:
        raise CliError("--after must be >= 0 and --limit >= 1")
    with queue(queue_url) as broker:
        seq = after
        while True:
            batch = broker.events(after_seq=seq, limit=limit)
            for event in batch:
                emit_json(event) if as_json else print(_event_line(event), flush=True)
                seq = event.seq
            if len(batch) == limit:
                continue
            if not follow:
                return
            time.sleep(0.5)
