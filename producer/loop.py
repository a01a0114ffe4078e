"""The research loop's reads: compare two configs under seed noise, and wait for the next result.

Both talk only to the Broker contract, so they work on every backend. A side of a
comparison is named by a job id or a config key; either way it stands for every seed
of that config (its group on its track), since one run alone has no spread to test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import msgspec

from golfq.core.broker import Broker, iter_events
from golfq.core.errors import GolfqError
from golfq.core.events import Event, EventKind
from golfq.core.job import Job
from golfq.core.pareto import FrontPoint
from golfq.core.pools import track_of
from golfq.core.result import Result
from golfq.core.significance import CHALLENGE_RULE, Comparison, RecordRule, compare
from golfq.core.spec import config_key

FINAL_EVENTS = {EventKind.SUCCEEDED, EventKind.FAILED, EventKind.DEAD, EventKind.CANCELLED, EventKind.STOPPED}


class Side(msgspec.Struct, frozen=True, kw_only=True):
    ref: str  # as the caller named it: a job id or a config key
    config: str
    track: str
    seeds: int
    val_bpb: float  # the mean over seeds
    val_bpb_std: float
    job_ids: tuple[str, ...]


class CompareReport(msgspec.Struct, frozen=True, kw_only=True):
    a: Side
    b: Side
    comparison: Comparison


class NextResult(msgspec.Struct, frozen=True, kw_only=True):
    """What wait_next saw: a finished job, or a timeout. Pass `cursor` back as `after` to go on."""

    job: Job | None = None
    result: Result | None = None
    cursor: int = 0
    pending: tuple[str, ...] = ()  # of the ids waited on, those still unfinished
    timed_out: bool = False


def group_of(broker: Broker, ref: str) -> tuple[str, FrontPoint]:
    """(track, group point) for a job id or a config key; GolfqError when it has no counted result."""
    job = broker.get(ref)
    if job is not None:
        track, config = track_of(job.spec.pool), config_key(job.spec)
        found = next((p for p in broker.ranking(track) if p.config == config), None)
        if found is None:
            raise GolfqError(f"job {ref}: its config {config} has no scored result yet (job is {job.state.value})")
        return track, found
    for track in broker.tracks():
        found = next((p for p in broker.ranking(track) if p.config == ref), None)
        if found is not None:
            return track, found
    raise GolfqError(f"{ref}: neither a job nor a config with results in {broker.url}")


def compare_refs(broker: Broker, a: str, b: str, level: float = 0.95,
                 rule: RecordRule = CHALLENGE_RULE) -> CompareReport:
    """Welch's test of a's seeds against b's: difference, CI, p-values and the record rule (a the candidate)."""
    if not 0.0 < level < 1.0:
        raise GolfqError(f"compare --level: must be between 0 and 1 (exclusive), got {level}")
    sides = []
    for ref in (a, b):
        track, point = group_of(broker, ref)
        sides.append((point, Side(ref=ref, config=point.config, track=track, seeds=point.seeds,
                                  val_bpb=point.val_bpb, val_bpb_std=point.val_bpb_std, job_ids=point.job_ids)))
    (pa, side_a), (pb, side_b) = sides
    return CompareReport(a=side_a, b=side_b, comparison=compare(pa.sample(), pb.sample(), rule, level))


def wait_next(broker: Broker, ids: Sequence[str] = (), after: int | None = None, timeout: float = 60.0,
              poll: float = 0.2, result_of: Callable[[Job], Result | None] | None = None) -> NextResult:
    """Block until one of `ids` (or, with none, any job) finishes after event `after` (default: now).

    With ids, one that has already finished is returned at once. `result_of(job)` gives the
    Result to report (the client passes its final_result); by default the job's own.
    """
    wanted = list(dict.fromkeys(ids))
    cursor = broker.stats().last_seq if after is None else after  # read before the first look: nothing is missed
    done = next((job for job in _jobs(broker, wanted) if job.state.terminal), None)
    deadline = time.monotonic() + max(timeout, 0.0)
    while done is None:
        for event in iter_events(broker, after_seq=cursor):
            cursor = event.seq
            if event.kind in FINAL_EVENTS and (not wanted or event.job_id in wanted):
                job = broker.get(event.job_id)
                if job is not None and _ended_by(job, event):
                    done = job
                    break
        if done is None and time.monotonic() >= deadline:
            break
        if done is None:
            time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
    pending = tuple(j.id for j in _jobs(broker, wanted) if not j.state.terminal)
    if done is None:
        return NextResult(cursor=cursor, pending=pending, timed_out=True)
    return NextResult(job=done, result=result_of(done) if result_of else done.result, cursor=cursor, pending=pending)


def _ended_by(job: Job, event: Event) -> bool:
    """Whether this event is the one that ended the job as it stands: not a failed attempt that was queued
    again, nor an earlier end of a job that was requeued and has ended since (its own event comes later)."""
    return job.state.terminal and event.attempt == job.attempt and event.kind.value == job.state.value


def _jobs(broker: Broker, ids: Sequence[str]) -> list[Job]:
    return [find_job(broker, job_id) for job_id in ids]


def find_job(broker: Broker, job_id: str) -> Job:
    """The job, or a GolfqError that names it and the queue."""
    job = broker.get(job_id)
    if job is None:
        raise GolfqError(f"job {job_id}: not found in {broker.url}")
    return job
