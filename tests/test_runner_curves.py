"""The runner's live curve and stopping rules, against a real script that prints a curve."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from golfq.core.backends import open_broker
from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.workers.curves import References
from golfq.workers.runner import run_lease
from tests.contract.helpers import all_events, kinds
from tests.curve_helpers import curve_spec, finish_references
from tests.golfq_helpers import queue_url, wait_for

INTERVAL = 0.2


@pytest.fixture
def queue(tmp_path):
    opened = open_broker(queue_url(tmp_path))
    yield opened
    opened.close()


def run(queue, lease, tmp_path: Path, **kwargs):
    return run_lease(queue, lease, work_root=tmp_path / "runs", worker_id="w", heartbeat_seconds=0.5,
                     progress_seconds=INTERVAL, kill_grace=5.0, references=References(), **kwargs)


def claim(queue, spec):
    queue.submit([spec])
    lease = queue.claim(spec.pool, "w")
    assert lease is not None and lease.job_id == spec.id
    return lease


def test_the_curve_is_in_the_queue_while_the_job_runs_one_point_per_interval_at_most(queue, tmp_path):
    lease = claim(queue, curve_spec(queue, 2.0, stop=None))
    out = {}
    runner = threading.Thread(target=lambda: out.setdefault("result", run(queue, lease, tmp_path)))
    runner.start()
    live = wait_for(lambda: queue.curve(lease.job_id), timeout=20)
    assert queue.get(lease.job_id).state is JobState.LEASED and live[0].step >= 1
    runner.join(timeout=30)
    assert out["result"].succeeded, out["result"].error
    curve = queue.curve(lease.job_id)
    # At most one point per interval: no span of INTERVAL seconds holds three points (two may sit either side
    # of an interval's edge), and no more points than intervals.
    assert all(later.at - earlier.at > INTERVAL for earlier, later in zip(curve, curve[2:], strict=False))
    assert len(curve) <= (out["result"].total_seconds // INTERVAL) + 1  # 400 progress lines over ~2.5 s
    assert all(p.val_bpb is not None and p.train_loss is not None for p in curve)  # a step's two lines as one
    assert curve[-1].step == 200 and curve[-1].train_seconds == 100.0
    assert queue.curve(lease.job_id, 1) == curve


def test_the_median_rule_stops_a_worse_run_sigterm_first_and_requeue_runs_it_to_the_end(queue, tmp_path):
    finish_references(queue, [2.0, 2.02, 2.05, 2.08, 2.1])  # at 30 s: 1.85 to 1.95
    lease = claim(queue, curve_spec(queue, 2.3, stop={"rule": "median"}))
    result = run(queue, lease, tmp_path)
    assert result.status == "stopped" and result.failure is None
    assert re.fullmatch(r"median rule at 3\d(\.\d)? s: val_bpb 2\.1\d+ > median 1\.(8|9)\d+ \+ 0\.02 of 5 run\(s\)",
                        result.error), result.error
    log = Path(result.log_path).read_text()
    assert "saved" in log  # the script had its SIGTERM and the grace to act on it
    assert log.index("saved") < log.index("[golfq] stop: median rule") < log.index("[golfq] stopped: return code 0")
    assert result.val_bpb is None and result.pre_quant_val_bpb is not None  # no score, the curve's figures kept
    assert 60 <= result.steps < 200 and result.total_seconds > 0
    job = queue.get(lease.job_id)
    assert job.state is JobState.STOPPED and job.result == result and job.error == result.error
    curve = queue.curve(lease.job_id, 1)
    assert curve and curve[-1].train_seconds >= 30 and curve[-1].step < 200
    assert queue.requeue([lease.job_id]) == [lease.job_id]
    again = queue.claim("cpu", "w")
    rerun = run(queue, again, tmp_path)
    assert rerun.succeeded, rerun.error  # someone overruled the rule: it is off for the rest of this job
    assert "stopping rule off: attempt 1 was stopped" in Path(rerun.log_path).read_text()
    assert queue.get(lease.job_id).state is JobState.SUCCEEDED and queue.curve(lease.job_id, 1) == curve
    assert kinds(all_events(queue), lease.job_id) == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.STOPPED,
                                                       EventKind.REQUEUED, EventKind.CLAIMED, EventKind.SUCCEEDED]


def test_a_run_better_than_the_median_runs_to_the_end(queue, tmp_path):
    finish_references(queue, [2.0, 2.02, 2.05, 2.08, 2.1])
    lease = claim(queue, curve_spec(queue, 1.95, stop={"rule": "median"}))
    result = run(queue, lease, tmp_path)
    assert result.succeeded, result.error
    log = Path(result.log_path).read_text()
    assert log.count("[golfq] keep: median rule at ") == 3 and "saved" not in log


def test_without_enough_references_the_median_rule_keeps_the_run(queue, tmp_path):
    finish_references(queue, [2.0, 2.02, 2.05, 2.08])
    lease = claim(queue, curve_spec(queue, 2.3, stop={"rule": "median"}))
    result = run(queue, lease, tmp_path)
    assert result.succeeded, result.error
    assert "4 reference run(s) reach it, need 5" in Path(result.log_path).read_text()
