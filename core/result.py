"""Result: what one attempt of one job produced, and why it failed if it did."""

from __future__ import annotations

import enum

import msgspec


class FailureKind(str, enum.Enum):
    """Each class has its own retry budget (spec.budget.retries)."""

    INFRA = "infra"  # lease lost, preempted, worker died: the experiment is not to blame
    TIMEOUT = "timeout"  # killed at the hard timeout
    USER = "user"  # the training process exited non-zero or reported no score
    INVALID = "invalid"  # refused at submit; never queued


class Phases(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An attempt's wall time by phase, in seconds, as the worker's clock saw the log arrive.

    Each is None where the log gave no mark for it. `eval` is the script's own logged evaluation
    time; the others are measured between marks: the process start, the first training step line,
    the end of training (`stopping_early`, else the last step line), the start of the scored
    evaluation (its line's arrival less its logged time) and the process exit."""

    setup: float | None = None  # the worker before the process starts: directory, script, environment
    startup: float | None = None  # process start to the first step line: imports, data, compile warm-up
    train: float | None = None  # first step line to the end of training
    export: float | None = None  # end of training to the scored evaluation: quantize, compress, diagnostics, compile
    eval: float | None = None  # the scored evaluation, as logged
    finish: float | None = None  # the score line to the process exit


class Result(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    spec_id: str
    attempt: int
    status: str  # "succeeded" | "failed" | "stopped" (a stopping rule) | "released" (the worker was stopped)
    val_bpb: float | None = None  # the score: post-quantization roundtrip
    score_source: str | None = None  # its log line: the label, `step:N/M` (pre-quantization) or GOLFQ_RESULT
    val_loss: float | None = None
    pre_quant_val_bpb: float | None = None
    pre_quant_val_loss: float | None = None
    artifact_bytes: int | None = None  # model + code, the number held to 16,000,000
    model_bytes: int | None = None
    code_bytes: int | None = None
    train_seconds: float | None = None
    eval_seconds: float | None = None
    total_seconds: float | None = None  # the process's wall time
    phases: Phases | None = None
    steps: int | None = None
    tokens_seen: int | None = None
    step_ms: float | None = None
    peak_mem_mib: float | None = None
    gpu_name: str | None = None
    gpu_count: int = 0
    gpu_seconds: float | None = None
    cost_usd: float | None = None
    worker_id: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    log_path: str | None = None
    log_tail: str = ""
    artifact_path: str | None = None
    error: str | None = None
    failure: FailureKind | None = None
    environment: str | None = None  # the code folder's environment hash (golfq.core.environment)
    environment_notes: tuple[str, ...] = ()  # what the worker kept that the environment asked otherwise
    resumed: bool = False  # went on from a checkpoint: train_seconds sums its segments; a record needs one run

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class ProgressPoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One point of an attempt's live curve, read from its progress lines as it trains."""

    at: float  # when the worker saw it (unix seconds)
    step: int | None = None
    train_seconds: float | None = None  # training time at this point (the log's train_time)
    train_loss: float | None = None
    val_loss: float | None = None
    val_bpb: float | None = None
    extra: dict[str, float] = {}  # what a script's golfq progress line adds
