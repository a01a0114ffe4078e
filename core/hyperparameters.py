"""The built-in trainer's hyperparameters, as a submit checks them.

Core imports no training code, so the table is declared here; tests/test_hyperparameters.py checks it against
the trainer's own `Hyperparameters` (names, types, defaults inside the ranges), so the two cannot drift. A
typo (`NUM_LAYER`) would otherwise train the default silently, and a value out of range (`NUM_LAYERS=1e23`)
would fail only on a worker, after a GPU was paid for. A `--script` reads whatever env it likes: not checked.
"""

from __future__ import annotations

import difflib
import math
from typing import NamedTuple

from golfq.core.spec import BUILTIN, ExperimentSpec, SpecError

BIG = 1 << 40


class Param(NamedTuple):
    """How the trainer reads one variable: int, float, bool or str; numbers within [low, high], str in choices."""

    kind: type
    low: float = 0
    high: float = BIG
    choices: tuple[str, ...] = ()


RATE, FRACTION = Param(float, 0, 100), Param(float, 0, 1)
COUNT, FLAG = Param(int, 0, 1_000_000_000), Param(bool)

BUILTIN_HYPERPARAMETERS: dict[str, Param] = {
    # the model (GPTConfig)
    "VOCAB_SIZE": Param(int, 2, 1 << 20), "NUM_LAYERS": Param(int, 1, 256), "MODEL_DIM": Param(int, 1, 65536),
    "NUM_HEADS": Param(int, 1, 1024), "NUM_KV_HEADS": Param(int, 1, 1024), "MLP_MULT": Param(int, 1, 64),
    "TIE_EMBEDDINGS": FLAG, "TIED_EMBED_INIT_STD": Param(float, 0, 10), "ROPE_BASE": Param(float, 1, 1e12),
    "LOGIT_SOFTCAP": Param(float, 0, 1e6), "QK_GAIN_INIT": Param(float, 0, 1e3), "SOFTCAP_FP32": FLAG,
    # the optimizers (OptimizerConfig)
    "EMBED_LR": RATE, "HEAD_LR": RATE, "TIED_EMBED_LR": RATE, "MATRIX_LR": RATE, "SCALAR_LR": RATE,
    "MUON_MOMENTUM": FRACTION, "MUON_BACKEND_STEPS": Param(int, 0, 100), "MUON_MOMENTUM_WARMUP_START": FRACTION,
    "MUON_MOMENTUM_WARMUP_STEPS": COUNT, "BETA1": FRACTION, "BETA2": FRACTION, "ADAM_EPS": Param(float, 0, 1),
    # training and evaluation (Hyperparameters)
    "VAL_BATCH_SIZE": Param(int, 1, BIG), "VAL_LOSS_EVERY": COUNT, "TRAIN_LOG_EVERY": COUNT, "ITERATIONS": COUNT,
    "WARMDOWN_ITERS": COUNT, "WARMUP_STEPS": COUNT, "TRAIN_BATCH_TOKENS": Param(int, 1, BIG),
    "TRAIN_SEQ_LEN": Param(int, 1, 1 << 24), "GRAD_CLIP_NORM": Param(float, 0, 1e6),
    "VAL_MAX_TOKENS": Param(int, 0, BIG),
    "QUANT_BITS": Param(int, 6, 8, ("6", "8")), "INT8_SCALE_FLOOR": FLAG,
    "COMPRESSOR": Param(str, choices=("zlib", "zstd", "lzma")), "GRAD_ACCUM_STEPS": Param(int, 0, 1024),
    "TORCH_COMPILE": FLAG, "DEVICE": Param(str, choices=("", "cpu", "cuda")),
    "EMBED_DTYPE": Param(str, choices=("auto", "bf16", "fp32")), "SDPA_BACKEND": Param(str, choices=("flash", "auto")),
    "CHECKPOINT_SECONDS": Param(float, 0, BIG),
}
# The trainer's fields golfq sets itself, from the spec's typed fields or per attempt (not the user's to set).
SET_BY_GOLFQ = ("DATA_PATH", "TOKENIZER_PATH", "SEED", "MAX_WALLCLOCK_SECONDS", "ARTIFACT_DIR", "CHECKPOINT_DIR",
                "RESUME")
# Variables the trainer's libraries read (threads, NCCL, torch, CUDA): passed through unchecked.
LIBRARY_PREFIXES = ("OMP_", "MKL_", "NCCL_", "TORCH_", "TORCHINDUCTOR_", "PYTORCH_", "TRITON_", "CUDA_", "CUBLAS_",
                    "CUDNN_")
_BOOLS = ("1", "0", "true", "false", "yes", "no", "")


def check_value(key: str, raw: str, param: Param) -> None:
    """SpecError naming the key when the trainer could not read raw as param, or it lies out of range."""
    text = raw.strip()
    if param.choices:
        if text not in param.choices:
            raise SpecError(f"env.{key}: {raw!r} is not one of {', '.join(repr(c) for c in param.choices)}")
        return
    if param.kind is bool:
        if text.lower() not in _BOOLS:
            raise SpecError(f"env.{key}: {raw!r} is not a boolean (1/0, true/false)")
        return
    if param.kind is str:
        return
    try:
        value: float = int(text) if param.kind is int else float(text)
    except ValueError:
        raise SpecError(f"env.{key}: {raw!r} is not {'an integer' if param.kind is int else 'a number'}") from None
    if not math.isfinite(value) or not param.low <= value <= param.high:
        raise SpecError(f"env.{key}: {raw} is out of range ({param.low:g} to {param.high:g})")


def check_builtin_env(spec: ExperimentSpec) -> ExperimentSpec:
    """The spec, if the built-in trainer reads every env key it sets, each as a value it can use; else SpecError
    (with a did-you-mean for a typo). Specs that run a script are returned unchecked."""
    if spec.trainer != BUILTIN:
        return spec
    for key, raw in spec.env.items():
        param = BUILTIN_HYPERPARAMETERS.get(key)
        if param is not None:
            check_value(key, raw, param)
        elif not key.startswith(LIBRARY_PREFIXES):
            close = difflib.get_close_matches(key, BUILTIN_HYPERPARAMETERS, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise SpecError(f"env.{key}: the built-in trainer has no such hyperparameter ({hint}a script, "
                            "--script FILE, reads any env)")
    return spec
