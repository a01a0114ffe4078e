"""Checkpoints that let a killed run go on exactly where it was.

A checkpoint is a folder `step_<N>` in CHECKPOINT_DIR with one file per rank (each rank's
optimizer state, since Muon keeps momentum only for the matrices the rank orthogonalises,
its RNG states and its place in the token stream), the model's weights in rank 0's file,
and the run's position (step, training time so far). `LATEST` names the newest complete
one: it is replaced only after every rank has written its file, so a kill mid-save leaves
the previous checkpoint in force.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

LATEST_NAME = "LATEST"


class CheckpointClock:
    """When to save: every `interval` seconds of wall time, and once a SIGTERM has come (then exit)."""

    def __init__(self, interval: float) -> None:
        self.interval, self.last, self.terminated = interval, time.monotonic(), False
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.terminated = True

    def due(self, distributed: bool, device: torch.device) -> bool:
        """True on every rank when any rank wants a save, so all ranks save the same step."""
        wanted = self.terminated or time.monotonic() - self.last >= self.interval
        if distributed:
            flag = torch.tensor(int(wanted) + 2 * int(self.terminated), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            wanted, self.terminated = bool(flag.item()), bool(int(flag.item()) & 2) or self.terminated
        return wanted

    def saved(self) -> None:
        self.last = time.monotonic()

    def release(self) -> None:
        """Training is over and saved: SIGTERM ends the process at once again (and one that came, now)."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if self.terminated:
            raise SystemExit(128 + signal.SIGTERM)


def rng_states() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss,
                                                     gauss], "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng(states: dict) -> None:
    random.setstate(states["python"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


def save_checkpoint(directory: str, rank: int, distributed: bool, model: torch.nn.Module,
                    optimizers: list[torch.optim.Optimizer], position: dict, stream_state: dict) -> Path:
    """Write this rank's file for the step in `position`; rank 0 then points LATEST at it."""
    root = Path(directory)
    folder = root / f"step_{position['step']}"
    folder.mkdir(parents=True, exist_ok=True)
    state = {"position": position, "stream": stream_state, "rng": rng_states(),
             "optimizers": [o.state_dict() for o in optimizers]}
    if rank == 0:
        state["model"] = model.state_dict()
    tmp_path = folder / f"rank{rank}.pt.tmp"
    torch.save(state, tmp_path)
    os.replace(tmp_path, folder / f"rank{rank}.pt")
    if distributed:
        dist.barrier()
    if rank == 0:
        (root / (LATEST_NAME + ".tmp")).write_text(folder.name)
        os.replace(root / (LATEST_NAME + ".tmp"), root / LATEST_NAME)
        for old in root.glob("step_*"):
            if old.name != folder.name:
                shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(directory: str, rank: int, device: torch.device) -> dict | None:
    """This rank's state of the newest complete checkpoint, with rank 0's weights; None when there is none."""
    root = Path(directory)
    if not (root / LATEST_NAME).is_file():
        return None
    folder = root / (root / LATEST_NAME).read_text().strip()
    if not ((folder / f"rank{rank}.pt").is_file() and (folder / "rank0.pt").is_file()):
        return None  # removed under us (a superseded attempt's cleanup): start afresh rather than fail
    state = torch.load(folder / f"rank{rank}.pt", map_location=device, weights_only=True)
    if rank != 0:
        state["model"] = torch.load(folder / "rank0.pt", map_location=device, weights_only=True)["model"]
    return state
