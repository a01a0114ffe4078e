"""Reducer figures: golfq's fold and front kernel beside Optuna's Pareto front on the same points."""

from __future__ import annotations

import time

import numpy as np

from golfq.core.pareto import Observation, Reducer, fold, nondominated

Row = tuple[str, str, str]


def _best_of(repeats: int, fn) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - started)
    return best, out


def _observations(values: np.ndarray, seeds: int) -> list[Observation]:
    return [Observation(job_id=f"j{i}", config=f"c{i // seeds}", track="1xH100", attempt=1,
                        artifact_bytes=float(v[0]) * 2e7, train_seconds=float(v[1]) * 600, val_bpb=1 + float(v[2]))
            for i, v in enumerate(values)]


def rows(quick: bool) -> list[Row]:
    import optuna
    from optuna.study import StudyDirection
    from optuna.study._multi_objective import _get_pareto_front_trials_by_trials, _is_pareto_front
    from optuna.trial import TrialState, create_trial

    n = 10_000 if quick else 100_000
    repeats = 3
    values = np.random.default_rng(0).random((n, 3))
    out: list[Row] = []

    ours, mask = _best_of(repeats, lambda: nondominated(values))
    theirs, their_mask = _best_of(repeats, lambda: _is_pareto_front(values, assume_unique_lexsorted=False))
    assert (mask == their_mask).all(), "fronts differ"
    out.append((f"front kernel, {n:,} points x 3 objectives", f"{ours * 1e3:.1f} ms",
                f"optuna _is_pareto_front {theirs * 1e3:.1f} ms  -> golfq {theirs / ours:.1f}x faster  "
                f"({int(mask.sum())} on front)"))

    observations = _observations(values, seeds=1)
    ours, front = _best_of(repeats, lambda: fold(observations, "1xH100"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trials = [create_trial(values=list(map(float, v)), state=TrialState.COMPLETE) for v in values]
    directions = [StudyDirection.MINIMIZE] * 3
    theirs, their_front = _best_of(repeats, lambda: _get_pareto_front_trials_by_trials(trials, directions))
    assert len(front.points) == len(their_front), "fronts differ"
    out.append((f"fold {n:,} results -> front (records in, points out)", f"{ours * 1e3:.1f} ms",
                f"optuna front of {n:,} FrozenTrials {theirs * 1e3:.1f} ms  -> golfq {theirs / ours:.2f}x"))

    grouped = _observations(values, seeds=3)
    ours, front = _best_of(repeats, lambda: fold(grouped, "1xH100"))
    out.append((f"fold {n:,} results in 3-seed groups", f"{ours * 1e3:.1f} ms",
                f"({front.groups:,} groups, {len(front.points)} on front; optuna has no seed grouping)"))

    reducer = Reducer()
    started = time.perf_counter()
    for o in observations:
        reducer.add(o)
        reducer.front("1xH100")
    per_add = (time.perf_counter() - started) / n
    assert reducer.front("1xH100") == fold(observations, "1xH100")
    out.append(("incremental add + front read, per result", f"{per_add * 1e6:.1f} us",
                f"(equals the fold from scratch; {n:,} results)"))
    return out
