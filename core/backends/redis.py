"""The Redis backend: golfq's records, events and fronts in Redis, jobs run as RQ jobs.

Every state change is core.lifecycle applied under WATCH on the job's key and
written in one MULTI/EXEC with its events (a Redis stream), its counters and its
RQ side (core.backends.redis_rq). Lease deadlines compare against the injected
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
from urllib.parse import urlsplit, urlunsplit

import msgspec
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from core import lifecycle
from core.backends.redis_reads import RedisReads, decode_job
from core.backends.redis_rq import RQSide, next_token, parse_token
from core.broker import BrokerError, CompleteOutcome, Job, JobState, Lease
from core.events import Event, EventKind, encode_event
from core.pareto import observation
from core.result import FailureKind, Result
from core.spec import ExperimentSpec, SpecError, script_ref

Clock = Callable[[], float]
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


class RedisBroker(RedisReads):
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
    def _write(self, pipe, old: Job | None, new: Job, events: Sequence[Event], *, via_rq: bool = False) -> None:
        """Queue one transition's writes; pipe is already in MULTI."""
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
        self._events(pipe, events)

    def _write_new(self, pipe, created: list[tuple[Job, list[Event]]]) -> None:
        """_write for a batch of new queued jobs, with one command per key instead of per job."""
        if not created:
            return
        pipe.mset({self._job_key(job.id): _encode(job) for job, _ in created})
        orders = {job.id: job.order for job, _ in created}
        pipe.zadd(self._k("jobs"), orders)
        pipe.zadd(self._k("state", JobState.QUEUED.value), orders)
        per_pool: dict[str, dict[str, float]] = {}
        for job, _ in sorted(created, key=lambda c: _ready_score(c[0])):  # in order: each push is an RPUSH
            score = per_pool.setdefault(job.pool, {})[next_token(job)] = _ready_score(job)
            self.rq.enqueue(pipe, job, score)
        for pool, ready in per_pool.items():  # after the pushes, so no push scans for later batch-mates
            pipe.hincrby(self._k("counts"), f"{pool}:{JobState.QUEUED.value}", len(ready))
            pipe.zadd(self.rq.ready_key(pool), ready)
        self._events(pipe, [e for _, events in created for e in events])

    def _events(self, pipe, events: Iterable[Event]) -> None:
        encoded = [encode_event(e) for e in events]
        if encoded:
            self._append(keys=[self._k("seq"), self._k("events")], args=encoded, client=pipe)

    def _load(self, pipe, job_id: str) -> Job | None:
        raw = pipe.get(self._job_key(job_id))
        return None if raw is None else decode_job(raw)

    def _transition(self, job_id: str, step: Callable[[Job, float], tuple[Job, list[Event]] | None], *,
                    via_rq: bool = False, extra: Callable | None = None):
        """Apply step to one job atomically; returns (old, new) or None if missing/unchanged."""
        def body(pipe):
            old = self._load(pipe, job_id)
            if old is None:
                return None
            out = step(old, self.clock())
            if out is None:
                return old, None
            new, events = out
            pipe.multi()
            self._write(pipe, old, new, events, via_rq=via_rq)
            if extra is not None:
                extra(pipe, old, new)
            return old, new

        return self.redis.transaction(body, self._job_key(job_id), value_from_callable=True)

    # Broker protocol
    def submit(self, specs: Sequence[ExperimentSpec]) -> list[Job]:
        specs = list(specs)
        for spec in specs:  # checked before anything is written: a bad batch queues nothing
            if not isinstance(spec, ExperimentSpec):
                raise SpecError(f"spec: expected an ExperimentSpec, got {type(spec).__name__}")
        by_id: dict[str, Job] = {}
        for start in range(0, len(specs), SUBMIT_CHUNK):
            chunk = [s for s in specs[start:start + SUBMIT_CHUNK] if s.id not in by_id]
            by_id.update(self._submit_chunk(chunk))
        return [by_id[s.id] for s in specs]

    def _submit_chunk(self, specs: list[ExperimentSpec]) -> dict[str, Job]:
        unique = list({s.id: s for s in specs}.values())
        if not unique:
            return {}
        keys = [self._job_key(s.id) for s in unique]
        first_order = int(self.redis.incrby(self._k("order"), len(unique))) - len(unique) + 1

        def body(pipe):
            found = pipe.mget(keys)
            now = self.clock()
            jobs: dict[str, Job] = {}
            created: list[tuple[Job, list[Event]]] = []
            for i, (spec, raw) in enumerate(zip(unique, found)):
                if raw is not None:
                    jobs[spec.id] = decode_job(raw)
                    continue
                job, events = lifecycle.new_job(spec, now, order=first_order + i)
                jobs[spec.id] = job
                created.append((job, events))
            pipe.multi()
            self._write_new(pipe, created)
            return jobs

        return self.redis.transaction(body, *keys, value_from_callable=True)

    def put_script(self, content: bytes) -> str:
        ref = script_ref(content)
        self.redis.hsetnx(self._k("scripts"), ref, content)
        return ref

    def get_script(self, ref: str) -> bytes:
        content = self.redis.hget(self._k("scripts"), ref)
        if content is None:
            raise KeyError(ref)
        return content

    def claim(self, pool: str, worker_id: str, lease_seconds: float = 60.0, timeout: float = 0.0) -> Lease | None:
        give_up = time.monotonic() + timeout
        pause = 0.02
        while True:
            lease = self._claim_head(pool, worker_id, lease_seconds)
            if lease is not None or time.monotonic() >= give_up:
                return lease
            time.sleep(min(pause, max(0.0, give_up - time.monotonic())))
            pause = min(pause * 2, 0.5)

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

    def heartbeat(self, lease: Lease, lease_seconds: float = 60.0) -> bool:
        def step(job: Job, now: float):
            new = lifecycle.heartbeat(job, lease, lease_seconds, now)
            return None if new is None else (new, [])

        out = self._transition(lease.job_id, step)
        return out is not None and out[1] is not None

    def complete(self, lease: Lease, result: Result) -> CompleteOutcome:
        outcomes: list[CompleteOutcome] = []

        def step(job: Job, now: float):
            new, events, outcome = lifecycle.complete(job, lease, result, now)
            outcomes[:] = [outcome]
            return (new, events) if events or new is not job else None

        out = self._transition(lease.job_id, step, extra=self._record_observation)
        if out is None:
            raise KeyError(lease.job_id)
        return outcomes[0]

    def _record_observation(self, pipe, old: Job, new: Job) -> None:
        if new.state is not JobState.SUCCEEDED or old.state is JobState.SUCCEEDED or new.result is None:
            return
        obs = observation(new.id, new.spec, new.result)
        if obs is not None:
            pipe.hset(self._k("obs", obs.track), new.id, _encode(obs))
            pipe.sadd(self._k("tracks"), obs.track)

    def fail(self, lease: Lease, error: str, kind: FailureKind, result: Result | None = None) -> JobState:
        out = self._transition(lease.job_id, lambda job, now: lifecycle.fail(job, lease, error, kind, now, result))
        if out is None:
            raise KeyError(lease.job_id)
        return (out[1] or out[0]).state

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

    def cancel(self, ids: Sequence[str]) -> list[str]:
        changed: list[str] = []
        for job_id in dict.fromkeys(ids):
            out = self._transition(job_id, lambda job, now: lifecycle.cancel(job, now) if not job.state.terminal else None)
            if out is None or out[1] is None:
                continue
            changed.append(job_id)
            if out[0].state is JobState.LEASED:
                self.rq.stop(job_id, out[0].attempt)
        return changed

    def drain(self, pool: str) -> None:
        if not self.redis.sismember(self.rq.draining_key, pool):
            self.rq.park(pool)
            self._log_pool(EventKind.DRAINED, pool)

    def resume(self, pool: str) -> None:
        if self.redis.sismember(self.rq.draining_key, pool):
            self.rq.unpark(pool)
            self._log_pool(EventKind.RESUMED, pool)

    def _log_pool(self, kind: EventKind, pool: str) -> None:
        with self.redis.pipeline() as pipe:
            self._events(pipe, [lifecycle.pool_event(kind, pool, self.clock())])
            pipe.execute()

    def requeue(self, ids: Sequence[str] = (), states: Sequence[JobState] = ()) -> list[str]:
        wanted = [self._job_id_of(i) for i in ids]
        for state in states:
            wanted += [m.decode() for m in self.redis.zrange(self._k("state", state.value), 0, -1)]
        changed: list[str] = []
        for job_id in dict.fromkeys(wanted):
            out = self._transition(job_id, lambda job, now: lifecycle.requeue(job, now) if job.state in lifecycle.REQUEUEABLE else None,
                                   extra=lambda pipe, old, new: self.rq.forget_failures(pipe, new))
            if out is not None and out[1] is not None:
                changed.append(job_id)
        return changed

    @staticmethod
    def _job_id_of(name: str) -> str:
        """A golfq job id, or the job of an RQ job id ("<spec id>-<attempt>") from RQ's registries."""
        parsed = parse_token(name)
        return parsed[0] if parsed else name

    def close(self) -> None:
        self.redis.close()

    def __repr__(self) -> str:
        return f"RedisBroker({redact(self.url)!r})"

