"""Draw Pareto fronts with matplotlib (an optional dependency: golfq[plot])."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from golfq.core.pareto import CONFIRM_SEEDS, MAX_ARTIFACT_BYTES, Front


def plot_fronts(fronts: Sequence[Front], path: Path, feasible_only: bool = False) -> None:
    """Two panels per track: val_bpb against artifact size (colour: training time) and against time (colour: size).

    Points confirmed by enough seeds are outlined in black, and the legend says so only when there are some.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, len(fronts))
    fig, axes = plt.subplots(rows, 2, figsize=(11, 4 * rows), squeeze=False)
    if not fronts:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes)
    for row, front in zip(axes, fronts, strict=False):  # no fronts: one empty row of axes
        points = front.view(feasible_only)
        mb = [p.artifact_bytes / 1e6 for p in points]
        secs = [p.train_seconds for p in points]
        bpb = [p.val_bpb for p in points]
        err = [p.val_bpb_std for p in points]
        outline = ["k" if p.confirmed else "none" for p in points]
        for ax, x, colour, xlabel, clabel in ((row[0], mb, secs, "artifact (MB)", "train s"),
                                              (row[1], secs, mb, "training time (s)", "MB")):
            ax.errorbar(x, bpb, yerr=err, fmt="none", ecolor="0.6", zorder=1)
            dots = ax.scatter(x, bpb, c=colour, cmap="viridis", zorder=2, marker="o", edgecolors=outline,
                              linewidths=1.5)
            if points:
                fig.colorbar(dots, ax=ax, label=clabel)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("val_bpb")
            ax.grid(alpha=0.3)
        row[0].axvline(MAX_ARTIFACT_BYTES / 1e6, color="r", linestyle="--", linewidth=1, label="16 MB cap")
        if any(p.confirmed for p in points):
            row[0].scatter([], [], facecolors="none", edgecolors="k", linewidths=1.5,
                           label=f"confirmed ({CONFIRM_SEEDS}+ seeds)")
        row[0].legend(loc="upper right")
        row[0].set_title(f"{front.track}: {len(points)} point(s) on the {'feasible ' if feasible_only else ''}front")
        confirmed = sum(p.confirmed for p in points)
        row[1].set_title(f"{confirmed} of {len(points)} confirmed by {CONFIRM_SEEDS}+ seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
