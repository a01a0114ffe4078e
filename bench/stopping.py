"""Replay curves through the stopping rules: the GPU-seconds each would save, and whether it would
have stopped the run that finished best.

    python -m bench.stopping            # each built-in rule with its defaults, on every family
    python -m bench.stopping --sweep    # also the settings the defaults were chosen among

A replay runs a family's runs one after another in a shuffled order (20 orders). Each run's
curve is revealed point by point, as a worker stores it (one point per 10 s); whenever it passes
a new checkpoint the rule decides, with the runs finished so far (not the stopped ones) as
references, exactly as workers.curves does. A stopped run costs its training seconds up to the
stop; a finished one its whole budget. Savings count training time only (a stopped run also
skips its evaluation, which is not counted).

Families: synthetic power-law curves with known finals (spread out; crossing, where the runs
that end best start worst; with diverging runs; several seeds of each config) and the step
curves of four record logs (tests/fixtures/progress/, cut from tests/fixtures/logs/).
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from golfq.core.result import ProgressPoint
from golfq.core.stopping import StopRule, decide, passed, series, value_at
from golfq.workers.progress import parse_progress

BUDGET = 600.0
EVERY = 10.0  # a worker's default progress interval
ORDERS = 20
FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "progress"
# The record logs' final scores (tests/fixtures/logs/README.md) and their tokenizers.
RECORDS = {"baseline-2026-03-17.log": (1.22436570, "sp1024"), "xsa-int6-2026-03-20.log": (1.12707468, "sp1024"),
           "legal-ttt-2026-03-23-seed1337.log": (1.11922988, "sp1024"),
           "phased-ttt-2026-04-14-seed0.log": (1.07134229, "sp8192")}
BPB_TO_NATS = 1.693  # train loss in nats per token ~ bpb x this for sp1024 (the baseline's 2.0727 / 1.2244)


@dataclass
class Run:
    name: str
    curve: list[ProgressPoint]
    final: float  # the score it would finish with
    data: str = "sp1024"


@dataclass
class Family:
    name: str
    runs: list[Run]
    budget: float = BUDGET
    note: str = ""
    tuning: bool = True  # part of the set the defaults are tuned on (never stop the best run)

    def rank_correlation(self, share: float) -> float:
        """Spearman's rho between val_bpb at this share of the budget and the final score (finished runs)."""
        pairs = [(v, run.final) for run in self.runs if math.isfinite(run.final)
                 and (v := value_at(series(run.curve, "val_bpb", "seconds"), share * self.budget)) is not None]
        if len(pairs) < 3:
            return math.nan
        ranks = [[sorted(col).index(v) for v in col] for col in zip(*pairs, strict=True)]
        return statistics.correlation(*ranks)


@dataclass
class Outcome:
    saved: float = 0.0  # training seconds not spent
    total: float = 0.0  # training seconds of every run in full
    stopped: int = 0
    best_stopped: int = 0  # orders in which the run that finished best was stopped
    top_stopped: int = 0  # runs of the best 10% stopped, over all orders
    orders: int = 0
    stops_at: list[float] = field(default_factory=list)


