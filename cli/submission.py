"""`golfq submission ID... --out DIR`: a record folder from finished jobs of one configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golfq.cli.console import JsonOption, QueueOption, WorkDirOption, emit_json, note, queue, shown, work_dir
from golfq.cli.jobs import job_log
from golfq.ops.submission import write_submission

app = typer.Typer(add_completion=False)


@app.command()
def submission(
    job_ids: Annotated[
        list[str],
        typer.Argument(metavar="ID", help="Finished jobs of one configuration, one per seed."),
    ],
    out: Annotated[Path, typer.Option("--out", help="The record folder to write (new or empty).")],
    name: Annotated[str, typer.Option(help="submission.json name (default: the spec's name).")] = "",
    author: Annotated[str, typer.Option(help="submission.json author.")] = "",
    github_id: Annotated[str, typer.Option("--github-id", help="submission.json github_id.")] = "",
    blurb: Annotated[str, typer.Option(help="submission.json blurb.")] = "",
    work_dir_option: WorkDirOption = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write a record-ready folder (train_gpt.py, requirements.txt, submission.json, logs, README) from finished jobs.

    A code-folder job's files are written back as it ran them, so `golfq record import` of the folder gives its spec.

    Example: golfq submission 3ijlhcjuqo22wavv k2mzq7d4xw3bnyqe --out records/2026-05-01_MyRun
    """
    from golfq.workers.golf.bundle import bundle_source

    runs = work_dir(work_dir_option)
    with queue(queue_url) as broker:
        written = write_submission(broker, job_ids, out, log_of=lambda job: job_log(job, runs),
                                   builtin_source=bundle_source, name=name, author=author, github_id=github_id,
                                   blurb=blurb)
    for warning in written.warnings:
        note(f"golfq: warning: {shown(warning)}")
    if as_json:
        emit_json({"out": str(written.out), "files": [str(p) for p in written.files], "submission": written.document,
                   "warnings": written.warnings})
        return
    doc = written.document
    print(f"wrote {written.out}: val_bpb {doc['val_bpb']} over {len(doc['seeds'])} seed(s), "
          f"{doc.get('bytes_total', '-')} bytes ({doc['bytes_code']} code), track {doc['track']}")
    for path in written.files:
        print(f"  {path.name}  {path.stat().st_size} bytes")
