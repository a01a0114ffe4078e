"""Sweeps: a base spec, a grid (cartesian product) and/or explicit points, times seeds.

A GRID.toml looks like

    seeds = [1337, 42]              # optional: every point runs once per seed
    script = "train_gpt.py"          # optional, relative to this file
    code = "my_record"               # or a code folder, relative to this file
    stop = "median"                  # optional: every point's stopping rule (or a table, or base.stop)

    [base]                           # what every point shares
    pool = "cpu"
    budget = { train_seconds = 60 }

    [grid]                           # every combination of these values
    MATRIX_LR = [0.02, 0.04]         # UPPER_CASE keys are hyperparameters (env)
    "budget.train_seconds" = [60, 120]   # dotted keys are spec fields

    [[points]]                       # explicit points, added after the product
    MODEL_DIM = 768
    NUM_LAYERS = 11

With neither grid nor points the sweep is the base alone (times its seeds).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golfq.producer.codefolder import PackedCode, pack_folder
from golfq.producer.specfile import (
    InputError,
    Prepared,
    apply_override,
    kind_of,
    normalize,
    prepare,
    read_script,
)

_DOCUMENT_KEYS = {"base", "grid", "points", "seeds", "script", "code", "stop"}


@dataclass(frozen=True)
class Sweep:
    base: Mapping[str, Any] = field(default_factory=dict)
    grid: Mapping[str, Sequence[Any]] = field(default_factory=dict)
    points: Sequence[Mapping[str, Any]] = ()
    seeds: Sequence[int] = ()
    script: bytes | None = None
    code: PackedCode | None = None

    @classmethod
    def from_document(cls, doc: Mapping[str, Any], base_dir: Path | None = None, where: str = "grid") -> Sweep:
        unknown = set(doc) - _DOCUMENT_KEYS
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(a sweep has {', '.join(sorted(_DOCUMENT_KEYS))})")
        base = doc.get("base", {})
        grid = doc.get("grid", {})
        points = doc.get("points", [])
        seeds = doc.get("seeds", [])
        if not isinstance(base, Mapping):
            raise InputError(f"{where}: base: expected a table")
        if not isinstance(grid, Mapping):
            raise InputError(f"{where}: grid: expected a table of lists")
        if not isinstance(points, list) or not all(isinstance(p, Mapping) for p in points):
            raise InputError(f"{where}: points: expected an array of tables ([[points]])")
        if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise InputError(f"{where}: seeds: expected a list of integers")
        script_path = doc.get("script", base.get("script"))
        script = read_script(script_path, base_dir) if isinstance(script_path, str) else None
        folder = doc.get("code", base.get("code"))
        if folder is not None and not isinstance(folder, str):
            raise InputError(f"{where}: code: expected a folder path, got {kind_of(folder)}")
        code = pack_folder(folder, base_dir) if folder is not None else None
        base = {k: v for k, v in base.items() if k not in ("script", "code")}
        if "stop" in doc:
            base["stop"] = doc["stop"]
        return cls(base=base, grid=grid, points=points, seeds=seeds, script=script, code=code)


def _label(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def points_of(sweep: Sweep) -> list[dict[str, Any]]:
    """The overrides of each point, in order: the product first, then the explicit points."""
    for key, values in sweep.grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise InputError(f"grid.{key}: expected a non-empty list of values")
    keys = list(sweep.grid)
    # itertools.product() of no lists is one empty point, not none
    combos = itertools.product(*(sweep.grid[k] for k in keys)) if keys else []
    product = [dict(zip(keys, combo, strict=True)) for combo in combos]
    points = product + [dict(p) for p in sweep.points]
    return points or [{}]


def expand(sweep: Sweep, name: str = "") -> list[Prepared]:
    """One validated spec per point and seed; the first bad point stops everything (nothing is queued)."""
    base = normalize(sweep.base)
    base_name = str(base.get("name") or name)
    prepared: list[Prepared] = []
    for index, overrides in enumerate(points_of(sweep)):
        where = f"point {index + 1} ({', '.join(f'{k}={_label(v)}' for k, v in overrides.items()) or 'base'})"
        doc = normalize(base)
        for key, value in overrides.items():
            try:
                apply_override(doc, key, value)
            except InputError as error:
                raise InputError(f"{where}: {error}") from None
        label = " ".join(f"{k}={_label(v)}" for k, v in overrides.items())
        doc["name"] = " ".join(filter(None, [base_name, label]))[:200]
        seeds: list[Any] = [doc["seed"]] if "seed" in overrides else (list(sweep.seeds) or [doc.get("seed")])
        for seed in seeds:
            one = dict(doc)
            if seed is not None:
                one["seed"] = seed
            own = "trainer" in overrides
            prepared.append(prepare(one, script=None if own else sweep.script, code=None if own else sweep.code,
                                    where=where))
    return prepared
