"""`golfq submit` and `golfq sweep`: specs from files, stdin and options, queued through the Client."""

from __future__ import annotations

import os
import re
import select
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from golfq.cli.console import JsonOption, QueueOption, emit_json, note, queue, shown
from golfq.core.job import Job
from golfq.core.settings import settings
from golfq.core.spec import BUILTIN, ExperimentSpec
from golfq.producer.client import Client
from golfq.producer.codefolder import pack_folder
from golfq.producer.grid import Sweep, expand
from golfq.producer.specfile import (
    InputError,
    Prepared,
    apply_override,
    parse_assignment,
    prepare_all,
    read_documents,
    read_script,
)

app = typer.Typer(add_completion=False)

PIPE_GRACE_SECONDS = 0.5
_VOCAB = re.compile(r"^(fineweb10B|stdlib)_sp(\d+)$")


def _prepare_command(dataset: str) -> str:
    """The `golfq data prepare` that makes a dataset, when its name says which."""
    match = _VOCAB.match(dataset)
    if match is None:
        return "golfq data prepare --source DIR_OR_JSONL"
    source = "fineweb" if match.group(1) == "fineweb10B" else "stdlib"
    return f"golfq data prepare --source {source} --vocab {match.group(2)}"


def _warn_missing_data(url: str, prepared: Sequence[Prepared]) -> None:
    """A local queue's workers read this machine's data: say so at submit, before a job fails on it.

    Remote queues are left alone: their data lives on the workers, not here.
    """
    if not url.startswith("sqlite:"):
        return
    from golfq.workers.golf.prepare import dataset_paths

    for data in dict.fromkeys(p.spec.data for p in prepared if p.spec.trainer == BUILTIN):  # own code: own data
        data_path, tokenizer_path = dataset_paths(data.dataset, data.tokenizer, settings().data_dir)
        missing = next((p for p in (data_path, tokenizer_path) if not p.exists()), None)
        if missing is not None:
            note(f"golfq: warning: {missing} does not exist, so local workers cannot train on {data.dataset}; "
                 f"run: {_prepare_command(data.dataset)}")


def _submit_and_print(queue_url: str | None, prepared: list[Prepared], as_json: bool) -> None:
    with queue(queue_url) as broker:
        _warn_missing_data(broker.url, prepared)
        pairs = Client(broker=broker).submit_prepared(prepared)
    for job, new in pairs:
        _print_submitted(job, new, as_json)


def _runs(spec: ExperimentSpec) -> str:
    """What a job runs, in a few words: the trainer (builtin, script or code) and its env, or `defaults`."""
    trainer = "builtin" if spec.trainer == BUILTIN else "code" if spec.is_code_folder else "script"
    env = " ".join(f"{k}={v}" for k, v in sorted(spec.env.items())) or "defaults"
    return shown(f"{trainer} {env}")


def _print_submitted(job: Job, new: bool, as_json: bool) -> None:
    if as_json:
        emit_json({"id": job.id, "state": job.state.value, "new": new, "pool": job.pool, "name": job.spec.name,
                   "seed": job.spec.seed, "trainer": job.spec.trainer, "env": job.spec.env,
                   "train_seconds": job.spec.budget.train_seconds})
    else:
        verb = "queued" if new else f"exists ({job.state.value})"
        print(f"{job.id}  {verb:<20} pool={job.pool} seed={job.spec.seed}  {_runs(job.spec)}  "
              f"{shown(job.spec.name)}".rstrip())


def _stdin_holds_input() -> bool:
    """Whether stdin is a file or pipe with something in it. A terminal is never read; a pipe gets a moment to
    deliver (`echo ... |` has by then), and one that stays idle is left alone with a note, never waited on."""
    try:
        fd = sys.stdin.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an in-memory stream
        return False
    if os.isatty(fd):
        return False
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        return os.fstat(fd).st_size > 0
    if not stat.S_ISFIFO(mode) and not stat.S_ISSOCK(mode):
        return False  # /dev/null and the like
    if not select.select([fd], [], [], PIPE_GRACE_SECONDS)[0]:
        note("golfq: submit: stdin is a pipe with nothing in it yet; not read (pass - to read a spec from it)")
        return False
    buffer: Any = sys.stdin.buffer  # a BufferedReader, which can look ahead without consuming
    return bool(buffer.peek(1))  # readable and empty: the writer closed it without a word