def _power_curve(final: float, gap: float, alpha: float, rng: random.Random, noise: float,
                 diverge_at: float | None = None) -> list[ProgressPoint]:
    """val_bpb = final + gap * h(t), h falling from 1 at 10% of the budget to 0 at the end as (t + 5)^-alpha."""
    g = [(t + 5.0) ** -alpha for t in (0.1 * BUDGET, BUDGET)]
    points = []
    for k in range(1, int(BUDGET // EVERY) + 1):
        t = k * EVERY
        bpb = final + gap * ((t + 5.0) ** -alpha - g[1]) / (g[0] - g[1]) + rng.gauss(0.0, noise)
        if diverge_at is not None and t >= diverge_at:
            bpb = math.nan if t >= diverge_at + 60 else bpb + (t - diverge_at) / 30
        points.append(ProgressPoint(at=t, step=int(t * 20), train_seconds=t, val_bpb=round(bpb, 4),
                                    train_loss=round(bpb * BPB_TO_NATS + rng.gauss(0.0, 0.03), 4)))
    return points


def synthetic(seed: int = 0) -> list[Family]:
    rng = random.Random(seed)
    seed_sd = 0.0009  # the 3-seed standard deviation of the current record

    def runs(count: int, crossing: float = 0.0, diverging: float = 0.0, seeds: int = 1) -> list[Run]:
        out = []
        for i in range(count):
            config_final = rng.uniform(1.10, 1.30)
            # crossing k: the early gap grows by k per unit of final advantage, so for k > 1 the runs that
            # end best start worst, and the order settles only once the curves have fallen far enough.
            gap = 0.45 + rng.uniform(-0.05, 0.05) + crossing * (1.30 - config_final)
            alpha = rng.uniform(0.4, 0.6)
            for s in range(seeds):
                final = config_final + rng.gauss(0.0, seed_sd)
                diverge = rng.uniform(100, 400) if rng.random() < diverging else None
                curve = _power_curve(final, gap, alpha, rng, noise=0.002, diverge_at=diverge)
                out.append(Run(f"c{i}s{s}", curve, math.inf if diverge else final))
        return out

    return [
        Family("spread", runs(40), note="finals 1.10-1.30; shapes vary, no built-in crossing"),
        Family("crossing k=1", runs(40, crossing=1.0), note="the best start slower"),
        Family("crossing k=2", runs(40, crossing=2.0), note="the best start worst"),
        Family("diverging 20%", runs(40, crossing=0.5, diverging=0.2), note="a fifth blow up at 100-400 s"),
        Family("3 seeds x 15", runs(15, crossing=0.5, seeds=3), note="seed sd 0.0009"),
        Family("crossing k=3 (stress)", runs(40, crossing=3.0), note="beyond the tuning set", tuning=False),
    ]


def records() -> Family:
    runs = []
    for name, (final, data) in RECORDS.items():
        lines = (FIXTURES / name).read_text().splitlines()
        runs.append(Run(name.split("-20")[0], [p for line in lines if (p := parse_progress(line))], final, data))
    return Family("record logs", runs, note="4 records; val_bpb sparse except the baseline's; phased uses sp8192")


def replay(family: Family, rule: StopRule, orders: int = ORDERS, seed: int = 1) -> Outcome:
    rng = random.Random(seed)
    out = Outcome(orders=orders)
    finals = sorted(run.final for run in family.runs)
    best, top = finals[0], finals[max(0, len(finals) // 10 - 1)]
    for _ in range(orders):
        order = family.runs[:]
        rng.shuffle(order)
        finished: list[Run] = []
        for run in order:
            full = run.curve[-1].train_seconds or family.budget
            out.total += full
            stopped_at = _stop_point(rule, run, [r for r in finished if rule.metric != "train_loss" or
                                                 r.data == run.data], family.budget)
            if stopped_at is None:
                finished.append(run)
                continue
            out.saved += full - stopped_at
            out.stopped += 1
            out.stops_at.append(stopped_at / family.budget)
            out.best_stopped += run.final == best
            out.top_stopped += run.final <= top
    return out


def _stop_point(rule: StopRule, run: Run, finished: list[Run], budget: float) -> float | None:
    decided = 0
    references = [r.curve for r in finished]
    for i in range(1, len(run.curve) + 1):
        seen = run.curve[:i]
        count = passed(rule, seen, budget)
        if count <= decided:
            continue
        decided = count
        decision = decide(rule, seen, references, budget)
        if decision is not None and decision.stop:
            return next((p.train_seconds for p in reversed(seen) if p.train_seconds is not None), decision.at)
    return None


DEFAULT_RULES = {"median": StopRule(rule="median"), "margin": StopRule(rule="margin"),
                 "patience": StopRule(rule="patience")}
TRAIN_LOSS_RULES = {f"{name} on train_loss": StopRule(rule=name, metric="train_loss")  # type: ignore[arg-type]
                    for name in ("median", "margin")}


def alternatives() -> dict[str, StopRule]:
    """The settings the defaults were chosen among (--sweep): checks at (first, first+20%, first+40%)."""
    out: dict[str, StopRule] = {}
    for first in (0.1, 0.2, 0.3, 0.4):
        points = tuple(BUDGET * f for f in (first, first + 0.2, first + 0.4))
        out[f"median from {first:.0%}"] = StopRule(rule="median", checkpoints=points)
        for margin in (0.01, 0.02, 0.05):
            out[f"margin {margin:g} from {first:.0%}"] = StopRule(rule="margin", margin=margin, checkpoints=points)
    return out


def _row(name: str, outcome: Outcome) -> str:
    runs = outcome.stopped / outcome.orders
    when = (f"median stop at {sorted(outcome.stops_at)[len(outcome.stops_at) // 2]:.0%}" if outcome.stops_at
            else "no stops")
    best = "never" if outcome.best_stopped == 0 else f"in {outcome.best_stopped} of {outcome.orders} orders"
    return (f"  {name:<38} saved {outcome.saved / outcome.total:6.1%}  stopped {runs:5.1f} runs/order  "
            f"best stopped {best:<18} top-10% stops {outcome.top_stopped:>3}  ({when})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stopping", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", action="store_true", help="also the settings the defaults were chosen among")
    parser.add_argument("--orders", type=int, default=ORDERS)
    parser.add_argument("--seed", type=int, default=0, help="another draw of the synthetic families")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"# golfq bench/stopping.py  seed {args.seed}, {args.orders} shuffled orders per family; "
          f"budget {BUDGET:g} s, a point per {EVERY:g} s; saved = training seconds not spent / all runs in full")
    rules = {**DEFAULT_RULES, **TRAIN_LOSS_RULES}
    if args.sweep:
        rules.update(alternatives())
    families = [*synthetic(args.seed), records()]
    never = True
    for family in families:
        rho = ", ".join(f"{share:.0%} {family.rank_correlation(share):+.2f}" for share in (0.1, 0.3, 0.5))
        print(f"\n## {family.name}  ({len(family.runs)} runs; {family.note}; rank correlation with the final "
              f"at {rho})")
        for name, rule in rules.items():
            outcome = replay(family, rule, args.orders)
            print(_row(name, outcome))
            never &= outcome.best_stopped == 0 or name not in DEFAULT_RULES or not family.tuning
    verdict = "never stop the best run of the tuning set" if never else "STOP THE BEST RUN of the tuning set"
    print(f"\nbuilt-in rules with their defaults: {verdict} ({time.perf_counter() - started:.1f} s)")
    return 0 if never else 1


if __name__ == "__main__":
    raise SystemExit(main())
