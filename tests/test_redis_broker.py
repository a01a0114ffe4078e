"""The Redis backend's RQ side on fakeredis: tokens, queues, registries, the job function.

The Broker semantics themselves are proven by tests/contract/ (redis-fake, redis-server).
"""

from __future__ import annotations

import json
import zlib

import fakeredis
import pytest
from rq import SimpleWorker
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException

from golfq.core.backends import open_broker
from golfq.core.backends.redis.broker import RedisBroker
from golfq.core.backends.redis.rq import TIMEOUT_MARGIN, parse_token, queue_name, token
from golfq.core.broker import BrokerError
from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.result import FailureKind, Result
from golfq.workers.rq import job as rq_job
from tests.contract.helpers import spec, success

STAND_IN = "tests.test_redis_broker:finish_at_once"


def finish_at_once(broker, lease, *, work_root, gpus=None, heartbeat_seconds=10, lease_seconds=60, worker_id="",
                   stop=None, progress_seconds=10.0):
    """A runner that trains nothing: it reports success through the broker, as run_lease does."""
    assert broker.heartbeat(lease, lease_seconds)
    result = success(lease)
    broker.complete(lease, result)
    return result


@pytest.fixture
def broker():
    opened = RedisBroker("redis://fakeredis/0", client=fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    yield opened
    opened.close()


def rq_list(broker, pool="cpu", parked=False):
    key = f"golfq:parked:{pool}" if parked else f"rq:queue:{queue_name(pool)}"
    return [t.decode() for t in broker.redis.lrange(key, 0, -1)]


def work(broker, monkeypatch, tmp_path):
    monkeypatch.setattr(rq_job, "config", rq_job.HorseConfig(runner=STAND_IN, work_dir=tmp_path))
    worker = SimpleWorker([broker.rq.queue("cpu")], connection=broker.redis, serializer=JSONSerializer)
    worker.work(burst=True)


def test_each_queued_attempt_is_one_json_rq_job_in_golfq_order(broker):
    jobs = broker.submit([spec(seed=1), spec(seed=2), spec(seed=3, priority=5)])
    assert rq_list(broker) == [token(jobs[2].id, 1), token(jobs[0].id, 1), token(jobs[1].id, 1)]
    rq = RQJob.fetch(token(jobs[0].id, 1), connection=broker.redis, serializer=JSONSerializer)
    assert rq.func_name == "golfq.workers.rq.job.run_attempt" and rq.args == [jobs[0].id, 1]
    assert rq.timeout == int(jobs[0].spec.budget.hard_timeout) + TIMEOUT_MARGIN and rq.origin == "golfq:cpu"
    raw = broker.redis.hget(rq.key, "data")
    assert json.loads(zlib.decompress(raw))[0] == "golfq.workers.rq.job.run_attempt"  # JSON, never pickle
    assert parse_token(token(jobs[0].id, 12)) == (jobs[0].id, 12) and parse_token("exp:1") is None


def test_claim_takes_the_rq_job_away_and_the_stale_token_does_nothing(broker, monkeypatch, tmp_path):
    job = broker.submit([spec(seed=1)])[0]
    lease = broker.claim("cpu", "w1")
    assert rq_list(broker) == [] and not broker.redis.exists(RQJob.key_for(token(job.id, 1)))
    assert broker.claim_attempt(job.id, 1, "rq-worker") is None  # the other path cannot win it too
    broker.fail(lease, "lost", FailureKind.INFRA)
    assert rq_list(broker) == [token(job.id, 2)]
    assert broker.claim_attempt(job.id, 1, "late") is None and broker.claim_attempt(job.id, 3, "early") is None


def test_rq_workers_run_the_job_function_once_per_attempt(broker, monkeypatch, tmp_path):
    jobs = broker.submit([spec(seed=i) for i in range(3)])
    stale = broker.claim("cpu", "w1")  # claimed outside RQ: its RQ job must not run
    broker.redis.rpush(f"rq:queue:{queue_name('cpu')}", token(stale.job_id, 1))  # e.g. pushed back by hand
    work(broker, monkeypatch, tmp_path)
    states = {j.id: broker.get(j.id).state for j in jobs}
    assert states == {j.id: JobState.LEASED if j.id == stale.job_id else JobState.SUCCEEDED for j in jobs}
    claims = [e for e in broker.events() if e.kind is EventKind.CLAIMED]
    assert len(claims) == 3 and all(e.worker_id for e in claims)
    extra = broker.stats().extra
    assert extra["rq.cpu.finished"] == 2 and extra["rq.cpu.queued"] == 0


def test_rq_failures_map_to_golfq_failure_classes(broker):
    job = broker.submit([spec(seed=1)])[0]
    broker.claim_attempt(job.id, 1, "w")
    rq = RQJob.fetch(token(job.id, 1), connection=broker.redis, serializer=JSONSerializer)
    rq_job.on_failure(rq, broker.redis, JobTimeoutException, JobTimeoutException("over 720 s"), None)
    after = broker.get(job.id)
    assert after.state is JobState.QUEUED and after.failures == {"timeout": 1} and "JobTimeoutException" in after.error
    broker.claim_attempt(job.id, 2, "w")
    rq_job.on_horse_killed(RQJob.fetch(token(job.id, 2), connection=broker.redis, serializer=JSONSerializer),
                           4242, 9, None)
    assert broker.get(job.id).failures == {"timeout": 1, "infra": 1}
    rq_job.on_failure(rq, broker.redis, RuntimeError, RuntimeError("late"), None)  # attempt 1 holds nothing now
    assert broker.get(job.id).failures == {"timeout": 1, "infra": 1}


def test_cancel_drain_and_requeue_show_in_rq_registries(broker):
    a, b, c = broker.submit([spec(seed=1), spec(seed=2), spec(seed=3)])
    broker.cancel([a.id])
    assert CanceledJobRegistry(queue_name("cpu"), connection=broker.redis).get_job_ids() == [token(a.id, 1)]
    assert RQJob.fetch(token(a.id, 1), connection=broker.redis, serializer=JSONSerializer).get_status() \
        is JobStatus.CANCELED
    broker.drain("cpu")
    assert rq_list(broker) == [] and rq_list(broker, parked=True) == [token(b.id, 1), token(c.id, 1)]
    d = broker.submit([spec(seed=4)])[0]  # queued while draining: parked too
    assert broker.claim("cpu", "w") is None and rq_list(broker) == []
    broker.resume("cpu")
    assert rq_list(broker) == [token(b.id, 1), token(c.id, 1), token(d.id, 1)]
    assert broker.requeue([token(a.id, 1)]) == [a.id]  # an RQ job id from RQ's registries names its job
    assert CanceledJobRegistry(queue_name("cpu"), connection=broker.redis).get_job_ids() == []
    assert rq_list(broker) == [token(a.id, 1), token(b.id, 1), token(c.id, 1), token(d.id, 1)]  # FIFO by submit


def test_reap_cleans_rq_started_registry_and_fails_the_rq_job(broker):
    job = broker.submit([spec(seed=1)])[0]
    q = broker.rq.queue("cpu")
    rq = q.fetch_job(token(job.id, 1))
    broker.claim_attempt(job.id, 1, "dead-machine", lease_seconds=5)
    broker.redis.lrem(q.key, 1, rq.id)
    broker.redis.zadd(q.started_job_registry.key, {f"{rq.id}:exec1": 9e9})  # as a started RQ worker would
    rq.set_status(JobStatus.STARTED)
    broker.clock = lambda: 9e12  # long past the lease
    assert broker.reap() == [job.id]
    assert broker.redis.zcard(q.started_job_registry.key) == 0
    assert FailedJobRegistry(q.name, connection=broker.redis).get_job_ids() == [rq.id]
    assert rq_list(broker) == [token(job.id, 2)] and broker.get(job.id).failures == {"infra": 1}


def test_bad_urls_and_unreachable_servers_are_one_line_errors():
    with pytest.raises(BrokerError, match="redis://") as bad:
        open_broker("redis://:hunter2@127.0.0.1:1/0")
    assert "hunter2" not in str(bad.value) and "\n" not in str(bad.value)
    with pytest.raises(BrokerError, match="cannot reach|Redis"):
        open_broker("unix:///nonexistent/golfq.sock")


def test_complete_result_round_trips_through_redis(broker):
    broker.submit([spec(seed=1)])
    lease = broker.claim("cpu", "w")
    result = Result(spec_id=lease.job_id, attempt=1, status="succeeded", val_bpb=1.1, artifact_bytes=10,
                    train_seconds=1.0, log_tail="a\nb")
    broker.complete(lease, result)
    assert broker.get(lease.job_id).result == result and broker.front("cpu").results == 1


def test_a_batch_writes_each_rq_job_exactly_as_rq_would(broker):
    """A submit builds the first RQ job with RQ and the rest from its hash: they must be what RQ writes itself."""
    jobs = broker.submit([spec(seed=s, name=f"n{s}") for s in range(3)])
    reference = RedisBroker("redis://fakeredis/0", client=fakeredis.FakeRedis(server=fakeredis.FakeServer()))
    stamps = {b"created_at", b"enqueued_at"}
    for job in jobs:
        with reference.redis.pipeline() as pipe:
            pipe.multi()
            reference.rq.enqueue(pipe, job, 0.0)  # RQ's own path, one job
            pipe.execute()
        tok = token(job.id, 1)
        ours, rqs = broker.redis.hgetall(RQJob.key_for(tok)), reference.redis.hgetall(RQJob.key_for(tok))
        assert {k: v for k, v in ours.items() if k not in stamps} == {k: v for k, v in rqs.items() if k not in stamps}
        fetched = RQJob.fetch(tok, connection=broker.redis, serializer=JSONSerializer)
        assert (fetched.func_name, fetched.args, fetched.meta) == (
            "golfq.workers.rq.job.run_attempt", [job.id, 1], {"golfq_job": job.id, "attempt": 1})
        assert fetched.description == f"golfq {job.spec.name} attempt 1" and fetched.get_status() == JobStatus.QUEUED
    assert rq_list(broker) == [token(job.id, 1) for job in jobs]


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/99x", "redis://127.0.0.1:6379/x", "rediss://h:1/-1"])
def test_a_database_that_is_not_a_number_is_refused_in_one_line(url):
    with pytest.raises(BrokerError, match=r"the database '.*' is not a number \(redis://HOST:PORT/DB\)") as error:
        open_broker(url)
    assert "\n" not in str(error.value)
