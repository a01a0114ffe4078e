"""The reducer: a pure, order-independent fold from results to Pareto fronts.

Three objectives, all minimised: artifact bytes, training seconds, val_bpb. Seed
repeats of one config form a group whose mean is the point; the front is kept per
track (hardware), and feasibility is a flag, never a reason to drop a point.

Each point is also tested against its track's incumbent under the challenge's record
rule (golfq.core.significance). The incumbent of a point is the feasible group with the
lowest mean val_bpb among the other groups with at least two seeds (ties: the smaller
config key): so the leader is tested against the runner-up, every other point against
the leader, and a point with one seed gets no test. It depends only on the set of
groups, so the fold stays order-independent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec
import numpy as np

from golfq.core.pools import known_pools
from golfq.core.result import Result
from golfq.core.significance import (
    CHALLENGE_RULE,
    MIN_TEST_SEEDS,
    RecordRule,
    Sample,
    record_test,
)
from golfq.core.spec import ExperimentSpec, config_key

MAX_ARTIFACT_BYTES = 16_000_000
CONFIRM_SEEDS = 3


class Observation(msgspec.Struct, frozen=True):
    """One counted, succeeded result, reduced to what the front needs."""

    job_id: str
    config: str  # seed-blind config key: repeats with other seeds share it
    track: str
    attempt: int
    artifact_bytes: float
    train_seconds: float
    val_bpb: float
    time_limit: float | None = None  # the track's training-time rule, if any
    val_loss: float | None = None  # converts the record rule's nats into bpb
    eval_seconds: float | None = None  # None when the run did not report it: then no eval rule applies
    eval_limit: float | None = None  # the track's evaluation-time rule, if any


class FrontPoint(msgspec.Struct, frozen=True, kw_only=True):
    config: str
    job_ids: tuple[str, ...]
    seeds: int
    artifact_bytes: float
    train_seconds: float
    val_bpb: float
    val_bpb_std: float
    feasible: bool
    confirmed: bool
    val_bpbs: tuple[float, ...] = ()  # per seed, in the order of job_ids
    val_loss: float | None = None  # the mean, when every seed reported one
    incumbent: str | None = None  # the config this point is tested against (see the module docstring)
    gain: float | None = None  # the incumbent's mean val_bpb minus this point's: positive is better
    p_value: float | None = None  # the record rule's one-sided p (H0: gain <= threshold); None: n/a
    significant: bool | None = None  # feasible and p_value < alpha; None with one seed on either side

    def sample(self) -> Sample:
        ratio = self.val_bpb / self.val_loss if self.val_loss else None
        return Sample(self.seeds, self.val_bpb, self.val_bpb_std, ratio)


class Front(msgspec.Struct, frozen=True, kw_only=True):
    track: str
    points: tuple[FrontPoint, ...] = ()  # the front over every group, by val_bpb
    feasible_points: tuple[FrontPoint, ...] = ()  # the front over feasible groups alone
    groups: int = 0
    results: int = 0
    incumbent: FrontPoint | None = None  # the best feasible group with at least two seeds

    def view(self, feasible_only: bool = False) -> tuple[FrontPoint, ...]:
        return self.feasible_points if feasible_only else self.points


def nondominated(values: np.ndarray) -> np.ndarray:
    """Mask of rows of an (n, d) array that no other row dominates (all <=, one <).

    Each round takes a row no remaining row dominates, marks it, and drops every
    row it dominates. Taking the row of least normalised sum first (a dominator
    always has the smaller sum) removes most of a random cloud in one round, so
    the rounds after it work on a small remainder.
    """
    n, d = values.shape if values.ndim == 2 else (len(values), 0)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    score = ((values - low) / span).sum(axis=1)
    index = np.arange(n)
    columns = [np.ascontiguousarray(values[:, k]) for k in range(d)]
    while len(index):
        best = int(np.argmin(score))
        row = [c[best] for c in columns]
        at_least = np.ones(len(index), dtype=bool)
        better = np.zeros(len(index), dtype=bool)
        for c, v in zip(columns, row, strict=True):
            at_least &= c <= v
            better |= c < v
        if (at_least & better).any():  # rounding in the score tied a dominator: fall back to lexicographic
            best = int(np.lexsort([c for c in columns[::-1]])[0])
            row = [c[best] for c in columns]
        mask[index[best]] = True
        worse = np.ones(len(index), dtype=bool)
        strictly = np.zeros(len(index), dtype=bool)
        for c, v in zip(columns, row, strict=True):
            worse &= c >= v
            strictly |= c > v
        keep = ~(worse & strictly)
        keep[best] = False
        index, score = index[keep], score[keep]
        columns = [c[keep] for c in columns]
    return mask


class _Group:
    __slots__ = ("members",)

    def __init__(self) -> None:
        self.members: dict[str, Observation] = {}  # job_id -> its kept result

    def add(self, obs: Observation) -> bool:
        old = self.members.get(obs.job_id)
        if old is not None and _rank(old) >= _rank(obs):
            return False
        self.members[obs.job_id] = obs
        return True

    def means(self) -> tuple[float, float, float, bool]:
        """(bytes, seconds, bpb, feasible); fsum is exactly rounded, so order never matters."""
        obs = self.members.values()
        if len(obs) == 1:
            (o,) = obs
            return o.artifact_bytes, o.train_seconds, o.val_bpb, _feasible(o)
        n = len(obs)
        return (math.fsum(o.artifact_bytes for o in obs) / n, math.fsum(o.train_seconds for o in obs) / n,
                math.fsum(o.val_bpb for o in obs) / n, all(_feasible(o) for o in obs))

    def config(self) -> str:
        return next(iter(self.members.values())).config

    def sample(self) -> Sample:
        obs = sorted(self.members.values(), key=lambda o: o.job_id)
        losses = [o.val_loss for o in obs if o.val_loss is not None]
        return Sample.of([o.val_bpb for o in obs], losses if len(losses) == len(obs) else None)

    def point(self, confirm_seeds: int, incumbent: FrontPoint | None = None,
              rule: RecordRule = CHALLENGE_RULE) -> FrontPoint:
        obs = sorted(self.members.values(), key=lambda o: o.job_id)
        size, seconds, _, feasible = self.means()
        sample = self.sample()
        losses = [o.val_loss for o in obs if o.val_loss is not None]
        point = FrontPoint(config=obs[0].config, job_ids=tuple(o.job_id for o in obs), seeds=sample.n,
                           artifact_bytes=size, train_seconds=seconds, val_bpb=sample.mean, val_bpb_std=sample.std,
                           feasible=feasible, confirmed=sample.n >= confirm_seeds,
                           val_bpbs=tuple(o.val_bpb for o in obs),
                           val_loss=math.fsum(losses) / len(losses) if len(losses) == len(obs) else None)
        if incumbent is None:
            return point
        p_value, significant = record_test(sample, incumbent.sample(), rule)
        if significant and not feasible:  # over 16 MB or the time rule: never a record, whatever its score
            significant = False
        return msgspec.structs.replace(point, incumbent=incumbent.config, gain=incumbent.val_bpb - sample.mean,
                                       p_value=p_value, significant=significant)


def _rank(o: Observation) -> tuple[float, ...]:
    """A total order on one job's results, so the kept one never depends on arrival order."""
    return (o.attempt, -o.val_bpb, -o.artifact_bytes, -o.train_seconds)


