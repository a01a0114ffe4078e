"""Exact resume of the built-in trainer on CPU: a run killed mid-way and resumed from its checkpoint ends with
the same weights and val_bpb as a run that was never interrupted."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.golf.conftest import REPO_ROOT, TINY_RUN, run_trainer, tiny_env

ITERATIONS = 12


def _weights(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    latest = (checkpoint_dir / "LATEST").read_text().strip()
    return torch.load(checkpoint_dir / latest / "rank0.pt", weights_only=True)["model"]


def _interrupt(env: dict[str, str], sig: int, at_step: int, nproc: int = 1) -> tuple[int, str]:
    """Start the trainer, send `sig` once it has logged `at_step`, return its exit code and output."""
    torchrun = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    proc = subprocess.Popen([sys.executable, *torchrun, "-m", "golfq.workers.golf.train"], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(f"step:{at_step}/{ITERATIONS} train_loss"):
            proc.send_signal(sig)
            break
    lines += proc.stdout.readlines()
    return proc.wait(timeout=120), "".join(lines)


@pytest.fixture(scope="module")
def uninterrupted(stdlib_data, tmp_path_factory):
    """The reference: one run straight through, with checkpoints on (its last one holds the final weights)."""
    root = tmp_path_factory.mktemp("straight")
    env = tiny_env(stdlib_data, root / "artifacts", CHECKPOINT_DIR=root / "ckpt", CHECKPOINT_SECONDS=3600)
    lines, record = run_trainer(env)
    return record, _weights(root / "ckpt"), (root / "artifacts").glob("final_model.*").__next__().read_bytes()


def _resume_and_compare(stdlib_data, tmp_path: Path, uninterrupted, env: dict[str, str]) -> dict:
    lines, record = run_trainer({**env, "RESUME": "1"})
    reference, weights, artifact = uninterrupted
    assert any(line.startswith("resumed_from:step_") for line in lines)
    assert record["resumed"] is True and reference["resumed"] is False
    assert record["steps"] == reference["steps"] == ITERATIONS
    assert record["val_bpb"] == reference["val_bpb"] and record["pre_quant_val_bpb"] == reference["pre_quant_val_bpb"]
    resumed_weights = _weights(Path(env["CHECKPOINT_DIR"]))
    assert resumed_weights.keys() == weights.keys()
    assert all(torch.equal(resumed_weights[name], weights[name]) for name in weights)
    assert next((tmp_path / "artifacts").glob("final_model.*")).read_bytes() == artifact
    return record


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(stdlib_data, tmp_path, uninterrupted):
    env = tiny_env(stdlib_data, tmp_path / "artifacts", CHECKPOINT_DIR=tmp_path / "ckpt", CHECKPOINT_SECONDS=0)
    code, output = _interrupt(env, signal.SIGKILL, at_step=7)
    assert code == -signal.SIGKILL and "GOLFQ_RESULT" not in output
    saved = int((tmp_path / "ckpt" / "LATEST").read_text().strip().removeprefix("step_"))
    assert 1 <= saved < ITERATIONS  # killed with the run part done: the resume has work left to do
    record = _resume_and_compare(stdlib_data, tmp_path, uninterrupted, env)
    assert record["train_seconds"] > 0


def test_sigterm_saves_within_the_grace_and_the_resumed_run_matches(stdlib_data, tmp_path, uninterrupted):
    # Saves only on SIGTERM: the interval is far longer than the run.
    env = tiny_env(stdlib_data, tmp_path / "artifacts", CHECKPOINT_DIR=tmp_path / "ckpt", CHECKPOINT_SECONDS=3600)
    code, output = _interrupt(env, signal.SIGTERM, at_step=5)
    assert code == 128 + signal.SIGTERM, output[-2000:]
    assert "checkpoint: SIGTERM, exiting at step_" in output
    saved = int((tmp_path / "ckpt" / "LATEST").read_text().strip().removeprefix("step_"))
    assert 5 <= saved < ITERATIONS
    _resume_and_compare(stdlib_data, tmp_path, uninterrupted, env)


def test_resume_without_a_checkpoint_starts_from_zero_and_says_so(stdlib_data, tmp_path, uninterrupted):
    env = tiny_env(stdlib_data, tmp_path / "artifacts", CHECKPOINT_DIR=tmp_path / "empty", RESUME=1)
    lines, record = run_trainer(env)
    assert record["resumed"] is False and record["val_bpb"] == uninterrupted[0]["val_bpb"]
    assert not any(line.startswith("resumed_from:") for line in lines)


def test_no_checkpoint_dir_leaves_the_baseline_untouched(stdlib_data, tmp_path, uninterrupted):
    lines, record = run_trainer(tiny_env(stdlib_data, tmp_path / "artifacts"))
    assert record["val_bpb"] == uninterrupted[0]["val_bpb"]
    assert not any(line.startswith("checkpoint:") for line in lines)
    assert json.loads(json.dumps(record))["resumed"] is False


def test_two_ranks_save_the_same_step_on_sigterm_and_resume_exactly(stdlib_data, tmp_path):
    """Under torchrun: SIGTERM reaches both ranks, they agree on the step, each saves its own optimizer state
    (Muon's momentum is sharded), and the resumed pair ends where an uninterrupted pair does."""
    straight = tiny_env(stdlib_data, tmp_path / "a1", CHECKPOINT_DIR=tmp_path / "c1", CHECKPOINT_SECONDS=3600)
    _, reference = run_trainer(straight, nproc=2)
    env = tiny_env(stdlib_data, tmp_path / "a2", CHECKPOINT_DIR=tmp_path / "c2", CHECKPOINT_SECONDS=3600)
    code, output = _interrupt(env, signal.SIGTERM, at_step=5, nproc=2)
    assert code != 0 and "checkpoint: SIGTERM, exiting at step_" in output, output[-2000:]
    saved = (tmp_path / "c2" / (tmp_path / "c2" / "LATEST").read_text().strip())
    assert sorted(p.name for p in saved.iterdir()) == ["rank0.pt", "rank1.pt"]
    _, resumed = run_trainer({**env, "RESUME": "1"}, nproc=2)
    assert resumed["resumed"] and resumed["steps"] == reference["steps"] == ITERATIONS
    assert resumed["val_bpb"] == reference["val_bpb"]
    assert resumed["pre_quant_val_bpb"] == reference["pre_quant_val_bpb"]
    final, expected = _weights(tmp_path / "c2"), _weights(tmp_path / "c1")
    assert all(torch.equal(final[name], expected[name]) for name in expected)


def test_a_worker_stopped_mid_run_hands_the_next_attempt_its_checkpoint(stdlib_data, tmp_path, monkeypatch):
    """Runner and trainer together: the worker shuts down mid-run (SIGTERM, the trainer saves, an infra
    failure), the next attempt gets RESUME=1 and ends where a run that was never stopped ends."""
    import threading
    import time

    from golfq.core.backends import open_broker
    from golfq.core.spec import Budget, DataRef, ExperimentSpec
    from golfq.workers.runner import run_lease

    monkeypatch.setenv("GOLFQ_DATA_DIR", str(stdlib_data.data_path.parent.parent))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    env = {k: str(v) for k, v in TINY_RUN.items() if k != "MAX_WALLCLOCK_SECONDS"}
    data = DataRef(dataset=stdlib_data.dataset, tokenizer=stdlib_data.tokenizer)
    broker = open_broker(f"sqlite:///{tmp_path / 'golfq.db'}")

    def attempt(stop_at_step: int | None = None):
        stop = threading.Event()
        lease = broker.claim("cpu", "w", lease_seconds=60)
        if stop_at_step is not None:
            log = tmp_path / "runs" / f"{lease.job_id}-{lease.attempt}" / "train.log"
            marker = f"step:{stop_at_step}/{ITERATIONS} train_loss"

            def watch() -> None:
                while not stop.is_set() and not (log.exists() and marker in log.read_text()):
                    time.sleep(0.05)
                stop.set()

            threading.Thread(target=watch, daemon=True).start()
        result = run_lease(broker, lease, work_root=tmp_path / "runs", worker_id="w", stop=stop, kill_grace=30)
        stop.set()
        return result

    try:
        for run in ("straight", "stopped"):  # the same training under two ids (RUN is not the trainer's)
            broker.submit([ExperimentSpec(pool="cpu", env={**env, "RUN": run}, budget=Budget(train_seconds=120),
                                          data=data)])
        straight = attempt()
        stopped = attempt(stop_at_step=5)
        assert stopped.status == "released" and stopped.failure is None  # a graceful stop: no failure counted
        assert "checkpoint: SIGTERM, exiting at step_" in Path(stopped.log_path).read_text()
        resumed = attempt()
        assert resumed.status == "succeeded" and resumed.resumed and resumed.attempt == 2
        assert "resumed_from:step_" in Path(resumed.log_path).read_text()
        assert not straight.resumed and resumed.steps == straight.steps == ITERATIONS
        assert resumed.val_bpb == straight.val_bpb and resumed.pre_quant_val_bpb == straight.pre_quant_val_bpb
    finally:
        broker.close()
