"""The dispatcher over the Modal stand-ins, with an injected spawner: claims, caps, waiting, charges, restore."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from golfq.core.events import EventKind
from golfq.core.job import CompleteOutcome, JobState
from golfq.core.result import FailureKind, Result
from golfq.core.spec import Budget, ExperimentSpec
from golfq.workers.modal.config import DEFAULT_POOLS, ModalConfig
from golfq.workers.modal.dispatch import RESPAWN_AFTER_SECONDS, Dispatcher, read_lease, reserved_seconds
from tests.contract.conftest import ManualClock
from tests.contract.helpers import all_events, kinds
from tests.modal_fakes import FakeModal


class FakeSpawner:
    """Records spawns and cancels; `failing` raises like a Modal outage; `done` holds calls Modal has finished."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, int | None, str]] = []
        self.cancelled: list[str] = []
        self.done: set[str] = set()
        self.failing: Exception | None = None
        self._ids = itertools.count(1)

    def spawn(self, function: str, payload: bytes, timeout_seconds: int | None) -> str:
        if self.failing is not None:
            raise self.failing
        call_id = f"fc-{next(self._ids)}"
        self.calls.append((function, payload, timeout_seconds, call_id))
        return call_id

    def alive(self, call_id: str) -> bool:
        return call_id not in self.done and call_id not in self.cancelled

    def cancel(self, call_id: str) -> None:
        self.cancelled.append(call_id)

    def leases(self):
        return [read_lease(payload) for _, payload, _, _ in self.calls]


def config(**h100) -> ModalConfig:
    return ModalConfig(pools={**DEFAULT_POOLS, "h100": msgspec.structs.replace(DEFAULT_POOLS["h100"], **h100)})


def gpu_spec(seed: int, pool: str = "h100", **budget) -> ExperimentSpec:
    return ExperimentSpec(pool=pool, seed=seed, budget=Budget(**budget) if budget else Budget())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cloud() -> FakeModal:
    return FakeModal()


@pytest.fixture
def broker(cloud, clock):
    return cloud.broker("modal://golfq-test", clock=clock)


@pytest.fixture
def spawner() -> FakeSpawner:
    return FakeSpawner()


def container(cloud, clock):
    """A pool function's own view of the queue: another process, another broker."""
    return cloud.broker("modal://golfq-test", clock=clock)


def succeed(worker, lease, gpu_seconds: float = 100.0, finished_at: float | None = None) -> CompleteOutcome:
    result = Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.2,
                    artifact_bytes=1_000_000, train_seconds=90.0, gpu_seconds=gpu_seconds, gpu_count=1,
                    finished_at=finished_at)
    return worker.complete(lease, result)


def test_one_call_per_job_on_the_pools_function_with_the_lease_as_bytes(broker, spawner, clock):
    jobs = broker.submit([gpu_spec(1), gpu_spec(2, pool="h100x8"), gpu_spec(3, pool="cpu")])
    report = Dispatcher(broker, spawner, config()).run_once()
    assert sorted(f for f, *_ in spawner.calls) == ["run_cpu", "run_h100", "run_h100x8"]
    leases = {lease.job_id: lease for lease in spawner.leases()}
    assert set(leases) == {j.id for j in jobs}
    for job in jobs:
        stored = broker.get(job.id)
        assert stored.state is JobState.LEASED and stored.attempt == 1 == leases[job.id].attempt
        assert stored.lease_deadline == clock.now + config().pools[job.pool].startup_seconds
    assert report.pools["h100"].spawned == [jobs[0].id] and report.pools["h100"].waiting == 0
    assert report.woken == 1  # one wake-up for the dispatcher per commit, not one per job
    assert {c.call_id for c in broker.view().calls.values()} == {c for *_, c in spawner.calls}
    assert Dispatcher(broker, spawner, config()).run_once().pools["h100"].spawned == []  # nothing twice


def test_a_failed_spawn_fails_that_attempt_and_the_rest_of_the_pool_waits_as_intents(broker, spawner, clock):
    first, second = broker.submit([gpu_spec(1), gpu_spec(2)])
    spawner.failing = ConnectionError("modal is down")
    report = Dispatcher(broker, spawner, config()).run_once()
    assert report.failed_spawns == [first.id] and report.pools["h100"].spawned == []
    stored = broker.get(first.id)
    assert stored.state is JobState.QUEUED and stored.failures == {"infra": 1} and "modal is down" in stored.error
    assert broker.get(second.id).state is JobState.LEASED  # claimed, spawn not tried: an intent, no failure
    spawner.failing = None
    clock.advance(RESPAWN_AFTER_SECONDS)
    Dispatcher(broker, spawner, config()).run_once()
    assert sorted((lease.job_id, lease.attempt) for lease in spawner.leases()) == sorted([(first.id, 2),
                                                                                         (second.id, 1)])
    assert broker.get(second.id).failures == {}


