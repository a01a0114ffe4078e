"""Stopping rules as pure functions, on hand-made curves."""

from __future__ import annotations

import math

import pytest

from golfq.core.result import ProgressPoint
from golfq.core.spec import SpecError, parse_spec
from golfq.core.stopping import (
    StopRule,
    checkpoints,
    comparable,
    decide,
    series,
    value_at,
)


def curve(*pairs: tuple[float, float], metric: str = "val_bpb") -> list[ProgressPoint]:
    """Points (train seconds, metric), with step = 10 x seconds."""
    return [ProgressPoint(at=0.0, step=int(s * 10), train_seconds=s, **{metric: v}) for s, v in pairs]


def line(start: float, slope: float, upto: float = 100.0, every: float = 10.0) -> list[ProgressPoint]:
    """A falling straight curve sampled every `every` seconds from 0 to upto."""
    return curve(*[(t, start - slope * t) for t in [every * k for k in range(int(upto // every) + 1)]])


REFS = [line(3.0, 0.010), line(3.1, 0.010), line(3.2, 0.010)]  # at 50 s: 2.5, 2.6, 2.7


def test_value_at_interpolates_between_near_points_and_never_extrapolates():
    points = [(10.0, 3.0), (20.0, 2.0), (100.0, 1.0)]
    assert value_at(points, 10.0) == 3.0
    assert value_at(points, 15.0) == pytest.approx(2.5)
    assert value_at(points, 60.0) is None  # 20 and 100 are too far either side of 60 to say
    assert value_at(points, 5.0) is None and value_at(points, 101.0) is None


def test_series_gives_val_lines_without_a_time_their_time_by_step():
    points = [ProgressPoint(at=0, step=100, train_seconds=10.0, train_loss=3.0),
              ProgressPoint(at=0, step=200, train_seconds=20.0, train_loss=2.5),
              ProgressPoint(at=0, step=150, val_bpb=1.5), ProgressPoint(at=0, step=300, val_bpb=1.2)]
    assert series(points, "val_bpb", "seconds") == [(15.0, 1.5), (30.0, 1.2)]  # past the end: the last pace
    assert series(points, "val_bpb", "step") == [(150.0, 1.5), (300.0, 1.2)]


def test_checkpoints_default_to_shares_of_the_budget_and_respect_warmup():
    assert checkpoints(StopRule(rule="median"), 100.0, 100.0) == pytest.approx([30.0, 50.0, 70.0])
    assert checkpoints(StopRule(rule="median", every=20, warmup=30), None, 90.0) == [40.0, 60.0, 80.0]
    assert checkpoints(StopRule(rule="median", checkpoints=(5, 50)), 100.0, 49.0) == [5.0]
    assert checkpoints(StopRule(rule="median", at="step", every=1000), None, 3500) == [1000, 2000, 3000]


def test_nothing_is_decided_before_the_first_checkpoint():
    rule = StopRule(rule="median", checkpoints=(50.0,))
    assert decide(rule, line(9.0, 0.01, upto=40), REFS, 100.0) is None


def test_median_stops_a_run_above_the_median_of_the_references_at_the_same_point():
    rule = StopRule(rule="median", checkpoints=(50.0,), margin=0.0, min_runs=3)
    worse = decide(rule, line(3.2, 0.010, upto=50), REFS[:2] + [line(3.3, 0.01)], 100.0)
    assert worse is not None and worse.stop and worse.at == 50.0
    # each side's mean over the run's last points (30, 40, 50 s): the values at 40 s on these straight lines
    assert worse.reason == "median rule at 50 s: val_bpb 2.8000 > median 2.7000 of 3 run(s)"
    better = decide(rule, line(3.05, 0.010, upto=50), REFS, 100.0)
    assert better is not None and not better.stop and "2.6500 <= median 2.7000" in better.reason


def test_median_takes_the_run_at_its_first_point_past_the_checkpoint_and_reads_references_there():
    rule = StopRule(rule="median", checkpoints=(50.0,), margin=0.0, min_runs=3)
    run = curve((40.0, 2.70), (55.0, 2.52))  # the references' means over 40 and 55 s: 2.525, 2.625, 2.725
    decision = decide(rule, run, REFS, 100.0)
    assert decision is not None and decision.at == 55.0 and not decision.stop
    assert "val_bpb 2.6100 <= median 2.6250" in decision.reason


def test_median_needs_enough_references_reaching_the_point():
    rule = StopRule(rule="median", checkpoints=(50.0,), min_runs=3)
    short = [line(3.0, 0.01, upto=40)] * 3  # finished runs that recorded nothing near 50 s
    decision = decide(rule, line(9.0, 0.01, upto=50), REFS[:2] + short, 100.0)
    assert decision is not None and not decision.stop
    assert decision.reason == "median rule at 50 s: 2 reference run(s) reach it, need 3"
    assert decide(StopRule(rule="median", checkpoints=(50.0,), min_runs=2), line(9.0, 0.01, upto=50),
                  REFS[:2] + short, 100.0).stop


def test_one_noisy_point_neither_stops_a_run_nor_saves_it():
    rule = StopRule(rule="median", checkpoints=(50.0,), margin=0.0, min_runs=3)
    good = line(3.05, 0.010, upto=50)
    spike = good[:-1] + curve((50.0, good[-1].val_bpb + 0.1))  # 2.55 -> 2.65 at the check, above 2.6
    assert not decide(rule, spike, REFS, 100.0).stop
    bad = line(3.2, 0.010, upto=50)
    dip = bad[:-1] + curve((50.0, bad[-1].val_bpb - 0.1))  # 2.7 -> 2.6 at the check, not above 2.6
    assert decide(rule, dip, REFS, 100.0).stop


def test_defaults_depend_on_the_rule_and_the_metric():
    assert (StopRule(rule="median").margin_or_default, StopRule(rule="median").min_runs_or_default) == (0.02, 5)
    assert StopRule(rule="margin").margin_or_default == 0.05 and StopRule(rule="margin").min_runs_or_default == 1
    assert StopRule(rule="margin", metric="train_loss").margin_or_default == 0.12
    assert StopRule(rule="median", margin=0.0, min_runs=7).margin_or_default == 0.0


def test_median_margin_gives_slack():
    rule = StopRule(rule="median", checkpoints=(50.0,), margin=0.15, min_runs=3)
    assert not decide(rule, line(3.2, 0.010, upto=50), REFS, 100.0).stop  # 2.7 <= 2.6 + 0.15


def test_margin_stops_only_runs_far_above_the_best():
    rule = StopRule(rule="margin", checkpoints=(50.0,), margin=0.1)
    assert not decide(rule, line(3.05, 0.010, upto=50), REFS, 100.0).stop  # 2.55 <= 2.5 + 0.1
    far = decide(rule, line(3.2, 0.010, upto=50), REFS, 100.0)
    assert far.stop and "val_bpb 2.8000 > best 2.6000 + 0.1 of 3 run(s)" in far.reason
    assert decide(StopRule(rule="margin", checkpoints=(50.0,)), line(3.2, 0.01, upto=50), REFS[:1], 100.0).stop


def test_patience_stops_a_plateau_and_keeps_a_falling_curve():
    rule = StopRule(rule="patience", every=10.0, patience=2, min_delta=0.01)
    falling = line(3.0, 0.01, upto=60)
    assert not decide(rule, falling, [], None).stop
    plateau = curve((10, 3.0), (20, 2.5), (30, 2.4), (40, 2.41), (50, 2.395), (60, 2.40))
    decision = decide(rule, plateau, [], None)
    assert decision.stop and decision.at == 60.0
    assert decision.reason == ("patience rule at 60 s: no improvement on 2.4000 in the last 2 check(s) "
                               "(best since 2.3950)")


def test_patience_counts_each_recorded_point_once_when_points_are_sparse():
    rule = StopRule(rule="patience", every=10.0, patience=2)
    sparse = curve((10, 3.0), (100, 2.0))  # nine checkpoints, two points
    assert not decide(rule, sparse, [], None).stop


@pytest.mark.parametrize("rule", ["median", "margin", "patience"])
def test_every_rule_stops_a_diverged_run(rule):
    run = curve((10, 3.0), (50, math.nan), metric="train_loss")
    decision = decide(StopRule(rule=rule, metric="train_loss", checkpoints=(50.0,)), run, [], 100.0)
    assert decision.stop and decision.reason == f"{rule} rule at 50 s: train_loss is nan (diverged)"


def test_rules_on_steps():
    rule = StopRule(rule="median", at="step", checkpoints=(500,), margin=0.0, min_runs=3)
    decision = decide(rule, line(3.2, 0.010, upto=50), REFS, None)
    assert decision.stop and decision.reason.startswith("median rule at step 500:")


def test_references_are_runs_of_the_same_track_and_budget():
    base = parse_spec({"pool": "h100", "budget": {"train_seconds": 600}})
    rule, loss_rule = StopRule(rule="median"), StopRule(rule="median", metric="train_loss")
    assert comparable(base, parse_spec({"pool": "h100", "seed": 9, "env": {"NUM_LAYERS": "12"},
                                        "budget": {"train_seconds": 600}}), rule)
    assert not comparable(base, parse_spec({"pool": "h100x8", "budget": {"train_seconds": 600}}), rule)
    assert not comparable(base, parse_spec({"pool": "h100", "budget": {"train_seconds": 60}}), rule)
    other_data = parse_spec({"pool": "h100", "budget": {"train_seconds": 600}, "data": {"tokenizer": "sp8192"}})
    assert comparable(base, other_data, rule) and not comparable(base, other_data, loss_rule)


def test_a_rule_is_part_of_the_spec_but_not_of_its_id():
    plain = parse_spec({"pool": "cpu"})
    ruled = parse_spec({"pool": "cpu", "stop": {"rule": "margin", "margin": 0.05, "at": "step", "every": 500}})
    assert ruled.stop == StopRule(rule="margin", margin=0.05, at="step", every=500)
    assert ruled.id == plain.id


@pytest.mark.parametrize("stop, message", [
    ({"rule": "mean"}, "stop.rule: Invalid enum value 'mean'"),
    ({"rule": "median", "at": "step"}, "stop.every: a rule at steps needs `every` or `checkpoints`"),
    ({"rule": "median", "checkpoints": [50, 10]}, "stop.checkpoints: expected increasing numbers"),
    ({"rule": "median", "patience": 0}, "stop.patience: Expected `int` >= 1"),
    ({"rule": "median", "metric": "val_loss"}, "stop.metric: Invalid enum value 'val_loss'"),
    ({"rule": "median", "every": 10, "when": 3}, "stop.when: unknown field"),
])
def test_a_bad_rule_is_refused_naming_the_field(stop, message):
    with pytest.raises(SpecError) as error:
        parse_spec({"pool": "cpu", "stop": stop})
    assert str(error.value).startswith(message)
