"""The noise-aware front: per-seed values, the incumbent, record-rule tests, and feasibility in full."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golfq.core.pareto import Observation, Reducer, fold, observation
from golfq.core.result import Result
from golfq.core.significance import Sample, record_test
from golfq.core.spec import parse_spec


def obs(job, config, bpb, *, size=10e6, secs=100.0, loss=None, evals=None, eval_limit=None, track="8xH100"):
    return Observation(job_id=job, config=config, track=track, attempt=1, artifact_bytes=size, train_seconds=secs,
                       val_bpb=bpb, val_loss=loss, eval_seconds=evals, eval_limit=eval_limit)


def seeds(config, *values, **kw):
    return [obs(f"{config}{i}", config, v, **kw) for i, v in enumerate(values)]


def by_config(points):
    return {p.config: p for p in points}


def test_the_incumbent_is_the_best_feasible_config_with_two_seeds_and_the_leader_is_tested_against_the_runner_up():
    history = (seeds("LEAD", 1.050, 1.051, 1.049) + seeds("NEXT", 1.060, 1.061, 1.059) + seeds("SOLO", 1.01)
               + seeds("BIG", 1.00, 1.00, size=16_000_001))
    reducer = Reducer().add_all(history)
    front = reducer.front("8xH100")
    assert front.incumbent is not None and front.incumbent.config == "LEAD"
    points = by_config(reducer.ranking("8xH100"))
    assert list(points) == ["BIG", "SOLO", "LEAD", "NEXT"]  # every group, best mean first, front or not
    lead, nxt, solo, big = points["LEAD"], points["NEXT"], points["SOLO"], points["BIG"]
    assert lead.incumbent == "NEXT" and lead.gain == pytest.approx(0.010)
    expected = record_test(Sample.of([1.050, 1.051, 1.049]), Sample.of([1.060, 1.061, 1.059]))
    assert (lead.p_value, lead.significant) == expected and lead.significant is True
    assert nxt.incumbent == "LEAD" and nxt.gain == pytest.approx(-0.010) and nxt.significant is False
    assert solo.incumbent == "LEAD" and solo.gain == pytest.approx(0.040)
    assert solo.p_value is None and solo.significant is None  # one seed: no test
    assert big.feasible is False and big.incumbent == "LEAD"  # infeasible: tested, never the incumbent
    assert lead.val_bpbs == (1.050, 1.051, 1.049) and lead.seeds == 3


def test_without_a_two_seed_feasible_config_there_is_no_incumbent():
    front = fold(seeds("A", 1.0) + seeds("B", 1.1) + seeds("C", 0.9, 0.91, size=20e6), "8xH100")
    assert front.incumbent is None
    assert all(p.incumbent is None and p.significant is None for p in front.points)


def test_a_gain_below_the_threshold_is_not_significant_however_tight():
    """0.002 bpb better with almost no spread: beyond doubt, yet under the 0.0023 bpb threshold."""
    front = fold(seeds("A", 1.0480, 1.0481, 1.0479) + seeds("B", 1.0500, 1.0501, 1.0499), "8xH100")
    leader = by_config(front.points)["A"]
    assert leader.gain == pytest.approx(0.002) and leader.significant is False


def test_val_loss_sets_the_threshold_through_the_baselines_ratio():
    """With val_loss = 2 x val_bpb, 0.005 nats is 0.0025 bpb: a 0.0024 gain fails, a 0.0026 gain passes."""
    def run(gain):
        a = [1.0 - gain + d for d in (0.0, 1e-5, -1e-5)]
        b = [1.0 + d for d in (0.0, 1e-5, -1e-5)]
        history = ([obs(f"a{i}", "A", v, loss=2 * v) for i, v in enumerate(a)]
                   + [obs(f"b{i}", "B", v, loss=2 * v) for i, v in enumerate(b)])
        return by_config(fold(history, "8xH100").points)["A"]

    assert run(0.0024).significant is False and run(0.0026).significant is True
    assert run(0.0026).val_loss == pytest.approx(2 * (1.0 - 0.0026))


def test_feasibility_counts_evaluation_time_on_a_track_with_an_eval_rule():
    history = (seeds("SLOWEVAL", 1.0, evals=601.0, eval_limit=600.0)
               + seeds("OKEVAL", 1.1, evals=600.0, eval_limit=600.0)
               + seeds("UNKNOWN", 1.2, evals=None, eval_limit=600.0) + seeds("NORULE", 1.3, evals=5000.0))
    flags = {p.config: p.feasible for p in Reducer().add_all(history).ranking("8xH100")}
    assert flags == {"SLOWEVAL": False, "OKEVAL": True, "UNKNOWN": True, "NORULE": True}


def test_observation_carries_loss_and_eval_time_with_the_tracks_eval_rule():
    spec = parse_spec({"pool": "h100x8"})
    result = Result(spec_id=spec.id, attempt=1, status="succeeded", val_bpb=1.1, val_loss=1.9,
                    artifact_bytes=15_000_000, train_seconds=590.0, eval_seconds=480.0)
    o = observation(spec.id, spec, result)
    assert (o.val_loss, o.eval_seconds, o.eval_limit, o.time_limit) == (1.9, 480.0, 600.0, 600.0)
    single = observation(spec.id, parse_spec({"pool": "h100"}), result)
    assert single.eval_limit is None and single.time_limit is None


noisy = st.lists(
    st.builds(lambda job, config, bpb, loss, evals: obs(f"j{job}", config, bpb / 1000, loss=loss, evals=evals,
                                                         eval_limit=600.0),
              st.integers(0, 25), st.sampled_from(list("ABCDEF")), st.integers(1000, 1012),
              st.sampled_from([None, 2.0, 2.5]), st.sampled_from([None, 500.0, 700.0])),
    max_size=50,
)


@settings(max_examples=150, deadline=None)
@given(noisy, st.randoms())
def test_tests_and_incumbents_are_order_independent(observations, rnd):
    first = {}
    observations = [o for o in observations if first.setdefault(o.job_id, o) is o]  # one result per job
    expected = fold(observations, "8xH100")
    shuffled = list(observations)
    rnd.shuffle(shuffled)
    incremental = Reducer()
    for i, o in enumerate(shuffled):
        incremental.add(o)
        if i % 2 == 0:
            incremental.front("8xH100")
    assert incremental.front("8xH100") == expected
    assert Reducer().add_all(shuffled).ranking("8xH100") == Reducer().add_all(observations).ranking("8xH100")