def _feasible(o: Observation) -> bool:
    return (o.artifact_bytes <= MAX_ARTIFACT_BYTES and (o.time_limit is None or o.train_seconds <= o.time_limit)
            and (o.eval_limit is None or o.eval_seconds is None or o.eval_seconds <= o.eval_limit))


def _by_score(points) -> tuple[FrontPoint, ...]:
    return tuple(sorted(points, key=lambda p: (p.val_bpb, p.artifact_bytes, p.config)))


class _Table:
    """One track's groups as arrays, with the incumbents every point is tested against."""

    def __init__(self, groups: list[_Group], confirm_seeds: int, rule: RecordRule) -> None:
        self.groups, self.confirm_seeds, self.rule = groups, confirm_seeds, rule
        table = np.array([g.means() for g in groups], dtype=float).reshape(-1, 4)
        self.values, self.feasible = table[:, :3], table[:, 3] > 0
        testable = sorted((self.values[i, 2], groups[i].config(), i) for i in np.flatnonzero(self.feasible).tolist()
                          if len(groups[i].members) >= MIN_TEST_SEEDS)
        self.leaders = [i for _, _, i in testable[:2]]  # the incumbent, and the runner-up it is tested against
        self._built: dict[int, FrontPoint] = {}

    def incumbent(self) -> FrontPoint | None:
        return self.point(self.leaders[0]) if self.leaders else None

    def point(self, i: int) -> FrontPoint:
        if i not in self._built:
            rivals = [j for j in self.leaders if j != i]
            against = self.groups[rivals[0]].point(self.confirm_seeds) if rivals else None
            self._built[i] = self.groups[i].point(self.confirm_seeds, against, self.rule)
        return self._built[i]

    def fronts(self) -> tuple[tuple[FrontPoint, ...], tuple[FrontPoint, ...]]:
        """(front over all groups, front over feasible groups); points are built for members only."""
        if not self.groups:
            return (), ()
        on_front = nondominated(self.values)
        on_feasible_front = np.zeros(len(self.groups), dtype=bool)
        on_feasible_front[np.flatnonzero(self.feasible)[nondominated(self.values[self.feasible])]] = True
        return (_by_score(self.point(i) for i in np.flatnonzero(on_front).tolist()),
                _by_score(self.point(i) for i in np.flatnonzero(on_feasible_front).tolist()))

    def ranking(self) -> tuple[FrontPoint, ...]:
        return _by_score(self.point(i) for i in range(len(self.groups)))


