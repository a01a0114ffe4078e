"""Live curves in the CLI and the client: `golfq status ID`, `golfq events --follow`, Client.curve,
`--set stop.rule=...`, sweep files with a rule, and `golfq wait` on a stopped job."""

from __future__ import annotations

import json

import pytest

from golfq.cli import jobs as jobs_cli
from golfq.cli.progress import ProgressFollower, curve_lines
from golfq.core.backends import open_broker
from golfq.core.job import JobState
from golfq.core.result import ProgressPoint, Result
from golfq.core.spec import parse_spec
from golfq.core.stopping import StopRule
from golfq.producer.client import Client
from tests.golfq_helpers import Cli, queue_url


@pytest.fixture
def queue(tmp_path):
    opened = open_broker(queue_url(tmp_path))
    yield opened
    opened.close()


@pytest.fixture
def golfq(capsys, monkeypatch, tmp_path) -> Cli:
    """`golfq` in-process against the `queue` fixture's SQLite file, run from tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GOLFQ_QUEUE", queue_url(tmp_path))
    monkeypatch.setenv("GOLFQ_WORK_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "data"))
    return Cli(capsys, monkeypatch)


def points(n: int, start: int = 0) -> list[ProgressPoint]:
    return [ProgressPoint(at=1_800_000_000.0 + 10 * i, step=100 * i, train_seconds=10.0 * i,
                          train_loss=4.0 - i / 10, val_bpb=2.0 - i / 100 if i % 2 else None, extra={"lr": 0.5})
            for i in range(start, start + n)]


def leased(queue, **fields):
    [job] = queue.submit([parse_spec({"pool": "cpu", **fields})])
    lease = queue.claim("cpu", "w")
    assert lease is not None and lease.job_id == job.id
    return lease


def test_status_shows_a_compact_curve_and_json_has_all_of_it(golfq, queue):
    lease = leased(queue)
    queue.report_progress(lease.job_id, lease.attempt, points(30))
    code, out, _ = golfq("status", lease.job_id)
    assert code == 0
    rows = out[out.index("curve"):].splitlines()
    assert rows[0].split() == ["curve", "step", "train_s", "train_loss", "val_bpb"]
    assert len(rows) == 1 + 8 + 1 and rows[-1].strip() == "(30 point(s) of attempt 1)"
    assert rows[1].split() == ["0", "0.0", "4.0000", "-"] and rows[-2].split() == ["2900", "290.0", "1.1000", "1.7100"]
    code, out, _ = golfq("status", lease.job_id, "--json")
    doc = json.loads(out)
    assert doc["state"] == "leased" and len(doc["curve"]) == 30 and doc["curve"][1]["val_bpb"] == 1.99
    assert Client(broker=queue).curve(lease.job_id) == points(30) == Client(broker=queue).curve(lease.job_id, 1)


def test_a_job_without_a_curve_prints_none():
    assert curve_lines([]) == []
    assert len(curve_lines(points(3))) == 4  # header and every point when there are few


def test_events_follow_prints_progress_of_running_jobs(golfq, queue, monkeypatch):
    lease = leased(queue)
    queue.report_progress(lease.job_id, lease.attempt, points(2))  # before the follower started: not shown
    rounds = iter(range(3))

    def sleep(_: float) -> None:
        round_ = next(rounds, None)
        if round_ is None:
            raise KeyboardInterrupt
        queue.report_progress(lease.job_id, lease.attempt, points(1, start=2 + round_))

    monkeypatch.setattr(jobs_cli.time, "sleep", sleep)
    monkeypatch.setattr("golfq.cli.progress.PROGRESS_POLL_SECONDS", 0.0)
    code, out, _ = golfq("events", "--follow", "--json")
    assert code == 130  # interrupted, as Ctrl-C would
    docs = [json.loads(line) for line in out.splitlines()]
    progress = [d["progress"] for d in docs if "progress" in d]
    assert [p["step"] for p in progress] == [200, 300, 400]
    assert progress[0] == {"job_id": lease.job_id, "attempt": 1, "at": 1_800_000_020.0, "step": 200,
                           "train_seconds": 20.0, "train_loss": 3.8, "extra": {"lr": 0.5}}
    assert [d["kind"] for d in docs if "kind" in d] == ["submitted", "claimed"]


def test_the_follower_reads_a_finished_attempt_once_more_for_its_last_points(queue):
    lease = leased(queue)
    follower = ProgressFollower(queue, every=0.0)
    assert follower.poll() == []
    queue.report_progress(lease.job_id, lease.attempt, points(2))
    queue.complete(lease, Result(spec_id=lease.job_id, attempt=1, status="succeeded", val_bpb=1.5))
    assert [p.step for _, _, p in follower.poll()] == [0, 100]
    assert follower.poll() == []


def test_a_rule_from_set_from_a_spec_file_and_from_a_sweep(golfq, queue, tmp_path):
    code, out, err = golfq("submit", "--set", "stop.rule=median", "--set", "stop.checkpoints=[120,300]",
                         "--set", "NUM_LAYERS=4", "--json")
    assert code == 0, err
    job = queue.get(json.loads(out)["id"])
    assert job.spec.stop == StopRule(rule="median", checkpoints=(120.0, 300.0))
    (tmp_path / "spec.toml").write_text('pool = "cpu"\nstop = "patience"\nNUM_LAYERS = 5\n')
    code, out, err = golfq("submit", "spec.toml", "--json")
    assert code == 0, err
    assert queue.get(json.loads(out)["id"]).spec.stop == StopRule(rule="patience")
    (tmp_path / "grid.toml").write_text('stop = {rule = "margin", margin = 0.05}\n[base]\npool = "cpu"\n'
                                        '[grid]\nMATRIX_LR = [0.02, 0.04]\n"stop.at" = ["seconds"]\n')
    code, out, err = golfq("sweep", "grid.toml", "--json")
    assert code == 0, err
    stops = {queue.get(json.loads(line)["id"]).spec.stop for line in out.splitlines()}
    assert stops == {StopRule(rule="margin", margin=0.05)}
    code, _, err = golfq("submit", "--set", "stop.rule=mean")
    assert code == 2 and "stop.rule: Invalid enum value 'mean'" in err


def test_wait_counts_a_stopped_job_as_stopped_not_failed(golfq, queue):
    lease = leased(queue)
    queue.stop(lease, "median rule at 180 s: val_bpb 1.5 > median 1.4 of 3 run(s)",
                Result(spec_id=lease.job_id, attempt=1, status="stopped", error="median rule at 180 s"))
    assert queue.get(lease.job_id).state is JobState.STOPPED
    code, out, err = golfq("wait", lease.job_id)
    assert code == 0 and "stopped" in out and "0 succeeded, 0 failed, 1 stopped" in err


def test_ops_requeue_stopped_queues_every_stopped_job_again(golfq, queue):
    lease = leased(queue)
    queue.stop(lease, "margin rule at 180 s")
    code, out, err = golfq("ops", "requeue", "--stopped", "--json")
    assert code == 0, err
    assert lease.job_id in out and queue.get(lease.job_id).state is JobState.QUEUED
