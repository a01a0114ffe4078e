"""Spend caps on Modal's dispatcher path (the contract suite covers Broker.claim on every backend):
the dispatcher's claims obey the caps, and the billed GPU time is the one figure the caps,
`ops cost` and `golfq modal status` share."""

from __future__ import annotations

import pytest

from golfq.core.budget import scope
from golfq.core.cost import cost_usd
from golfq.core.result import Result
from golfq.core.spec import Budget, ExperimentSpec
from golfq.ops.cost import cost_summary
from golfq.workers.modal.dispatch import Dispatcher
from tests.test_modal_dispatch import FakeSpawner, config, container, gpu_spec
from tests.test_modal_dispatch import broker as broker  # noqa: F401 - fixtures
from tests.test_modal_dispatch import clock as clock  # noqa: F401
from tests.test_modal_dispatch import cloud as cloud  # noqa: F401
from tests.test_modal_dispatch import (
    test_a_warm_container_taking_the_next_job_refunds_the_previous_tail as refunds_the_previous_tail,
)

H100 = 3.95  # USD per GPU-hour, the built-in table


@pytest.fixture
def spawner() -> FakeSpawner:
    return FakeSpawner()


def test_the_dispatcher_spawns_nothing_past_a_cap_and_a_raised_cap_releases_it(broker, spawner):
    first, second = broker.submit([gpu_spec(1, timeout_seconds=3600), gpu_spec(2, timeout_seconds=3600)])
    broker.set_budget(scope(pool="h100"), 5.0)
    dispatcher = Dispatcher(broker, spawner, config())
    report = dispatcher.run_once()
    assert report.pools["h100"].spawned == [first.id]
    assert report.pools["h100"].blocked.startswith("budget pool h100")
    assert broker.budget().waiting[0].job_id == second.id
    broker.set_budget(scope(pool="h100"), 7.9)
    assert dispatcher.run_once().pools["h100"].spawned == [second.id]


def test_billed_gpu_time_replaces_the_runners_figure_everywhere(broker, spawner, clock, cloud):
    broker.submit([gpu_spec(1)])
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (lease,) = spawner.leases()
    booted = clock.now + 50
    clock.advance(80)
    worker = container(cloud, clock)
    worker.start(lease, 120, container="ta-1", billing_since=booted, cold=True)
    clock.advance(600)
    worker.complete(lease, Result(spec_id=lease.job_id, attempt=1, status="succeeded", val_bpb=1.2, artifact_bytes=9,
                                  gpu_name="NVIDIA H100", gpu_count=1, gpu_seconds=590.0, finished_at=clock.now))
    assert broker.budget().scopes[0].spent == pytest.approx(cost_usd("H100", 1, 590.0))
    dispatcher.run_once()  # the call ends: cold start, run and scale-down are billed
    billed = broker.view().usage["h100"].gpu_seconds
    tail = config().pools["h100"].scaledown_window
    assert billed == pytest.approx(30 + 600 + tail)
    spent = {s.scope: s.spent for s in broker.budget().scopes}
    assert spent["queue"] == spent["pool:h100"] == pytest.approx(H100 * billed / 3600, abs=1e-5)
    [row] = cost_summary(broker, "pool")
    assert (row.gpu_seconds, row.cost_usd) == (pytest.approx(billed), pytest.approx(spent["pool:h100"], abs=1e-4))
    assert broker.budget().scopes[0].committed == 0.0


def test_a_refunded_tail_is_taken_back_from_what_was_spent(broker, spawner, clock, cloud):
    refunds_the_previous_tail(broker, spawner, clock, cloud)  # two jobs, one warm container: one tail refunded
    billed = broker.view().usage["h100"].gpu_seconds
    spent = {s.scope: s.spent for s in broker.budget().scopes}
    assert spent["pool:h100"] == pytest.approx(H100 * billed / 3600, abs=1e-5)
    assert sum(r.cost_usd for r in cost_summary(broker, "pool")) == pytest.approx(spent["pool:h100"], abs=1e-4)


