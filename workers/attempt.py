"""What one attempt runs: its directory, its command and its environment.

The worker never imports training code: an attempt is a fresh directory, the spec's
script (or the built-in trainer's module), and the hyperparameters as environment
variables under the challenge's names, plus golfq's own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from golfq.core.job import Lease
from golfq.core.pools import known_pools
from golfq.core.settings import settings
from golfq.core.spec import BUILTIN, ExperimentSpec

LOG_NAME = "train.log"
SCRIPT_NAME = "train_gpt.py"
BUILTIN_MODULE = "golfq.workers.golf.train"


def attempt_dir(work_root: Path, job_id: str, attempt: int) -> Path:
    """Where an attempt runs and keeps its log; `golfq logs` looks here too."""
    return Path(work_root) / f"{job_id}-{attempt}"


def process_count(spec: ExperimentSpec, gpus: str | None) -> int:
    """Processes per attempt: one per GPU the job was given, else the pool's GPU count."""
    if gpus:
        return len([d for d in gpus.split(",") if d.strip()])
    pool = known_pools().get(spec.pool)
    return max(1, pool.gpus if pool else 1)


def training_command(script: Path | None, nproc: int, python: str = sys.executable) -> list[str]:
    """`python SCRIPT` or `python -m golfq.workers.golf.train`, under torchrun for more than one GPU."""
    target = [str(script)] if script is not None else ["-m", BUILTIN_MODULE]
    if nproc <= 1:
        return [python, *target]
    return [python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *target]


def _number(value: float) -> str:
    """600.0 -> "600", 0.5 -> "0.5": what float() and int()-minded trainers both read."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def attempt_env(lease: Lease, workdir: Path, gpus: str | None,
                base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: the worker's, then the spec's hyperparameters, then golfq's own, then
    `extra`: a code folder's virtualenv and the paths its data command made."""
    spec = lease.spec
    data_path, tokenizer_path = spec.data.paths(settings().data_dir)
    env = dict(os.environ if base is None else base)
    if (every := settings().checkpoint_seconds) is not None:  # the worker's setting; a spec's own wins
        env["CHECKPOINT_SECONDS"] = _number(every)
    env.update(spec.env)
    env.update({
        "SEED": str(spec.seed),
        "MAX_WALLCLOCK_SECONDS": _number(spec.budget.train_seconds),
        "DATA_PATH": str(data_path),
        "TOKENIZER_PATH": str(tokenizer_path),
        "ARTIFACT_DIR": str(workdir / "artifacts"),
        "RUN_ID": f"{lease.job_id}-{lease.attempt}",
        "GOLFQ_JOB_ID": lease.job_id,
        "GOLFQ_ATTEMPT": str(lease.attempt),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    pool = known_pools().get(spec.pool)
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpus
    elif pool is not None and pool.gpus == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU job must not grab a GPU that another job was given
    return env


def missing_data(spec: ExperimentSpec) -> str | None:
    """Why the built-in trainer cannot start on this machine's data, in one line; None when it can.

    A script brings its own data handling; the built-in trainer needs the prepared shards.
    """
    if spec.trainer != BUILTIN:
        return None
    data_path, tokenizer_path = spec.data.paths(settings().data_dir)
    absent = [p for p in (data_path, tokenizer_path) if not p.exists()]
    if not absent:
        return None
    source = "fineweb" if spec.data.dataset.startswith("fineweb") else "SOURCE"
    return (f"data not prepared on worker: {absent[0]} does not exist (run `golfq data prepare --source {source}` "
            f"on the worker, or set GOLFQ_DATA_DIR to where it lives)")
