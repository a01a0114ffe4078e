"""Live curves: progress lines parsed from real record logs, and the one-point-per-interval capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from golfq.core.result import ProgressPoint
from golfq.workers.progress import ProgressCapture, parse_progress

FIXTURES = Path(__file__).parent / "fixtures" / "progress"


def points_of(name: str) -> list[ProgressPoint]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [p for line in lines if (p := parse_progress(line)) is not None]


@pytest.mark.parametrize("line, want", [
    ("step:200/20000 val_loss:2.8397 val_bpb:1.6774 train_time:8699ms step_avg:43.49ms",
     {"step": 200, "val_loss": 2.8397, "val_bpb": 1.6774, "train_seconds": 8.699}),
    ("step:1/20000 train_loss:6.9408 train_time:24ms step_avg:23.99ms",
     {"step": 1, "train_loss": 6.9408, "train_seconds": 0.024}),
    ("4000/20000 val_loss: 2.8862 val_bpb: 1.1173", {"step": 4000, "val_loss": 2.8862, "val_bpb": 1.1173}),
    ("500/20000 train_loss: 3.2654 train_time: 0.8m tok/s: 8318423",
     {"step": 500, "train_loss": 3.2654, "train_seconds": 48.0}),
    ("stopping_early: wallclock_cap train_time: 596103ms step: 4967/20000", {"step": 4967, "train_seconds": 596.103}),
    ('GOLFQ_PROGRESS {"step": 30, "train_seconds": 1.5, "val_bpb": 1.9, "lr": 0.02, "note": "x", "ok": true}',
     {"step": 30, "train_seconds": 1.5, "val_bpb": 1.9, "extra": {"lr": 0.02}}),
    ('[rank0]: GOLFQ_PROGRESS {"train_loss": 3}', {"train_loss": 3.0}),
])
def test_a_progress_line_becomes_a_point(line, want):
    assert parse_progress(line, at=5.0) == ProgressPoint(at=5.0, **want)


@pytest.mark.parametrize("line", [
    "warmup_step:1/20", "warmup_step: 2/20", "loop_warmup_step: 1/20",
    "final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570",
    "diagnostic pre-quantization post-ema val_loss:2.76680431 val_bpb:1.07108165 eval_time:6282ms",
    'f"step:{step}/{args.iterations} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "',
    "layer_loop:enabled step:2195 frac:0.350", "swa:start step:6500", "step:5/20",
    "GOLFQ_PROGRESS not json", 'GOLFQ_PROGRESS ["a"]', 'GOLFQ_PROGRESS {"name": "only text"}',
    "x" * 50 + 'GOLFQ_PROGRESS {"step": 1}',
])
def test_other_lines_are_not_progress(line):
    assert parse_progress(line) is None


def test_a_diverged_loss_is_kept_as_nan():
    point = parse_progress("step:9/100 train_loss:nan train_time:9ms step_avg:1.00ms")
    assert point is not None and point.train_loss != point.train_loss


@pytest.mark.parametrize("name, count, scored, last_step, last_bpb", [
    ("baseline-2026-03-17.log", 356, 70, 13780, 1.2172),
    ("legal-ttt-2026-03-23-seed1337.log", 28, 3, 7179, 1.1379),
    ("phased-ttt-2026-04-14-seed0.log", 18, 3, 4967, 1.0716),
    ("xsa-int6-2026-03-20.log", 47, 1, 7103, 1.1427),
])
def test_the_record_logs_step_curves(name, count, scored, last_step, last_bpb):
    points = points_of(name)
    assert len(points) == count  # every step line, plus stopping_early; no warmup, final or source line
    assert sum(p.val_bpb is not None for p in points) == scored
    assert points[-1].step == last_step  # stopping_early's
    assert [p.val_bpb for p in points if p.val_bpb is not None][-1] == last_bpb
    steps = [p.step for p in points if p.train_loss is not None]
    assert steps == sorted(steps)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_capture_keeps_at_most_one_point_per_interval_and_never_drops_a_val_bpb():
    clock = Clock()
    capture = ProgressCapture(interval=10.0, clock=clock)
    stored: list[ProgressPoint] = []
    for step in range(1, 2001):  # 2,000 steps at 20 per second: 100 s, a val line every 250 steps
        clock.now = 1000.0 + step * 0.05
        line = f"step:{step}/2000 train_loss:{5 - step / 1000:.4f} train_time:{step * 50}ms step_avg:50.00ms\n"
        if step % 250 == 0:
            line += (f"step:{step}/2000 val_loss:{4 - step / 1000:.4f} val_bpb:{2 - step / 2000:.4f} "
                     f"train_time:{step * 50}ms\n")
        capture.feed(line.encode())
        if step % 7 == 0:  # the supervision loop polls now and then
            stored += capture.take()
    capture.finish()
    stored += capture.take(final=True)
    windows = [int((p.at - capture.started) // 10.0) for p in stored]
    assert len(windows) == len(set(windows)) and len(stored) <= 11  # at most one point per interval
    assert capture.lines == 2008
    scored = [p for p in stored if p.val_bpb is not None]
    assert [p.step for p in scored] == list(range(250, 2001, 250))  # each interval's val_bpb kept
    assert all(p.train_loss is not None for p in scored)  # the train line of the same step merged in
    assert stored[-1].step == 2000


def test_capture_joins_lines_split_across_chunks_and_reads_a_last_line_without_newline():
    clock = Clock()
    capture = ProgressCapture(interval=1.0, clock=clock)
    text = b"noise\nstep:1/9 train_loss:4.0 train_time:5ms\nstep:2/9 val_loss:3.0 val_bpb:1.5 train_time:9ms"
    for i in range(0, len(text), 7):
        capture.feed(text[i:i + 7])
    assert capture.take(final=True) == [ProgressPoint(at=1000.0, step=1, train_seconds=0.005, train_loss=4.0)]
    capture.finish()
    assert capture.take(final=True) == [ProgressPoint(at=1000.0, step=2, train_seconds=0.009, val_loss=3.0,
                                                      val_bpb=1.5)]


def test_a_clock_stepping_back_does_not_open_a_second_point_for_an_interval():
    clock = Clock()
    capture = ProgressCapture(interval=10.0, clock=clock)
    clock.now = 1025.0
    capture.feed(b"step:1/9 train_loss:4.0\n")
    assert capture.take() == []
    clock.now = 1001.0
    capture.feed(b"step:2/9 train_loss:3.0\n")
    assert capture.take() == []
    clock.now = 1039.0
    assert [p.step for p in capture.take()] == [2]