def test_spawn_failures_past_the_infra_budget_end_the_job_dead_not_lost(broker, spawner):
    job = broker.submit([gpu_spec(1)])[0]
    spawner.failing = RuntimeError("quota")
    for _ in range(5):
        Dispatcher(broker, spawner, config()).run_once()
    stored = broker.get(job.id)
    assert stored.state is JobState.DEAD and stored.failures == {"infra": 4}
    assert broker.requeue([job.id]) == [job.id]  # and ops can bring it back


def test_a_call_waiting_for_a_gpu_is_never_failed_and_shows_as_waiting(broker, spawner, clock, cloud):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    for _ in range(10):  # Modal has no H100 free for 10 start-up leases
        clock.advance(config().pools["h100"].startup_seconds + 1)
        assert dispatcher.run_once().reaped == []
    assert broker.get(job.id).state is JobState.LEASED and broker.get(job.id).failures == {}
    assert broker.stats().extra["waiting_for_capacity"] == 1
    (lease,) = spawner.leases()
    worker = container(cloud, clock)
    assert worker.start(lease, 120, container="ta-1", billing_since=clock.now - 40)  # placed at last: 40 s cold start
    assert broker.stats().extra["waiting_for_capacity"] == 0
    assert succeed(worker, lease) is CompleteOutcome.COUNTED


def test_a_call_that_ended_without_starting_is_reaped_as_infra(broker, spawner, clock):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    spawner.done.add(spawner.calls[0][3])  # the container crashed at import, Modal's retries spent
    clock.advance(config().pools["h100"].startup_seconds + 1)
    assert dispatcher.run_once().reaped == [job.id]
    assert broker.get(job.id).failures == {"infra": 1} and [lease.attempt for lease in spawner.leases()] == [1, 2]


def test_a_lease_that_goes_silent_is_reaped_its_call_cancelled_and_the_job_respawned(broker, spawner, clock, cloud):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (first,) = spawner.leases()
    worker = container(cloud, clock)
    assert worker.start(first, 120, container="ta-1", billing_since=clock.now)
    assert worker.heartbeat(first, 120)  # a cheap beat: its own key
    spawner.done.add(spawner.calls[0][3])  # then killed for good (preempted past its retries)
    clock.advance(121)
    report = dispatcher.run_once()
    assert report.reaped == [job.id] and report.retired == [f"{job.id}/1"]
    assert report.cancelled == [spawner.calls[0][3]]  # harmless for a call Modal has ended: it makes sure
    second = spawner.leases()[-1]
    assert (second.job_id, second.attempt) == (job.id, 2) and broker.get(job.id).failures == {"infra": 1}
    assert not worker.heartbeat(first)  # the first container comes back: told to stop...
    assert succeed(worker, first) is CompleteOutcome.SUPERSEDED  # ...and its result is kept, not counted
    assert succeed(container(cloud, clock), second) is CompleteOutcome.COUNTED


def test_a_silent_call_modal_still_holds_gets_a_grace_then_is_cancelled(broker, spawner, clock, cloud):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (lease,) = spawner.leases()
    container(cloud, clock).start(lease, 120, container="ta-1", billing_since=clock.now)
    clock.advance(121)  # silent, but Modal still holds the call: re-running it after a preemption?
    assert dispatcher.run_once().reaped == []
    clock.advance(config().pools["h100"].startup_seconds)
    report = dispatcher.run_once()
    assert report.reaped == [job.id] and report.cancelled == [spawner.calls[0][3]]


