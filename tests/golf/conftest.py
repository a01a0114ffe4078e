"""Shared fixtures for the trainer tests: one prepared stdlib dataset per session, tiny configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

from golfq.workers.golf.prepare import PreparedData, prepare  # noqa: E402
from golfq.workers.golf.train import Hyperparameters  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
# A 2-layer model, 12 steps of 2048 tokens, validation on 4096 tokens: seconds on one CPU thread.
TINY_RUN = dict(NUM_LAYERS=2, MODEL_DIM=64, NUM_HEADS=4, NUM_KV_HEADS=2, TRAIN_SEQ_LEN=64, TRAIN_BATCH_TOKENS=2048,
                ITERATIONS=12, WARMUP_STEPS=2, WARMDOWN_ITERS=4, VAL_LOSS_EVERY=6, TRAIN_LOG_EVERY=4, VAL_MAX_TOKENS=4096,
                MAX_WALLCLOCK_SECONDS=0, DEVICE="cpu", OMP_NUM_THREADS=1)


@pytest.fixture(scope="session")
def stdlib_data(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """The default stdlib dataset (vocab 1024), prepared once for the whole session."""
    return prepare("stdlib", 1024, tmp_path_factory.mktemp("golf_data"))


def tiny_env(data: PreparedData, artifact_dir: Path, **overrides: object) -> dict[str, str]:
    """Environment for a tiny CPU run of golfq.workers.golf.train on prepared data."""
    leaked = {f.name.upper() for f in fields(Hyperparameters)} | {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in leaked}
    env.update(DATA_PATH=str(data.data_path), TOKENIZER_PATH=str(data.tokenizer_path), VOCAB_SIZE=str(data.vocab_size),
               ARTIFACT_DIR=str(artifact_dir))
    env.update({k: str(v) for k, v in {**TINY_RUN, **overrides}.items()})
    return env


def run_trainer(env: dict[str, str], nproc: int = 1, timeout: float = 240) -> tuple[list[str], dict]:
    """Run the trainer as the runner would; return its stdout lines and the GOLFQ_RESULT record."""
    if nproc == 1:
        command = [sys.executable, "-m", "golfq.workers.golf.train"]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "golfq.workers.golf.train"]
    done = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"trainer failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("GOLFQ_RESULT "), f"last line is not the record: {lines[-3:]}"
    return lines, json.loads(lines[-1].removeprefix("GOLFQ_RESULT "))