def test_the_dispatcher_spawns_the_jobs_behind_a_capped_one(broker, spawner):
    capped, free = broker.submit([
        ExperimentSpec(pool="h100", seed=1, tags=("agent-a",), budget=Budget(timeout_seconds=3600)),
        ExperimentSpec(pool="h100", seed=2, tags=("agent-b",), budget=Budget(timeout_seconds=3600))])
    broker.set_budget(scope(tag="agent-a"), 1.0)
    report = Dispatcher(broker, spawner, config()).run_once()
    assert report.pools["h100"].spawned == [free.id]
    assert [(w.job_id, w.pool) for w in broker.budget().waiting] == [(capped.id, "h100")]


def running_call(broker, spawner, clock, cloud):
    """One job's Modal call, started and run for 600 s: (dispatcher, lease, the container's broker)."""
    (job,) = broker.submit([gpu_spec(1)])
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (lease,) = spawner.leases()
    worker = container(cloud, clock)
    worker.start(lease, 120, container="ta-1", billing_since=clock.now, cold=True)
    clock.advance(600)
    return dispatcher, lease, worker


def ran_590(lease, status: str, clock) -> Result:
    return Result(spec_id=lease.job_id, attempt=lease.attempt, status=status, gpu_name="NVIDIA H100", gpu_count=1,
                  gpu_seconds=590.0, finished_at=clock.now)


def assert_billed_once(broker, dispatcher, other_gpu_seconds: float = 0.0) -> None:
    """The dispatcher's pass ends the call and bills it: what was spent is the bill (and other attempts' own)."""
    dispatcher.run_once()
    billed = broker.view().usage["h100"].gpu_seconds
    spent = {s.scope: s.spent for s in broker.budget().scopes}
    assert spent["queue"] == pytest.approx(H100 * (billed + other_gpu_seconds) / 3600, abs=1e-5)


def test_a_released_attempts_billed_figure_replaces_its_own_once(broker, spawner, clock, cloud):
    """A worker stopped gracefully gives the attempt back with its result (`requeued`); the call's billed
    figure then replaces that result's cost, not adds to it."""
    dispatcher, lease, worker = running_call(broker, spawner, clock, cloud)
    worker.release(lease, "worker stopped", ran_590(lease, "released", clock))
    assert broker.budget().scopes[0].spent == pytest.approx(cost_usd("H100", 1, 590.0))
    assert_billed_once(broker, dispatcher)


def test_a_cancelled_attempts_late_result_then_its_billed_figure_count_once(broker, spawner, clock, cloud):
    """Cancelled while it ran (its time spent as an estimate), then its runner's late result (superseded), then
    the dispatcher's pass that bills the call: the billed figure replaces the result's, not adds to it."""
    dispatcher, lease, worker = running_call(broker, spawner, clock, cloud)
    broker.cancel([lease.job_id])
    worker.fail(lease, "lease lost", "infra", ran_590(lease, "failed", clock))
    assert broker.budget().scopes[0].spent == pytest.approx(cost_usd("H100", 1, 590.0))
    assert_billed_once(broker, dispatcher)


def test_an_attempt_billed_after_the_next_attempt_ended_replaces_its_own_figure(broker, spawner, clock, cloud):
    """A Modal attempt fails with its result and is retried; a plain worker runs the retry to its end before the
    dispatcher's next pass bills the first call: the bill replaces the first attempt's figure, not adds to it."""
    dispatcher, lease, worker = running_call(broker, spawner, clock, cloud)
    worker.fail(lease, "hard timeout", "timeout", ran_590(lease, "failed", clock))
    retry = broker.claim("h100", "plain")  # a worker outside Modal: no call, nothing billed
    assert retry is not None and retry.attempt == 2
    clock.advance(100)
    broker.complete(retry, Result(spec_id=retry.job_id, attempt=2, status="succeeded", val_bpb=1.2, artifact_bytes=9,
                                  gpu_name="NVIDIA H100", gpu_count=1, gpu_seconds=100.0, finished_at=clock.now))
    assert_billed_once(broker, dispatcher, other_gpu_seconds=100.0)
