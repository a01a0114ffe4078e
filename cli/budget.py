"""`golfq ops budget set|show|clear`: spend caps in dollars (golfq.ops.budget)."""

from __future__ import annotations

from typing import Annotated

import typer

from golfq.cli.console import JsonOption, QueueOption, emit, emit_json, queue, shown
from golfq.core.budget import BudgetView, ScopeBudget, label
from golfq.ops import budget as ops_budget

budget_app = typer.Typer(name="budget", no_args_is_help=True, add_completion=False,
                         help="Spend caps in dollars for the queue, a pool or a tag: set, show, clear.")

PoolOption = Annotated[str | None, typer.Option("--pool", metavar="POOL", help="Cap one pool.")]
TagOption = Annotated[str | None, typer.Option("--tag", metavar="TAG", help="Cap one tag.")]


def scope_line(s: ScopeBudget) -> str:
    cap = "no cap" if s.cap is None else f"cap ${s.cap:,.2f}, ${max(s.left or 0.0, 0.0):,.2f} left"
    return f"budget {shown(label(s.scope))}: ${s.spent:,.2f} spent + ${s.committed:,.2f} committed; {cap}"


def budget_lines(view: BudgetView, uncapped: bool = False) -> list[str]:
    """What `ops budget show` and `golfq status` print: (capped) scopes, then each pool's first job a cap holds."""
    lines = [scope_line(s) for s in view.scopes if uncapped or s.cap is not None]
    lines += [f"{w.job_id} ({w.pool}) waits: {shown(w.reason)}" for w in view.waiting]
    return lines


@budget_app.command("set")
def set_(usd: Annotated[str, typer.Argument(metavar="DOLLARS")], pool: PoolOption = None, tag: TagOption = None,
         queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Cap spending: no attempt starts whose worst case would pass it. Example: golfq ops budget set 50 --pool h100"""
    with queue(queue_url) as broker:
        now = ops_budget.set_cap(broker, usd, pool=pool, tag=tag)
    emit(as_json, now, scope_line(now))


@budget_app.command()
def show(queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Caps, dollars spent and committed, and the first job a cap holds in each pool. Example: golfq ops budget show"""
    with queue(queue_url) as broker:
        view = broker.budget()
    if as_json:
        emit_json(view)
        return
    lines = budget_lines(view, uncapped=True)
    print("\n".join(lines) if lines else "no spending and no caps yet")


@budget_app.command()
def clear(pool: PoolOption = None, tag: TagOption = None, queue_url: QueueOption = None,
          as_json: JsonOption = False) -> None:
    """Remove a cap; waiting jobs may start at the next claim. Example: golfq ops budget clear --tag sweep"""
    with queue(queue_url) as broker:
        had = ops_budget.clear_cap(broker, pool=pool, tag=tag)
    where = label(f"pool:{pool}" if pool else f"tag:{tag}" if tag else "queue")
    emit(as_json, {"cleared": had, "scope": where},
         f"budget {shown(where)}: cap cleared" if had else f"budget {shown(where)}: had no cap")
