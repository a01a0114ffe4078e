"""`golfq ops stats`: jobs per pool and state, and what the attempts cost (GPU-seconds, USD)."""

from __future__ import annotations

from collections import defaultdict

import msgspec

from golfq.core.broker import Broker, JobState
from golfq.cli.console import JsonOption, QueueOption, console, emit_json, queue


class Usage(msgspec.Struct, kw_only=True):
    attempts: int = 0
    gpu_seconds: float = 0.0
    cost_usd: float = 0.0


def usage(broker: Broker, page: int = 5000) -> dict[str, Usage]:
    """Per pool, every attempt that reported a result (succeeded, failed or superseded), counted once."""
    seen: set[tuple[str, int]] = set()
    totals: dict[str, Usage] = defaultdict(Usage)
    seq = 0
    while True:
        batch = broker.events(after_seq=seq, limit=page)
        for event in batch:
            seq = event.seq
            r = event.result
            if r is None or (r.spec_id, r.attempt) in seen:
                continue
            seen.add((r.spec_id, r.attempt))
            one = totals[event.pool]
            one.attempts += 1
            one.gpu_seconds += r.gpu_seconds or 0.0
            one.cost_usd += r.cost_usd or 0.0
        if len(batch) < page:
            return dict(totals)


def stats(queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Jobs per pool and state, draining flags, GPU-hours and cost. Example: golfq ops stats --json"""
    with queue(queue_url) as broker:
        snapshot = broker.stats()
        spent = usage(broker)
    if as_json:
        emit_json({"stats": snapshot, "usage": spent})
        return
    from rich.table import Table

    table = Table(title=f"{broker.url}  (backend {snapshot.backend}, last event #{snapshot.last_seq})",
                  title_justify="left")
    states = [s.value for s in JobState]
    for column in ["pool", *states, "draining", "attempts", "GPU-h", "cost"]:
        table.add_column(column, justify="left" if column == "pool" else "right")
    for name in sorted(set(snapshot.pools) | set(spent)):
        pool = snapshot.pools.get(name)
        use = spent.get(name, Usage())
        counts = [str(getattr(pool, s)) if pool else "0" for s in states]
        table.add_row(name, *counts, "yes" if pool and pool.draining else "", str(use.attempts),
                      f"{use.gpu_seconds / 3600:.2f}", f"${use.cost_usd:.2f}")
    console().print(table)
    for key, value in sorted(snapshot.extra.items()):
        print(f"{key}: {value}")