def test_a_finished_call_is_charged_once_its_cold_start_run_and_scale_down(broker, spawner, clock, cloud):
    broker.submit([gpu_spec(1)])
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (lease,) = spawner.leases()
    booted = clock.now + 50  # placed 50 s after the spawn, then 30 s of cold start before the runner starts
    clock.advance(80)
    worker = container(cloud, clock)
    worker.start(lease, 120, container="ta-1", billing_since=booted, cold=True)
    clock.advance(600)
    succeed(worker, lease, finished_at=clock.now)
    report = dispatcher.run_once()
    assert report.retired == [f"{lease.job_id}/1"] and report.cancelled == []
    usage = broker.view().usage["h100"]
    tail = config().pools["h100"].scaledown_window
    assert usage.gpu_seconds == pytest.approx(30 + 600 + tail)
    assert (usage.cold_seconds, usage.idle_seconds, usage.calls) == (pytest.approx(30), tail, 1)
    assert Dispatcher(broker, spawner, config()).run_once().retired == []  # a second dispatcher charges nothing again
    assert broker.view().usage["h100"].gpu_seconds == pytest.approx(30 + 600 + tail)


def test_a_warm_container_taking_the_next_job_refunds_the_previous_tail(broker, spawner, clock, cloud):
    broker.submit([gpu_spec(1), gpu_spec(2)])
    dispatcher = Dispatcher(broker, spawner, config(max_containers=1))
    dispatcher.run_once()
    worker = container(cloud, clock)
    first = spawner.leases()[0]
    worker.start(first, 120, container="ta-1", billing_since=clock.now)
    clock.advance(100)
    succeed(worker, first, finished_at=clock.now)
    ended = clock.now
    dispatcher.run_once()
    second = spawner.leases()[1]
    clock.advance(20)
    worker.start(second, 120, container="ta-1", billing_since=ended, cold=False)  # the same container, 20 s idle
    clock.advance(100)
    succeed(worker, second, finished_at=clock.now)
    dispatcher.run_once()
    usage = broker.view().usage["h100"]
    tail = config().pools["h100"].scaledown_window
    assert usage.gpu_seconds == pytest.approx(100 + 20 + 100 + tail)  # one tail, the idle gap once
    assert usage.idle_seconds == pytest.approx(20 + tail)


def test_two_dispatchers_never_overshoot_a_cap(broker, spawner, cloud, clock):
    broker.submit([gpu_spec(seed) for seed in range(6)])
    other = cloud.broker("modal://golfq-test", clock=clock)  # a rolling redeploy: old and new dispatcher at once
    one = Dispatcher(broker, spawner, config(max_containers=3))
    two = Dispatcher(other, spawner, config(max_containers=3))
    reports = [one.run_once(), two.run_once(), one.run_once(), two.run_once()]
    assert sum(len(r.pools["h100"].spawned) for r in reports) == 3
    assert len({lease.job_id for lease in spawner.leases()}) == 3 and broker.stats().pools["h100"].leased == 3


def test_cancelling_a_running_job_cancels_its_call_and_its_runner_stops(broker, spawner, cloud, clock):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (lease,) = spawner.leases()
    worker = container(cloud, clock)
    worker.start(lease, 120)
    broker.cancel([job.id])
    assert not worker.heartbeat(lease)
    assert dispatcher.run_once().cancelled == [spawner.calls[0][3]]


@pytest.mark.parametrize("caps, spawned, reason", [
    ({"max_containers": 2}, 2, "max_containers"),
    ({"max_gpus": 3}, 3, "max_gpus"),
    ({"max_gpu_hours": 2.0}, 2, "max_gpu_hours"),  # each job may bill 1800 s + 600 s set-up + 60 s scale-down
])
def test_caps_make_jobs_wait_never_drop_them(broker, spawner, caps, spawned, reason):
    jobs = broker.submit([gpu_spec(seed) for seed in range(6)])
    report = Dispatcher(broker, spawner, config(**caps)).run_once()
    assert len(report.pools["h100"].spawned) == spawned
    assert report.pools["h100"].blocked == reason and report.pools["h100"].waiting == 6 - spawned
    assert broker.stats().pools["h100"].queued == 6 - spawned
    assert [lease.job_id for lease in spawner.leases()] == [j.id for j in jobs[:spawned]]  # FIFO


def test_freed_capacity_is_used_on_the_next_pass(broker, spawner, cloud, clock):
    broker.submit([gpu_spec(seed) for seed in range(3)])
    dispatcher = Dispatcher(broker, spawner, config(max_containers=1))
    dispatcher.run_once()
    succeed(container(cloud, clock), spawner.leases()[0])
    assert len(dispatcher.run_once().pools["h100"].spawned) == 1


