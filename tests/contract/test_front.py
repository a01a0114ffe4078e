"""The stored front equals a fold from scratch over every counted result."""

from __future__ import annotations

import random

import pytest

from golfq.core.job import CompleteOutcome
from golfq.core.pareto import fold, observation
from golfq.core.result import FailureKind, Result
from tests.contract.helpers import replayed_front, spec, success

TRACKS = {"cpu": "cpu", "h100": "1xH100"}


def run_random_history(broker, clock, rng: random.Random) -> list:
    """Submit seed repeats on two pools, then succeed, fail, lose and race leases at random."""
    broker.submit([spec(seed=s, pool=pool, LR=str(lr)) for pool in TRACKS for lr in range(4) for s in range(3)])
    counted: list[tuple] = []
    for _ in range(200):
        pool = rng.choice(list(TRACKS))
        lease = broker.claim(pool, f"w{rng.randrange(3)}", lease_seconds=10)
        if lease is None:
            continue
        roll = rng.random()
        if roll < 0.15:  # the worker vanishes; a later attempt wins and this one reports late
            clock.advance(11)
            broker.reap()
            late = success(lease, val_bpb=0.1)  # would top the front if it were wrongly counted
            if (again := broker.claim(pool, "w9", lease_seconds=10)) is not None:
                assert broker.complete(again, success(again)) is CompleteOutcome.COUNTED
                counted.append((again.spec, again))
            assert broker.complete(lease, late) is CompleteOutcome.SUPERSEDED
        elif roll < 0.25:
            broker.fail(lease, "exit 1", FailureKind.USER)
        elif roll < 0.3:  # succeeded but reported no score: counted, yet not a point
            broker.complete(lease, Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded"))
        else:
            assert broker.complete(lease, success(lease)) is CompleteOutcome.COUNTED
            counted.append((lease.spec, lease))
        clock.advance(rng.random())
    return counted


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_front_equals_a_fold_from_scratch(broker, clock, seed):
    counted = run_random_history(broker, clock, random.Random(seed))
    mine = [observation(lease.job_id, job_spec, success(lease)) for job_spec, lease in counted]
    assert broker.tracks() == sorted({o.track for o in mine})
    for track in TRACKS.values():
        stored = broker.front(track)
        assert stored == fold(mine, track)
        assert stored == replayed_front(broker, track)
        assert stored.results == sum(o.track == track for o in mine) > 0
        assert all(p.val_bpb >= 1.0 for p in stored.points)  # no superseded 0.1 got in


def test_front_of_an_unknown_track_is_empty(broker):
    empty = broker.front("8xH100")
    assert (empty.track, empty.points, empty.results) == ("8xH100", (), 0)
    assert broker.tracks() == []
