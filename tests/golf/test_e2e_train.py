"""A real tiny model trained through the queue.

SQLite broker -> local fleet -> runner -> `python -m golfq.workers.golf.train`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from golfq.core.backends import open_broker
from golfq.core.job import JobState

TINY = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "TRAIN_SEQ_LEN": "64",
        "TRAIN_BATCH_TOKENS": "1024", "GRAD_ACCUM_STEPS": "1", "ITERATIONS": "10", "WARMUP_STEPS": "0",
        "WARMDOWN_ITERS": "3", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "5", "VAL_MAX_TOKENS": "4096",
        "DEVICE": "cpu"}


@pytest.mark.slow
def test_a_real_model_trains_through_the_sqlite_queue_and_reaches_the_front(run_in_queue):
    run = run_in_queue("tiny", 7, TINY)
    stored = run.job
    assert run.summary.errors == []
    assert [r.spec_id for r in run.summary.results] == [stored.id]

    broker = open_broker(run.url)
    try:
        front = broker.front("cpu")
    finally:
        broker.close()
    assert stored.state is JobState.SUCCEEDED, stored.error
    result = stored.result
    assert result.succeeded and result.attempt == 1
    assert math.isfinite(result.val_bpb) and 0 < result.val_bpb < 10
    assert result.artifact_bytes > 0 and result.artifact_bytes == result.model_bytes + result.code_bytes
    assert result.steps == 10 and result.tokens_seen == 10 * 1024
    assert 0 < result.train_seconds <= result.total_seconds
    artifact = Path(result.artifact_path)
    assert artifact.is_file() and artifact.stat().st_size == result.model_bytes
    assert artifact.parent == run.work_root / f"{stored.id}-1" / "artifacts"
    log = Path(result.log_path).read_text()
    assert "final_int8_zlib_roundtrip_exact val_loss:" in log and f"val_bpb:{result.val_bpb:.8f}" in log
    assert "seed:7" in log and "train_seq_len:64" in log  # the spec's env and seed reached the process

    (point,) = front.points
    assert point.job_ids == (stored.id,) and point.seeds == 1
    assert point.val_bpb == result.val_bpb and point.artifact_bytes == result.artifact_bytes
    assert point.train_seconds == result.train_seconds and point.feasible
    assert front.results == 1
