"""The reducer: a pure, order-independent fold from results to Pareto fronts.

Three objectives, all minimised: artifact bytes, training seconds, val_bpb. Seed
repeats of one config form a group whose mean is the point; the front is kept per
track (hardware), and feasibility is a flag, never a reason to drop a point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import msgspec
import numpy as np

from golfq.core.pools import known_pools
from golfq.core.result import Result
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


class Front(msgspec.Struct, frozen=True, kw_only=True):
    track: str
    points: tuple[FrontPoint, ...] = ()  # the front over every group, by val_bpb
    feasible_points: tuple[FrontPoint, ...] = ()  # the front over feasible groups alone
    groups: int = 0
    results: int = 0

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
        for c, v in zip(columns, row):
            at_least &= c <= v
            better |= c < v
        if (at_least & better).any():  # rounding in the score tied a dominator: fall back to lexicographic
            best = int(np.lexsort([c for c in columns[::-1]])[0])
            row = [c[best] for c in columns]
        mask[index[best]] = True
        worse = np.ones(len(index), dtype=bool)
        strictly = np.zeros(len(index), dtype=bool)
        for c, v in zip(columns, row):
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

    def point(self, confirm_seeds: int) -> FrontPoint:
        obs = sorted(self.members.values(), key=lambda o: o.job_id)
        size, seconds, bpb, feasible = self.means()
        n = len(obs)
        spread = math.sqrt(math.fsum((o.val_bpb - bpb) ** 2 for o in obs) / (n - 1)) if n > 1 else 0.0
        return FrontPoint(config=obs[0].config, job_ids=tuple(o.job_id for o in obs), seeds=n, artifact_bytes=size,
                          train_seconds=seconds, val_bpb=bpb, val_bpb_std=spread, feasible=feasible,
                          confirmed=n >= confirm_seeds)


def _rank(o: Observation) -> tuple[float, ...]:
    """A total order on one job's results, so the kept one never depends on arrival order."""
    return (o.attempt, -o.val_bpb, -o.artifact_bytes, -o.train_seconds)


def _feasible(o: Observation) -> bool:
    return o.artifact_bytes <= MAX_ARTIFACT_BYTES and (o.time_limit is None or o.train_seconds <= o.time_limit)


def _by_score(points) -> tuple[FrontPoint, ...]:
    return tuple(sorted(points, key=lambda p: (p.val_bpb, p.artifact_bytes, p.config)))


def _fronts_of(groups: list[_Group], confirm_seeds: int) -> tuple[tuple[FrontPoint, ...], tuple[FrontPoint, ...]]:
    """(front over all groups, front over feasible groups); points are built for members only."""
    if not groups:
        return (), ()
    table = np.array([g.means() for g in groups], dtype=float)
    values, feasible = table[:, :3], table[:, 3] > 0
    on_front = nondominated(values)
    on_feasible_front = np.zeros(len(groups), dtype=bool)
    on_feasible_front[np.flatnonzero(feasible)[nondominated(values[feasible])]] = True
    built = {i: groups[i].point(confirm_seeds) for i in np.flatnonzero(on_front | on_feasible_front)}
    return (_by_score(built[i] for i in np.flatnonzero(on_front)),
            _by_score(built[i] for i in np.flatnonzero(on_feasible_front)))


def _dominates(a: FrontPoint, b: FrontPoint) -> bool:
    pa, pb = (a.artifact_bytes, a.train_seconds, a.val_bpb), (b.artifact_bytes, b.train_seconds, b.val_bpb)
    return all(x <= y for x, y in zip(pa, pb)) and pa != pb


def _insert(front: tuple[FrontPoint, ...], point: FrontPoint) -> tuple[FrontPoint, ...]:
    if any(_dominates(q, point) for q in front):
        return front
    return _by_score([q for q in front if not _dominates(point, q)] + [point])


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
    )


class Reducer:
    """Incremental form of the fold: add observations in any order, read fronts any time."""

    def __init__(self, confirm_seeds: int = CONFIRM_SEEDS) -> None:
        self.confirm_seeds = confirm_seeds
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
            # A new group can only enter the front and push points out; nothing returns.
            point = group.point(self.confirm_seeds)
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

    def front(self, track: str) -> Front:
        if track not in self._fronts:
            groups = self._groups.get(track, {})
            points, feasible_points = _fronts_of(list(groups.values()), self.confirm_seeds)
            self._fronts[track] = Front(
                track=track,
                points=points,
                feasible_points=feasible_points,
                groups=len(groups),
                results=sum(len(g.members) for g in groups.values()),
            )
        return self._fronts[track]


def fold(observations: Iterable[Observation], track: str, confirm_seeds: int = CONFIRM_SEEDS) -> Front:
    """The front of one track from scratch: what every stored front must equal."""
    return Reducer(confirm_seeds).add_all(o for o in observations if o.track == track).front(track)
