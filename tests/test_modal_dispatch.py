"""The dispatcher and reaper over the in-memory Modal stand-ins, with an injected spawner."""

from __future__ import annotations

import itertools

import pytest

from golfq.workers.modal.config import DEFAULT_POOLS, ModalConfig
from golfq.workers.modal.dispatch import Dispatcher, read_lease
from golfq.core.job import CompleteOutcome, JobState
from golfq.core.events import EventKind
from golfq.core.result import FailureKind, Result
from golfq.core.spec import Budget, ExperimentSpec

from tests.contract.conftest import ManualClock
from tests.contract.helpers import all_events, kinds
from tests.modal_fakes import FakeModal


class FakeSpawner:
    """Records spawns and cancels; fails while `failing` is set, like a Modal outage."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, int | None, str]] = []
        self.cancelled: list[str] = []
        self.failing: Exception | None = None
        self._ids = itertools.count(1)

    def spawn(self, function: str, payload: bytes, timeout_seconds: int | None) -> str:
        if self.failing is not None:
            raise self.failing
        call_id = f"fc-{next(self._ids)}"
        self.calls.append((function, payload, timeout_seconds, call_id))
        return call_id

    def cancel(self, call_id: str) -> None:
        self.cancelled.append(call_id)

    def leases(self):
        return [read_lease(payload) for _, payload, _, _ in self.calls]


def config(**h100) -> ModalConfig:
    pools = dict(DEFAULT_POOLS)
    pools["h100"] = DEFAULT_POOLS["h100"].__class__(**{**_fields(DEFAULT_POOLS["h100"]), **h100})
    return ModalConfig(pools=pools)


def _fields(struct) -> dict:
    return {f: getattr(struct, f) for f in struct.__struct_fields__}


def gpu_spec(seed: int, pool: str = "h100", **budget) -> ExperimentSpec:
    return ExperimentSpec(pool=pool, seed=seed, budget=Budget(**budget) if budget else Budget())


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def broker(clock):
    return FakeModal().broker("modal://golfq-test", clock=clock)


@pytest.fixture
def spawner() -> FakeSpawner:
    return FakeSpawner()


def succeed(broker, lease, gpu_seconds: float = 100.0) -> CompleteOutcome:
    result = Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.2,
                    artifact_bytes=1_000_000, train_seconds=90.0, gpu_seconds=gpu_seconds, gpu_count=1)
    return broker.complete(lease, result)


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
    assert report.woken == {"cpu": 1, "h100": 1, "h100x8": 1}  # the wake partitions were drained
    assert Dispatcher(broker, spawner, config()).run_once().pools["h100"].spawned == []  # nothing twice


def test_a_failed_spawn_is_an_infra_failure_and_the_job_waits_for_the_next_pass(broker, spawner):
    job = broker.submit([gpu_spec(1), gpu_spec(2)])[0]
    spawner.failing = ConnectionError("modal is down")
    report = Dispatcher(broker, spawner, config()).run_once()
    assert report.pools["h100"].blocked == "spawn" and report.pools["h100"].spawned == []
    stored = broker.get(job.id)
    assert stored.state is JobState.QUEUED and stored.failures == {"infra": 1} and "modal is down" in stored.error
    assert broker.get(gpu_spec(2).id).attempt == 0  # the pool stopped after the first failure
    spawner.failing = None
    Dispatcher(broker, spawner, config()).run_once()
    assert sorted((l.job_id, l.attempt) for l in spawner.leases()) == sorted([(job.id, 2), (gpu_spec(2).id, 1)])


def test_spawn_failures_past_the_infra_budget_end_the_job_dead_not_lost(broker, spawner):
    job = broker.submit([gpu_spec(1)])[0]
    spawner.failing = RuntimeError("quota")
    for _ in range(5):
        Dispatcher(broker, spawner, config()).run_once()
    stored = broker.get(job.id)
    assert stored.state is JobState.DEAD and stored.failures == {"infra": 4}
    assert broker.requeue([job.id]) == [job.id]  # and ops can bring it back


def test_a_lease_that_expires_mid_run_is_reaped_its_call_cancelled_and_the_job_respawned(broker, spawner, clock):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (first,) = spawner.leases()
    assert broker.heartbeat(first, 120)  # the container started and beat once ...
    clock.advance(121)  # ... then went silent (killed, preempted past its retries)
    report = dispatcher.run_once()
    assert report.reaped == [job.id]
    assert report.cancelled == [spawner.calls[0][3]] and report.retired == [f"{job.id}/1"]
    second = spawner.leases()[-1]
    assert (second.job_id, second.attempt) == (job.id, 2)
    assert broker.get(job.id).failures == {"infra": 1}
    # the first container comes back: it is told to stop, and its result is kept but not counted
    assert not broker.heartbeat(first)
    assert succeed(broker, first) is CompleteOutcome.SUPERSEDED
    assert succeed(broker, second) is CompleteOutcome.COUNTED
    assert broker.pool_doc("h100").gpu_seconds == pytest.approx(121.0)  # the lost call held a GPU that long


def test_finished_calls_are_retired_without_cancelling_and_charge_their_gpu_seconds(broker, spawner):
    broker.submit([gpu_spec(1)])
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    (lease,) = spawner.leases()
    succeed(broker, lease, gpu_seconds=321.0)
    report = dispatcher.run_once()
    assert report.retired == [f"{lease.job_id}/1"] and report.cancelled == []
    assert broker.pool_doc("h100").gpu_seconds == 321.0
    assert dispatcher.run_once().retired == []  # retired once


def test_cancelling_a_running_job_cancels_its_call(broker, spawner):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    broker.cancel([job.id])
    assert dispatcher.run_once().cancelled == [spawner.calls[0][3]]


@pytest.mark.parametrize("caps, spawned, reason", [
    ({"max_containers": 2}, 2, "max_containers"),
    ({"max_gpus": 3}, 3, "max_gpus"),
    ({"max_gpu_hours": 1.0}, 3, "max_gpu_hours"),  # each job may hold its GPU 1200 s: a third of an hour
])
def test_caps_make_jobs_wait_never_drop_them(broker, spawner, caps, spawned, reason):
    jobs = broker.submit([gpu_spec(seed) for seed in range(6)])
    report = Dispatcher(broker, spawner, config(**caps)).run_once()
    assert len(report.pools["h100"].spawned) == spawned
    assert report.pools["h100"].blocked == reason and report.pools["h100"].waiting == 6 - spawned
    assert broker.stats().pools["h100"].queued == 6 - spawned
    assert [l.job_id for l in spawner.leases()] == [j.id for j in jobs[:spawned]]  # FIFO


def test_freed_capacity_is_used_on_the_next_pass(broker, spawner):
    broker.submit([gpu_spec(seed) for seed in range(3)])
    dispatcher = Dispatcher(broker, spawner, config(max_containers=1))
    dispatcher.run_once()
    succeed(broker, spawner.leases()[0])
    assert len(dispatcher.run_once().pools["h100"].spawned) == 1


def test_gpu_hours_already_used_count_against_the_cap(broker, spawner):
    broker.submit([gpu_spec(seed) for seed in range(3)])
    broker.charge("h100", 3000.0)  # 0.83 h used: one more 1200 s job would pass 1 h
    report = Dispatcher(broker, spawner, config(max_gpu_hours=1.0)).run_once()
    assert report.pools["h100"].spawned == [] and report.pools["h100"].blocked == "max_gpu_hours"


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
    long_job, huge_job = broker.submit([gpu_spec(1, train_seconds=3000.0), gpu_spec(2, train_seconds=50_000.0)])
    Dispatcher(broker, spawner, config()).run_once()
    assert [(read_lease(p).job_id, t) for _, p, t, _ in spawner.calls] == [(long_job.id, 7200)]  # 6000 s + setup
    refused = broker.get(huge_job.id)
    assert refused.state is JobState.FAILED and "24 h" in refused.error


def test_records_are_read_once_a_day_so_modal_never_expires_them(broker, spawner, clock):
    broker.submit([gpu_spec(1)])
    dispatcher = Dispatcher(broker, spawner, config())
    assert dispatcher.run_once().touched > 0
    assert dispatcher.run_once().touched == 0
    clock.advance(25 * 3600)
    assert dispatcher.run_once().touched > 0


def test_the_event_log_tells_the_whole_story(broker, spawner, clock):
    job = broker.submit([gpu_spec(1)])[0]
    dispatcher = Dispatcher(broker, spawner, config())
    dispatcher.run_once()
    clock.advance(10_000)
    dispatcher.run_once()
    assert succeed(broker, spawner.leases()[-1]) is CompleteOutcome.COUNTED
    assert kinds(all_events(broker), job.id) == [EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.FAILED,
                                                  EventKind.REQUEUED, EventKind.CLAIMED, EventKind.SUCCEEDED]
    failed = [e for e in all_events(broker) if e.kind is EventKind.FAILED]
    assert failed[0].failure is FailureKind.INFRA
