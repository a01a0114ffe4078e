"""`golfq pareto`: the Pareto front per track, as a table, JSON, or a matplotlib plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from golfq.core.pareto import Front, FrontPoint
from golfq.core.pools import known_pools
from golfq.cli.console import CliError, JsonOption, QueueOption, console, emit_json, fmt_seconds, queue


def _tracks(broker, track: str | None) -> list[str]:
    present = broker.tracks()
    if track is None:
        return present
    pools = known_pools()
    if track in pools:
        return [pools[track].track]
    if track in present or track in {p.track for p in pools.values()}:
        return [track]
    raise CliError(f"pareto --track {track!r}: unknown (tracks with results: {', '.join(present) or 'none'})")


def point_doc(p: FrontPoint) -> dict:
    return {"config": p.config, "job_ids": list(p.job_ids), "seeds": p.seeds, "val_bpb": p.val_bpb,
            "val_bpb_std": p.val_bpb_std, "artifact_bytes": p.artifact_bytes, "train_seconds": p.train_seconds,
            "feasible": p.feasible, "confirmed": p.confirmed}


def front_table(front: Front, feasible: bool):
    from rich.table import Table

    points = front.view(feasible)
    title = (f"{front.track}: {len(points)} point(s) on the {'feasible ' if feasible else ''}front "
             f"of {front.groups} config(s), {front.results} result(s)")
    table = Table(title=title, title_justify="left")
    for column in ("val_bpb", "± std", "seeds", "artifact", "train", "feasible", "confirmed", "jobs"):
        table.add_column(column, justify="left" if column == "jobs" else "right")
    for p in points:
        table.add_row(f"{p.val_bpb:.4f}", f"{p.val_bpb_std:.4f}" if p.seeds > 1 else "-", str(p.seeds),
                      f"{p.artifact_bytes / 1e6:.3f} MB", fmt_seconds(p.train_seconds), "yes" if p.feasible else "no",
                      "yes" if p.confirmed else "", ",".join(p.job_ids[:3]) + ("..." if len(p.job_ids) > 3 else ""))
    return table


def pareto(
    track: Annotated[str | None, typer.Option(help="A track (8xH100, 1xH100, cpu) or a pool name [default: all].")] = None,
    feasible: Annotated[bool, typer.Option("--feasible", help="Only configs within 16,000,000 bytes and the time rule.")] = False,
    plot: Annotated[Path | None, typer.Option(metavar="FILE.png", help="Also draw the front (needs matplotlib).")] = None,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """The non-dominated configs over (artifact bytes, training seconds, val_bpb), per track.

    Example: golfq pareto --track 8xH100 --feasible --plot front.png
    """
    if plot is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError("pareto --plot needs matplotlib (pip install 'golfq[plot]')") from None
    with queue(queue_url) as broker:
        fronts = [broker.front(t) for t in _tracks(broker, track)]
    if plot is not None:  # drawn first, so a bad path or format prints no table or JSON before its error
        from golfq.ops.plot import plot_fronts

        try:
            plot_fronts(fronts, plot, feasible)
        except (OSError, ValueError) as error:  # matplotlib raises ValueError for an unknown file type
            raise CliError(f"pareto --plot {plot}: {' '.join(str(error).split())}") from None
    if as_json:
        for front in fronts:
            emit_json({"track": front.track, "feasible_only": feasible, "groups": front.groups,
                       "results": front.results, "points": [point_doc(p) for p in front.view(feasible)]})
    else:
        out = console()
        for front in fronts:
            out.print(front_table(front, feasible))
        if not fronts:
            print("no results yet")
        if plot is not None:
            print(f"plot written to {plot}")
