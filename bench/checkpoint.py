"""What a checkpoint of the baseline model costs, and the save interval that follows from it.

    python -m bench.checkpoint                 # the baseline config (9 x 512), on this machine's CPU and disk
    python -m bench.checkpoint --dir /vol/x    # save where the checkpoints would go (a Volume mount, say)

Builds the challenge's baseline model with golfq's optimizers, takes a few real steps so every
optimizer state exists (Adam moments, Muon momentum), then times the trainer's own
save_checkpoint and load_checkpoint. The interval is Young's: sqrt(2 x save seconds x mean time
between preemptions) for one 8xH100 box at the preemption rates the elastic replay uses; the
trainer's CHECKPOINT_SECONDS default is the 0.005-per-GPU-hour figure rounded.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from golfq.workers.golf.checkpoint import load_checkpoint, save_checkpoint
from golfq.workers.golf.model import GPT, GPTConfig
from golfq.workers.golf.optim import OptimizerConfig, build_optimizers

PREEMPT_PER_GPU_HOUR = (0.001, 0.005)
BOX_GPUS = 8


def trained_state(steps: int = 2) -> tuple[torch.nn.Module, list[torch.optim.Optimizer]]:
    torch.manual_seed(0)
    config = GPTConfig()
    model = GPT(config)
    optimizers = build_optimizers(model, OptimizerConfig(), config.tie_embeddings, torch.device("cpu"))
    tokens = torch.randint(0, config.vocab_size, (2, 129))
    for _ in range(steps):
        model(tokens[:, :-1], tokens[:, 1:]).backward()
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return model, optimizers


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, default=None, help="where to save (default: a temporary folder)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    model, optimizers = trained_state()
    stream = {"file_index": 3, "position": 123456}
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        saves, loads = [], []
        for step in range(args.repeats):
            position = {"step": step, "training_time_ms": 1000.0 * step, "stop_after_step": None}
            started = time.perf_counter()
            folder = save_checkpoint(scratch, 0, False, model, optimizers, position, stream)
            saves.append(time.perf_counter() - started)
            started = time.perf_counter()
            assert load_checkpoint(scratch, 0, torch.device("cpu")) is not None
            loads.append(time.perf_counter() - started)
        size = folder_bytes(folder)
    save, load = statistics.median(saves), statistics.median(loads)
    params = sum(p.numel() for p in model.parameters())
    print(f"## checkpoint of the baseline model ({params / 1e6:.1f} M parameters) with its optimizer state, "
          f"torch {torch.__version__}, {args.repeats} saves")
    print(f"size {size / 2**20:.1f} MiB; save median {save:.3f} s (min {min(saves):.3f}, max {max(saves):.3f}); "
          f"load median {load:.3f} s; {size / 2**20 / save:.0f} MiB/s")
    print("| preemption per GPU-hour | mean time between preemptions, 8xH100 | Young's interval | save overhead |")
    print("|---:|---:|---:|---:|")
    for rate in PREEMPT_PER_GPU_HOUR:
        between = 3600.0 / (rate * BOX_GPUS)
        interval = math.sqrt(2 * save * between)
        print(f"| {rate} | {between / 3600:.1f} h | {interval:.0f} s | {save / interval:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
