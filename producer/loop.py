"""The research loop's reads: compare two configs under seed noise, and wait for the next result.

Both talk only to the Broker contract, so they work on every backend. A side of a
comparison is named by a job id or a config key; either way it stands for every seed
of that config (its group on its track), since one run alone has no spread to test.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import msgspec

from golfq.core.broker import Broker, iter_events
from golfq.core.errors import GolfqError, NotFoundError
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
    unserved: dict[str, int] = {}  # pool -> jobs waited for that sit queued there with no worker serving it


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
    """Block until one of `ids` (or, with none, any job) ends after event `after`; the cursor returned is
    that ending's event, so passing it back as `after` returns each ending once, in the order they happened.

    Without `after`: with ids of which some have already ended, the log is read from its start, so the
    earliest ending comes back at once and the others on the next calls; otherwise only endings from now on
    count. `result_of(job)` gives the Result to report (the client passes its final_result); by default the
    job's own. `unserved`: the pools where the jobs waited for sit queued with no worker serving them.
    """
    wanted = list(dict.fromkeys(ids))
    ended_already = any(job.state.terminal for job in _jobs(broker, wanted))
    if after is None:  # the last seq is read before the first look: nothing is missed
        after = 0 if ended_already else broker.stats().last_seq
    cursor, done = after, None
    deadline = time.monotonic() + max(timeout, 0.0)
    while done is None:
        for event in iter_events(broker, after_seq=cursor):
            cursor = event.seq
            if event.kind in FINAL_EVENTS and (not wanted or event.job_id in wanted):
                job = broker.get(event.job_id)
                if job is not None and _ended_by(job, event):
                    done = job
                    break
        if done is None and after == 0 and ended_already:  # its ending was purged from the log: return it as is
            done = next(job for job in _jobs(broker, wanted) if job.state.terminal)
        if done is None and time.monotonic() >= deadline:
            break
        if done is None:
            time.sleep(max(0.0, min(poll, deadline - time.monotonic())))
    left = [j for j in _jobs(broker, wanted) if not j.state.terminal]
    pending = tuple(j.id for j in left)
    waiting = Counter(j.pool for j in left) if wanted else None
    unserved = unserved_pools(broker, waiting)
    if done is None:
        return NextResult(cursor=cursor, pending=pending, timed_out=True, unserved=unserved)
    return NextResult(job=done, result=result_of(done) if result_of else done.result, cursor=cursor, pending=pending,
                      unserved=unserved)


def unserved_pools(broker: Broker, waiting: Mapping[str, int] | None = None) -> dict[str, int]:
    """Of the pools where jobs wait (`waiting`: pool -> jobs; None: every pool), those with queued jobs and no
    worker serving them (pool -> jobs): one stats read, and one presence read per such pool."""
    pools = broker.stats().pools
    counts = waiting if waiting is not None else {name: p.queued for name, p in pools.items()}
    return {pool: count for pool, count in sorted(counts.items())
            if count and pool in pools and pools[pool].queued and broker.serving(pool) == 0}


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
        raise NotFoundError(f"job {job_id}: not found in {broker.url}")
    return job
