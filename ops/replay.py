"""`golfq ops replay`: bring back the jobs an event stream names.

The stream is a JSON-lines file (`golfq events --json`, or an export) or this
queue's own events after a sequence number. For each job it names: a job this
queue lacks is submitted again from its `submitted` event; a failed or dead job
is queued again with fresh retry budgets; queued, running, succeeded and
cancelled jobs are left alone. A job whose script this queue lacks is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import msgspec
import typer

from golfq.core.broker import Broker, JobState
from golfq.core.events import Event, EventKind
from golfq.core.spec import BUILTIN, ExperimentSpec
from golfq.ops.export import EventRecord, read_lines
from golfq.cli.console import CliError, JsonOption, QueueOption, emit_json, queue

_decode_event = msgspec.json.Decoder(Event).decode
_decode_record = msgspec.json.Decoder(EventRecord).decode


def events_from_file(path: Path) -> list[Event]:
    """Events from `golfq events --json` lines or an export's event records; other export lines are skipped."""
    out = []
    for number, line in read_lines(path):
        try:
            head = msgspec.json.decode(line)
        except msgspec.DecodeError as error:
            raise CliError(f"{path} line {number}: invalid JSON ({error})") from None
        if isinstance(head, dict) and head.get("type") in ("header", "script", "job"):
            continue
        try:
            out.append(_decode_record(line).event if isinstance(head, dict) and "type" in head else _decode_event(line))
        except msgspec.ValidationError as error:
            raise CliError(f"{path} line {number}: not a golfq event ({error})") from None
    return out


class Plan(msgspec.Struct, kw_only=True):
    submit: list[ExperimentSpec] = []
    requeue: list[str] = []
    unchanged: list[str] = []
    skipped: dict[str, str] = {}  # job id -> why


def plan_replay(broker: Broker, events: Iterable[Event]) -> Plan:
    specs: dict[str, ExperimentSpec] = {}
    named: list[str] = []
    for event in events:
        if event.kind is EventKind.SUBMITTED and event.spec is not None:
            specs[event.job_id] = event.spec
        if event.job_id and event.job_id not in named:
            named.append(event.job_id)
    plan = Plan()
    for job_id in named:
        job = broker.get(job_id)
        if job is None:
            spec = specs.get(job_id)
            if spec is None:
                plan.skipped[job_id] = "not in this queue and its submitted event is not in the stream"
            elif spec.trainer != BUILTIN and not _has_script(broker, spec.trainer):
                plan.skipped[job_id] = f"script {spec.trainer} is not stored in this queue"
            else:
                plan.submit.append(spec)
        elif job.state in (JobState.FAILED, JobState.DEAD):
            plan.requeue.append(job_id)
        else:
            plan.unchanged.append(job_id)
    return plan


def _has_script(broker: Broker, ref: str) -> bool:
    try:
        broker.get_script(ref)
        return True
    except KeyError:
        return False


def replay(
    file: Annotated[Path | None, typer.Argument(metavar="[FILE.jsonl]", help="Events as JSON lines.")] = None,
    after: Annotated[int | None, typer.Option(metavar="SEQ", help="This queue's events after SEQ.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-run the failed, dead or missing jobs an event stream names. Example: golfq ops replay --after 1200"""
    if (file is None) == (after is None):
        raise CliError("replay: give FILE.jsonl or --after SEQ (one of them)")
    if after is not None and after < 0:
        raise CliError("replay: --after must be >= 0")
    stream = events_from_file(file) if file is not None else None
    with queue(queue_url) as broker:
        if stream is None:
            stream = _events_after(broker, after)
        plan = plan_replay(broker, stream)
        if not dry_run:
            broker.submit(plan.submit)
            broker.requeue(plan.requeue)
    if as_json:
        emit_json({"dry_run": dry_run, "submitted": [s.id for s in plan.submit], "requeued": plan.requeue,
                   "unchanged": plan.unchanged, "skipped": plan.skipped})
        return
    would = "would be " if dry_run else ""
    for spec in plan.submit:
        print(f"{spec.id}  {would}submitted")
    for job_id in plan.requeue:
        print(f"{job_id}  {would}requeued")
    for job_id, why in plan.skipped.items():
        print(f"{job_id}  skipped: {why}")
    print(f"{len(plan.submit)} {would}submitted, {len(plan.requeue)} {would}requeued, "
          f"{len(plan.unchanged)} unchanged, {len(plan.skipped)} skipped")


def _events_after(broker: Broker, after: int, page: int = 5000) -> list[Event]:
    out: list[Event] = []
    while True:
        batch = broker.events(after_seq=after, limit=page)
        out.extend(batch)
        if len(batch) < page:
            return out
        after = batch[-1].seq
