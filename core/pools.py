"""Named worker pools: which hardware a spec asks for and which front it scores on."""

from __future__ import annotations

import os

import msgspec


class Pool(msgspec.Struct, frozen=True):
    name: str
    gpus: int  # GPUs one job gets; 0 means CPU only
    gpu_type: str  # "" for CPU pools
    track: str  # fronts are kept per track: seconds on different hardware do not compare
    time_limit_seconds: float | None = None  # the track's training-time rule, if any


DEFAULT_POOLS: dict[str, Pool] = {
    "cpu": Pool("cpu", 0, "", "cpu"),
    "h100": Pool("h100", 1, "H100", "1xH100"),
    "h100x8": Pool("h100x8", 8, "H100", "8xH100", time_limit_seconds=600.0),
}


def _extra_pools() -> dict[str, Pool]:
    """GOLFQ_POOLS adds pools: "a100=1xA100,l4x2=2xL4" (name=GPUSxTYPE)."""
    extra: dict[str, Pool] = {}
    for item in filter(None, (p.strip() for p in os.environ.get("GOLFQ_POOLS", "").split(","))):
        name, _, hw = item.partition("=")
        count, _, gpu = hw.partition("x")
        if not (name and count.isdigit() and gpu):
            raise ValueError(f"GOLFQ_POOLS entry {item!r} is not NAME=COUNTxGPU (e.g. a100=1xA100)")
        extra[name] = Pool(name, int(count), gpu, f"{count}x{gpu}")
    return extra


def known_pools() -> dict[str, Pool]:
    return {**DEFAULT_POOLS, **_extra_pools()}


def get_pool(name: str) -> Pool:
    pools = known_pools()
    if name not in pools:
        raise KeyError(f"unknown pool {name!r} (known: {', '.join(sorted(pools))})")
    return pools[name]


def track_of(pool: str) -> str:
    pools = known_pools()
    return pools[pool].track if pool in pools else pool
