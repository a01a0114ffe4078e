"""GPU prices: what an attempt cost, from a configurable per-GPU-hour table."""

from __future__ import annotations

import os

DEFAULT_PRICES = {"H100": 3.95, "H200": 4.54, "A100": 2.50, "L4": 0.80, "": 0.0}


def price_table() -> dict[str, float]:
    """GOLFQ_PRICES overrides or adds entries: "H100=2.49,A100=1.2" (USD per GPU-hour)."""
    table = dict(DEFAULT_PRICES)
    for item in filter(None, (p.strip() for p in os.environ.get("GOLFQ_PRICES", "").split(","))):
        name, _, price = item.partition("=")
        try:
            table[name.strip()] = float(price)
        except ValueError:
            raise ValueError(f"GOLFQ_PRICES entry {item!r} is not GPU=USD_PER_HOUR") from None
    return table


def gpu_family(gpu_name: str | None) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'H100'; unknown names map to themselves."""
    if not gpu_name:
        return ""
    upper = gpu_name.upper()
    for family in price_table():
        if family and family.upper() in upper:
            return family
    return gpu_name


def cost_usd(gpu_name: str | None, gpu_count: int, seconds: float) -> float:
    return round(price_table().get(gpu_family(gpu_name), 0.0) * gpu_count * seconds / 3600.0, 6)
