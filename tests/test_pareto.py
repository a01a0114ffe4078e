"""The reducer: exact Pareto fronts, order independence, seed groups, feasibility."""

from __future__ import annotations

import math
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from golfq.core.pareto import MAX_ARTIFACT_BYTES, Observation, Reducer, fold, nondominated, observation
from golfq.core.result import Result
from golfq.core.spec import config_key, parse_spec


def brute_force(values: np.ndarray) -> np.ndarray:
    n = len(values)
    return np.array([not any((values[j] <= values[i]).all() and (values[j] < values[i]).any() for j in range(n))
                     for i in range(n)], dtype=bool)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(*[st.integers(0, 5)] * 3), max_size=40))
def test_nondominated_matches_brute_force_with_ties(rows):
    values = np.array(rows, dtype=float).reshape(-1, 3)
    assert (nondominated(values) == brute_force(values)).all()


def test_nondominated_on_a_random_cloud():
    values = np.random.default_rng(1).random((2000, 3))
    assert (nondominated(values) == brute_force(values)).all()


def test_nondominated_in_two_and_four_dimensions():
    rng = np.random.default_rng(2)
    for d in (2, 4):
        values = rng.integers(0, 6, (300, d)).astype(float)
        assert (nondominated(values) == brute_force(values)).all()


def obs(job, config, size, secs, bpb, track="1xH100", attempt=1, limit=None):
    return Observation(job_id=job, config=config, track=track, attempt=attempt, artifact_bytes=size,
                       train_seconds=secs, val_bpb=bpb, time_limit=limit)


def test_front_keeps_exactly_the_non_dominated_points():
    points = [obs("a", "A", 10e6, 600, 1.30), obs("b", "B", 12e6, 600, 1.25), obs("c", "C", 12e6, 650, 1.26),
              obs("d", "D", 9e6, 700, 1.40), obs("e", "E", 10e6, 600, 1.30)]
    front = fold(points, "1xH100")
    assert {p.config for p in front.points} == {"A", "B", "D", "E"}  # C is beaten by B; A and E tie
    assert [p.val_bpb for p in front.points] == sorted(p.val_bpb for p in front.points)


def test_seed_repeats_are_grouped_by_mean_with_spread_and_confirmation():
    points = [obs("s1", "A", 10e6, 600, 1.20), obs("s2", "A", 11e6, 610, 1.22), obs("s3", "A", 12e6, 620, 1.24),
              obs("x", "B", 12e6, 600, 1.21)]
    (b_point, a_point) = sorted(fold(points, "1xH100").points, key=lambda p: p.config)[::-1]
    assert a_point.config == "A" and a_point.seeds == 3 and a_point.confirmed
    assert math.isclose(a_point.val_bpb, 1.22) and math.isclose(a_point.artifact_bytes, 11e6)
    assert math.isclose(a_point.val_bpb_std, 0.02)
    assert set(a_point.job_ids) == {"s1", "s2", "s3"}
    assert b_point.config == "B" and not b_point.confirmed and b_point.val_bpb_std == 0.0


def test_feasibility_is_a_flag_and_a_separate_front():
    limit = 600.0
    big = obs("big", "BIG", MAX_ARTIFACT_BYTES + 1, 500, 1.10, track="8xH100", limit=limit)
    slow = obs("slow", "SLOW", 15e6, 601, 1.12, track="8xH100", limit=limit)
    ok = obs("ok", "OK", 15.9e6, 599, 1.20, track="8xH100", limit=limit)
    edge = obs("edge", "EDGE", MAX_ARTIFACT_BYTES, 300, 1.30, track="8xH100", limit=limit)  # exactly at the cap
    front = fold([big, slow, ok, edge], "8xH100")
    flags = {p.config: p.feasible for p in front.points}
    assert flags["BIG"] is False and flags["SLOW"] is False and flags["OK"] is True
    assert flags["EDGE"] is True
    assert {p.config for p in front.feasible_points} == {"OK", "EDGE"}
    assert all(p.feasible for p in front.view(feasible_only=True))


def test_tracks_are_separate_fronts():
    points = [obs("a", "A", 10e6, 600, 1.3, track="1xH100"), obs("b", "B", 9e6, 500, 1.2, track="8xH100")]
    assert [p.config for p in fold(points, "1xH100").points] == ["A"]
    assert [p.config for p in fold(points, "8xH100").points] == ["B"]
    assert Reducer().add_all(points).tracks() == ["1xH100", "8xH100"]


def test_same_job_counted_once_and_latest_attempt_wins_whatever_the_order():
    first, retry = obs("j", "A", 10e6, 600, 1.5, attempt=1), obs("j", "A", 10e6, 600, 1.3, attempt=2)
    for order in ([first, retry], [retry, first], [first, retry, retry]):
        front = fold(order, "1xH100")
        assert front.results == 1 and front.points[0].val_bpb == 1.3


def test_non_finite_observations_are_ignored():
    front = fold([obs("a", "A", 10e6, 600, float("nan")), obs("b", "B", 10e6, 600, 1.3)], "1xH100")
    assert [p.config for p in front.points] == ["B"] and front.results == 1


random_observations = st.lists(
    st.builds(obs, st.sampled_from([f"j{i}" for i in range(30)]), st.sampled_from(list("ABCDEFGH")),
              st.integers(1, 20).map(lambda v: v * 1e6), st.integers(1, 6).map(float),
              st.integers(100, 140).map(lambda v: v / 100), attempt=st.integers(1, 3)),
    max_size=60,
)


def _canonical(observations):
    """What the group of a job is must not depend on order: one config per job id."""
    configs = {}
    return [Observation(**{**{f: getattr(o, f) for f in o.__struct_fields__},
                           "config": configs.setdefault(o.job_id, o.config)})
            for o in observations]


@settings(max_examples=200, deadline=None)
@given(random_observations, st.randoms())
def test_fold_is_order_independent_and_incremental_equals_from_scratch(observations, rnd):
    observations = _canonical(observations)
    expected = fold(observations, "1xH100")
    shuffled = list(observations)
    rnd.shuffle(shuffled)
    assert fold(shuffled, "1xH100") == expected
    incremental = Reducer()
    for i, o in enumerate(shuffled):
        incremental.add(o)
        if i % 3 == 0:
            incremental.front("1xH100")  # reading in between must not change the end state
    assert incremental.front("1xH100") == expected


def test_observation_from_a_result_uses_the_pool_track_and_limit():
    spec = parse_spec({"pool": "h100x8", "seed": 3})
    result = Result(spec_id=spec.id, attempt=1, status="succeeded", val_bpb=1.2, artifact_bytes=15_000_000,
                    train_seconds=590.0)
    o = observation(spec.id, spec, result)
    assert o.track == "8xH100" and o.time_limit == 600.0 and o.config == config_key(spec)
    assert observation(spec.id, spec, Result(spec_id=spec.id, attempt=1, status="failed")) is None
    assert observation(spec.id, spec, Result(spec_id=spec.id, attempt=1, status="succeeded", val_bpb=1.2)) is None


def test_large_random_fold_matches_brute_force_front():
    rng = random.Random(5)
    points = [obs(f"j{i}", f"c{i}", rng.randint(1, 30) * 1e6, float(rng.randint(1, 30)), rng.randint(100, 200) / 100)
              for i in range(800)]
    front = fold(points, "1xH100")
    values = np.array([(p.artifact_bytes, p.train_seconds, p.val_bpb) for p in points])
    assert {p.config for p in front.points} == {f"c{i}" for i in np.flatnonzero(brute_force(values))}
