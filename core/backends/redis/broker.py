"""The Redis backend: golfq's records, events and fronts in Redis, jobs run as RQ jobs.

Every state change is golfq.core.lifecycle applied under WATCH on the keys it read and
written in one MULTI/EXEC with its events (a Redis stream), its counters and its
RQ side (golfq.core.backends.redis.rq): the shared shape of golfq.core.backends.txn over
redis_txn.RedisTxn. claim() differs: it follows the ready set's delivery tokens. Lease deadlines compare against the injected
clock, never Redis TIME, so tests can move time by hand.

Keys, all under one prefix (default "golfq"), beside RQ's own "rq:" keys:
  job:<id>        the Job, msgspec JSON           jobs          zset id -> order
  state:<state>   zset id -> order, per state      counts        hash "<pool>:<state>" -> n
  ready:<pool>    zset token -> priority, order    leases        zset id -> lease deadline
  events          stream, entry id "<seq>-0"        seq, order    counters
  obs:<track>     hash id -> Observation (front)   tracks        set
  scripts         hash ref -> bytes                draining      set of pools
  parked:<pool>   the RQ list of a draining pool
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from golfq.core import lifecycle
from golfq.core.backends.redis.reads import RedisReads, decode_job
from golfq.core.backends.redis.rq import RQSide, next_token, parse_token
from golfq.core.backends.redis.txn import RedisTxn
from golfq.core.backends.txn import TxnBroker, checked
from golfq.core.broker import BrokerError, Job, JobState, Lease
from golfq.core.events import Event, encode_event
from golfq.core.result import FailureKind
from golfq.core.spec import ExperimentSpec, script_ref

Clock = Callable[[], float]
T = TypeVar("T")
SUBMIT_CHUNK = 2000  # specs per MULTI/EXEC: each chunk is atomic, Redis stays responsive
_PRIORITY_SPAN = 2**41  # ready score = (1000 - priority) * span + order: exact in a double

_encode = msgspec.json.Encoder().encode

# Append events: seq numbers and stream ids come from one counter, in commit order.
_APPEND_EVENTS = """
local seq = 0
for i = 1, #ARGV do
  seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], seq .. '-0', 'e', ARGV[i])
end
return seq
"""


def _ready_score(job: Job) -> float:
    return (1000 - job.spec.priority) * _PRIORITY_SPAN + job.order


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


def connect(url: str, socket_timeout: float = 30.0) -> redis.Redis:
    """A pooled client with retry and backoff. Nothing golfq sends blocks for long,
    and RQ's workers raise their own socket timeout above their blocking dequeue."""
    try:
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=5.0, health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=12),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
    except ValueError as error:
        raise BrokerError(f"queue URL {redact(url)!r}: {error}") from None


