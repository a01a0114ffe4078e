"""What the attempts cost: GPU-seconds and dollars by pool, tag or day, one row per group.

Every attempt that ran is counted once, from its Result in the event log: the counted
ones (succeeded or failed) and the superseded ones too, since their GPUs were paid for.
Each is priced by the one cost model, golfq.core.cost.attempt_cost. `golfq ops cost`
prints these rows; `golfq ops stats` shows the rows by pool beside the job counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import msgspec

from golfq.core.broker import Broker, iter_events
from golfq.core.cost import attempt_cost
from golfq.core.events import Event
from golfq.core.result import Result
from golfq.ops import OpsError

GROUPINGS = ("pool", "tag", "day")
UNTAGGED = "(untagged)"


class CostRow(msgspec.Struct, frozen=True):
    key: str
    attempts: int
    gpu_seconds: float
    cost_usd: float


class Attempt(msgspec.Struct, frozen=True):
    pool: str
    tags: tuple[str, ...]
    result: Result
    ts: float


def attempts(events: Iterable[Event]) -> list[Attempt]:
    """One entry per (job, attempt) that reported a Result; a repeated late report is the same attempt."""
    specs, seen = {}, {}
    for event in events:
        if event.spec is not None:
            specs[event.job_id] = event.spec
        if event.result is None:
            continue
        spec = specs.get(event.job_id)
        seen[(event.job_id, event.result.attempt)] = Attempt(
            pool=event.pool or (spec.pool if spec else "?"), tags=spec.tags if spec else (), result=event.result,
            ts=event.ts)
    return list(seen.values())


def _keys(attempt: Attempt, by: str) -> tuple[str, ...]:
    if by == "pool":
        return (attempt.pool,)
    if by == "tag":
        return attempt.tags or (UNTAGGED,)
    when = attempt.result.finished_at or attempt.ts
    return (dt.datetime.fromtimestamp(when, dt.UTC).date().isoformat(),)


def check_grouping(by: str) -> str:
    if by not in GROUPINGS:
        raise OpsError(f"--by {by!r}: not one of {', '.join(GROUPINGS)}")
    return by


def summarize(events: Iterable[Event], by: str = "pool") -> list[CostRow]:
    """Rows sorted by key; with by="tag" an attempt counts under each of its tags."""
    check_grouping(by)
    totals: dict[str, list[float]] = {}
    for attempt in attempts(events):
        seconds, usd = attempt_cost(attempt.result)
        for key in _keys(attempt, by):
            row = totals.setdefault(key, [0, 0.0, 0.0])
            row[0] += 1
            row[1] += seconds
            row[2] += usd
    return [CostRow(key, int(n), round(s, 3), round(usd, 4)) for key, (n, s, usd) in sorted(totals.items())]


def cost_summary(broker: Broker, by: str = "pool") -> list[CostRow]:
    """summarize() over the queue's whole event log."""
    return summarize(iter_events(broker), by)
