"""`golfq submission` for the built-in trainer: the folder's train_gpt.py runs by itself and reports the job's bytes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from golfq.core.broker import JobState

TINY = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "TRAIN_SEQ_LEN": "64",
        "TRAIN_BATCH_TOKENS": "1024", "GRAD_ACCUM_STEPS": "1", "ITERATIONS": "6", "WARMUP_STEPS": "0",
        "WARMDOWN_ITERS": "2", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "3", "VAL_MAX_TOKENS": "4096",
        "DEVICE": "cpu"}


@pytest.mark.slow
def test_the_submitted_train_gpt_runs_alone_and_matches_what_golfq_reported(run_in_queue, stdlib_data, tmp_path):
    run = run_in_queue("tiny builtin", 5, TINY)
    stored = run.job
    assert stored.state is JobState.SUCCEEDED, stored.error
    made = subprocess.run([sys.executable, "-m", "golfq", "submission", stored.id, "--out", str(tmp_path / "record"),
                           "--queue", run.url, "--work-dir", str(run.work_root), "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    written = json.loads(made.stdout)
    result = stored.result
    script = tmp_path / "record" / "train_gpt.py"
    doc = json.loads((tmp_path / "record" / "submission.json").read_text())
    assert written["files"][0] == str(script) and (tmp_path / "record" / "train.log").is_file()
    assert doc["bytes_code"] == script.stat().st_size == result.code_bytes
    assert doc["bytes_total"] == result.artifact_bytes == result.model_bytes + result.code_bytes
    assert doc["val_bpb"] == round(result.val_bpb, 8)
    assert doc["seed_results"]["5"]["score_source"] == "final_int8_zlib_roundtrip_exact"
    assert doc["pytorch_version"]

    # the folder alone: no golfq on the path, the challenge's environment variables, its own working directory
    run_dir = tmp_path / "alone"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "GOLFQ_DATA_DIR")}
    env.update(TINY, SEED="5", MAX_WALLCLOCK_SECONDS="120", DATA_PATH=str(stdlib_data.data_path),
               TOKENIZER_PATH=str(stdlib_data.tokenizer_path))
    done = subprocess.run([sys.executable, str(script)], cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    exact = re.search(r"^final_int8_zlib_roundtrip_exact val_loss:\d+\.\d{8} val_bpb:(\d+\.\d{8})$", out, re.MULTILINE)
    assert exact, out[-2000:]
    assert int(re.search(r"^Code size: (\d+) bytes$", out, re.MULTILINE).group(1)) == script.stat().st_size
    total = int(re.search(r"^Total submission size int8\+zlib: (\d+) bytes$", out, re.MULTILINE).group(1))
    model = (run_dir / "final_model.int8.ptz").stat().st_size
    assert total == model + script.stat().st_size
    # same seed, same settings, one CPU thread: the same model, so the same bytes and score as the job
    assert total == result.artifact_bytes
    assert float(exact.group(1)) == pytest.approx(result.val_bpb, abs=1e-6)
