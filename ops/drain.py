"""Pool control: drain (stop new claims; running jobs finish) and resume."""

from __future__ import annotations

from typing import Annotated

import typer

from golfq.core.broker import Broker
from golfq.core.pools import known_pools
from golfq.cli.console import CliError, JsonOption, QueueOption, emit_json, queue

PoolArgument = Annotated[str, typer.Argument(metavar="POOL")]


def _known_pool(broker: Broker, pool: str) -> str:
    if pool in known_pools() or pool in broker.stats().pools:
        return pool
    raise CliError(f"pool {pool!r}: unknown (known: {', '.join(sorted(known_pools()))})")


def _set(pool: str, queue_url: str | None, as_json: bool, draining: bool) -> None:
    with queue(queue_url) as broker:
        _known_pool(broker, pool)
        (broker.drain if draining else broker.resume)(pool)
        stats = broker.stats().pools.get(pool)
    queued, leased = (stats.queued, stats.leased) if stats else (0, 0)
    if as_json:
        emit_json({"pool": pool, "draining": draining, "queued": queued, "leased": leased})
    elif draining:
        print(f"pool {pool} draining: no new claims; {leased} running job(s) finish, {queued} queued job(s) wait")
    else:
        print(f"pool {pool} resumed: {queued} queued job(s) can be claimed")


def drain(pool: PoolArgument, queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Stop new claims in a pool; running jobs finish. Example: golfq ops drain h100"""
    _set(pool, queue_url, as_json, True)


def resume(pool: PoolArgument, queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Let a drained pool's jobs be claimed again. Example: golfq ops resume h100"""
    _set(pool, queue_url, as_json, False)
