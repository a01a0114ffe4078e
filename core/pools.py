"""Named worker pools: which hardware a spec asks for and which front it scores on."""

from __future__ import annotations

import msgspec

from golfq.core.errors import TrackError
from golfq.core.settings import settings


class Pool(msgspec.Struct, frozen=True):
    name: str
    gpus: int  # GPUs one job gets; 0 means CPU only
    gpu_type: str  # "" for CPU pools
    track: str  # fronts are kept per track: seconds on different hardware do not compare
    time_limit_seconds: float | None = None  # the track's training-time rule, if any
    eval_limit_seconds: float | None = None  # the track's evaluation-time rule, if any


DEFAULT_POOLS: dict[str, Pool] = {
    "cpu": Pool("cpu", 0, "", "cpu"),
    "h100": Pool("h100", 1, "H100", "1xH100"),
    "h100x8": Pool("h100x8", 8, "H100", "8xH100", time_limit_seconds=600.0, eval_limit_seconds=600.0),
}


def known_pools() -> dict[str, Pool]:
    """The built-in pools and those GOLFQ_POOLS adds ("a100=1xA100,l4x2=2xL4")."""
    extra = {name: Pool(name, count, gpu, f"{count}x{gpu}") for name, (count, gpu) in settings().extra_pools.items()}
    return {**DEFAULT_POOLS, **extra}


def get_pool(name: str) -> Pool:
    pools = known_pools()
    if name not in pools:
        raise KeyError(f"unknown pool {name!r} (known: {', '.join(sorted(pools))})")
    return pools[name]


def track_of(pool: str) -> str:
    """A pool's track; a pool this process does not know is its own track."""
    found = known_pools().get(pool)
    return found.track if found else pool


def track_time_limit(track: str) -> float | None:
    """The training-time rule of a track (the strictest of its pools'), or None where time is not judged."""
    limits = [p.time_limit_seconds for p in known_pools().values() if p.track == track and p.time_limit_seconds]
    return min(limits) if limits else None


def resolve_track(name: str | None, present: list[str]) -> str:
    """A track from a track name, a pool name, or None when exactly one track has results.

    TrackError (one line) when None is ambiguous or the name is neither a track nor a pool.
    """
    if name is None:
        if len(present) == 1:
            return present[0]
        raise TrackError(f"several tracks, name one: {', '.join(present)}" if present else "no results yet")
    pools = known_pools()
    if name in present or name in {p.track for p in pools.values()}:
        return name
    if name in pools:
        return pools[name].track
    raise TrackError(f"track {name!r}: unknown (tracks with results: {', '.join(present) or 'none'})")
