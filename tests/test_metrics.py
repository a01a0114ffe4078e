"""The log parser on the four real record logs and on golfq's own GOLFQ_RESULT record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golfq.workers.metrics import parse_log, parse_log_file, parse_record, usable_score

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"

# From fixtures/logs/README.md (the last labelled evaluation and the artifact line of each log).
EXPECTED = {
    "baseline-2026-03-17": dict(score_label="final_int8_zlib_roundtrip_exact", val_loss=2.07269931,
                                val_bpb=1.22436570, artifact_bytes=15863489, code_bytes=47642,
                                model_bytes=15815847, train_seconds=600.038, steps=13780,
                                pre_quant_val_bpb=1.2172, eval_seconds=1.401, gpu_count=8, peak_mem_mib=10184),
    "xsa-int6-2026-03-20": dict(score_label="final_int6_sliding_window_exact", val_loss=1.90301335,
                                val_bpb=1.12707468, artifact_bytes=15534645, code_bytes=66133,
                                model_bytes=15468512, train_seconds=600.021, steps=7103,
                                pre_quant_val_bpb=1.1427, pre_quant_val_loss=1.9293, eval_seconds=69.809),
    "legal-ttt-2026-03-23-seed1337": dict(score_label="legal_ttt_exact", val_loss=1.88976776, val_bpb=1.11922988,
                                          artifact_bytes=15977386, code_bytes=89458, train_seconds=600.128,
                                          steps=7179, eval_seconds=410.268),
    "phased-ttt-2026-04-14-seed0": dict(score_label="quantized_ttt_phased", val_loss=2.76738841, val_bpb=1.07134229,
                                        artifact_bytes=15939841, code_bytes=27610, model_bytes=15912231,
                                        train_seconds=596.103, steps=4967, pre_quant_val_bpb=1.0716,
                                        eval_seconds=332.086, gpu_count=8),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_record_logs(name):
    metrics = parse_log_file(LOGS / f"{name}.log")
    for key, want in EXPECTED[name].items():
        got = getattr(metrics, key)
        assert got == pytest.approx(want, abs=1e-9) if isinstance(want, float) else got == want, (key, got, want)
    # code + model is the artifact in every log that prints both
    if metrics.model_bytes is not None:
        assert metrics.model_bytes + metrics.code_bytes == metrics.artifact_bytes


@pytest.mark.parametrize("name,seed", [("baseline-2026-03-17", None), ("xsa-int6-2026-03-20", None),
                                       ("phased-ttt-2026-04-14-seed0", "0")])
def test_agrees_with_submission_json(name, seed):
    submission = json.loads((LOGS / f"{name}.submission.json").read_text())
    metrics = parse_log_file(LOGS / f"{name}.log")
    if seed is not None:  # several seeds: the top level is their mean, the per-seed figures are ours
        one = submission["seed_results"][seed]
        assert metrics.val_bpb == pytest.approx(one["val_bpb"], abs=5e-6)
        assert metrics.artifact_bytes == one["artifact_bytes"]
    else:
        assert metrics.val_bpb == pytest.approx(submission["val_bpb"], abs=1e-8)
        assert metrics.artifact_bytes == submission["bytes_total"]


RECORD = {"val_bpb": 1.2345, "val_loss": 2.1, "pre_quant_val_bpb": 1.2, "pre_quant_val_loss": 2.0,
          "artifact_bytes": 9_000_000, "model_bytes": 8_950_000, "code_bytes": 50_000, "train_seconds": 42.5,
          "eval_seconds": 3.0, "steps": 100, "tokens_seen": 52_428_800, "step_ms": 425.0, "peak_mem_mib": 1234.0,
          "gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 1, "artifact_path": "/tmp/a/model.int8.ptz"}


def test_golfq_record_alone_gives_every_field():
    metrics = parse_log("hello\nGOLFQ_RESULT " + json.dumps(RECORD) + "\n")
    assert metrics.fields() == RECORD
    assert metrics.score_label == "GOLFQ_RESULT"


def test_golfq_record_wins_where_both_are_present():
    log = "\n".join([
        "step:50/100 val_loss:2.5 val_bpb:1.5 train_time:10000ms step_avg:200.00ms",
        "Total submission size int8+zlib: 15000000 bytes",
        "final_int8_zlib_roundtrip_exact val_loss:2.40000000 val_bpb:1.40000000",
        'GOLFQ_RESULT {"val_bpb": 1.3, "artifact_bytes": 14000000}',
    ])
    metrics = parse_log(log)
    assert (metrics.val_bpb, metrics.artifact_bytes) == (1.3, 14_000_000)
    assert metrics.val_loss == 2.4  # fields the record leaves out still come from the log
    assert metrics.train_seconds == 10.0 and metrics.steps == 50


def test_bad_records_spoil_nothing():
    assert parse_record("GOLFQ_RESULT {not json") == {}
    assert parse_record("GOLFQ_RESULT [1, 2]") == {}
    assert parse_record('GOLFQ_RESULT {"val_bpb": "fast", "steps": 7, "extra": 1}') == {"steps": 7}
    assert parse_record('[rank0]: GOLFQ_RESULT {"val_bpb": 1.1}') == {"val_bpb": 1.1}
    log = "final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.25\nGOLFQ_RESULT {broken"
    assert parse_log(log).val_bpb == 1.25


def test_a_diverged_run_has_no_usable_score():
    # the built-in trainer reports null scores for NaN; the log line says nan
    log = 'final_int8_zlib_roundtrip_exact val_loss:nan val_bpb:nan\nGOLFQ_RESULT {"val_bpb": null, "steps": 3}'
    metrics = parse_log(log)
    assert metrics.steps == 3
    assert not usable_score(metrics)


def test_with_no_labelled_evaluation_the_last_step_evaluation_is_the_score():
    log = "\n".join([
        "step:0/20 val_loss:6.9 val_bpb:4.1 train_time:0ms step_avg:0.01ms",
        "4967/20000 val_loss: 2.7681 val_bpb: 1.0716",
        "diagnostic pre-quantization post-ema val_loss:2.76680431 val_bpb:1.07108165 eval_time:6282ms",
        "DIAGNOSTIC post_ema val_loss:1.9196 val_bpb:1.1369 eval_time:1971ms",
        "ttt_sliding:done val_loss=1.889768 val_bpb=1.119230 elapsed=409.8s",
        '    log0(f"final_int8_zlib_roundtrip_exact val_loss:{q_val_loss:.8f} val_bpb:{q_val_bpb:.8f}")',
        "step:4980/20000 train_loss:2.7000 train_time:596000ms step_avg:119.70ms",
    ])
    metrics = parse_log(log)
    # diagnostic lines, `ttt_sliding:done` and printed source are never the score; the step evaluation is
    assert (metrics.val_bpb, metrics.val_loss, metrics.score_label) == (1.0716, 2.7681, "step:4967/20000")
    assert (metrics.pre_quant_val_bpb, metrics.steps) == (1.0716, 4980)
    assert parse_log("\n".join(log.splitlines()[2:])).val_bpb is None  # no evaluation of either kind


def test_a_record_log_cut_before_its_final_lines_is_scored_by_its_last_step_evaluation():
    lines = (LOGS / "phased-ttt-2026-04-14-seed0.log").read_text().splitlines()
    cut = next(i for i, line in enumerate(lines) if line.startswith("diagnostic "))
    metrics = parse_log("\n".join(lines[:cut]))
    assert (metrics.score_label, metrics.val_bpb, metrics.val_loss) == ("step:4967/20000", 1.0716, 2.7681)


def test_fields_between_the_label_and_the_scores_are_read():
    # the tail of records/track_10min_16mb/2026-03-19_MixedQuant_Int6Int8_SlidingWindow/train.log
    log = "\n".join([
        "step:12395/20000 val_loss:2.0126 val_bpb:1.1920 train_time:600044ms step_avg:48.41ms",
        "Total submission size int6+zlib-9: 15353490 bytes",
        "final_int6_roundtrip val_loss:2.0203 val_bpb:1.1965 eval_time:1547ms",
        "final_int6_roundtrip_exact val_loss:2.02025601 val_bpb:1.19650941",
        "final_sliding_window_eval stride:64 val_loss:1.9637 val_bpb:1.1630 eval_time:72650ms",
        "final_sliding_window_eval_exact stride:64 val_loss:1.96369923 val_bpb:1.16301431",
    ])
    metrics = parse_log(log)
    assert metrics.score_label == "final_sliding_window_eval_exact"
    assert (metrics.val_bpb, metrics.val_loss) == (1.16301431, 1.96369923)
    assert metrics.eval_seconds == pytest.approx(72.65) and metrics.artifact_bytes == 15353490
    assert parse_log("final_x chunk:256 lr:0.002 val_loss:1.5 val_bpb:0.9 eval_time:3s").val_bpb == 0.9
    assert parse_log("final_x stride 64 val_loss:1.5 val_bpb:0.9").val_bpb is None  # free text is not a field


def test_the_golfq_record_names_its_score_line():
    log = "final_int8_zlib_roundtrip_exact val_loss:2.0 val_bpb:1.25\n" + \
        'GOLFQ_RESULT {"val_bpb": 1.25, "score_source": "final_int8_zlib_roundtrip_exact"}'
    metrics = parse_log(log)
    assert metrics.score_label == "final_int8_zlib_roundtrip_exact" and "score_source" not in metrics.fields()


def test_exact_twin_is_preferred_whatever_the_order():
    log = "\n".join([
        "final_sliding_window_exact val_loss:1.90301335 val_bpb:1.12707468",
        "final_sliding_window val_loss:1.9030 val_bpb:1.1271 stride:64 eval_time:69809ms",
    ])
    metrics = parse_log(log)
    assert (metrics.score_label, metrics.val_bpb, metrics.eval_seconds) == (
        "final_sliding_window_exact", 1.12707468, 69.809)


def test_uncompressed_size_line_only_when_nothing_else():
    assert parse_log("Total submission size: 67272625 bytes").artifact_bytes == 67272625
    both = "Total submission size: 67272625 bytes\nTotal submission size int8+zlib: 15863489 bytes"
    assert parse_log(both).artifact_bytes == 15863489


def test_training_time_units():
    assert parse_log("500/20000 train_loss: 3.2 train_time: 0.8m tok/s: 8318423").train_seconds == pytest.approx(48.0)
    assert parse_log("step:3/9 train_loss:7.6 train_time:246ms step_avg:81.97ms").step_ms == 81.97


def test_total_eval_time_is_the_eval_time_when_the_score_line_has_none():
    lines = ["stopping_early: wallclock_cap train_time: 599592ms step: 4945/20000",
             "quantized_ttt_phased val_loss:2.31944212 val_bpb:1.05989454", "total_eval_time:508.8s"]
    assert parse_log("\n".join(lines)).eval_seconds == pytest.approx(508.8)
    assert parse_log("\n".join(lines[:2])).eval_seconds is None
