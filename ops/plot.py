"""Draw Pareto fronts with matplotlib (an optional dependency: golfq[plot])."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from golfq.core.broker import Broker
from golfq.core.pareto import CONFIRM_SEEDS, MAX_ARTIFACT_BYTES, Front, FrontPoint
from golfq.core.pools import track_time_limit

NEAR = 0.6  # a limit within this share of the data's span past its edge is drawn; further away it is only noted
NOTE = "each point: one config, the mean of its seeds; error bars: ±1 std over seeds; lower val_bpb is better"


def point_names(broker: Broker, fronts: Sequence[Front]) -> dict[str, str]:
    """config -> the name of its first job (for labels); configs whose jobs have no name are left out."""
    names = {}
    for front in fronts:
        for point in front.points:
            job = broker.get(point.job_ids[0]) if point.job_ids else None
            if job is not None and job.spec.name:
                names[point.config] = job.spec.name
    return names


def fitted_range(values: Sequence[float], limit: float | None) -> tuple[float, float, bool]:
    """(low, high, limit shown) for an axis: the data's own range, padded, taking in the limit only when it is near."""
    low, high = min(values), max(values)
    span = high - low or abs(high) * 0.1 or 1.0
    near = limit is not None and low - span * NEAR <= limit <= high + span * NEAR
    if near and limit is not None:
        low, high = min(low, limit), max(high, limit)
    pad = (high - low or span) * 0.08
    return low - pad, high + pad, near


def _panel(ax: Any, points: Sequence[FrontPoint], x: list[float], colour: list[float],
           names: Mapping[str, str], limit: float | None, limit_label: str) -> Any:
    """One panel: feasible points as dots (outlined when confirmed), infeasible as red crosses, each labelled."""
    bpb = [p.val_bpb for p in points]
    ax.errorbar(x, bpb, yerr=[p.val_bpb_std for p in points], fmt="none", ecolor="0.6", zorder=1)
    ok = [i for i, p in enumerate(points) if p.feasible]
    bad = [i for i, p in enumerate(points) if not p.feasible]
    dots = ax.scatter([x[i] for i in ok], [bpb[i] for i in ok], c=[colour[i] for i in ok], cmap="viridis", zorder=2,
                      marker="o", edgecolors=["k" if points[i].confirmed else "none" for i in ok], linewidths=1.5)
    if bad:
        ax.scatter([x[i] for i in bad], [bpb[i] for i in bad], marker="x", color="#c62828", s=60, linewidths=2,
                   zorder=3, label="infeasible (over a limit)")
    low, high, shown = fitted_range(x, limit) if points else (0.0, 1.0, False)
    for i, p in enumerate(points):
        right = x[i] > low + (high - low) * 0.75  # labels of the right quarter go to the left of their point
        ax.annotate(names.get(p.config, p.config[:6]), (x[i], bpb[i]), xytext=(-5 if right else 5, 5),
                    textcoords="offset points", ha="right" if right else "left", fontsize=7, color="0.25")
    if points:
        ax.set_xlim(low, high)
        if limit is not None and shown:
            ax.axvline(limit, color="r", linestyle="--", linewidth=1, label=limit_label)
        elif limit is not None:
            ax.annotate(f"{limit_label} {'→' if limit > high else '←'}", xy=(0.98 if limit > high else 0.02, 0.97),
                        xycoords="axes fraction", ha="right" if limit > high else "left", va="top", color="r",
                        fontsize=8)
    ax.set_ylabel("val_bpb (lower is better)")
    ax.grid(alpha=0.3)
    return dots


def plot_fronts(fronts: Sequence[Front], path: Path, feasible_only: bool = False,
                names: Mapping[str, str] | None = None) -> None:
    """Two panels per track: val_bpb against artifact size (colour: training time) and against time (colour: size).

    Each axis is fitted to the data: a limit far from it is noted at the edge instead of squashing the points.
    Points confirmed by enough seeds are outlined in black, and the legend says so only when there are some.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = names or {}
    rows = max(1, len(fronts))
    fig, axes = plt.subplots(rows, 2, figsize=(12, 4.4 * rows), squeeze=False)
    if not fronts:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes)
    for row, front in zip(axes, fronts, strict=False):  # no fronts: one empty row of axes
        points = front.view(feasible_only)
        mb = [p.artifact_bytes / 1e6 for p in points]
        secs = [p.train_seconds for p in points]
        time_limit = track_time_limit(front.track)
        for ax, x, colour, xlabel, clabel, limit, limit_label in (
                (row[0], mb, secs, "artifact (MB)", "train s", MAX_ARTIFACT_BYTES / 1e6, "16,000,000-byte limit"),
                (row[1], secs, mb, "training time (s)", "MB", time_limit, f"{time_limit or 0:g} s limit")):
            dots = _panel(ax, points, x, colour, names, limit, limit_label)
            if any(p.feasible for p in points):
                fig.colorbar(dots, ax=ax, label=clabel)
            ax.set_xlabel(xlabel)
        if any(p.confirmed for p in points):
            row[0].scatter([], [], facecolors="none", edgecolors="k", linewidths=1.5,
                           label=f"confirmed ({CONFIRM_SEEDS}+ seeds)")
        for ax in row:
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="best", fontsize=8)
        row[0].set_title(f"{front.track}: {len(points)} point(s) on the {'feasible ' if feasible_only else ''}front")
        confirmed = sum(p.confirmed for p in points)
        row[1].set_title(f"{confirmed} of {len(points)} confirmed by {CONFIRM_SEEDS}+ seeds")
    fig.text(0.5, 0.005, NOTE, ha="center", va="bottom", fontsize=8, color="0.3")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
