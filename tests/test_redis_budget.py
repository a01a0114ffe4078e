"""Spend caps on RQ's delivery path: a work horse that a cap refuses leaves the attempt queued and
its token held aside; a raised cap (or the supervisor, once money is free) gives RQ a fresh job."""

from __future__ import annotations

from pathlib import Path

import pytest
from rq import SimpleWorker

from golfq.core.backends.redis.broker import RedisBroker
from golfq.core.budget import scope
from golfq.core.job import Job, JobState, Lease
from golfq.core.result import Result
from golfq.core.spec import Budget, ExperimentSpec
from golfq.workers.rq import job as rq_job
from golfq.workers.rq.worker import PromptExit
from tests import redis_server

pytestmark = [
    pytest.mark.redis_server,
    pytest.mark.skipif(not Path(redis_server.REDIS_SERVER).exists(), reason="redis-server is not installed"),
]


def holding_runner(broker, lease, **_):
    """Reports nothing: the attempt stays leased, its worst case committed."""
    return Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded")


@pytest.fixture
def broker(tmp_path, monkeypatch):
    monkeypatch.setattr(rq_job, "config", rq_job.HorseConfig(runner="tests.test_redis_budget:holding_runner"))
    server = redis_server.RedisServer(tmp_path / "redis").start()
    opened = RedisBroker(server.url)
    yield opened
    opened.close()
    server.stop()


class Simple(PromptExit, SimpleWorker):
    pass


def burst(broker: RedisBroker) -> None:
    Simple([broker.rq.queue("h100")], connection=broker.redis, serializer="json").work(
        burst=True, logging_level="ERROR")


def test_a_capped_token_waits_aside_and_a_raised_cap_gives_it_back_to_rq(broker):
    hour = Budget(train_seconds=600, timeout_seconds=3600)
    first, second = broker.submit([ExperimentSpec(pool="h100", seed=i, budget=hour) for i in (1, 2)])
    broker.set_budget(scope(pool="h100"), 5.0)
    burst(broker)
    assert broker.get(first.id).state is JobState.LEASED
    assert broker.get(second.id).state is JobState.QUEUED  # refused by the horse: $3.95 + $3.95 > $5
    assert broker.redis.lrange(broker.rq.held_key("h100"), 0, -1) == [f"{second.id}-1".encode()]
    assert broker.release_held() == []  # still past the cap: it stays aside
    broker.set_budget(scope(pool="h100"), 7.9)  # releases it
    assert broker.redis.llen(broker.rq.held_key("h100")) == 0
    burst(broker)
    job = broker.get(second.id)
    assert (job.state, job.attempt) == (JobState.LEASED, 1)


def test_a_held_token_goes_back_once_a_running_attempt_frees_its_money(broker):
    hour = Budget(train_seconds=600, timeout_seconds=3600)
    first, second = broker.submit([ExperimentSpec(pool="h100", seed=i, budget=hour) for i in (1, 2)])
    broker.set_budget(scope(), 5.0)
    burst(broker)
    [running] = broker.list([JobState.LEASED])
    assert running.id == first.id and broker.release_held() == []
    broker.stop(rq_lease(running), "stopped early", Result(spec_id=first.id, attempt=1, status="failed",
                                                           gpu_name="H100", gpu_count=1, gpu_seconds=360.0))
    assert broker.release_held() == [f"{second.id}-1"]  # what the RQ supervisor does each round
    burst(broker)
    assert broker.get(second.id).state is JobState.LEASED


def rq_lease(job: Job) -> Lease:
    return Lease(job_id=job.id, attempt=job.attempt, worker_id=job.worker_id, pool=job.pool,
                 deadline=job.lease_deadline or 0.0, spec=job.spec)