def _dominates(a: FrontPoint, b: FrontPoint) -> bool:
    pa, pb = (a.artifact_bytes, a.train_seconds, a.val_bpb), (b.artifact_bytes, b.train_seconds, b.val_bpb)
    return all(x <= y for x, y in zip(pa, pb, strict=True)) and pa != pb


def _insert(front: tuple[FrontPoint, ...], point: FrontPoint) -> tuple[FrontPoint, ...]:
    if any(_dominates(q, point) for q in front):
        return front
    return _by_score([q for q in front if not _dominates(point, q)] + [point])


def _bare(point: FrontPoint | None) -> FrontPoint | None:
    """A point without its own test: what a test against it reads."""
    if point is None:
        return None
    return msgspec.structs.replace(point, incumbent=None, gain=None, p_value=None, significant=None)


def observation(job_id: str, spec: ExperimentSpec, result: Result) -> Observation | None:
    """The front's view of a succeeded result; None when it lacks a score or a size."""
    if not result.succeeded or result.val_bpb is None or result.artifact_bytes is None:
        return None
    pool = known_pools().get(spec.pool)
    return Observation(
        job_id=job_id,
        config=config_key(spec),
        track=pool.track if pool else spec.pool,
        attempt=result.attempt,
        artifact_bytes=float(result.artifact_bytes),
        train_seconds=float(result.train_seconds or 0.0),
        val_bpb=float(result.val_bpb),
        time_limit=pool.time_limit_seconds if pool else None,
        val_loss=result.val_loss,
        eval_seconds=result.eval_seconds,
        eval_limit=pool.eval_limit_seconds if pool else None,
    )


class Reducer:
    """Incremental form of the fold: add observations in any order, read fronts any time."""

    def __init__(self, confirm_seeds: int = CONFIRM_SEEDS, rule: RecordRule = CHALLENGE_RULE) -> None:
        self.confirm_seeds, self.rule = confirm_seeds, rule
        self._groups: dict[str, dict[str, _Group]] = {}
        self._fronts: dict[str, Front] = {}

    def add(self, obs: Observation) -> bool:
        """Fold one observation in; True when it changed the track's data."""
        if not math.isfinite(obs.artifact_bytes + obs.train_seconds + obs.val_bpb):
            return False
        groups = self._groups.get(obs.track)
        if groups is None:
            groups = self._groups[obs.track] = {}
        group = groups.get(obs.config)
        is_new_group = group is None
        if group is None:
            group = groups[obs.config] = _Group()
        if not group.add(obs):
            return False
        cached = self._fronts.get(obs.track)
        if cached is not None and is_new_group:
            # A new group can only enter the front and push points out; nothing returns. With one
            # seed it cannot be an incumbent, so no other point's test changes.
            point = group.point(self.confirm_seeds, _bare(cached.incumbent), self.rule)
            self._fronts[obs.track] = msgspec.structs.replace(
                cached,
                points=_insert(cached.points, point),
                feasible_points=_insert(cached.feasible_points, point) if point.feasible else cached.feasible_points,
                groups=cached.groups + 1,
                results=cached.results + 1,
            )
        elif cached is not None:
            del self._fronts[obs.track]  # a group's mean moved: points it hid may return
        return True

    def add_all(self, observations: Iterable[Observation]) -> Reducer:
        for obs in observations:
            self.add(obs)
        return self

    def tracks(self) -> list[str]:
        return sorted(self._groups)

    def _table(self, track: str) -> _Table:
        return _Table(list(self._groups.get(track, {}).values()), self.confirm_seeds, self.rule)

    def front(self, track: str) -> Front:
        if track not in self._fronts:
            table = self._table(track)
            points, feasible_points = table.fronts()
            self._fronts[track] = Front(track=track, points=points, feasible_points=feasible_points,
                                        groups=len(table.groups), results=sum(len(g.members) for g in table.groups),
                                        incumbent=table.incumbent())
        return self._fronts[track]

    def ranking(self, track: str) -> tuple[FrontPoint, ...]:
        """Every group of the track as a point (on the front or not), best val_bpb first."""
        return self._table(track).ranking()


def fold(observations: Iterable[Observation], track: str, confirm_seeds: int = CONFIRM_SEEDS) -> Front:
    """The front of one track from scratch: what every stored front must equal."""
    return Reducer(confirm_seeds).add_all(o for o in observations if o.track == track).front(track)
