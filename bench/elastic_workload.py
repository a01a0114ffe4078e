"""The seed run's five stages as a workload, and the fixed-hardware baselines that run it.

Shaped like the autoresearch run golfq was seeded from (Modal's blog post "Autoscaling
Autoresearch: Give your agents elastic GPUs on Modal", 2026-04-14: 113 experiments, 238
GPU-hours in 15 hours): 4 smoke runs on one GPU; 68 single-GPU exploration runs in waves of 41,
23 and 4 (about 14 GPU-hours); 5 validation runs on 8xH100 (about 20 hours one after
another); serial debugging runs on one GPU; then 2 and then 5 final 8xH100 runs. A wave is
submitted when the one before it has finished and the agent has thought for a while, on
every setup.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

THINK_SECONDS = 120.0  # the agent reads results and decides: the same on every setup
H100_USD_PER_GPU_HOUR = 3.95


@dataclass(frozen=True)
class Run:
    stage: str
    pool: str  # "h100" (1 GPU) or "h100x8"
    seconds: float

    @property
    def gpus(self) -> int:
        return 8 if self.pool == "h100x8" else 1


Wave = list[Run]


def seed_workload(seed: int = 1) -> list[Wave]:
    rng = random.Random(seed)
    waves: list[Wave] = [[Run("smoke", "h100", 300.0) for _ in range(4)]]
    for size in (41, 23, 4):
        waves.append([Run("explore", "h100", rng.uniform(510, 990)) for _ in range(size)])
    # one recipe, five seeds: nearly equal lengths, 20 hours back to back
    waves.append([Run("validate", "h100x8", rng.uniform(3.9, 4.1) * 3600) for _ in range(5)])
    waves += [[Run("debug", "h100", 600.0)] for _ in range(6)]
    waves += [[Run("final", "h100x8", 1200.0) for _ in range(count)] for count in (2, 5)]
    return waves


@dataclass(frozen=True)
class Outcome:
    setup: str
    makespan: float  # seconds from the first submit to the last result
    billed_gpu_hours: float
    training_gpu_hours: float
    notes: str = ""

    @property
    def cost_usd(self) -> float:
        return self.billed_gpu_hours * H100_USD_PER_GPU_HOUR

    @property
    def utilisation(self) -> float:
        return self.training_gpu_hours / self.billed_gpu_hours if self.billed_gpu_hours else 0.0


def training_gpu_hours(waves: list[Wave]) -> float:
    return sum(run.seconds * run.gpus for wave in waves for run in wave) / 3600


def fixed_boxes(waves: list[Wave], boxes: int, *, one_at_a_time: bool = False, setup: str = "") -> Outcome:
    """Rented 8xH100 boxes running the waves in order, each run on the GPUs it needs (a single-GPU run on
    one GPU of a box, an 8-GPU run on a whole box), billed for every GPU for the whole makespan."""
    free = [[0.0] * 8 for _ in range(boxes)]  # when each GPU of each box is next free
    start = 0.0
    for wave in waves:
        end = start
        for run in wave:
            if one_at_a_time or run.gpus == 8:
                box = min(range(boxes), key=lambda b: max(free[b]))
                begin = max(start, *free[box])
                free[box] = [begin + run.seconds] * 8
            else:
                box, gpu = min(((b, g) for b in range(boxes) for g in range(8)), key=lambda bg: free[bg[0]][bg[1]])
                begin = max(start, free[box][gpu])
                free[box][gpu] = begin + run.seconds
            end = max(end, begin + run.seconds)
        start = end + THINK_SECONDS
        free = [[max(t, end) for t in box] for box in free]
    makespan = start - THINK_SECONDS
    return Outcome(setup, makespan, boxes * 8 * makespan / 3600, training_gpu_hours(waves))
