"""Train the Parameter Golf baseline, export the artifact, score the round trip.

    python -m golfq.workers.golf.train                                       # one process (GPU or CPU)
    torchrun --standalone --nproc-per-node=8 -m golfq.workers.golf.train     # DDP, one rank per GPU

Every hyperparameter comes from the environment under the challenge's names.
golfq adds VAL_MAX_TOKENS (cap the validation tokens, for CPU runs),
ARTIFACT_DIR (where the artifact goes), QUANT_BITS (8|6), COMPRESSOR
(zlib|zstd|lzma), GRAD_ACCUM_STEPS, TORCH_COMPILE, DEVICE (cpu|cuda), the
checkpoint settings CHECKPOINT_DIR, CHECKPOINT_SECONDS and RESUME (checkpoint.py), and
switches away from the reference's choices: INT8_SCALE_FLOOR=0, EMBED_DTYPE=fp32,
SOFTCAP_FP32=1, SDPA_BACKEND=auto. Rank 0 prints the challenge's log lines and,
last, one `GOLFQ_RESULT {json}` line.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import resource
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from golfq.workers.golf.bpb import build_byte_tables, evaluate, load_validation_tokens
from golfq.workers.golf.checkpoint import CheckpointClock, load_checkpoint, restore_rng, save_checkpoint
from golfq.workers.golf.loader import DistributedTokenLoader, LoaderError
from golfq.workers.golf.model import GPT, GPTConfig, cast_like_reference, count_parameters, pin_flash_attention
from golfq.workers.golf.optim import OptimizerConfig, build_optimizers, set_schedule
from golfq.workers.golf.quantize import COMPRESSORS, artifact_label, pack_artifact, unpack_artifact
from golfq.workers.golf.shards import ShardError, shard_files

SIZE_LIMIT_BYTES = 16_000_000
ARTIFACT_SUFFIX = {"zlib": "ptz", "zstd": "ptzst", "lzma": "ptxz"}


class TrainConfigError(ValueError):
    """A hyperparameter or input path the run cannot use; reported as one line."""


# The model's and the optimizer's knobs are declared once, beside the code that uses them
# (GPTConfig, OptimizerConfig); Hyperparameters adds the run's own and reads them all from the env.
@dataclass(frozen=True)
class Hyperparameters(GPTConfig, OptimizerConfig):
    data_path: str = "./data/datasets/fineweb10B_sp1024"
    tokenizer_path: str = "./data/tokenizers/fineweb_1024_bpe.model"
    seed: int = 1337
    val_batch_size: int = 524288
    val_loss_every: int = 1000
    train_log_every: int = 200
    iterations: int = 20000
    warmdown_iters: int = 1200
    warmup_steps: int = 20
    train_batch_tokens: int = 524288
    train_seq_len: int = 1024
    max_wallclock_seconds: float = 600.0
    grad_clip_norm: float = 0.0
    # golfq extras
    val_max_tokens: int = 0  # 0: the whole validation set
    artifact_dir: str = "."
    quant_bits: int = 8
    int8_scale_floor: bool = True  # the reference's 1/127 floor on int8 row scales; 0: every row's full range
    compressor: str = "zlib"
    grad_accum_steps: int = 0  # 0: 8 // WORLD_SIZE, as the baseline
    torch_compile: bool = True  # the model and Muon's Newton-Schulz step; only on CUDA
    device: str = ""  # cuda | cpu; empty: cuda when there is one
    embed_dtype: str = "auto"  # bf16 (the reference) | fp32; auto: bf16 on CUDA, fp32 on CPU (no bf16 autocast there)
    sdpa_backend: str = "flash"  # flash: only the flash kernel on CUDA, as the reference; auto: let torch choose
    checkpoint_dir: str = ""  # empty: no checkpoints, no SIGTERM handler (the baseline as it is)
    checkpoint_seconds: float = 400.0  # save every this many seconds (0: every step); bench/checkpoint.py
    resume: bool = False  # go on from the newest checkpoint in CHECKPOINT_DIR, if there is one

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Hyperparameters:
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(field.name.upper())
            if raw is None or raw == "":
                continue
            kind = type(getattr(cls, field.name))
            try:
                values[field.name] = raw.strip().lower() in ("1", "true", "yes") if kind is bool else kind(raw)
            except ValueError:
                raise TrainConfigError(f"{field.name.upper()} must be {kind.__name__}, got {raw!r}") from None
        hp = cls(**values)
        if hp.compressor not in COMPRESSORS:
            raise TrainConfigError(f"COMPRESSOR must be one of {', '.join(COMPRESSORS)}, got {hp.compressor!r}")
        if hp.device not in ("", "cpu", "cuda"):
            raise TrainConfigError(f"DEVICE must be cpu or cuda, got {hp.device!r}")
        if hp.embed_dtype not in ("auto", "bf16", "fp32"):
            raise TrainConfigError(f"EMBED_DTYPE must be auto, bf16 or fp32, got {hp.embed_dtype!r}")
        if hp.sdpa_backend not in ("flash", "auto"):
            raise TrainConfigError(f"SDPA_BACKEND must be flash or auto, got {hp.sdpa_backend!r}")
        if hp.quant_bits not in (6, 8):
            raise TrainConfigError(f"QUANT_BITS must be 8 or 6, got {hp.quant_bits}")
        return hp

    def model_config(self) -> GPTConfig:
        return GPTConfig(**{f.name: getattr(self, f.name) for f in fields(GPTConfig)})

    def optimizer_config(self) -> OptimizerConfig:
        return OptimizerConfig(**{f.name: getattr(self, f.name) for f in fields(OptimizerConfig)})

    def embedding_dtype(self, use_cuda: bool) -> torch.dtype:
        if self.embed_dtype == "auto":
            return torch.bfloat16 if use_cuda else torch.float32
        return torch.bfloat16 if self.embed_dtype == "bf16" else torch.float32


def lr_multiplier(hp: Hyperparameters, step: int, elapsed_ms: float) -> float:
    """1 until the warm-down, then linear to 0: by step count, or by the wallclock left when capped."""
    if hp.warmdown_iters <= 0:
        return 1.0
    if hp.max_wallclock_seconds <= 0:
        warmdown_start = max(hp.iterations - hp.warmdown_iters, 0)
        if warmdown_start <= step < hp.iterations:
            return max((hp.iterations - step) / max(hp.warmdown_iters, 1), 0.0)
        return 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = hp.warmdown_iters * step_ms
    remaining_ms = max(hp.max_wallclock_seconds * 1000.0 - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


def code_bytes() -> int:
    """UTF-8 bytes of the one-file trainer a submission carries: this file when it is that file."""
    if __package__:  # imported from golfq's package: count the file golfq bundles from it
        from golfq.workers.golf.bundle import bundle_bytes

        return bundle_bytes()
    return len(Path(__file__).read_text(encoding="utf-8").encode("utf-8"))


def peak_memory_mib(device: torch.device) -> tuple[int, int]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() // 2**20, torch.cuda.max_memory_reserved() // 2**20
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
    return resident, resident


def main() -> None:
    hp = Hyperparameters.from_env()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    distributed = world_size > 1
    if hp.device == "cuda" and not torch.cuda.is_available():
        raise TrainConfigError("DEVICE=cuda but torch sees no CUDA device")
    use_cuda = torch.cuda.is_available() and hp.device != "cpu"
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        if hp.sdpa_backend == "flash":
            pin_flash_attention()
    if distributed:
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", device_id=device if use_cuda else None)
    master = rank == 0

    def log(message: str) -> None:
        if master:
            print(message, flush=True)

    def synchronize() -> None:
        if use_cuda:
            torch.cuda.synchronize()

    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_cuda else contextlib.nullcontext
    grad_accum_steps = hp.grad_accum_steps or (8 // world_size if 8 % world_size == 0 else 1)
    local_tokens = hp.train_batch_tokens // (world_size * grad_accum_steps)
    if local_tokens * world_size * grad_accum_steps != hp.train_batch_tokens or local_tokens % hp.train_seq_len:
        raise TrainConfigError(
            f"TRAIN_BATCH_TOKENS={hp.train_batch_tokens} must split into {world_size} ranks x {grad_accum_steps} "
            f"micro-batches of whole TRAIN_SEQ_LEN={hp.train_seq_len} sequences"
        )
    random.seed(hp.seed)
    np.random.seed(hp.seed)
    torch.manual_seed(hp.seed)

    import sentencepiece as spm

    if not hp.tokenizer_path.endswith(".model"):
        raise TrainConfigError(f"TOKENIZER_PATH must be a SentencePiece .model file, got {hp.tokenizer_path}")
    processor = spm.SentencePieceProcessor(model_file=hp.tokenizer_path)
    pieces = processor.vocab_size()
    if pieces != hp.vocab_size:
        raise TrainConfigError(f"VOCAB_SIZE={hp.vocab_size} does not match the tokenizer's {pieces} pieces")
    tables = build_byte_tables(processor, hp.vocab_size).to(device)
    try:
        val_tokens = load_validation_tokens(hp.data_path, hp.train_seq_len, hp.val_max_tokens)
    except ShardError:
        raise
    except ValueError as error:
        raise TrainConfigError(str(error)) from None
    val_batch_seqs = max(1, hp.val_batch_size // (world_size * grad_accum_steps) // hp.train_seq_len)
    log(f"Running PyTorch {torch.__version__}")
    log(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={hp.tokenizer_path}")
    log(f"train_loader:dataset:{Path(hp.data_path).name} train_shards:{len(shard_files(hp.data_path, 'train'))}")
    log(f"val_loader:shards pattern={Path(hp.data_path) / 'fineweb_val_*.bin'} tokens:{val_tokens.numel() - 1}")

    model = cast_like_reference(GPT(hp.model_config()).to(device), hp.embedding_dtype(use_cuda))
    optimizer_config = hp.optimizer_config()
    compile_on_cuda = use_cuda and hp.torch_compile
    optimizers = build_optimizers(model, optimizer_config, hp.tie_embeddings, device,
                                  compile_newton_schulz=compile_on_cuda)
    compiled = torch.compile(model, dynamic=False, fullgraph=True) if compile_on_cuda else model
    trained = (DistributedDataParallel(compiled, device_ids=[local_rank] if use_cuda else None, broadcast_buffers=False)
               if distributed else compiled)
    log(f"model_params:{count_parameters(model)}")
    log(f"world_size:{world_size} grad_accum_steps:{grad_accum_steps} device:{device.type}")
    if use_cuda and hp.sdpa_backend == "flash":
        log("sdp_backends:cudnn=False flash=True mem_efficient=False math=False")
    log(f"attention_mode:gqa num_heads:{hp.num_heads} num_kv_heads:{hp.num_kv_heads}")
    log(f"tie_embeddings:{hp.tie_embeddings} embed_lr:{hp.tied_embed_lr if hp.tie_embeddings else hp.embed_lr} "
        f"head_lr:{0.0 if hp.tie_embeddings else hp.head_lr} matrix_lr:{hp.matrix_lr} scalar_lr:{hp.scalar_lr}")
    log(f"train_batch_tokens:{hp.train_batch_tokens} train_seq_len:{hp.train_seq_len} iterations:{hp.iterations} "
        f"warmup_steps:{hp.warmup_steps} max_wallclock_seconds:{hp.max_wallclock_seconds:.3f}")
    log(f"seed:{hp.seed}")

    def train_step(loader: DistributedTokenLoader, step: int, lr_scale: float) -> Tensor:
        train_loss = torch.zeros((), device=device)
        for micro_step in range(grad_accum_steps):
            inputs, targets = loader.next_batch(local_tokens, hp.train_seq_len)
            last_micro_step = micro_step == grad_accum_steps - 1
            sync = contextlib.nullcontext() if not distributed or last_micro_step else trained.no_sync()
            with sync:
                with autocast():
                    loss = trained(inputs, targets)
                (loss / grad_accum_steps).backward()
            train_loss += loss.detach()
        set_schedule(optimizers, lr_scale, step, optimizer_config)
        if hp.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), hp.grad_clip_norm)
        for optimizer in optimizers:
            optimizer.step()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        return train_loss / grad_accum_steps

    checkpoints = CheckpointClock(hp.checkpoint_seconds) if hp.checkpoint_dir else None  # from now SIGTERM saves
    # Compile warm-up: run real steps so kernels are built, then put everything back as it was.
    if hp.warmup_steps > 0:
        model_state = copy.deepcopy(model.state_dict())
        optimizer_states = [copy.deepcopy(o.state_dict()) for o in optimizers]
        warmup_loader = DistributedTokenLoader(hp.data_path, rank, world_size, device)
        for warmup_step in range(hp.warmup_steps):
            train_step(warmup_loader, warmup_step, 1.0)
            log(f"warmup_step:{warmup_step + 1}/{hp.warmup_steps}")
        model.load_state_dict(model_state)
        for optimizer, state in zip(optimizers, optimizer_states, strict=True):
            optimizer.load_state_dict(state)  # moments, momentum buffers and learning rates
    loader = DistributedTokenLoader(hp.data_path, rank, world_size, device)

    max_wallclock_ms = hp.max_wallclock_seconds * 1000.0 if hp.max_wallclock_seconds > 0 else None
    training_time_ms = 0.0
    stop_after_step: int | None = None
    step = 0
    # Resume: weights, optimizer moments, step, time so far (the schedule's position), RNG and stream position.
    saved = load_checkpoint(hp.checkpoint_dir, rank, device) if hp.resume and hp.checkpoint_dir else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        for optimizer, optimizer_state in zip(optimizers, saved["optimizers"], strict=True):
            optimizer.load_state_dict(optimizer_state)
        loader.stream.restore(saved["stream"])
        restore_rng(saved["rng"])
        step, training_time_ms = saved["position"]["step"], saved["position"]["training_time_ms"]
        stop_after_step = saved["position"]["stop_after_step"]
        log(f"resumed_from:step_{step} of {hp.checkpoint_dir} after {training_time_ms:.0f}ms of training")

    def save(step: int) -> None:
        position = {"step": step, "training_time_ms": training_time_ms, "stop_after_step": stop_after_step}
        save_started = time.perf_counter()
        save_checkpoint(hp.checkpoint_dir, rank, distributed, model, optimizers, position, loader.stream.state())
        log(f"checkpoint:saved step_{step} in {1000.0 * (time.perf_counter() - save_started):.0f}ms")

    val_loss = val_bpb = float("nan")
    synchronize()
    started = time.perf_counter()
    while True:
        last_step = step == hp.iterations or (stop_after_step is not None and step >= stop_after_step)
        if last_step or (hp.val_loss_every > 0 and step % hp.val_loss_every == 0):
            synchronize()
            training_time_ms += 1000.0 * (time.perf_counter() - started)
            val_loss, val_bpb = evaluate(
                compiled, val_tokens, tables, hp.train_seq_len, val_batch_seqs, device, autocast
            )
            log(f"step:{step}/{hp.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
                f"train_time:{training_time_ms:.0f}ms step_avg:{training_time_ms / max(step, 1):.2f}ms")
            synchronize()
            started = time.perf_counter()
        if last_step:
            if stop_after_step is not None and step < hp.iterations:
                log(f"stopping_early: wallclock_cap train_time:{training_time_ms:.0f}ms step:{step}/{hp.iterations}")
            break
        elapsed_ms = training_time_ms + 1000.0 * (time.perf_counter() - started)
        train_loss = train_step(loader, step, lr_multiplier(hp, step, elapsed_ms))
        step += 1
        approx_ms = training_time_ms + 1000.0 * (time.perf_counter() - started)
        if hp.train_log_every > 0 and (step <= 10 or step % hp.train_log_every == 0 or stop_after_step is not None):
            log(f"step:{step}/{hp.iterations} train_loss:{train_loss.item():.4f} "
                f"train_time:{approx_ms:.0f}ms step_avg:{approx_ms / step:.2f}ms")
        reached_cap = max_wallclock_ms is not None and approx_ms >= max_wallclock_ms
        if distributed and max_wallclock_ms is not None:
            flag = torch.tensor(int(reached_cap), device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            reached_cap = bool(flag.item())
        if stop_after_step is None and reached_cap:
            stop_after_step = step
        if checkpoints is not None and checkpoints.due(distributed, device):  # not training time, as validation
            synchronize()
            training_time_ms += 1000.0 * (time.perf_counter() - started)
            save(step)
            checkpoints.saved()
            if checkpoints.terminated:
                log(f"checkpoint: SIGTERM, exiting at step_{step} to resume later")
                raise SystemExit(128 + signal.SIGTERM)
            synchronize()
            started = time.perf_counter()
    if checkpoints is not None:
        save(step)  # the trained weights: a run stopped during export resumes there
        checkpoints.release()
    pre_quant_val_loss, pre_quant_val_bpb = val_loss, val_bpb
    allocated_mib, reserved_mib = peak_memory_mib(device)
    log(f"peak memory allocated: {allocated_mib} MiB reserved: {reserved_mib} MiB")

    # Export, then score the artifact as a fresh reader would: load, dequantize, evaluate.
    label = artifact_label(hp.quant_bits, hp.compressor)
    artifact_path = Path(hp.artifact_dir).resolve() / f"final_model.int{hp.quant_bits}.{ARTIFACT_SUFFIX[hp.compressor]}"
    if master:
        state_dict = model.state_dict()
        blob, payload_bytes = pack_artifact(state_dict, hp.quant_bits, hp.compressor, hp.int8_scale_floor)
        artifact_path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = artifact_path.with_name(artifact_path.name + ".tmp")
        tmp_path.write_bytes(blob)
        os.replace(tmp_path, artifact_path)
        raw_bytes = sum(t.numel() * t.element_size() for t in state_dict.values())
        model_bytes, source_bytes = len(blob), code_bytes()
        log(f"Serialized model {label}: {model_bytes} bytes (payload:{payload_bytes} raw_state_dict:{raw_bytes} "
            f"payload_ratio:{raw_bytes / payload_bytes:.2f}x)")
        log(f"Code size: {source_bytes} bytes")
        log(f"Total submission size {label}: {model_bytes + source_bytes} bytes")
        margin = SIZE_LIMIT_BYTES - model_bytes - source_bytes
        log(f"size_limit:{SIZE_LIMIT_BYTES} bytes {'under' if margin >= 0 else 'OVER'} by {abs(margin)} bytes")
    if distributed:
        dist.barrier()
    model.load_state_dict(unpack_artifact(artifact_path.read_bytes()), strict=True)
    synchronize()
    eval_started = time.perf_counter()
    val_loss, val_bpb = evaluate(compiled, val_tokens, tables, hp.train_seq_len, val_batch_seqs, device, autocast)
    synchronize()
    eval_ms = 1000.0 * (time.perf_counter() - eval_started)
    score_label = "final_int8_zlib_roundtrip" if label == "int8+zlib" else f"final_int{hp.quant_bits}_roundtrip"
    log(f"{score_label} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{eval_ms:.0f}ms")
    log(f"{score_label}_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    if master:
        result = {
            "val_bpb": val_bpb,
            "val_loss": val_loss,
            "pre_quant_val_bpb": pre_quant_val_bpb,
            "pre_quant_val_loss": pre_quant_val_loss,
            "artifact_bytes": model_bytes + source_bytes,
            "model_bytes": model_bytes,
            "code_bytes": source_bytes,
            "train_seconds": training_time_ms / 1000.0,
            "eval_seconds": eval_ms / 1000.0,
            "steps": step,
            "tokens_seen": step * hp.train_batch_tokens,
            "step_ms": training_time_ms / max(step, 1),
            "peak_mem_mib": allocated_mib,
            "gpu_name": torch.cuda.get_device_name(device) if use_cuda else None,
            "gpu_count": world_size if use_cuda else 0,
            "artifact_path": str(artifact_path),
            "score_source": f"{score_label}_exact",
            "resumed": saved is not None,
        }
        # JSON has no NaN: a diverged run reports null scores rather than no record.
        result = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}
        log("GOLFQ_RESULT " + json.dumps(result, separators=(",", ":")))
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except (TrainConfigError, LoaderError, ShardError, FileNotFoundError) as error:
        print(f"train: error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
