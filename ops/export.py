"""`golfq ops export FILE` / `import FILE`: a queue as JSON lines, to back up or move between backends.

An export holds a header, every job (spec, state, counted result), every script a
job names, and the whole event log. Import goes through the Broker protocol, which
has no way to write a finished result, so it re-queues the jobs that were still
queued or running (`--all`: every job) and stores their scripts; finished results
stay readable in the file (and in its events, which `ops replay` also reads).
"""

from __future__ import annotations

import base64
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from golfq.core.broker import Broker, Job, JobState
from golfq.core.events import Event
from golfq.core.spec import BUILTIN, script_ref
from golfq.cli.console import CliError, JsonOption, QueueOption, emit_json, queue

FORMAT_VERSION = 1


class Header(msgspec.Struct, frozen=True, tag="header"):
    version: int
    url: str
    exported_at: float
    last_seq: int


class ScriptRecord(msgspec.Struct, frozen=True, tag="script"):
    ref: str
    content_b64: str


class JobRecord(msgspec.Struct, frozen=True, tag="job"):
    job: Job


class EventRecord(msgspec.Struct, frozen=True, tag="event"):
    event: Event


Record = Header | ScriptRecord | JobRecord | EventRecord
_decode_record = msgspec.json.Decoder(Record).decode
_decode_event = msgspec.json.Decoder(Event).decode


def records_of(broker: Broker, page: int = 5000) -> Iterator[Header | ScriptRecord | JobRecord | EventRecord]:
    stats = broker.stats()
    yield Header(version=FORMAT_VERSION, url=broker.url, exported_at=time.time(), last_seq=stats.last_seq)
    jobs = broker.list()
    for ref in sorted({j.spec.trainer for j in jobs if j.spec.trainer != BUILTIN}):
        try:
            content = broker.get_script(ref)
        except KeyError:
            continue  # the job will fail on import's worker the same way it would have here
        yield ScriptRecord(ref=ref, content_b64=base64.b64encode(content).decode("ascii"))
    for job in jobs:
        yield JobRecord(job=job)
    seq = 0
    while True:
        batch = broker.events(after_seq=seq, limit=page)
        for event in batch:
            seq = event.seq
            yield EventRecord(event=event)
        if len(batch) < page:
            return


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for each non-blank line; a one-line CliError if the file cannot be read."""
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield number, line
    except OSError as error:
        raise CliError(f"{path}: cannot read: {error}") from None


def read_export(path: Path) -> list[Header | ScriptRecord | JobRecord | EventRecord]:
    records = []
    for number, line in read_lines(path):
        try:
            records.append(_decode_record(line))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise CliError(f"{path} line {number}: not a golfq export record ({error})") from None
    if not records or not isinstance(records[0], Header):
        raise CliError(f"{path}: not a golfq export (no header line)")
    if records[0].version > FORMAT_VERSION:
        raise CliError(f"{path}: export format {records[0].version} is newer than this golfq ({FORMAT_VERSION})")
    return records


def export(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the JSON lines (- for stdout).")],
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write every job, script and event to a JSON-lines file. Example: golfq ops export backup.jsonl"""
    encoder = msgspec.json.Encoder()
    counts = {"header": 0, "script": 0, "job": 0, "event": 0}
    with queue(queue_url) as broker:
        if str(file) == "-":
            for record in records_of(broker):
                counts[type(record).__struct_config__.tag] += 1
                typer.echo(encoder.encode(record).decode())
            return
        partial = file.with_name(file.name + ".partial")
        try:
            with open(partial, "wb") as out:
                for record in records_of(broker):
                    counts[type(record).__struct_config__.tag] += 1
                    out.write(encoder.encode(record) + b"\n")
            os.replace(partial, file)  # a reader never sees half an export
        except OSError as error:
            with contextlib.suppress(OSError):  # the same fault (a file where a directory should be) may refuse this too
                partial.unlink(missing_ok=True)
            raise CliError(f"export {file}: cannot write: {error.strerror or error}") from None
    summary = {"file": str(file), "jobs": counts["job"], "scripts": counts["script"], "events": counts["event"]}
    if as_json:
        emit_json(summary)
    else:
        print(f"exported {counts['job']} job(s), {counts['script']} script(s), {counts['event']} event(s) to {file}")


def _refuse_missing_scripts(broker, file: Path, jobs, scripts: dict[str, bytes]) -> None:
    """Before anything is written: a job whose script is neither in the file nor in the queue could only fail."""
    missing = set()
    for ref in {j.spec.trainer for j in jobs} - {"builtin", *scripts}:
        try:
            broker.get_script(ref)
        except KeyError:
            missing.add(ref)
    if missing:
        raise CliError(f"{file}: {len(missing)} script(s) its jobs run are in neither the file nor this queue "
                       f"({', '.join(sorted(missing))}); nothing imported")


def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    all_jobs: Annotated[bool, typer.Option("--all", help="Queue every job again, finished ones too.")] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue an export's unfinished jobs (and store their scripts) here. Example: golfq ops import backup.jsonl"""
    records = read_export(file)
    scripts: dict[str, bytes] = {}
    for record in records:
        if isinstance(record, ScriptRecord):
            try:
                content = base64.b64decode(record.content_b64, validate=True)
            except ValueError:
                raise CliError(f"{file}: script {record.ref}: content is not base64") from None
            if script_ref(content) != record.ref:
                raise CliError(f"{file}: script {record.ref}: content does not match its sha256")
            scripts[record.ref] = content
    jobs = [r.job for r in records if isinstance(r, JobRecord)]
    wanted = [j for j in jobs if all_jobs or j.state in (JobState.QUEUED, JobState.LEASED)]
    with queue(queue_url) as broker:
        _refuse_missing_scripts(broker, file, wanted, scripts)
        for ref in sorted({j.spec.trainer for j in wanted if j.spec.trainer in scripts}):
            broker.put_script(scripts[ref])
        before = {j.id for j in wanted if broker.get(j.id) is not None}
        broker.submit([j.spec for j in wanted])
    added = [j.id for j in wanted if j.id not in before]
    summary = {"queued": added, "already_present": sorted(before), "skipped_finished": len(jobs) - len(wanted)}
    if as_json:
        emit_json(summary)
    else:
        print(f"queued {len(added)} job(s); {len(before)} already present; "
              f"{summary['skipped_finished']} finished job(s) not re-run (use --all)")
