"""Replay: bring back the jobs an event stream names.

The stream is a JSON-lines file (`golfq events --json`, or an export) or this
queue's own events after a sequence number. For each job it names: a job this
queue lacks is submitted again from its `submitted` event; a failed or dead job
is queued again with fresh retry budgets; queued, running, succeeded and
cancelled jobs are left alone. A job whose script this queue lacks is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from golfq.core.broker import Broker
from golfq.core.events import Event, EventKind
from golfq.core.job import JobState
from golfq.core.spec import BUILTIN, ExperimentSpec
from golfq.ops import OpsError
from golfq.ops.export import EventRecord, read_lines

_decode_event = msgspec.json.Decoder(Event).decode
_decode_record = msgspec.json.Decoder(EventRecord).decode


def events_from_file(path: Path) -> list[Event]:
    """Events from `golfq events --json` lines or an export's event records; other export lines are skipped."""
    out = []
    for number, line in read_lines(path):
        try:
            head = msgspec.json.decode(line)
        except msgspec.DecodeError as error:
            raise OpsError(f"{path} line {number}: invalid JSON ({error})") from None
        if isinstance(head, dict) and head.get("type") in ("header", "script", "job"):
            continue
        try:
            out.append(_decode_record(line).event if isinstance(head, dict) and "type" in head else _decode_event(line))
        except msgspec.ValidationError as error:
            raise OpsError(f"{path} line {number}: not a golfq event ({error})") from None
    return out


class Plan(msgspec.Struct, kw_only=True):
    submit: list[ExperimentSpec] = []
    requeue: list[str] = []
    unchanged: list[str] = []
    skipped: dict[str, str] = {}  # job id -> why


def plan_replay(broker: Broker, events: Iterable[Event]) -> Plan:
    specs: dict[str, ExperimentSpec] = {}
    named: dict[str, None] = {}  # job ids in the order the stream first names them
    for event in events:
        if event.kind is EventKind.SUBMITTED and event.spec is not None:
            specs[event.job_id] = event.spec
        if event.job_id:
            named.setdefault(event.job_id)
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


def carry_out(broker: Broker, plan: Plan) -> None:
    broker.submit(plan.submit)
    broker.requeue(plan.requeue)


def _has_script(broker: Broker, ref: str) -> bool:
    try:
        broker.get_script(ref)
        return True
    except KeyError:
        return False
