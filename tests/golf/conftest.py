"""Shared fixtures for the trainer tests: one prepared stdlib dataset per session, tiny configs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("sentencepiece")

from golfq.core.backends import open_broker  # noqa: E402
from golfq.core.job import Job  # noqa: E402
from golfq.core.spec import Budget, DataRef, ExperimentSpec  # noqa: E402
from golfq.producer.client import Client  # noqa: E402
from golfq.workers.fleet import Fleet, FleetConfig, FleetSummary  # noqa: E402
from golfq.workers.golf.prepare import PreparedData, prepare  # noqa: E402
from golfq.workers.golf.train import Hyperparameters  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
# A 2-layer model, 12 steps of 2048 tokens, validation on 4096 tokens: seconds on one CPU thread.
TINY_RUN = dict(NUM_LAYERS=2, MODEL_DIM=64, NUM_HEADS=4, NUM_KV_HEADS=2, TRAIN_SEQ_LEN=64, TRAIN_BATCH_TOKENS=2048,
                ITERATIONS=12, WARMUP_STEPS=2, WARMDOWN_ITERS=4, VAL_LOSS_EVERY=6, TRAIN_LOG_EVERY=4,
                VAL_MAX_TOKENS=4096, MAX_WALLCLOCK_SECONDS=0, DEVICE="cpu", OMP_NUM_THREADS=1)


@pytest.fixture(scope="session")
def stdlib_data(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """The default stdlib dataset (vocab 1024), prepared once for the whole session."""
    return prepare("stdlib", 1024, tmp_path_factory.mktemp("golf_data"))


def tiny_env(data: PreparedData, artifact_dir: Path, **overrides: object) -> dict[str, str]:
    """Environment for a tiny CPU run of golfq.workers.golf.train on prepared data."""
    leaked = {f.name.upper() for f in fields(Hyperparameters)}
    leaked |= {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
    env = {k: v for k, v in os.environ.items() if k not in leaked}
    env.update(DATA_PATH=str(data.data_path), TOKENIZER_PATH=str(data.tokenizer_path),
               VOCAB_SIZE=str(data.vocab_size), ARTIFACT_DIR=str(artifact_dir))
    env.update({k: str(v) for k, v in {**TINY_RUN, **overrides}.items()})
    return env


def launch_trainer(env: dict[str, str], nproc: int = 1, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run the trainer as the runner would: one process, or torchrun with nproc ranks; return the finished process."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    command = [sys.executable, *torchrun, "-m", "golfq.workers.golf.train"]
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def run_trainer(env: dict[str, str], nproc: int = 1, timeout: float = 240) -> tuple[list[str], dict]:
    """Run the trainer as the runner would; return its stdout lines and the GOLFQ_RESULT record."""
    done = launch_trainer(env, nproc, timeout)
    assert done.returncode == 0, f"trainer failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("GOLFQ_RESULT "), f"last line is not the record: {lines[-3:]}"
    return lines, json.loads(lines[-1].removeprefix("GOLFQ_RESULT "))


@dataclass(frozen=True)
class QueuedRun:
    url: str  # the SQLite queue the job went through
    job: Job  # as the queue stored it after the fleet ran
    summary: FleetSummary
    work_root: Path  # the fleet's run folders


@pytest.fixture
def run_in_queue(
    stdlib_data: PreparedData, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, int, dict[str, str]], QueuedRun]:
    """Run one spec (name, seed, env) for the built-in trainer on the stdlib data through a fresh SQLite queue
    and a burst fleet of one CPU slot."""
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(stdlib_data.data_path.parent.parent))  # the runner resolves names here
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    url = f"sqlite:///{tmp_path / 'golfq.db'}"
    work_root = tmp_path / "runs"

    def run(name: str, seed: int, env: dict[str, str]) -> QueuedRun:
        data = DataRef(dataset=stdlib_data.dataset, tokenizer=stdlib_data.tokenizer)
        spec = ExperimentSpec(name=name, pool="cpu", seed=seed, env=env, budget=Budget(train_seconds=120), data=data)
        with Client(url) as client:
            job = client.submit(spec)
        summary = Fleet(FleetConfig(queue=url, pool="cpu", concurrency=1, burst=True, work_root=work_root)).run()
        broker = open_broker(url)
        try:
            stored = broker.get(job.id)
        finally:
            broker.close()
        assert stored is not None
        return QueuedRun(url, stored, summary, work_root)

    return run
