"""Trainer throughput: golfq's built-in trainer, and the challenge's train_gpt.py beside it on CUDA.

    python -m bench.trainer                                   # CPU tiny config; on a GPU also the baseline config
    python -m bench.trainer --reference /path/to/train_gpt.py --cuda-steps 100   # + the reference, side by side

On a GPU machine one command gives every figure: golfq and the reference (flag
--reference or REFERENCE_TRAIN_GPT) train the baseline configuration on the same
shards with the same env-var hyperparameters for the same steps (no wallclock
cap), then the table shows step time, training tokens/s, peak memory, val_bpb
before and after the int8+zlib round trip, and the model's bytes, with golfq's
ratios to the reference; last it runs the trainer's CUDA test. Both outputs are
read with golfq's own log parser. On CPU only golfq trains (the reference needs CUDA),
with the reference's int8 scale floor and without it (--cpu-bf16: also the bf16 embedding);
given the reference, the CPU also exports one default-size state dict both ways
(golfq's pack_artifact vs the reference's own quantize + torch.save + zlib).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from golfq.core.settings import settings

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CPU = dict(NUM_LAYERS=4, MODEL_DIM=128, NUM_HEADS=4, NUM_KV_HEADS=2, MLP_MULT=2,
                TRAIN_SEQ_LEN=256, TRAIN_BATCH_TOKENS=16384)
BASELINE = dict(NUM_LAYERS=9, MODEL_DIM=512, NUM_HEADS=8, NUM_KV_HEADS=4, MLP_MULT=2,
                TRAIN_SEQ_LEN=1024, TRAIN_BATCH_TOKENS=524288)
CPU_VARIANTS = {"golfq": {}, "golfq INT8_SCALE_FLOOR=0": {"INT8_SCALE_FLOOR": "0"}}
CPU_BF16 = {"golfq EMBED_DTYPE=bf16": {"EMBED_DTYPE": "bf16"}}  # about 8x slower on a CPU without bf16 units
HEADER = ("| device | trainer | config | steps | step ms | tokens/s | peak MiB | val_bpb pre-quant | val_bpb int8 "
          "| model bytes | wall s |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")


def run(command: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def measure(command: list[str], env: dict[str, str], cwd: Path, timeout: float) -> dict[str, float]:
    from golfq.workers.metrics import parse_log

    started = time.monotonic()
    metrics = parse_log(run(command, env, cwd, timeout))
    figures = {"wall_s": time.monotonic() - started, "steps": metrics.steps, "step_ms": metrics.step_ms,
               "peak_mib": metrics.peak_mem_mib, "pre_bpb": metrics.pre_quant_val_bpb, "bpb": metrics.val_bpb,
               "model_bytes": metrics.model_bytes}
    missing = [k for k, v in figures.items() if v is None]
    if missing:
        raise SystemExit(f"{' '.join(command)}: its log gave no {', '.join(missing)}")
    return figures


def row(device: str, trainer: str, config: dict, r: dict[str, float]) -> str:
    shape = f"{config['NUM_LAYERS']}x{config['MODEL_DIM']} seq{config['TRAIN_SEQ_LEN']}"
    tokens_per_second = config["TRAIN_BATCH_TOKENS"] / r["step_ms"] * 1000
    return (f"| {device} | {trainer} | {shape} | {r['steps']} | {r['step_ms']:.2f} | {tokens_per_second:,.0f} | "
            f"{r['peak_mib']:.0f} | {r['pre_bpb']:.4f} | {r['bpb']:.4f} | {r['model_bytes']:,} | {r['wall_s']:.0f} |")


def export_sizes(reference_path: Path) -> None:
    """The baseline model at init and after 2 Muon steps, exported by golfq and by the reference's own functions."""
    import importlib.util
    import io
    import zlib

    import torch

    from golfq.workers.golf.model import GPT, GPTConfig, cast_like_reference
    from golfq.workers.golf.optim import OptimizerConfig, build_optimizers
    from golfq.workers.golf.quantize import pack_artifact, unpack_artifact

    spec = importlib.util.spec_from_file_location("reference_train_gpt", reference_path)
    assert spec is not None and spec.loader is not None
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    torch.manual_seed(1337)
    model = cast_like_reference(GPT(GPTConfig()))
    optimizers = build_optimizers(model, OptimizerConfig(), True, torch.device("cpu"))
    print("\n| 9x512 state dict | golfq | golfq INT8_SCALE_FLOOR=0 | reference | golfq/reference "
          "| dequantized equal |\n|---|---:|---:|---:|---:|---|")
    for steps in (0, 2):
        for _ in range(steps):
            tokens = torch.randint(0, 1024, (4, 256))
            model(tokens, torch.roll(tokens, -1, 1)).backward()
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        state = model.state_dict()
        ours, _ = pack_artifact(state, 8, "zlib")
        full, _ = pack_artifact(state, 8, "zlib", int8_scale_floor=False)
        quantized, _ = reference.quantize_state_dict_int8(state)
        buffer = io.BytesIO()
        torch.save(quantized, buffer)
        theirs = zlib.compress(buffer.getvalue(), level=9)
        back, back_reference = unpack_artifact(ours), reference.dequantize_state_dict_int8(quantized)
        equal = all(torch.equal(back[name], back_reference[name]) for name in state)
        print(f"| {'at init' if steps == 0 else 'after 2 steps (4x256 tokens)'} | {len(ours):,} | {len(full):,} | "
              f"{len(theirs):,} | {len(ours) / len(theirs):.4f} | {equal} |", flush=True)