class RedisBroker(RedisReads, TxnBroker):
    encode = staticmethod(_encode)
    poll_first, poll_cap = 0.02, 0.5  # each look is a few round trips
    def __init__(self, url: str, clock: Clock = time.time, *, client: redis.Redis | None = None,
                 prefix: str = "golfq") -> None:
        self.url = url
        self.clock = clock
        self.redis = client if client is not None else connect(url)
        self._check_reachable()
        self.prefix = prefix
        self.rq = RQSide(self.redis, prefix)
        self._append = self.redis.register_script(_APPEND_EVENTS)

    def _check_reachable(self) -> None:
        """Fail in about a second, not after the full retry budget meant for a restarting server."""
        steady = self.redis.get_retry()
        self.redis.set_retry(Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=3))
        try:
            self.redis.ping()
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise BrokerError(f"queue URL {redact(self.url)!r}: cannot reach Redis ({error})") from None
        except redis.ResponseError as error:  # reachable, but refuses this URL (a db index past `databases`)
            raise BrokerError(f"queue URL {redact(self.url)!r}: Redis refused it ({error})") from None
        finally:
            if steady is not None:
                self.redis.set_retry(steady)

    @classmethod
    def from_connection(cls, connection: redis.Redis, clock: Clock = time.time) -> RedisBroker:
        """The broker on an existing client (an RQ worker's), same server and db."""
        kw = connection.connection_pool.connection_kwargs
        where = f"unix://{kw['path']}" if "path" in kw else f"redis://{kw.get('host')}:{kw.get('port')}"
        return cls(f"{where}/{kw.get('db', 0)}", clock, client=connection)

    # keys
    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def _job_key(self, job_id: str) -> str:
        return self._k("job", job_id)

    # writes
    def _write_transition(self, pipe, old: Job | None, new: Job, *, via_rq: bool = False) -> None:
        """Queue one transition's writes (its events go with the step's); pipe is already in MULTI."""
        pipe.set(self._job_key(new.id), _encode(new))
        if old is None:
            pipe.zadd(self._k("jobs"), {new.id: new.order})
        if old is None or old.state is not new.state:
            if old is not None:
                pipe.zrem(self._k("state", old.state.value), new.id)
                pipe.hincrby(self._k("counts"), f"{old.pool}:{old.state.value}", -1)
            pipe.zadd(self._k("state", new.state.value), {new.id: new.order})
            pipe.hincrby(self._k("counts"), f"{new.pool}:{new.state.value}", 1)
        if new.state is JobState.LEASED:
            pipe.zadd(self._k("leases"), {new.id: new.lease_deadline})
        elif old is not None and old.state is JobState.LEASED:
            pipe.zrem(self._k("leases"), new.id)
        old_token = next_token(old) if old is not None and old.state is JobState.QUEUED else None
        new_token = next_token(new) if new.state is JobState.QUEUED else None
        if old_token and old_token != new_token:
            pipe.zrem(self.rq.ready_key(old.pool), old_token)
            if not via_rq:
                self.rq.unqueue(pipe, old, cancelled=new.state is JobState.CANCELLED)
        if new_token and new_token != old_token:
            score = _ready_score(new)
            pipe.zadd(self.rq.ready_key(new.pool), {new_token: score})
            self.rq.enqueue(pipe, new, score)
        if old is not None and old.state in lifecycle.REQUEUEABLE and new.state is JobState.QUEUED:
            self.rq.forget_failures(pipe, new)

    def _write_new(self, pipe, created: list[Job]) -> None:
        """_write_transition for a batch of new queued jobs, with one command per key instead of per job."""
        if not created:
            return
        pipe.mset({self._job_key(job.id): _encode(job) for job in created})
        orders = {job.id: job.order for job in created}
        pipe.zadd(self._k("jobs"), orders)
        pipe.zadd(self._k("state", JobState.QUEUED.value), orders)
        per_pool: dict[str, dict[str, float]] = {}
        for job in sorted(created, key=_ready_score):  # in order: each push is an RPUSH
            score = per_pool.setdefault(job.pool, {})[next_token(job)] = _ready_score(job)
            self.rq.enqueue(pipe, job, score)
        for pool, ready in per_pool.items():  # after the pushes, so no push scans for later batch-mates
            pipe.hincrby(self._k("counts"), f"{pool}:{JobState.QUEUED.value}", len(ready))
            pipe.zadd(self.rq.ready_key(pool), ready)

    def _events(self, pipe, events: Iterable[Event]) -> None:
        encoded = [encode_event(e) for e in events]
        if encoded:
            self._append(keys=[self._k("seq"), self._k("events")], args=encoded, client=pipe)

    def _load(self, pipe, job_id: str) -> Job | None:
        raw = pipe.get(self._job_key(job_id))
        return None if raw is None else decode_job(raw)

    def _write(self, work: Callable[[RedisTxn], T], *, via_rq: bool = False) -> T:
        """Run work as one atomic step (see redis_txn); then stop RQ's run of any leased job it cancelled."""
        steps: list[RedisTxn] = []

        def body(pipe):
            tx = RedisTxn(self, pipe, self.clock(), via_rq)
            steps[:] = [tx]
            out = work(tx)
            tx.commit()
            return out

        out = self.redis.transaction(body, value_from_callable=True)
        for old, new in steps[0].saved:
            if old is not None and old.state is JobState.LEASED and new.state is JobState.CANCELLED:
                self.rq.stop(new.id, old.attempt)
        return out

    def _transition(self, job_id: str, step: Callable[[Job, float], tuple[Job, list[Event]] | None], *,
                    via_rq: bool = False) -> tuple[Job, Job | None] | None:
        """Apply step to one job atomically; (old, new), new None when step declined; None if missing."""
        def work(tx: RedisTxn):
            old = tx.load(job_id)
            out = step(old, tx.now) if old is not None else None
            if out is not None:
                tx.save(old, *out)
            return None if old is None else (old, out[0] if out is not None else None)

        return self._write(work, via_rq=via_rq)

    def submit(self, specs: Sequence[ExperimentSpec]) -> list[Job]:
        specs, ids = checked(specs)  # all checked before anything is written: a bad batch queues nothing
        by_id: dict[str, Job] = {}
        for start in range(0, len(specs), SUBMIT_CHUNK):  # each chunk atomic, so Redis stays responsive
            chunk = [(s, i) for s, i in zip(specs[start:start + SUBMIT_CHUNK], ids[start:start + SUBMIT_CHUNK])
                     if i not in by_id]
            if chunk:
                chunk_specs, chunk_ids = [s for s, _ in chunk], [i for _, i in chunk]
                by_id.update(zip(chunk_ids, self._write(lambda tx: self._submit_in(tx, chunk_specs, chunk_ids))))
        return [by_id[i] for i in ids]

    def put_script(self, content: bytes) -> str:
        ref = script_ref(content)
        self.redis.hsetnx(self._k("scripts"), ref, content)
        return ref

    def get_script(self, ref: str) -> bytes:
        content = self.redis.hget(self._k("scripts"), ref)
        if content is None:
            raise KeyError(ref)
        return content

    def _try_claim(self, pool: str, worker_id: str, lease_seconds: float) -> Lease | None:
        return self._claim_head(pool, worker_id, lease_seconds)

    def _claim_head(self, pool: str, worker_id: str, lease_seconds: float) -> Lease | None:
        while True:
            if self.redis.sismember(self.rq.draining_key, pool):
                return None
            head = self.redis.zrange(self.rq.ready_key(pool), 0, 0)
            if not head:
                return None
            parsed = parse_token(head[0].decode())
            if parsed is None:  # not ours: drop it so it cannot block the pool
                self.redis.zrem(self.rq.ready_key(pool), head[0])
                continue
            lease = self.claim_attempt(*parsed, worker_id=worker_id, lease_seconds=lease_seconds, via_rq=False)
            if lease is not None:
                return lease

    def claim_attempt(self, job_id: str, attempt: int, worker_id: str, lease_seconds: float = 60.0,
                      via_rq: bool = True) -> Lease | None:
        """Lease exactly this attempt of this job, or None if it is not the next one
        (claimed elsewhere, cancelled, superseded). The RQ job function calls this."""
        leases: list[Lease] = []

        def step(job: Job, now: float):
            leases.clear()
            if job.state is not JobState.QUEUED or job.attempt + 1 != attempt:
                return None
            new, lease, events = lifecycle.claim(job, worker_id, lease_seconds, now)
            leases.append(lease)
            return new, events

        out = self._transition(job_id, step, via_rq=via_rq)
        if out is None or out[1] is None:
            if not via_rq and out is not None:
                self._drop_stale_token(out[0], job_id, attempt)
            return None
        return leases[0]

    def _drop_stale_token(self, job: Job, job_id: str, attempt: int) -> None:
        stale = f"{job_id}-{attempt}"
        if job.state is not JobState.QUEUED or next_token(job) != stale:
            self.redis.zrem(self.rq.ready_key(job.pool), stale)

    def fail_attempt(self, job_id: str, attempt: int, error: str, kind: FailureKind) -> JobState | None:
        """Fail an attempt from outside its runner (RQ saw its horse die); None unless it holds the lease."""
        def step(job: Job, now: float):
            if job.state is not JobState.LEASED or job.attempt != attempt:
                return None
            lease = Lease(job_id=job.id, attempt=attempt, worker_id=job.worker_id, pool=job.pool,
                          deadline=job.lease_deadline or now, spec=job.spec)
            return lifecycle.fail(job, lease, error, kind, now)

        out = self._transition(job_id, step)
        return None if out is None or out[1] is None else out[1].state

    def reap(self) -> list[str]:
        now = self.clock()
        reaped: list[str] = []
        for raw in self.redis.zrangebyscore(self._k("leases"), "-inf", now):
            job_id = raw.decode()
            out = self._transition(job_id, lambda job, t: lifecycle.expire(job, t) if lifecycle.is_expired(job, t) else None)
            if out is None:
                self.redis.zrem(self._k("leases"), job_id)  # a lease entry without a job
            elif out[1] is not None:
                reaped.append(job_id)
                self.rq.abandon(out[0].pool, job_id, out[0].attempt)
        return reaped

    def stranded(self, pool: str) -> list[str]:
        """RQ tokens moved out of the pool's queue by a worker that never started them,
        whose attempt is still the job's next one (the worker died in between)."""
        out = []
        for tok in self.rq.unstarted(pool):
            parsed = parse_token(tok)
            job = self.get(parsed[0]) if parsed else None
            if job is not None and job.state is JobState.QUEUED and next_token(job) == tok:
                out.append(tok)
        return out

    def unstrand(self, pool: str, tok: str) -> bool:
        return self.rq.unstrand(pool, tok)

    def requeue(self, ids: Sequence[str] = (), states: Sequence[JobState] = ()) -> list[str]:
        return super().requeue([self._job_id_of(i) for i in ids], states)

    @staticmethod
    def _job_id_of(name: str) -> str:
        """A golfq job id, or the job of an RQ job id ("<spec id>-<attempt>") from RQ's registries."""
        parsed = parse_token(name)
        return parsed[0] if parsed else name

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return f"RedisBroker({redact(self.url)!r})"

