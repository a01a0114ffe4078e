"""The research loop's verbs: `golfq promote` (best configs to a bigger pool) and `golfq compare`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from golfq.cli.console import JsonOption, QueueOption, emit, emit_json, queue
from golfq.core.errors import GolfqError
from golfq.core.promotion import Promoted
from golfq.core.significance import RECORD_ALPHA, RECORD_NATS, Comparison, RecordRule
from golfq.producer.client import Client
from golfq.producer.loop import CompareReport, Side
from golfq.producer.specfile import parse_assignment

app = typer.Typer(add_completion=False)


def promoted_doc(p: Promoted) -> dict[str, Any]:
    return {"config": p.config, "rank": p.rank, "val_bpb": p.val_bpb, "seeds": p.seeds, "parent": p.parent,
            "jobs": list(p.jobs), "new": list(p.new)}


def promoted_line(p: Promoted, dry_run: bool) -> str:
    verb = "would queue" if dry_run else "queued"
    what = f"{verb} {len(p.new)}: {', '.join(p.new)}" if p.new else f"all {len(p.jobs)} already queued"
    return f"#{p.rank}  config {p.config}  val_bpb {p.val_bpb:.4f} ({p.seeds} seed(s))  parent {p.parent}  {what}"


def env_changes(set_: list[str] | None, unset: list[str] | None) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for assignment in set_ or []:
        key, value = parse_assignment(assignment)
        changes[key] = value
    changes.update({key: None for key in unset or []})
    return changes


@app.command()
def promote(
    from_: Annotated[str, typer.Option("--from", metavar="POOL|TRACK", help="Where they ran (h100, 1xH100, ...).")],
    to: Annotated[str, typer.Option("--to", metavar="POOL", help="The pool to queue them in (h100x8, ...).")],
    top: Annotated[int, typer.Option("--top", metavar="K", help="How many of the best configs.")] = 3,
    seeds: Annotated[int, typer.Option("--seeds", metavar="N", help="Seeds per config (1337, 42, 2025, 0, ...).")] = 3,
    min_seeds: Annotated[int, typer.Option("--min-seeds", metavar="N", help="Rank configs with this many seeds.")] = 1,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="KEY=VALUE",
                                                   help="Set a hyperparameter in the promoted specs.")] = None,
    unset: Annotated[list[str] | None, typer.Option("--unset", metavar="KEY", help="Drop a hyperparameter.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be queued; queue nothing.")] = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue the best K feasible configs of one track (by mean val_bpb) in a bigger pool with N seeds each.

    Each promoted job's parent is its config's best job; running it again queues nothing new.

    With --json: {"from", "to", "dry_run", "promoted": [{"config", "rank", "val_bpb", "seeds", "parent", "jobs",
    "new"}]}: `new` lists the jobs this call queued.

    Example: golfq promote --from h100 --to h100x8 --top 3 --seeds 3
    """
    if top < 1 or seeds < 1 or min_seeds < 1:
        raise GolfqError("promote: --top, --seeds and --min-seeds must be at least 1")
    env = env_changes(set_, unset)
    with queue(queue_url) as broker:
        client = Client(broker=broker)
        try:
            track = client.resolve_track(from_)
        except ValueError as error:
            raise GolfqError(f"promote --from: {error}") from None
        done = client.promote(track, to, top=top, seeds=seeds, min_seeds=min_seeds, env=env, dry_run=dry_run)
    if as_json:
        emit_json({"from": track, "to": to, "dry_run": dry_run, "promoted": [promoted_doc(p) for p in done]})
        return
    for p in done:
        print(promoted_line(p, dry_run))
    if not done:
        print(f"no feasible config on {track} with at least {min_seeds} seed(s) yet")


def side_doc(s: Side) -> dict[str, Any]:
    return {"ref": s.ref, "config": s.config, "track": s.track, "seeds": s.seeds, "val_bpb": s.val_bpb,
            "val_bpb_std": s.val_bpb_std, "job_ids": list(s.job_ids)}


def compare_doc(report: CompareReport) -> dict[str, Any]:
    c = report.comparison
    return {"a": side_doc(report.a), "b": side_doc(report.b), "diff": c.diff, "level": c.level,
            "ci": None if c.ci_low is None else [c.ci_low, c.ci_high], "t": c.t, "df": c.df, "p_value": c.p_value,
            "threshold_bpb": c.threshold_bpb, "p_record": c.p_record, "significant": c.significant}


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"


def compare_lines(report: CompareReport, alpha: float) -> list[str]:
    c: Comparison = report.comparison
    lines = [f"{name}  {s.config} ({s.track}): val_bpb {s.val_bpb:.5f} ± {s.val_bpb_std:.5f} over {s.seeds} seed(s)"
             for name, s in (("A", report.a), ("B", report.b))]
    lines.append(f"A - B = {c.diff:+.5f} bpb" + ("" if c.ci_low is None else
                 f", {c.level:.0%} CI [{c.ci_low:+.5f}, {c.ci_high:+.5f}], t {c.t:.3g} on {c.df:.3g} df, "
                 f"p {_p(c.p_value)} (two-sided)"))
    rule = f"record rule (A beats B by > {c.threshold_bpb:.5f} bpb at p < {alpha:g})"
    if c.significant is None:
        lines.append(f"{rule}: n/a (a test needs at least 2 seeds on each side)")
    else:
        lines.append(f"{rule}: p {_p(c.p_record)}, {'significant' if c.significant else 'not significant'}")
    return lines


@app.command()
def compare(
    a: Annotated[str, typer.Argument(metavar="A", help="The candidate: a job id or a config key (all its seeds).")],
    b: Annotated[str, typer.Argument(metavar="B", help="The baseline, e.g. the incumbent: a job id or a config key.")],
    level: Annotated[float, typer.Option(metavar="LEVEL", help="Confidence level of the interval.")] = 0.95,
    min_gain_nats: Annotated[float, typer.Option(metavar="NATS", help="The record rule's least gain.")] = RECORD_NATS,
    alpha: Annotated[float, typer.Option(metavar="P", help="The record rule's significance level.")] = RECORD_ALPHA,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """Welch's t-test of A's seeds against B's, and whether A clears the challenge's record rule over B.

    Prints the difference in mean val_bpb, its CI and two-sided p, then the record rule.

    The record rule: a gain over B of 0.005 nats (in bpb by B's val_bpb/val_loss, else 0.0023) at p < 0.01.

    Example: golfq compare 3ijlhcjuqo22wavv x7k2abcdqo22wavv --json
    """
    if not 0.0 < alpha < 1.0:
        raise GolfqError(f"compare --alpha: must be between 0 and 1, got {alpha}")
    with queue(queue_url) as broker:
        report = Client(broker=broker).compare(a, b, level=level, rule=RecordRule(min_gain_nats=min_gain_nats,
                                                                                     alpha=alpha))
    emit(as_json, compare_doc(report), "\n".join(compare_lines(report, alpha)))
