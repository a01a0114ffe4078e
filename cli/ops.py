"""`golfq ops ...`: operate a queue. The work is in golfq.ops; these verbs parse, call and print."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from golfq.cli.budget import budget_app
from golfq.cli.console import (
    KEEP,
    Col,
    JsonOption,
    QueueOption,
    WideOption,
    emit,
    emit_json,
    fitted_table,
    print_table,
    queue,
)
from golfq.core.broker import iter_events
from golfq.core.errors import GolfqError
from golfq.core.job import JobState
from golfq.ops.control import require_pool, resolve_job_ids
from golfq.ops.cost import GROUPINGS, CostRow, check_grouping, cost_summary
from golfq.ops.export import encode_record, import_export, records_of, write_export
from golfq.ops.purge import parse_before
from golfq.ops.replay import carry_out, events_from_file, plan_replay

ops_app = typer.Typer(
    name="ops", no_args_is_help=True, add_completion=False,
    help="Operate a queue: stats, drain/resume pools, requeue, cancel, replay, purge, export/import, cost, budget.",
)
ops_app.add_typer(budget_app, name="budget")

PoolArgument = Annotated[str, typer.Argument(metavar="POOL")]
STATE_KEEP = {"cancelled": 20, "stopped": 25, "dead": 50}  # at 80 columns these counts go before the rest


# -- stats and cost -------------------------------------------------------------------------------


def _usage_doc(rows: Sequence[CostRow]) -> dict[str, dict[str, float]]:
    return {r.key: {"attempts": r.attempts, "gpu_seconds": r.gpu_seconds, "cost_usd": r.cost_usd} for r in rows}


@ops_app.command()
def stats(wide: WideOption = False, queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Jobs per pool and state, draining flags, GPU-hours and cost. Example: golfq ops stats --json"""
    with queue(queue_url) as broker:
        snapshot = broker.stats()
        spent = {row.key: row for row in cost_summary(broker, "pool")}
    if as_json:
        emit_json({"stats": snapshot, "usage": _usage_doc(list(spent.values()))})
        return
    states = [s.value for s in JobState]
    columns = [Col("pool"), *(Col(s, right=True, keep=STATE_KEEP.get(s, KEEP)) for s in states),
               Col("draining", 10), Col("attempts", 40, right=True), Col("GPU-h", 45, right=True),
               Col("cost", right=True)]
    rows = []
    for name in sorted(set(snapshot.pools) | set(spent)):
        pool = snapshot.pools.get(name)
        use = spent.get(name, CostRow(name, 0, 0.0, 0.0))
        counts = [str(getattr(pool, s)) if pool else "0" for s in states]
        rows.append((name, *counts, "yes" if pool and pool.draining else "", str(use.attempts),
                     f"{use.gpu_seconds / 3600:.2f}", f"${use.cost_usd:.2f}"))
    print_table(f"{broker.url}  (backend {snapshot.backend}, last event #{snapshot.last_seq})",
                fitted_table(columns, rows, wide), wide)
    for key, value in sorted(snapshot.extra.items()):
        print(f"{key}: {value}")