@app.command()
def submit(
    file: Annotated[
        str | None,
        typer.Argument(metavar="FILE|-", help="Spec file (.toml/.json); - reads stdin."),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="KEY=VALUE",
                     help="NUM_LAYERS=9 sets a hyperparameter; budget.train_seconds=60 a field."),
    ] = None,
    pool: Annotated[str | None, typer.Option(metavar="POOL", help="Pool to run in (cpu, h100, h100x8, ...).")] = None,
    seed: Annotated[list[int] | None, typer.Option(metavar="SEED", help="Seed; repeat for one job per seed.")] = None,
    script: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="A train_gpt.py-style script to run instead of the built-in trainer."),
    ] = None,
    code: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="A code folder to run (train_gpt.py, its helpers, requirements.txt)."),
    ] = None,
    baseline: Annotated[bool, typer.Option(
        "--baseline", help="Run the built-in trainer with its defaults (the challenge's baseline).")] = False,
    budget: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", help="Training budget (MAX_WALLCLOCK_SECONDS)."),
    ] = None,
    priority: Annotated[int | None, typer.Option(metavar="N", help="Higher runs first within a pool.")] = None,
    tag: Annotated[list[str] | None, typer.Option(metavar="TAG", help="Tag; repeatable.")] = None,
    parent: Annotated[str | None, typer.Option(metavar="ID", help="The job this one derives from.")] = None,
    name: Annotated[str | None, typer.Option(metavar="TEXT", help="A human name (does not change the job id).")] = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue one spec (or several: a JSON array or JSON lines). Nothing is queued unless every spec is valid.

    Say what to run: a spec FILE (or one piped on stdin), --set, --script, --code, or --baseline for the built-in
    trainer's defaults. Each queued job is printed with what it runs.

    Example: echo '{"pool": "cpu", "NUM_LAYERS": 4}' | golfq submit - --seed 1 --seed 2
    """
    if baseline and (script is not None or code is not None):
        raise InputError(f"submit: --baseline runs the built-in trainer; drop it or {'--code' if code else '--script'}")
    if file is None and _stdin_holds_input():
        file = "-"
    docs, base = read_documents(file) if file else ([{}], Path.cwd())
    content = read_script(script) if script is not None else None
    packed = pack_folder(code) if code is not None else None
    specs = []
    for doc in docs:
        if content is not None or packed is not None:
            doc.pop("script", None)
            doc.pop("code", None)
        for key, value in (("pool", pool), ("priority", priority), ("parent", parent), ("name", name),
                           ("budget.train_seconds", budget)):
            if value is not None:
                apply_override(doc, key, value)
        if tag:
            doc["tags"] = [*doc.get("tags", []), *tag] if isinstance(doc.get("tags", []), list) else doc["tags"]
        for assignment in set_ or []:
            apply_override(doc, *parse_assignment(assignment), from_text=True)
        specs.extend([{**doc, "seed": s} for s in seed] if seed else [doc])
    where = file if file and file != "-" else "spec"
    prepared = prepare_all(specs, base=base, script=content, code=packed, where=where)
    if file is None and not (set_ or script or code or baseline):  # checked after the options: theirs come first
        raise InputError("submit: say what to run: a spec FILE (- reads stdin), --set KEY=VALUE, --script FILE, "
                         "--code DIR, or --baseline for the built-in trainer's defaults")
    _submit_and_print(queue_url, prepared, as_json)


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
    docs, base = read_documents(str(grid_file))
    if len(docs) != 1:
        raise InputError(f"{grid_file}: expected one sweep document")
    prepared = expand(Sweep.from_document(docs[0], base, where=str(grid_file)), name=grid_file.stem)
    if not dry_run:
        _submit_and_print(queue_url, prepared, as_json)
        return
    for item in prepared:
        spec = item.spec
        if as_json:
            emit_json({"id": spec.id, "spec": spec})
        else:
            env = shown(" ".join(f"{k}={v}" for k, v in sorted(spec.env.items())))
            print(f"{spec.id}  pool={spec.pool} seed={spec.seed} train={spec.budget.train_seconds:g}s  {env}".rstrip())
    if not as_json:
        note(f"{len(prepared)} spec(s); nothing queued (--dry-run)")
