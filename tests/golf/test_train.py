"""`python -m golfq.workers.golf.train` end to end, as the runner starts it."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

from golfq.workers.golf.bundle import bundle_source
from golfq.workers.golf.model import GPT
from golfq.workers.golf.quantize import unpack_artifact
from golfq.workers.golf.train import Hyperparameters
from tests.golf.conftest import launch_trainer, run_trainer, tiny_env

RESULT_KEYS = {
    "val_bpb", "val_loss", "score_source", "pre_quant_val_bpb", "pre_quant_val_loss", "artifact_bytes",
    "model_bytes", "code_bytes", "train_seconds", "eval_seconds", "steps", "tokens_seen", "step_ms", "peak_mem_mib",
    "gpu_name", "gpu_count", "artifact_path", "resumed",
}


def last_match(lines: list[str], pattern: str) -> re.Match:
    matches = [m for m in (re.fullmatch(pattern, line) for line in lines) if m]
    assert matches, f"no line matches {pattern!r}"
    return matches[-1]


def test_end_to_end_prints_the_challenge_lines_and_the_record(stdlib_data, tmp_path):
    lines, result = run_trainer(tiny_env(stdlib_data, tmp_path))
    assert set(result) == RESULT_KEYS
    assert result["steps"] == 12 and result["tokens_seen"] == 12 * 2048
    assert result["gpu_name"] is None and result["gpu_count"] == 0
    assert math.isfinite(result["val_bpb"]) and 0 < result["val_bpb"] < 5

    step_line = last_match(lines, r"step:(\d+)/12 train_loss:([\d.]+) train_time:(\d+)ms step_avg:([\d.]+)ms")
    assert step_line.group(1) == "12"
    val_pattern = r"step:(\d+)/12 val_loss:([\d.]+) val_bpb:([\d.]+) train_time:\d+ms step_avg:[\d.]+ms"
    val_lines = [re.fullmatch(val_pattern, line) for line in lines]
    val_steps = [int(m.group(1)) for m in val_lines if m]
    assert val_steps == [0, 6, 12]
    first_loss, last_loss = [float(m.group(2)) for m in val_lines if m][::2]
    assert last_loss < first_loss - 0.5  # it learned something in 12 steps
    assert float([m for m in val_lines if m][-1].group(3)) == pytest.approx(result["pre_quant_val_bpb"], abs=1e-4)

    assert last_match(lines, r"peak memory allocated: (\d+) MiB reserved: (\d+) MiB")
    model_bytes = int(last_match(lines, r"Serialized model int8\+zlib: (\d+) bytes.*").group(1))
    code_bytes = int(last_match(lines, r"Code size: (\d+) bytes").group(1))
    total = int(last_match(lines, r"Total submission size int8\+zlib: (\d+) bytes").group(1))
    roundtrip = last_match(lines, r"final_int8_zlib_roundtrip val_loss:([\d.]+) val_bpb:([\d.]+) eval_time:(\d+)ms")
    exact = last_match(lines, r"final_int8_zlib_roundtrip_exact val_loss:(\d+\.\d{8}) val_bpb:(\d+\.\d{8})")
    assert lines.index(exact.group(0)) == len(lines) - 2  # the record is the very last line

    artifact = Path(result["artifact_path"])
    assert artifact.parent == tmp_path and artifact.stat().st_size == model_bytes == result["model_bytes"]
    assert code_bytes == result["code_bytes"] == len(bundle_source().encode("utf-8"))  # the one-file trainer's size
    assert total == result["artifact_bytes"] == model_bytes + code_bytes
    assert float(exact.group(2)) == pytest.approx(result["val_bpb"], abs=1e-8)
    assert float(roundtrip.group(2)) == pytest.approx(result["val_bpb"], abs=1e-4)
    assert abs(result["val_bpb"] - result["pre_quant_val_bpb"]) < 0.02  # int8 costs little

    # the artifact alone rebuilds the model (no pickle): load it into a fresh GPT
    model = GPT(Hyperparameters(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2).model_config())
    model.load_state_dict(unpack_artifact(artifact.read_bytes()), strict=True)


def test_int6_zstd_labels_follow_the_quantization(stdlib_data, tmp_path):
    env = tiny_env(stdlib_data, tmp_path, QUANT_BITS=6, COMPRESSOR="zstd", ITERATIONS=4, VAL_LOSS_EVERY=0,
                   WARMUP_STEPS=0)
    lines, result = run_trainer(env)
    assert last_match(lines, r"Total submission size int6\+zstd: (\d+) bytes").group(1) == str(result["artifact_bytes"])
    assert last_match(lines, r"final_int6_roundtrip_exact val_loss:\d+\.\d{8} val_bpb:(\d+\.\d{8})")
    assert result["artifact_path"].endswith(".int6.ptzst") and math.isfinite(result["val_bpb"])


def test_the_cuda_dtypes_train_and_export_on_cpu_too(stdlib_data, tmp_path):
    # EMBED_DTYPE=bf16 is the CUDA default; on CPU it is a setting: the bf16 embedding trains, exports and reloads
    env = tiny_env(stdlib_data, tmp_path, EMBED_DTYPE="bf16", ITERATIONS=4, VAL_LOSS_EVERY=0, WARMUP_STEPS=1)
    _, result = run_trainer(env)
    state = unpack_artifact(Path(result["artifact_path"]).read_bytes())
    assert state["tok_emb.weight"].dtype == torch.bfloat16 and state["blocks.0.attn.c_q.weight"].dtype == torch.float32
    assert math.isfinite(result["val_bpb"]) and result["val_bpb"] < 4.5


def test_stops_at_the_wallclock_cap_within_five_percent(stdlib_data, tmp_path):
    cap = 8.0
    env = tiny_env(stdlib_data, tmp_path, MAX_WALLCLOCK_SECONDS=cap, ITERATIONS=1_000_000, TRAIN_BATCH_TOKENS=512,
                   GRAD_ACCUM_STEPS=1, VAL_LOSS_EVERY=0, TRAIN_LOG_EVERY=50, WARMDOWN_ITERS=100)
    lines, result = run_trainer(env)
    stop = last_match(lines, r"stopping_early: wallclock_cap train_time:(\d+)ms step:(\d+)/1000000")
    train_ms = int(stop.group(1))
    assert cap * 1000 <= train_ms <= cap * 1000 * 1.05
    assert int(stop.group(2)) == result["steps"] > 20
    assert result["train_seconds"] == pytest.approx(train_ms / 1000, abs=0.001)
    assert math.isfinite(result["val_bpb"])


def test_two_cpu_processes_match_one(stdlib_data, tmp_path):
    _, single = run_trainer(tiny_env(stdlib_data, tmp_path / "one"))
    lines, ddp = run_trainer(tiny_env(stdlib_data, tmp_path / "two"), nproc=2)
    assert any(line.startswith("world_size:2 grad_accum_steps:4") for line in lines)
    assert sum(line.startswith("GOLFQ_RESULT") for line in lines) == 1  # only rank 0 prints
    # same data, same averaged gradients, Muon sharded across ranks: same model up to float noise
    assert ddp["pre_quant_val_bpb"] == pytest.approx(single["pre_quant_val_bpb"], abs=1e-4)
    assert ddp["val_bpb"] == pytest.approx(single["val_bpb"], abs=1e-4)
    assert ddp["steps"] == single["steps"] == 12


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"NUM_LAYERS": "nine"}, "NUM_LAYERS must be int, got 'nine'"),
        ({"VOCAB_SIZE": "512"}, "VOCAB_SIZE=512 does not match the tokenizer's 1024 pieces"),
        ({"TRAIN_BATCH_TOKENS": "1000"}, "TRAIN_BATCH_TOKENS=1000 must split"),
        ({"COMPRESSOR": "gzip"}, "COMPRESSOR must be one of zlib, zstd, lzma"),
        ({"EMBED_DTYPE": "fp16"}, "EMBED_DTYPE must be auto, bf16 or fp32, got 'fp16'"),
        ({"DEVICE": "tpu"}, "DEVICE must be cpu or cuda, got 'tpu'"),
    ],
)
def test_bad_settings_fail_with_one_line(stdlib_data, tmp_path, overrides, message):
    done = launch_trainer(tiny_env(stdlib_data, tmp_path, **overrides), timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr


def test_corrupt_shard_fails_with_one_line(stdlib_data, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for path in stdlib_data.data_path.glob("fineweb_*.bin"):
        (data / path.name).write_bytes(path.read_bytes())
    val = data / "fineweb_val_000000.bin"
    val.write_bytes(val.read_bytes()[:-3])
    done = launch_trainer(tiny_env(stdlib_data, tmp_path, DATA_PATH=str(data)), timeout=120)
    assert done.returncode == 2 and "truncated file" in done.stderr and str(val) in done.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_reports_the_gpu(stdlib_data, tmp_path):
    env = tiny_env(stdlib_data, tmp_path)
    env.pop("DEVICE")
    _, result = run_trainer(env)
    assert result["gpu_count"] == 1 and result["gpu_name"] and math.isfinite(result["val_bpb"])
