"""The one cost model: GPU-seconds and dollars of an attempt, from a per-GPU-hour price table."""

from __future__ import annotations

from collections.abc import Mapping

from golfq.core.result import Result
from golfq.core.settings import settings

DEFAULT_PRICES = {"H100": 3.95, "H200": 4.54, "A100": 2.50, "L4": 0.80, "": 0.0}


def price_table() -> dict[str, float]:
    """USD per GPU-hour: the built-in table, with GOLFQ_PRICES ("H100=2.49,A100=1.2") over it."""
    return {**DEFAULT_PRICES, **settings().prices}


def gpu_family(gpu_name: str | None, prices: Mapping[str, float] | None = None) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'H100'; unknown names map to themselves."""
    if not gpu_name:
        return ""
    upper = gpu_name.upper()
    table = prices if prices is not None else price_table()
    for family in sorted(table, key=len, reverse=True):  # "H100" before "H10"-like prefixes
        if family and family.upper() in upper:
            return family
    return gpu_name


def cost_usd(gpu_name: str | None, gpu_count: int, seconds: float, prices: Mapping[str, float] | None = None) -> float:
    table = prices if prices is not None else price_table()
    return round(table.get(gpu_family(gpu_name, table), 0.0) * gpu_count * seconds / 3600.0, 6)


def attempt_cost(result: Result, prices: Mapping[str, float] | None = None) -> tuple[float, float]:
    """(GPU-seconds, USD) of one attempt: its own figures, else derived from its wall time at today's prices.

    `prices` (default: price_table()) lets a caller pricing many attempts read the settings once."""
    seconds = result.gpu_seconds if result.gpu_seconds is not None else (result.total_seconds or 0.0) * result.gpu_count
    if result.cost_usd is not None:
        return seconds, result.cost_usd
    return seconds, cost_usd(result.gpu_name, 1, seconds, prices)
