"""A queue as JSON lines, to back up or move between backends: `golfq ops export FILE` / `import FILE`.

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
from collections.abc import Iterator, Sequence
from pathlib import Path

import msgspec

from golfq.core.broker import Broker, iter_events
from golfq.core.events import Event
from golfq.core.job import Job, JobState
from golfq.core.spec import BUILTIN, blob_ref, stored_ref
from golfq.ops import OpsError
from golfq.producer.client import Client
from golfq.producer.specfile import Prepared

FORMAT_VERSION = 1
EVENT_PAGE = 5000


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
encode_record = msgspec.json.Encoder().encode


class ExportCounts(msgspec.Struct, kw_only=True):
    jobs: int = 0
    scripts: int = 0
    events: int = 0


class ImportSummary(msgspec.Struct, frozen=True, kw_only=True):
    queued: list[str]  # jobs this import created
    already_present: list[str]
    skipped_finished: int  # finished jobs in the file that were not queued again (no --all)


def records_of(broker: Broker) -> Iterator[Record]:
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
    for event in iter_events(broker, page=EVENT_PAGE):
        yield EventRecord(event=event)


def write_export(broker: Broker, path: Path) -> ExportCounts:
    """Write the export to a file; a reader never sees half of one."""
    counts = ExportCounts()
    partial = path.with_name(path.name + ".partial")
    try:
        with open(partial, "wb") as out:
            for record in records_of(broker):
                counts.jobs += isinstance(record, JobRecord)
                counts.scripts += isinstance(record, ScriptRecord)
                counts.events += isinstance(record, EventRecord)
                out.write(encode_record(record) + b"\n")
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):  # the same fault (a file where a directory should be) may refuse this too
            partial.unlink(missing_ok=True)
        raise OpsError(f"export {path}: cannot write: {error.strerror or error}") from None
    return counts


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for each non-blank line; OpsError if the file cannot be read."""
    if not path.is_file():
        raise OpsError(f"{path}: no such file")
    try:
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    yield number, line
    except OSError as error:
        raise OpsError(f"{path}: cannot read: {error}") from None


def read_export(path: Path) -> list[Record]:
    records = []
    for number, line in read_lines(path):
        try:
            records.append(_decode_record(line))
        except (msgspec.DecodeError, msgspec.ValidationError) as error:
            raise OpsError(f"{path} line {number}: not a golfq export record ({error})") from None
    if not records or not isinstance(records[0], Header):
        raise OpsError(f"{path}: not a golfq export (no header line)")
    if records[0].version > FORMAT_VERSION:
        raise OpsError(f"{path}: export format {records[0].version} is newer than this golfq ({FORMAT_VERSION})")
    return records


def _scripts(records: Sequence[Record], path: Path) -> dict[str, bytes]:
    scripts: dict[str, bytes] = {}
    for record in records:
        if isinstance(record, ScriptRecord):
            try:
                content = base64.b64decode(record.content_b64, validate=True)
            except ValueError:
                raise OpsError(f"{path}: script {record.ref}: content is not base64") from None
            if stored_ref(content) != blob_ref(record.ref):  # a script, or a packed code folder ("code:" ref)
                raise OpsError(f"{path}: script {record.ref}: content does not match its sha256")
            scripts[record.ref] = content
    return scripts


def _refuse_missing_scripts(broker: Broker, path: Path, jobs: Sequence[Job], scripts: dict[str, bytes]) -> None:
    """Before anything is written: a job whose script is neither in the file nor in the queue could only fail."""
    missing = set()
    for ref in {j.spec.trainer for j in jobs} - {BUILTIN, *scripts}:
        try:
            broker.get_script(ref)
        except KeyError:
            missing.add(ref)
    if missing:
        raise OpsError(f"{path}: {len(missing)} script(s) its jobs run are in neither the file nor this queue "
                       f"({', '.join(sorted(missing))}); nothing imported")


def import_export(broker: Broker, path: Path, all_jobs: bool = False) -> ImportSummary:
    """Queue the export's unfinished jobs (every job with all_jobs) and store the scripts they run."""
    records = read_export(path)
    scripts = _scripts(records, path)
    jobs = [r.job for r in records if isinstance(r, JobRecord)]
    wanted = [j for j in jobs if all_jobs or j.state in (JobState.QUEUED, JobState.LEASED)]
    _refuse_missing_scripts(broker, path, wanted, scripts)
    pairs = Client(broker=broker).submit_prepared([Prepared(j.spec, scripts.get(j.spec.trainer)) for j in wanted])
    return ImportSummary(queued=[job.id for job, new in pairs if new],
                         already_present=sorted({job.id for job, new in pairs if not new}),
                         skipped_finished=len(jobs) - len(wanted))
