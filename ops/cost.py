"""`golfq ops cost`: GPU-seconds and dollars by pool, tag or day, one row per group.

Every attempt that ran is counted once, from its Result in the event log: the counted
ones (succeeded or failed) and the superseded ones too, since their GPUs were paid for.
A Result carries its own cost estimate (golfq.core.cost's price table at run time); one
without it is priced now from its GPU-seconds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Annotated

import msgspec
import typer

from golfq.core.broker import Broker
from golfq.core.cost import cost_usd
from golfq.core.events import Event
from golfq.core.result import Result
from golfq.cli.console import JsonOption, QueueOption

GROUPINGS = ("pool", "tag", "day")
UNTAGGED = "(untagged)"


class CostRow(msgspec.Struct, frozen=True):
    key: str
    attempts: int
    gpu_seconds: float
    cost_usd: float


class _Attempt(msgspec.Struct, frozen=True):
    pool: str
    tags: tuple[str, ...]
    result: Result
    ts: float


def _all_events(broker: Broker, page: int = 1000) -> Iterable[Event]:
    after = 0
    while batch := broker.events(after_seq=after, limit=page):
        yield from batch
        after = batch[-1].seq


def attempts(events: Iterable[Event]) -> list[_Attempt]:
    """One entry per (job, attempt) that reported a Result; a repeated late report is the same attempt."""
    specs, seen = {}, {}
    for event in events:
        if event.spec is not None:
            specs[event.job_id] = event.spec
        if event.result is None:
            continue
        spec = specs.get(event.job_id)
        seen[(event.job_id, event.result.attempt)] = _Attempt(
            pool=event.pool or (spec.pool if spec else "?"), tags=spec.tags if spec else (), result=event.result,
            ts=event.ts)
    return list(seen.values())


def attempt_cost(result: Result) -> tuple[float, float]:
    """(GPU-seconds, USD) of one attempt."""
    seconds = result.gpu_seconds if result.gpu_seconds is not None else (result.total_seconds or 0.0) * result.gpu_count
    if result.cost_usd is not None:
        return seconds, result.cost_usd
    return seconds, cost_usd(result.gpu_name, 1, seconds)


def _keys(attempt: _Attempt, by: str) -> tuple[str, ...]:
    if by == "pool":
        return (attempt.pool,)
    if by == "tag":
        return attempt.tags or (UNTAGGED,)
    when = attempt.result.finished_at or attempt.ts
    return (dt.datetime.fromtimestamp(when, dt.timezone.utc).date().isoformat(),)


def summarize(events: Iterable[Event], by: str = "pool") -> list[CostRow]:
    """Rows sorted by key; with by="tag" an attempt counts under each of its tags."""
    if by not in GROUPINGS:
        raise ValueError(f"--by: {by!r} is not one of {', '.join(GROUPINGS)}")
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
    return summarize(_all_events(broker), by)


def cost_command(
    by: Annotated[str, typer.Option("--by", help="Group by pool, tag or day.")] = "pool",
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """GPU-seconds and estimated dollars spent, by pool, tag or day.

    Example: golfq ops cost --by tag
    """
    from golfq.core.backends import open_broker

    if by not in GROUPINGS:
        raise typer.BadParameter(f"{by!r} is not one of {', '.join(GROUPINGS)}", param_hint="--by")
    broker = open_broker(queue_url)
    try:
        rows = cost_summary(broker, by)
    finally:
        broker.close()
    if as_json:
        typer.echo(msgspec.json.encode(rows).decode())
        return
    width = max([len(by), *(len(r.key) for r in rows)])
    typer.echo(f"{by:<{width}}  {'attempts':>8}  {'GPU-hours':>10}  {'USD':>10}")
    for row in rows:
        typer.echo(f"{row.key:<{width}}  {row.attempts:>8}  {row.gpu_seconds / 3600:>10.3f}  {row.cost_usd:>10.2f}")
    total = sum(r.cost_usd for r in rows) if by != "tag" else None
    if total is not None:
        typer.echo(f"{'total':<{width}}  {sum(r.attempts for r in rows):>8}  "
                   f"{sum(r.gpu_seconds for r in rows) / 3600:>10.3f}  {total:>10.2f}")