def test_gpu_hours_already_billed_count_against_the_cap(broker, spawner, cloud, clock):
    broker.submit([gpu_spec(seed) for seed in range(3)])
    dispatcher = Dispatcher(broker, spawner, config(max_gpu_hours=1.0))
    dispatcher.run_once()
    lease = spawner.leases()[0]
    worker = container(cloud, clock)
    worker.start(lease, 120, billing_since=clock.now)
    clock.advance(1800)
    succeed(worker, lease, finished_at=clock.now)
    report = dispatcher.run_once()  # 1800 s + tail billed: another 2460 s job would pass 1 h
    assert report.pools["h100"].spawned == [] and report.pools["h100"].blocked == "max_gpu_hours"
    tail = config().pools["h100"].scaledown_window
    assert reserved_seconds(broker.get(lease.job_id), 1, config().pools["h100"]) == 1800 + 600 + tail


def test_a_drained_pool_spawns_nothing_until_resumed(broker, spawner):
    broker.submit([gpu_spec(1), gpu_spec(2, pool="cpu")])
    broker.drain("h100")
    dispatcher = Dispatcher(broker, spawner, config())
    report = dispatcher.run_once()
    assert report.pools["h100"].blocked == "draining" and report.pools["h100"].waiting == 1
    assert [f for f, *_ in spawner.calls] == ["run_cpu"]
    broker.resume("h100")
    assert len(dispatcher.run_once().pools["h100"].spawned) == 1


def test_a_budget_past_the_declared_timeout_gets_a_longer_call_and_past_24h_is_refused(broker, spawner):
    long_job, huge_job = broker.submit([gpu_spec(1, train_seconds=3000.0), gpu_spec(2, train_seconds=90_000.0)])
    Dispatcher(broker, spawner, config()).run_once()
    # 3000 + 1200 s hard timeout + set-up, rounded up to the hour
    assert [(read_lease(p).job_id, t) for _, p, t, _ in spawner.calls] == [(long_job.id, 7200)]
    refused = broker.get(huge_job.id)
    assert refused.state is JobState.FAILED and "24 h" in refused.error


def test_an_intent_a_stopped_dispatcher_left_is_spawned_by_the_next_without_a_failure(broker, spawner, clock):
    job = broker.submit([gpu_spec(1)])[0]
    crashed = Dispatcher(broker, spawner, config())
    broker.transact(crashed._plan)  # claimed and recorded the intent, then died before spawning
    assert spawner.calls == []
    clock.advance(RESPAWN_AFTER_SECONDS)
    Dispatcher(broker, spawner, config()).run_once()
    assert [(lease.job_id, lease.attempt) for lease in spawner.leases()] == [(job.id, 1)]
    assert broker.get(job.id).failures == {}


def test_the_event_log_tells_the_whole_story(broker, spawner, clock, cloud):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    container(cloud, clock).start(spawner.leases()[0], 120)
    spawner.done.add(spawner.calls[0][3])
    clock.advance(10_000)
    dispatcher.run_once()
    assert succeed(container(cloud, clock), spawner.leases()[-1]) is CompleteOutcome.COUNTED
    assert kinds(all_events(broker), job.id) == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.FAILED,
                                                  EventKind.REQUEUED, EventKind.BILLED, EventKind.CLAIMED,
                                                  EventKind.SUCCEEDED]
    assert [e.attempt for e in all_events(broker) if e.kind is EventKind.BILLED] == [1]  # the lost call's GPU time
    failed = [e for e in all_events(broker) if e.kind is EventKind.FAILED]
    assert failed[0].failure is FailureKind.INFRA


def test_an_attempt_an_hour_over_leaves_no_keys_behind(broker, spawner, cloud, clock):
    broker.submit([gpu_spec(1)])
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (lease,) = spawner.leases()
    worker = container(cloud, clock)
    assert worker.take_run(lease, "in-1") and worker.start(lease, 120) and worker.heartbeat(lease, 120)
    succeed(worker, lease)
    dispatcher.run_once()
    leases = cloud.dicts["/golfq-test-leases"]
    assert {k for k in leases._data if not k.startswith("dispatch/")} == {  # its own end needs no marker
        f"hb/{lease.job_id}/1", f"run/{lease.job_id}/1"}
    clock.advance(3601)
    dispatcher.run_once()
    assert {k for k in leases._data if not k.startswith("dispatch/")} == set() and broker.view().calls == {}