@ops_app.command()
def cost(
    by: Annotated[str, typer.Option("--by", metavar="|".join(GROUPINGS), help="Group by pool, tag or day.")] = "pool",
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """GPU-seconds and estimated dollars spent, by pool, tag or day. Example: golfq ops cost --by tag"""
    check_grouping(by)
    with queue(queue_url) as broker:
        rows = cost_summary(broker, by)
    if as_json:
        emit_json(rows)
        return
    width = max([len(by), len("total"), *(len(r.key) for r in rows)])
    print(f"{by:<{width}}  {'attempts':>8}  {'GPU-hours':>10}  {'USD':>10}")
    for row in rows:
        print(f"{row.key:<{width}}  {row.attempts:>8}  {row.gpu_seconds / 3600:>10.3f}  {row.cost_usd:>10.2f}")
    if by != "tag":  # an attempt counts under each of its tags, so tag rows do not add up
        print(f"{'total':<{width}}  {sum(r.attempts for r in rows):>8}  "
              f"{sum(r.gpu_seconds for r in rows) / 3600:>10.3f}  {sum(r.cost_usd for r in rows):>10.2f}")


# -- pools ----------------------------------------------------------------------------------------


def _set_draining(pool: str, queue_url: str | None, as_json: bool, draining: bool) -> None:
    with queue(queue_url) as broker:
        require_pool(broker, pool)
        (broker.drain if draining else broker.resume)(pool)
        counts = broker.stats().pools.get(pool)
    queued, leased = (counts.queued, counts.leased) if counts else (0, 0)
    if as_json:
        emit_json({"pool": pool, "draining": draining, "queued": queued, "leased": leased})
    elif draining:
        print(f"pool {pool} draining: no new claims; {leased} running job(s) finish, {queued} queued job(s) wait")
    else:
        print(f"pool {pool} resumed: {queued} queued job(s) can be claimed")


@ops_app.command()
def drain(pool: PoolArgument, queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Stop new claims in a pool; running jobs finish. Example: golfq ops drain h100"""
    _set_draining(pool, queue_url, as_json, True)


@ops_app.command()
def resume(pool: PoolArgument, queue_url: QueueOption = None, as_json: JsonOption = False) -> None:
    """Let a drained pool's jobs be claimed again. Example: golfq ops resume h100"""
    _set_draining(pool, queue_url, as_json, False)


# -- jobs -----------------------------------------------------------------------------------------


def _report(verb: str, changed: list[str], asked: Sequence[str], as_json: bool) -> None:
    unchanged = [i for i in dict.fromkeys(asked) if i not in set(changed)]
    if as_json:
        emit_json({verb: changed, "unchanged": unchanged})
        return
    for job_id in changed:
        print(f"{job_id}  {verb}")
    for job_id in unchanged:
        print(f"{job_id}  unchanged (not in a state that allows it)")
    if not changed and not unchanged:
        print(f"no job {verb}")


@ops_app.command()
def requeue(
    ids: Annotated[list[str] | None, typer.Argument(metavar="ID")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Every dead job (infra/timeout retries spent).")] = False,
    failed: Annotated[bool, typer.Option("--failed", help="Every failed job (the experiment failed).")] = False,
    stopped: Annotated[
        bool,
        typer.Option("--stopped", help="Every job a stopping rule ended (runs to its end)."),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Go on from each job's last checkpoint (CHECKPOINT_DIR) instead of from zero."),
    ] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue finished jobs again with fresh retry budgets (IDs may be RQ job ids, <id>-<attempt>).

    Example: golfq ops requeue --dead;  golfq ops requeue --resume ID  (continue a failed or stopped run)
    """
    states = [s for s, on in ((JobState.DEAD, dead), (JobState.FAILED, failed), (JobState.STOPPED, stopped)) if on]
    if not ids and not states:
        raise GolfqError("requeue: give job IDs, --dead, --failed or --stopped")
    with queue(queue_url) as broker:
        named = resolve_job_ids(broker, ids or [])
        changed = broker.requeue(named, states, resume=resume)
    _report("requeued", changed, named, as_json)


@ops_app.command()
def cancel(
    ids: Annotated[list[str], typer.Argument(metavar="ID")],
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel queued or running jobs (a running job's worker kills it). Example: golfq ops cancel ID1 ID2"""
    with queue(queue_url) as broker:
        named = resolve_job_ids(broker, ids)
        changed = broker.cancel(named)
    _report("cancelled", changed, named, as_json)


@ops_app.command()
def replay(
    file: Annotated[Path | None, typer.Argument(metavar="FILE.jsonl", help="Events as JSON lines.")] = None,
    after: Annotated[int | None, typer.Option(metavar="SEQ", help="This queue's events after SEQ.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-run the failed, dead or missing jobs an event stream names. Example: golfq ops replay --after 1200"""
    if (file is None) == (after is None):
        raise GolfqError("replay: give FILE.jsonl or --after SEQ (one of them)")
    if after is not None and after < 0:
        raise GolfqError("replay: --after must be >= 0")
    stream = events_from_file(file) if file is not None else None
    with queue(queue_url) as broker:
        plan = plan_replay(broker, stream if stream is not None else iter_events(broker, after_seq=after or 0))
        if not dry_run:
            carry_out(broker, plan)
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


@ops_app.command()
def purge(
    before: Annotated[str, typer.Option(metavar="DATE", help="ISO date/time, or an age such as 7d or 12h.")],
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Delete finished jobs last updated before DATE. Example: golfq ops purge --before 30d"""
    cutoff = parse_before(before)
    with queue(queue_url) as broker:
        count = broker.purge(cutoff)
    stamp = datetime.fromtimestamp(cutoff).isoformat(timespec="seconds")
    emit(as_json, {"purged": count, "before": cutoff}, f"purged {count} finished job(s) last updated before {stamp}")


# -- export and import ----------------------------------------------------------------------------


@ops_app.command()
def export(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Where to write the JSON lines (- for stdout).")],
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write every job, script and event to a JSON-lines file. Example: golfq ops export backup.jsonl"""
    with queue(queue_url) as broker:
        if str(file) == "-":
            for record in records_of(broker):
                sys.stdout.write(encode_record(record).decode() + "\n")
            sys.stdout.flush()
            return
        counts = write_export(broker, file)
    emit(as_json, {"file": str(file), "jobs": counts.jobs, "scripts": counts.scripts, "events": counts.events},
         f"exported {counts.jobs} job(s), {counts.scripts} script(s), {counts.events} event(s) to {file}")


@ops_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(metavar="FILE")],
    all_jobs: Annotated[bool, typer.Option("--all", help="Queue every job again, finished ones too.")] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue an export's unfinished jobs (and store their scripts) here. Example: golfq ops import backup.jsonl"""
    with queue(queue_url) as broker:
        summary = import_export(broker, file, all_jobs)
    emit(as_json, summary, f"queued {len(summary.queued)} job(s); {len(summary.already_present)} already present; "
                           f"{summary.skipped_finished} finished job(s) not re-run (use --all)")
