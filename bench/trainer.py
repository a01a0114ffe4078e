"""Trainer throughput: golfq's built-in trainer, and the challenge's train_gpt.py beside it on CUDA.

    python -m bench.trainer                     # CPU tiny config (+ CUDA baseline config when a GPU is present)
    REFERENCE_TRAIN_GPT=/path/to/train_gpt.py python -m bench.trainer --cuda-steps 200

Both trainers run as subprocesses on the same shards with the same env-var
hyperparameters and the same number of steps (no wallclock cap); the table
shows step time, training tokens/s and val_bpb (before quantization) after
those steps. The reference script needs CUDA, so on CPU only golfq runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_CPU = dict(NUM_LAYERS=4, MODEL_DIM=128, NUM_HEADS=4, NUM_KV_HEADS=2, MLP_MULT=2, TRAIN_SEQ_LEN=256, TRAIN_BATCH_TOKENS=16384, VAL_MAX_TOKENS=65536)
BASELINE = dict(NUM_LAYERS=9, MODEL_DIM=512, NUM_HEADS=8, NUM_KV_HEADS=4, MLP_MULT=2, TRAIN_SEQ_LEN=1024, TRAIN_BATCH_TOKENS=524288, VAL_MAX_TOKENS=0)
REFERENCE_VAL_LINE = re.compile(r"step:(\d+)/(\d+) val_loss:\s*([\d.]+) val_bpb:\s*([\d.]+) train_time:\s*(\d+)ms step_avg:\s*([\d.]+)ms")


def run(command: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def golfq_run(env: dict[str, str], workdir: Path) -> dict[str, float]:
    output = run([sys.executable, "-m", "workers.golf.train"], {**env, "ARTIFACT_DIR": str(workdir)}, REPO_ROOT)
    record = json.loads(output.strip().splitlines()[-1].removeprefix("GOLFQ_RESULT "))
    return {"step_ms": record["step_ms"], "val_bpb": record["pre_quant_val_bpb"], "steps": record["steps"]}


def reference_run(script: Path, env: dict[str, str], workdir: Path) -> dict[str, float]:
    output = run([sys.executable, str(script)], env, workdir)  # it writes its checkpoints and logs into cwd
    matches = [m for m in map(REFERENCE_VAL_LINE.search, output.splitlines()) if m]
    if not matches:
        raise SystemExit(f"{script}: no 'step:N/M val_loss:... val_bpb:...' line in its output")
    last = matches[-1]
    return {"step_ms": float(last.group(6)), "val_bpb": float(last.group(4)), "steps": int(last.group(1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-steps", type=int, default=20)
    parser.add_argument("--cuda-steps", type=int, default=100)
    parser.add_argument("--source", default="stdlib", help="data to train on: stdlib (prepared here) or fineweb (already prepared)")
    parser.add_argument("--out", type=Path, default=None, help="data root (default $GOLFQ_DATA_DIR or ~/.cache/golfq/data)")
    args = parser.parse_args()

    import torch

    from workers.golf.prepare import dataset_names, dataset_paths, prepare

    root = args.out or Path(os.environ.get("GOLFQ_DATA_DIR") or Path.home() / ".cache" / "golfq" / "data").expanduser()
    if args.source == "fineweb":
        data_path, tokenizer_path = dataset_paths(*dataset_names("fineweb", 1024), root)
    else:
        prepared = prepare(args.source, 1024, root)
        data_path, tokenizer_path = prepared.data_path, prepared.tokenizer_path
    base_env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    base_env.update(DATA_PATH=str(data_path), TOKENIZER_PATH=str(tokenizer_path), VOCAB_SIZE="1024", MAX_WALLCLOCK_SECONDS="0",
                    VAL_LOSS_EVERY="0", TRAIN_LOG_EVERY="0", PYTHONPATH=str(REPO_ROOT))
    print(f"data: {data_path}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    header = f"{'device':<28} {'trainer':<10} {'config':<22} {'steps':>5} {'step_ms':>10} {'tokens/s':>12} {'val_bpb':>8}"
    print(header)

    def show(device: str, trainer: str, config: dict, result: dict[str, float]) -> None:
        shape = f"{config['NUM_LAYERS']}x{config['MODEL_DIM']} seq{config['TRAIN_SEQ_LEN']}"
        tokens_per_second = config["TRAIN_BATCH_TOKENS"] / result["step_ms"] * 1000
        print(f"{device:<28} {trainer:<10} {shape:<22} {result['steps']:>5} {result['step_ms']:>10.1f} {tokens_per_second:>12,.0f} {result['val_bpb']:>8.4f}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        cpu_env = {**base_env, **{k: str(v) for k, v in TINY_CPU.items()}, "ITERATIONS": str(args.cpu_steps), "WARMUP_STEPS": "2", "DEVICE": "cpu"}
        show("cpu", "golfq", TINY_CPU, golfq_run(cpu_env, Path(tmp)))
        if not torch.cuda.is_available():
            print("cuda: no GPU here; the baseline config and the reference train_gpt.py (CUDA only) were not run")
            return
        gpu = torch.cuda.get_device_name()
        cuda_env = {**base_env, **{k: str(v) for k, v in BASELINE.items()}, "ITERATIONS": str(args.cuda_steps), "WARMUP_STEPS": "20"}
        ours = golfq_run(cuda_env, Path(tmp))
        show(gpu, "golfq", BASELINE, ours)
        reference_script = os.environ.get("REFERENCE_TRAIN_GPT")
        if not reference_script:
            print("reference: set REFERENCE_TRAIN_GPT=/path/to/train_gpt.py to run the challenge's trainer beside it")
            return
        reference = reference_run(Path(reference_script).resolve(), cuda_env, Path(tmp))
        show(gpu, "reference", BASELINE, reference)
        print(f"step time golfq/reference: {ours['step_ms'] / reference['step_ms']:.3f}x  "
              f"val_bpb golfq-reference after {args.cuda_steps} steps: {ours['val_bpb'] - reference['val_bpb']:+.4f}")


if __name__ == "__main__":
    main()