def data_paths(source: str, root: Path) -> tuple[Path, Path]:
    from golfq.workers.golf.prepare import dataset_names, dataset_paths, prepare

    if source == "fineweb":  # already prepared there: `golfq data prepare --source fineweb`
        return dataset_paths(*dataset_names("fineweb", 1024), root)
    prepared = prepare(source, 1024, root)
    return prepared.data_path, prepared.tokenizer_path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cpu-steps", type=int, default=20)
    parser.add_argument("--cuda-steps", type=int, default=100)
    parser.add_argument("--reference", type=Path, default=os.environ.get("REFERENCE_TRAIN_GPT") or None,
                        help="the challenge's train_gpt.py (default $REFERENCE_TRAIN_GPT)")
    parser.add_argument("--source", default="stdlib", help="stdlib (prepared here) or fineweb (already prepared)")
    parser.add_argument("--out", type=Path, default=None,
                        help="data root (default $GOLFQ_DATA_DIR or ~/.cache/golfq/data)")
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA comparison")
    parser.add_argument("--cpu-bf16", action="store_true", help="also train on CPU with the bf16 embedding (slow)")
    parser.add_argument("--skip-cuda-test", action="store_true", help="do not run the trainer's CUDA test afterwards")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per training run")
    args = parser.parse_args()

    import torch

    root = args.out or settings().data_dir
    data_path, tokenizer_path = data_paths(args.source, root)
    base_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    base_env.update(DATA_PATH=str(data_path), TOKENIZER_PATH=str(tokenizer_path), VOCAB_SIZE="1024",
                    MAX_WALLCLOCK_SECONDS="0", VAL_LOSS_EVERY="0", TRAIN_LOG_EVERY="0", PYTHONPATH=str(REPO_ROOT))
    golfq = [sys.executable, "-m", "golfq.workers.golf.train"]
    print(f"data: {data_path}  torch {torch.__version__}  threads {torch.get_num_threads()}  cpus {os.cpu_count()}",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_cpu:
            print(HEADER, flush=True)
            cpu_env = {**base_env, **{k: str(v) for k, v in TINY_CPU.items()}, "ITERATIONS": str(args.cpu_steps),
                       "WARMUP_STEPS": "2", "WARMDOWN_ITERS": str(args.cpu_steps // 4), "VAL_MAX_TOKENS": "65536",
                       "DEVICE": "cpu", "ARTIFACT_DIR": tmp}
            for name, extra in {**CPU_VARIANTS, **(CPU_BF16 if args.cpu_bf16 else {})}.items():
                figures = measure(golfq, {**cpu_env, **extra}, REPO_ROOT, args.timeout)
                print(row("cpu", name, TINY_CPU, figures), flush=True)
            if args.reference is not None:
                export_sizes(Path(args.reference).resolve())
        if not torch.cuda.is_available():
            print("cuda: no GPU here; the baseline config and the reference train_gpt.py (CUDA only) were not run")
            return
        gpu = torch.cuda.get_device_name()
        print("\n" + HEADER, flush=True)
        # The whole validation set on both sides: the reference has no VAL_MAX_TOKENS.
        cuda_env = {**base_env, **{k: str(v) for k, v in BASELINE.items()}, "ITERATIONS": str(args.cuda_steps),
                    "WARMUP_STEPS": "20", "WARMDOWN_ITERS": str(max(args.cuda_steps // 5, 1)), "VAL_MAX_TOKENS": "0"}
        reference = None
        if args.reference is not None:
            workdir = Path(tmp) / "reference"  # it writes logs/ and final_model.* into its working directory
            workdir.mkdir()
            reference = measure([sys.executable, str(Path(args.reference).resolve())], cuda_env, workdir, args.timeout)
            print(row(gpu, "reference", BASELINE, reference), flush=True)
        ours = measure(golfq, {**cuda_env, "ARTIFACT_DIR": tmp}, REPO_ROOT, args.timeout)
        print(row(gpu, "golfq", BASELINE, ours), flush=True)
        if reference is None:
            print("reference: pass --reference /path/to/train_gpt.py (or REFERENCE_TRAIN_GPT) to run it beside golfq")
        else:
            print(f"\ngolfq / reference after {args.cuda_steps} steps: "
                  f"step time {ours['step_ms'] / reference['step_ms']:.3f}x (target <= 1.0x), "
                  f"peak memory {ours['peak_mib'] / reference['peak_mib']:.3f}x, "
                  f"model bytes {ours['model_bytes'] / reference['model_bytes']:.3f}x, "
                  f"val_bpb pre-quant {ours['pre_bpb'] - reference['pre_bpb']:+.4f}, "
                  f"int8 {ours['bpb'] - reference['bpb']:+.4f}")
    if not args.skip_cuda_test:
        test = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/golf/test_train.py",
                "-k", "cuda"]
        done = subprocess.run(test, cwd=REPO_ROOT, capture_output=True, text=True, timeout=args.timeout, check=False)
        summary = (done.stdout.strip().splitlines() or [""])[-1]
        print(f"\ncuda test ({' '.join(test[2:])}): exit {done.returncode}: {summary}")


if __name__ == "__main__":
    main()
