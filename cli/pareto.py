"""`golfq pareto`: the Pareto front per track, as a table, one JSON document, or a matplotlib plot."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from golfq.cli.console import (
    Col,
    JsonOption,
    QueueOption,
    WideOption,
    emit_json,
    fitted_table,
    fmt_seconds,
    print_table,
    queue,
)
from golfq.core.errors import GolfqError
from golfq.core.pareto import Front, FrontPoint
from golfq.core.pools import resolve_track
from golfq.ops.plot import point_names

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(add_completion=False)


def point_doc(p: FrontPoint) -> dict[str, Any]:
    return {"config": p.config, "job_ids": list(p.job_ids), "seeds": p.seeds, "val_bpb": p.val_bpb,
            "val_bpb_std": p.val_bpb_std, "seed_val_bpb": list(p.val_bpbs), "artifact_bytes": p.artifact_bytes,
            "train_seconds": p.train_seconds, "feasible": p.feasible, "confirmed": p.confirmed,
            "incumbent": p.incumbent, "gain_bpb": p.gain, "p_value": p.p_value, "significant": p.significant}


def front_doc(front: Front, feasible: bool) -> dict[str, Any]:
    return {"track": front.track, "groups": front.groups, "results": front.results,
            "incumbent": front.incumbent.config if front.incumbent else None,
            "points": [point_doc(p) for p in front.view(feasible)]}


def record_cell(p: FrontPoint) -> str:
    """The record rule against the incumbent: "yes p=0.004", "no p=0.2", "no (infeasible)" (over 16 MB or the
    time rule, whatever p), or "n/a" with one seed."""
    if p.significant is None:
        return "n/a"
    if not p.feasible:
        return "no (infeasible)"
    return f"{'yes' if p.significant else 'no'} p={p.p_value:.2g}"


def front_title(front: Front, feasible: bool, label: str = "front") -> str:
    inc = front.incumbent
    against = f"; incumbent {inc.config} {inc.val_bpb:.4f} ({inc.seeds} seeds)" if inc else "; no incumbent yet"
    return (f"{front.track}: {len(front.view(feasible))} point(s) on the {'feasible ' if feasible else ''}{label} "
            f"of {front.groups} config(s), {front.results} result(s){against}")


def as_ranking(front: Front, ranking: tuple[FrontPoint, ...]) -> Front:
    """The front's track with every config as a point, best mean val_bpb first."""
    return msgspec.structs.replace(front, points=ranking, feasible_points=tuple(p for p in ranking if p.feasible))


# At 80 columns the confirmed flag, the gain and the training time go first; scores and ids stay whole.
FRONT_COLUMNS = (Col("val_bpb", right=True), Col("± std", 60, right=True), Col("seeds", 70, right=True),
                 Col("artifact", 90, right=True), Col("train", 30, right=True), Col("feasible", 80),
                 Col("confirmed", 10), Col("gain", 20, right=True), Col("record", 85), Col("jobs"))


def jobs_cell(job_ids: tuple[str, ...], wide: bool) -> str:
    """The config's job ids: all of them with --wide, else the first whole and how many more."""
    if wide or len(job_ids) <= 1:
        return ",".join(job_ids)
    return f"{job_ids[0]} +{len(job_ids) - 1}"


def front_table(front: Front, feasible: bool, wide: bool = False) -> Table:
    rows = [(f"{p.val_bpb:.4f}", f"{p.val_bpb_std:.4f}" if p.seeds > 1 else "-", str(p.seeds),
             f"{p.artifact_bytes / 1e6:.3f} MB", fmt_seconds(p.train_seconds), "yes" if p.feasible else "no",
             "yes" if p.confirmed else "", "-" if p.gain is None else f"{p.gain:+.4f}", record_cell(p),
             jobs_cell(p.job_ids, wide)) for p in front.view(feasible)]
    return fitted_table(FRONT_COLUMNS, rows, wide)


def plot_path(plot: Path) -> Path:
    """The file --plot names: a folder is refused (never written beside it as FOLDER.png), and a name without
    an extension gets .png, which is what matplotlib writes, so the path reported is the one written."""
    if plot.is_dir():
        raise GolfqError(f"pareto --plot {plot}: is a folder; name a file, such as {plot / 'front.png'}")
    return plot if plot.suffix else plot.with_name(plot.name + ".png")


def draw(fronts: list[Front], plot: Path, feasible: bool, names: dict[str, str] | None = None) -> None:
    """The plot, or one line saying why not (matplotlib missing, an unwritable path, an unknown format)."""
    try:
        from golfq.ops.plot import plot_fronts

        plot_fronts(fronts, plot, feasible, names)
    except ImportError:
        raise GolfqError("pareto --plot needs matplotlib (pip install 'golfq[plot]')") from None
    except (OSError, ValueError) as error:  # matplotlib raises ValueError for an unknown file type
        raise GolfqError(f"pareto --plot {plot}: {error}") from None


@app.command()
def pareto(
    track: Annotated[
        str | None,
        typer.Option(metavar="TRACK", help="A track (8xH100, 1xH100, cpu) or a pool name (default: all)."),
    ] = None,
    feasible: Annotated[
        bool,
        typer.Option("--feasible", help="Only configs within 16,000,000 bytes and the time rule."),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(metavar="FILE.png", help="Also draw the front (needs matplotlib)."),
    ] = None,
    ranking: Annotated[bool, typer.Option("--ranking", help="Every config, front or not, best first.")] = False,
    wide: WideOption = False,
    queue_url: QueueOption = None,
    as_json: JsonOption = False,
) -> None:
    """The non-dominated configs over (artifact bytes, training seconds, val_bpb), per track.

    gain and record: each point against the incumbent, the best feasible config with 2+ seeds (which itself is
    tested against the runner-up), under the challenge's record rule: 0.005 nats at p < 0.01 (n/a with one seed).

    With --json: one document, {"feasible_only": ..., "tracks": [{"track", "groups", "results", "incumbent",
    "points"}, ...]}.

    Example: golfq pareto --track 8xH100 --feasible --plot front.png
    """
    with queue(queue_url) as broker:
        present = broker.tracks()
        try:
            tracks = present if track is None else [resolve_track(track, present)]
        except ValueError as error:
            raise GolfqError(f"pareto --track: {error}") from None
        fronts = [broker.front(t) for t in tracks]
        if ranking:
            fronts = [as_ranking(front, broker.ranking(front.track)) for front in fronts]
        names = point_names(broker, fronts) if plot is not None else {}
    if plot is not None:  # drawn first, so a bad path or format prints no table or JSON before its error
        plot = plot_path(plot)
        draw(fronts, plot, feasible, names)
    if as_json:
        emit_json({"feasible_only": feasible, "tracks": [front_doc(front, feasible) for front in fronts]})
        return
    for front in fronts:
        print_table(front_title(front, feasible, "ranking" if ranking else "front"),
                    front_table(front, feasible, wide), wide)
    if not fronts:
        print("no results yet")
    if plot is not None:
        print(f"plot written to {plot}")
