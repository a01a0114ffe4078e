"""What a worker does when things go wrong around the training process (issue 13's reliability items)."""

from __future__ import annotations

import logging

import pytest

from golfq.core.broker import BrokerError
from golfq.core.job import JobState
from golfq.core.result import FailureKind
from golfq.core.spec import parse_spec
from golfq.workers import runner
from golfq.workers.fleet import Fleet, FleetConfig
from tests.golfq_helpers import FINAL_LINES, broker  # noqa: F401 (fixture)
from tests.test_runner import lease_for, run


def test_a_runner_crash_fails_the_attempt_at_once_with_its_message(broker, tmp_path, monkeypatch):
    broker.submit([parse_spec({"pool": "cpu", "budget": {"retries": {"infra": 0}}})])

    def crash(*args, **kwargs):
        raise ValueError("embedded null byte")

    monkeypatch.setattr(runner, "run_lease", crash)
    fleet = Fleet(FleetConfig(queue=broker.url, pool="cpu", burst=True, work_root=tmp_path))
    summary = fleet.run()
    [job] = broker.list()
    assert job.state is JobState.DEAD  # not left leased until its lease expires
    assert job.error == "runner error: ValueError: embedded null byte"
    assert job.failures == {"infra": 1}
    assert summary.errors == [f"{job.id}: runner error: ValueError: embedded null byte"]


@pytest.mark.parametrize(("script", "kind", "words"), [
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", FailureKind.USER,
     "killed by signal 9 (SIGKILL: out of memory?)"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", FailureKind.INFRA, "killed by signal 15 (SIGTERM)"),
    ("import sys; sys.exit(128 + 9)", FailureKind.USER, "killed by signal 9"),  # torchrun's report of a killed rank
    ("import sys; sys.exit(3)", FailureKind.USER, "exited with code 3"),
])
def test_how_a_process_ended_decides_its_failure_class(broker, tmp_path, script, kind, words):
    lease = lease_for(broker, script, budget={"retries": {"infra": 0, "user": 0}})
    result = run(broker, lease, tmp_path)
    assert result.failure is kind and words in result.error


class _Outage:
    """A broker whose writes fail for the first `calls` reports, as during a store restart."""

    def __init__(self, inner, calls: int) -> None:
        self.inner, self.calls = inner, calls

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def complete(self, lease, result):
        if self.calls > 0:
            self.calls -= 1
            raise BrokerError("queue redis://db:6379/0: cannot reach Redis (Connection refused)")
        return self.inner.complete(lease, result)


def test_a_result_finished_during_an_outage_is_held_and_delivered(broker, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(runner, "HOLD_RETRY_SECONDS", 0.05)
    lease = lease_for(broker, FINAL_LINES)
    flaky = _Outage(broker, calls=5)
    with caplog.at_level(logging.WARNING, logger="golfq.runner"):
        result = run(flaky, lease, tmp_path)
    assert result.succeeded and flaky.calls == 0
    job = broker.get(lease.job_id)
    assert job.state is JobState.SUCCEEDED and job.result.val_bpb == result.val_bpb
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "holding the result" in said and "delivered after holding it" in said


def test_a_held_result_is_given_up_only_after_the_hold_time(broker, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "HOLD_RETRY_SECONDS", 0.05)
    monkeypatch.setattr(runner, "HOLD_RESULT_SECONDS", 0.3)
    lease = lease_for(broker, FINAL_LINES)
    with pytest.raises(BrokerError):
        run(_Outage(broker, calls=10**6), lease, tmp_path)


def test_the_builtin_trainer_without_prepared_data_fails_in_one_line(broker, tmp_path, monkeypatch):
    monkeypatch.setenv("GOLFQ_DATA_DIR", str(tmp_path / "empty"))
    broker.submit([parse_spec({"pool": "cpu"})])
    lease = broker.claim("cpu", "w")
    result = run(broker, lease, tmp_path)
    assert result.failure is FailureKind.USER and "\n" not in result.error
    assert str(tmp_path / "empty" / "datasets" / "fineweb10B_sp1024") in result.error
    assert "golfq data prepare --source fineweb" in result.error
    assert not (tmp_path / "runs" / f"{lease.job_id}-1" / "train.log").exists()  # nothing was started

