"""Live curves and early stops, on every backend."""

from __future__ import annotations

from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.result import ProgressPoint, Result
from tests.contract.helpers import all_events, kinds, spec, success


def _points(n: int, start: int = 0) -> list[ProgressPoint]:
    return [ProgressPoint(at=1000.0 + i, step=(i + 1) * 10, train_seconds=float(i), train_loss=5.0 - i / 100,
                          val_bpb=2.0 - i / 1000 if i % 10 == 9 else None, extra={"lr": 0.01} if i == 0 else {})
            for i in range(start, start + n)]


def test_a_curve_holds_every_point_of_its_attempt_in_order(broker):
    [job] = broker.submit([spec()])
    lease = broker.claim("cpu", "w")
    first, second = _points(3), _points(300, start=3)  # several pages on backends that page
    broker.report_progress(job.id, lease.attempt, first)
    broker.report_progress(job.id, lease.attempt, second)
    curve = broker.curve(job.id)
    assert curve == first + second
    assert broker.curve(job.id, lease.attempt) == curve
    assert curve[0].extra == {"lr": 0.01} and curve[9].val_bpb is not None and curve[8].val_bpb is None


def test_each_attempt_keeps_its_own_curve(broker, clock):
    [job] = broker.submit([spec()])
    one = broker.claim("cpu", "w", lease_seconds=5)
    broker.report_progress(job.id, one.attempt, _points(2))
    clock.advance(10)
    broker.reap()
    two = broker.claim("cpu", "w")
    assert two.attempt == one.attempt + 1
    assert broker.curve(job.id) == []  # the latest attempt has not reported yet
    broker.report_progress(job.id, two.attempt, _points(1, start=7))
    assert broker.curve(job.id) == _points(1, start=7)
    assert broker.curve(job.id, one.attempt) == _points(2)
    assert broker.curve("aaaaaaaaaaaaaaaa") == []


def test_a_stopped_job_ends_in_its_own_state_keeps_its_result_and_can_be_requeued(broker):
    [job] = broker.submit([spec()])
    lease = broker.claim("cpu", "w")
    partial = Result(spec_id=job.id, attempt=lease.attempt, status="failed", gpu_seconds=12.5, train_seconds=3.0)
    assert broker.stop(lease, "median rule at step 1000: 1.41 > 1.38", partial) is JobState.STOPPED
    stopped = broker.get(job.id)
    assert stopped.state is JobState.STOPPED and stopped.state.terminal
    assert stopped.result == partial and "median rule" in stopped.error
    assert broker.stats().pools["cpu"].stopped == 1
    assert [j.id for j in broker.list([JobState.STOPPED])] == [job.id]
    assert broker.tracks() == []  # never on a front
    assert broker.heartbeat(lease) is False  # the runner learns its lease is gone
    assert broker.requeue([job.id]) == [job.id]
    again = broker.claim("cpu", "w")
    assert again.attempt == lease.attempt + 1
    assert kinds(all_events(broker), job.id) == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.STOPPED,
                                                  EventKind.REQUEUED, EventKind.CLAIMED]


def test_a_late_stop_is_superseded_and_changes_nothing(broker):
    [job] = broker.submit([spec()])
    lease = broker.claim("cpu", "w")
    broker.complete(lease, success(lease))
    assert broker.stop(lease, "too late") is JobState.SUCCEEDED
    assert broker.get(job.id).state is JobState.SUCCEEDED
    assert kinds(all_events(broker), job.id)[-1] is EventKind.SUPERSEDED
