"""Each built-in stopping rule, through the real runner, on every backend: the stopped state, its
events, its kept curve and result, and requeue."""

from __future__ import annotations

from pathlib import Path

import pytest

from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.workers.curves import References
from golfq.workers.runner import run_lease
from tests.contract.helpers import all_events, kinds
from tests.curve_helpers import curve_spec, finish_references

# rule -> (reference runs' starting val_bpb, the run's start, its env, the reason's start)
CASES = {
    "median": ([2.0, 2.02, 2.05, 2.08, 2.1], 2.3, {}, "median rule at 3"),
    "margin": ([2.0], 2.3, {}, "margin rule at 3"),  # default margin 0.05 over the best
    "patience": ([], 2.3, {"PLATEAU_AT": "20"}, "patience rule at "),
}
RULES = {"median": {"rule": "median"}, "margin": {"rule": "margin"},
         "patience": {"rule": "patience", "every": 10, "patience": 2}}


def _run(broker, lease, tmp_path: Path):
    return run_lease(broker, lease, work_root=tmp_path / "runs", worker_id="w", heartbeat_seconds=0.5,
                     progress_seconds=0.2, kill_grace=5.0, references=References())


@pytest.mark.parametrize("rule", sorted(CASES))
def test_a_rule_stops_a_run_through_the_runner_and_requeue_queues_it_again(broker, tmp_path, rule):
    references, start, env, reason = CASES[rule]
    finish_references(broker, references)
    spec = curve_spec(broker, start, stop=RULES[rule], **env)
    [job] = broker.submit([spec])
    lease = broker.claim("cpu", "w")
    assert lease is not None and lease.job_id == job.id
    result = _run(broker, lease, tmp_path)
    assert result.status == "stopped" and result.error.startswith(reason), result.error
    assert rule != "patience" or "no improvement" in result.error
    assert "saved" in Path(result.log_path).read_text()
    stopped = broker.get(job.id)
    assert stopped.state is JobState.STOPPED and stopped.result == result and stopped.error == result.error
    assert broker.stats().pools["cpu"].stopped == 1
    curve = broker.curve(job.id)
    assert curve and 30 <= curve[-1].train_seconds < 100  # kept, and ended early
    assert all(job.id not in p.job_ids for track in broker.tracks() for p in broker.front(track).points)
    assert broker.requeue([job.id]) == [job.id]
    again = broker.claim("cpu", "w")
    assert again.attempt == 2 and broker.curve(job.id) == [] and broker.curve(job.id, 1) == curve
    assert kinds(all_events(broker), job.id) == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.STOPPED,
                                                 EventKind.REQUEUED, EventKind.CLAIMED]
    [event] = [e for e in all_events(broker) if e.job_id == job.id and e.kind is EventKind.STOPPED]
    assert event.error == result.error and event.result == result and event.attempt == 1
