"""Early stopping: a spec's rule, and the pure functions that decide from curves whether to stop.

A rule is checked at checkpoints on one axis (training seconds or steps). At a
checkpoint the run's own value is its first recorded point at or past it; the
references (finished runs it is comparable with, see `comparable`) are read at the
run's x by interpolation (`value_at`). Built in, lower is better for both metrics:

- median: stop if the value is above the median of the references' values (+ margin);
- margin: stop if it is more than `margin` above the best reference value;
- patience: stop if the last `patience` checkpoints brought no improvement of
  `min_delta` over the best value before them (no references needed).

Every rule stops a run whose metric is not finite (nan, inf): it has diverged.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from golfq.core.pools import track_of
from golfq.core.result import ProgressPoint

if TYPE_CHECKING:
    from golfq.core.spec import ExperimentSpec

RuleName = Literal["median", "margin", "patience"]
Metric = Literal["val_bpb", "train_loss"]
Axis = Literal["seconds", "step"]
NonNeg = Annotated[float, msgspec.Meta(ge=0, le=1e12)]

# Checkpoints of a seconds rule that names none: these shares of the spec's training budget. Tuned on
# bench/stopping.py: earlier checks save more but stop late bloomers (see BENCHMARKS.md). Patience
# compares a run with itself, so it needs more checks than the rules that compare it with others.
DEFAULT_FRACTIONS: dict[str, tuple[float, ...]] = {
    "median": (0.3, 0.5, 0.7),
    "margin": (0.3, 0.5, 0.7),
    "patience": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
}
# (margin, min_runs) when the spec leaves them out, per rule and metric (train_loss is in nats per token,
# about 1.7x bits per byte, and noisier). Tuned on bench/stopping.py so that no default stops the run that
# finished best in any family of its tuning set; see BENCHMARKS.md for what each would save.
RULE_DEFAULTS: dict[tuple[str, str], tuple[float, int]] = {
    ("median", "val_bpb"): (0.02, 5), ("median", "train_loss"): (0.05, 5),
    ("margin", "val_bpb"): (0.05, 1), ("margin", "train_loss"): (0.12, 1),
    ("patience", "val_bpb"): (0.0, 0), ("patience", "train_loss"): (0.0, 0),
}
# A reference speaks at x only if it recorded the metric within this share of x on both sides:
# a straight line between far-apart points of a convex loss curve says little about x.
GAP_FRACTION = 0.5
# A check compares means over the run's last few recorded points (and the references' values at the
# same x), so one noisy train_loss line neither stops a run nor saves it.
SMOOTH_POINTS = 5
MAX_CHECKPOINTS = 1000


class StopRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """When to end a run early. A spending policy, so it is left out of the spec id."""

    rule: RuleName
    metric: Metric = "val_bpb"
    at: Axis = "seconds"  # training seconds (the log's train_time) or optimizer steps
    checkpoints: tuple[NonNeg, ...] = ()  # points on the axis to check at
    every: Annotated[float, msgspec.Meta(gt=0, le=1e12)] | None = None  # or one check every this much
    warmup: NonNeg = 0.0  # no check before this point
    margin: NonNeg | None = None  # median: slack over the median; margin: distance over the best
    min_runs: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None  # references needed at a checkpoint
    patience: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    min_delta: NonNeg = 0.0

    def __post_init__(self) -> None:
        if list(self.checkpoints) != sorted(set(self.checkpoints)):
            raise ValueError("stop.checkpoints: expected increasing numbers")
        if len(self.checkpoints) > MAX_CHECKPOINTS:
            raise ValueError(f"stop.checkpoints: more than {MAX_CHECKPOINTS}")
        if self.at == "step" and not self.checkpoints and self.every is None:
            raise ValueError("stop.every: a rule at steps needs `every` or `checkpoints` (the step count of a "
                             "run is not known in advance)")

    @property
    def margin_or_default(self) -> float:
        return RULE_DEFAULTS[self.rule, self.metric][0] if self.margin is None else self.margin

    @property
    def min_runs_or_default(self) -> int:
        return RULE_DEFAULTS[self.rule, self.metric][1] if self.min_runs is None else self.min_runs

    @property
    def needs_references(self) -> bool:
        return self.rule != "patience"


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    stop: bool
    reason: str  # one line, whichever way it went
    at: float  # the x the decision was taken at (the run's own point)


Series = list[tuple[float, float]]  # (x, metric) sorted by x


def series(curve: Sequence[ProgressPoint], metric: Metric, at: Axis) -> Series:
    """The curve's (x, value) pairs on an axis, by x. A point without training seconds (the
    challenge's val lines in some records) gets them from its step, by the curve's own step->time map."""
    timing: Series = sorted({float(p.step): p.train_seconds for p in curve
                             if p.step is not None and p.train_seconds is not None}.items())
    by_x: dict[float, float] = {}
    for p in curve:
        y = getattr(p, metric)
        if y is None:
            continue
        if at == "step":
            x = None if p.step is None else float(p.step)
        else:
            x = p.train_seconds if p.train_seconds is not None else _at(timing, p.step)
        if x is not None:
            by_x[x] = y  # a later report at the same x wins
    return sorted(by_x.items())


def _at(timing: Series, step: int | None) -> float | None:
    """Training seconds at a step: interpolated, or past the ends at the nearest two points' pace."""
    if step is None or not timing:
        return None
    x = float(step)
    if (inside := value_at(timing, x, gap=math.inf)) is not None:
        return inside
    if len(timing) < 2:
        return None
    (x0, y0), (x1, y1) = timing[-2:] if x > timing[-1][0] else timing[:2]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def value_at(points: Series, x: float, gap: float = GAP_FRACTION) -> float | None:
    """The value at x: recorded there, or the straight line between the recorded points either side
    when both lie within gap*x of x; None outside the recorded range (never extrapolated)."""
    if not points:
        return None
    i = bisect.bisect_left(points, (x, -math.inf))
    if i < len(points) and points[i][0] == x:
        return points[i][1]
    if i == 0 or i == len(points):
        return None
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    if x0 < x * (1 - gap) or x1 > x * (1 + gap):
        return None
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def checkpoints(rule: StopRule, budget_seconds: float | None, upto: float) -> list[float]:
    """The rule's checkpoints at or before upto (and not before its warmup)."""
    if rule.checkpoints:
        points = list(rule.checkpoints)
    elif rule.every is not None:
        count = min(int(upto // rule.every), MAX_CHECKPOINTS)
        points = [rule.every * k for k in range(1, count + 1)]
    elif rule.at == "seconds" and budget_seconds:
        points = [budget_seconds * f for f in DEFAULT_FRACTIONS[rule.rule]]
    else:
        points = []
    return [c for c in points if rule.warmup <= c <= upto]


def passed(rule: StopRule, curve: Sequence[ProgressPoint], budget_seconds: float | None) -> int:
    """How many of the rule's checkpoints the curve has passed; a decision is due each time this grows."""
    mine = series(curve, rule.metric, rule.at)
    return len(checkpoints(rule, budget_seconds, mine[-1][0])) if mine else 0


def _axis(rule: StopRule, x: float) -> str:
    return f"{x:g} s" if rule.at == "seconds" else f"step {x:g}"


def _window(mine: Series, j: int) -> list[tuple[float, float]]:
    """The recorded points a check at mine[j] averages: up to SMOOTH_POINTS of them, none far before it."""
    x = mine[j][0]
    return [(xi, yi) for xi, yi in mine[max(0, j - SMOOTH_POINTS + 1):j + 1] if xi >= x * (1 - GAP_FRACTION)]


def _mean_at(points: Series, xs: Sequence[float]) -> float | None:
    """A reference's mean over the check's points; None unless it reaches the last of them."""
    values = [v for x in xs if (v := value_at(points, x)) is not None]
    return math.fsum(values) / len(values) if values and value_at(points, xs[-1]) is not None else None


def decide(rule: StopRule, curve: Sequence[ProgressPoint], references: Sequence[Sequence[ProgressPoint]] = (),
           budget_seconds: float | None = None) -> Decision | None:
    """Whether to stop at the latest checkpoint the curve has passed; None before the first one."""
    mine = series(curve, rule.metric, rule.at)
    if not mine:
        return None
    due = checkpoints(rule, budget_seconds, mine[-1][0])
    if not due:
        return None
    xs = [x for x, _ in mine]
    j = bisect.bisect_left(xs, due[-1])
    x, latest = mine[j]
    where = f"{rule.rule} rule at {_axis(rule, x)}"
    if not math.isfinite(latest):
        return Decision(stop=True, reason=f"{where}: {rule.metric} is {latest} (diverged)", at=x)
    if rule.rule == "patience":
        return _patience(rule, mine, [bisect.bisect_left(xs, c) for c in due], where)
    window = _window(mine, j)
    y = math.fsum(v for _, v in window) / len(window)
    at = [xi for xi, _ in window]
    values = [v for ref in references if (v := _mean_at(series(ref, rule.metric, rule.at), at)) is not None]
    values = [v for v in values if math.isfinite(v)]
    need = rule.min_runs_or_default
    if len(values) < need:
        return Decision(stop=False, reason=f"{where}: {len(values)} reference run(s) reach it, need {need}", at=x)
    margin = rule.margin_or_default
    if rule.rule == "median":
        bar, name = statistics.median(values), "median"
    else:
        bar, name = min(values), "best"
    slack = f" + {margin:g}" if margin else ""
    verdict = ">" if y > bar + margin else "<="
    return Decision(stop=y > bar + margin, at=x, reason=f"{where}: {rule.metric} {y:.4f} {verdict} {name} "
                                                        f"{bar:.4f}{slack} of {len(values)} run(s)")


def _patience(rule: StopRule, mine: Series, indexes: list[int], where: str) -> Decision:
    # One value per distinct recorded point: sparse points must not count as checks without progress.
    # Raw values, not means: a mean lags, and would read a plateau as still falling.
    values = [mine[j][1] for j in sorted(set(indexes))]
    x = mine[indexes[-1]][0]
    if len(values) <= rule.patience:
        return Decision(stop=False, reason=f"{where}: {len(values)} check(s), patience {rule.patience}", at=x)
    before, recent = min(values[:-rule.patience]), min(values[-rule.patience:])
    stop = not recent < before - rule.min_delta
    verdict = "no" if stop else "an"
    return Decision(stop=stop, at=x, reason=f"{where}: {verdict} improvement on {before:.4f} in the last "
                                            f"{rule.patience} check(s) (best since {recent:.4f})")


def comparable(a: ExperimentSpec, b: ExperimentSpec, rule: StopRule) -> bool:
    """Whether a finished run can be a reference for another: same track and training budget (a
    wall-clock schedule decays by its budget), and for train_loss the same data (losses in nats per
    token differ between tokenizers; val_bpb does not)."""
    same = track_of(a.pool) == track_of(b.pool) and a.budget.train_seconds == b.budget.train_seconds
    return same and (rule.metric != "train_loss" or a.data == b.data)
