"""Where golfq on Modal's billed GPU-hours go (bench/elastic.py's stages and stream sections).

The simulated cloud (bench/elastic_cloud.py) books every billed container-second to a pool and a part
(BILLED_PARTS); these tables average that over replays, and show what a 1-GPU pool's scale-down window buys.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.elastic_cloud import BILLED_PARTS
from bench.elastic_workload import Run, Wave


def breakdown(replays: dict[str, dict[int, dict]], training: float) -> None:
    """Where the billed GPU-hours went, per pool, averaged over each setting's replays."""
    print("\n### billed GPU-h by pool and part, mean per replay (warm starts: inputs a warm container took)")
    print("| pool | part | " + " | ".join(replays) + " |")
    print("|---|---|" + "---:|" * len(replays))
    pools = sorted({pool for runs in replays.values() for r in runs.values() for pool, _ in r["billed_by"]})

    def means(figure: str, key: object, scale: float = 1.0) -> str:
        return " | ".join(f"{sum(r[figure].get(key, 0) for r in runs.values()) / len(runs) / scale:.2f}"
                          for runs in replays.values())

    for pool in pools:
        for part in BILLED_PARTS:
            print(f"| {pool} | {part} | {means('billed_by', (pool, part), 3600)} |")
        print(f"| {pool} | warm starts | {means('warm_starts', pool)} |")
    billed = [sum(r["outcome"].billed_gpu_hours for r in runs.values()) / len(runs) for runs in replays.values()]
    print("| all | billed | " + " | ".join(f"{b:.2f}" for b in billed) + " |")
    print(f"| all | billed / workload's {training:.1f} | " + " | ".join(f"{b / training:.3f}" for b in billed) + " |")


def stream_table(replay: Callable[[list[Wave], dict[str, int]], dict], quick: bool) -> None:
    """What a 1-GPU pool's scale-down window buys: 200 runs of 5-15 minutes behind 48 containers, each freed container
    taking the next queued run warm if the dispatcher spawns it within the window (one replay each, no preemption)."""
    rng = random.Random(3)
    waves = [[Run("sweep", "h100", rng.uniform(300, 900)) for _ in range(100 if quick else 200)]]
    print(f"\n## a stream of {len(waves[0])} 1-GPU runs behind 48 containers, by the h100 pool's scale-down window")
    print("| window | makespan | billed GPU-h | training GPU-h | warm starts | containers | warm idle GPU-h "
          "| scale-down GPU-h |\n|---:|---:|---:|---:|---:|---:|---:|---:|")
    for window in (120, 60, 30):
        r = replay(waves, {"h100": window})
        o, parts = r["outcome"], r["billed_by"]
        idle = [parts.get(("h100", part), 0.0) / 3600 for part in ("warm idle", "scale-down")]
        print(f"| {window} s | {o.makespan / 3600:.2f} h | {o.billed_gpu_hours:.2f} | {o.training_gpu_hours:.2f} | "
              f"{r['warm_starts'].get('h100', 0)} | {r['containers']} | {idle[0]:.2f} | {idle[1]:.2f} |")
