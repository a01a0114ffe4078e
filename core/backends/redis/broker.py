"""The Redis backend: golfq's records, events and observations in Redis, jobs run as RQ jobs.

Every state change is golfq.core.broker's shared write path over txn.RedisTxn: the
lifecycle rule applied under WATCH on the keys it read, written in one MULTI/EXEC with
its events (a Redis stream), its counters and its RQ side (rq.py). After a commit the
broker tells RQ what it cannot learn from the lists alone: reaped attempts leave RQ's
started registry at once, and a cancelled running attempt gets RQ's stop command.
Lease deadlines compare against the injected clock, never Redis TIME, so tests can
move time by hand. txn.py documents the key layout.
"""

from __future__ import annotations

import builtins
import functools
import heapq
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import msgspec
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from rq.job import Job as RQJob

from golfq.core import budget, lifecycle
from golfq.core.backends.redis.rq import Client, RQSide, next_token, parse_token
from golfq.core.backends.redis.txn import Keys, RedisTxn, decode_job, ready_score
from golfq.core.broker import Broker, BrokerError, Txn
from golfq.core.events import Event, decode_event
from golfq.core.job import Job, JobState, Lease, PoolStats, Stats
from golfq.core.pareto import Observation
from golfq.core.pools import known_pools
from golfq.core.result import FailureKind, ProgressPoint
from golfq.core.spec import blob_ref, stored_ref

Clock = Callable[[], float]
T = TypeVar("T")
_decode_obs = msgspec.json.Decoder(Observation).decode
_decode_point = msgspec.json.Decoder(ProgressPoint).decode
_encode = msgspec.json.Encoder().encode


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{netloc}"))


def connect(url: str, socket_timeout: float = 30.0) -> redis.Redis:
    """A pooled client with retry and backoff. Nothing golfq sends blocks for long,
    and RQ's workers raise their own socket timeout above their blocking dequeue."""
    parts = urlsplit(url)
    db = parts.path.lstrip("/")
    if parts.scheme in ("redis", "rediss") and db and not db.isdigit():
        raise BrokerError(f"queue URL {redact(url)!r}: the database {db!r} is not a number (redis://HOST:PORT/DB)")
    try:
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=5.0, health_check_interval=30,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries=12),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
    except ValueError as error:
        raise BrokerError(f"queue URL {redact(url)!r}: {error}") from None


class RedisBroker(Broker):
    poll_first, poll_cap = 0.02, 0.5  # each look is a few round trips
    submit_chunk = 2000  # specs per MULTI/EXEC: each chunk is atomic, and Redis stays responsive

    def __init__(self, url: str, clock: Clock = time.time, *, client: redis.Redis | None = None,
                 prefix: str = "golfq", check: bool = True) -> None:
        super().__init__(url, clock)
        self.redis: Client = client if client is not None else connect(url)
        if check:
            self._check_reachable()
        self.keys = Keys(prefix)
        self.rq = RQSide(self.redis, prefix)

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
        return cls(f"{where}/{kw.get('db', 0)}", clock, client=connection, check=False)  # it is connected

    def __repr__(self) -> str:
        return f"RedisBroker({redact(self.url)!r})"

    # -- the write path ------------------------------------------------------------------------

    def _atomic(self, step: Callable[[Txn], T], *, via_rq: bool = False) -> T:
        def body(pipe: Any) -> T:
            txn = RedisTxn(self.redis, pipe, self.keys, self.rq, self.clock(), via_rq)
            out = step(txn)
            txn.commit()
            return out

        return self.redis.transaction(body, value_from_callable=True)

    def _after_commit(self, txn: Txn) -> None:
        """Tell RQ: reaped attempts leave its started registry now, cancelled running ones are stopped."""
        assert isinstance(txn, RedisTxn)
        for lease in txn.reaped:
            self.rq.abandon(lease.pool, lease.job_id, lease.attempt)
        for old, new in txn.saved:
            if old is not None and old.state is JobState.LEASED and new.state is JobState.CANCELLED:
                self.rq.stop(new.id, old.attempt)

    def _transition(self, job_id: str, step: Callable[[Job, float], tuple[Job, list[Event]] | None]
                    ) -> tuple[Job, Job | None] | None:
        """Apply step to one job atomically; (old, new), new None when step declined; None if missing."""
        def work(tx: Txn) -> tuple[Job, Job | None] | None:
            old = tx.load(job_id)
            out = step(old, tx.now) if old is not None else None
            if old is not None and out is not None:
                tx.save(old, *out)
            return None if old is None else (old, out[0] if out is not None else None)

        return self._write(work)

    # -- RQ's delivery path (workers/rq) -------------------------------------------------------

    def claim_attempt(self, job_id: str, attempt: int, worker_id: str, lease_seconds: float = 60.0) -> Lease | None:
        """Lease exactly this attempt of this job, or None if it is not the next one
        (claimed elsewhere, cancelled, superseded). The RQ job function calls this."""
        leases: builtins.list[Lease] = []

        def step(tx: Txn) -> None:
            leases.clear()
            job = tx.load(job_id)
            if job is None or job.state is not JobState.QUEUED or job.attempt + 1 != attempt:
                return
            if budget.blocked(tx, job.spec):  # the token waits aside until the caps let it start
                assert isinstance(tx, RedisTxn)
                tx.writes.append(lambda pipe: pipe.rpush(self.rq.held_key(job.pool), next_token(job)))
                return
            new, lease, events = lifecycle.claim(job, worker_id, lease_seconds, tx.now)
            tx.save(job, new, events)
            leases.append(lease)

        self._atomic(self._settling(step), via_rq=True)  # RQ already moved the token: leave RQ's lists alone
        return leases[0] if leases else None

    def release_held(self, pools: Sequence[str] | None = None) -> builtins.list[str]:
        """Give RQ back the tokens a cap held in these pools (default: every known pool), for the jobs that
        may start now (still next, caps allow); each as a fresh RQ job, since RQ finished the one that was
        refused. Returns their tokens. One read per pool: no scan of the keyspace (a worker runs it each round)."""
        released = []
        for pool in sorted(known_pools()) if pools is None else pools:
            for raw in self.redis.lrange(self.rq.held_key(pool), 0, -1):
                tok = raw.decode()
                if self._atomic(functools.partial(self._unhold_in, pool=pool, tok=tok)):
                    released.append(tok)
        return released

    def _unhold_in(self, tx: Txn, pool: str, tok: str) -> bool:
        assert isinstance(tx, RedisTxn)
        parsed = parse_token(tok)
        if tx.client.hget(RQJob.key_for(tok), "status") in (b"queued", b"started"):
            return False  # the horse that refused it has not finished its RQ job yet
        job = tx.load(parsed[0]) if parsed else None
        waiting = job is not None and job.state is JobState.QUEUED and next_token(job) == tok
        if job is not None and waiting and budget.blocked(tx, job.spec):
            return False
        held = self.rq.held_key(pool)
        tx.writes.append(lambda pipe: pipe.lrem(held, 1, tok))
        if job is not None and waiting:
            tx.writes.append(lambda pipe: self.rq.redeliver(pipe, job, ready_score(job)))
        return waiting

    def fail_attempt(self, job_id: str, attempt: int, error: str, kind: FailureKind) -> JobState | None:
        """Fail an attempt from outside its runner (RQ saw its horse die); None unless it holds the lease."""
        def step(job: Job, now: float) -> tuple[Job, list[Event]] | None:
            if job.state is not JobState.LEASED or job.attempt != attempt:
                return None
            lease = Lease(job_id=job.id, attempt=attempt, worker_id=job.worker_id, pool=job.pool,
                          deadline=job.lease_deadline or now, spec=job.spec)
            return lifecycle.fail(job, lease, error, kind, now)

        out = self._transition(job_id, step)
        return None if out is None or out[1] is None else out[1].state

    def set_budget(self, scope: str, usd: float | None) -> None:
        super().set_budget(scope, usd)
        self.release_held()  # a raised cap lets held tokens go to RQ's workers now

    def stranded(self, pool: str) -> builtins.list[str]:
        """RQ tokens a worker took off the pool's list whose attempt is still the job's next
        one: nobody claimed it. A live work horse claims within milliseconds of taking a
        token, so one that stays stranded belongs to a worker that died in between."""
        out = []
        for tok in self.rq.taken(pool):
            parsed = parse_token(tok)
            job = self.get(parsed[0]) if parsed else None
            if job is not None and job.state is JobState.QUEUED and next_token(job) == tok:
                out.append(tok)
        return out

    def unstrand(self, pool: str, tok: str) -> bool:
        return self.rq.unstrand(pool, tok)

    def requeue(self, ids: Sequence[str] = (), states: Sequence[JobState] = (),
                resume: bool = False) -> builtins.list[str]:
        return super().requeue([self._job_id_of(i) for i in ids], states, resume)

    @staticmethod
    def _job_id_of(name: str) -> str:
        """A golfq job id, or the job of an RQ job id ("<spec id>-<attempt>") from RQ's registries."""
        parsed = parse_token(name)
        return parsed[0] if parsed else name

    # -- scripts and purge ---------------------------------------------------------------------

    def put_script(self, content: bytes) -> str:
        ref = stored_ref(content)
        self.redis.hsetnx(self.keys.scripts, ref, content)
        return ref

    def get_script(self, ref: str) -> bytes:
        content = self.redis.hget(self.keys.scripts, blob_ref(ref))
        if content is None:
            raise KeyError(ref)
        return bytes(content)

    def purge(self, before: float) -> int:
        purged = 0
        for state in (s for s in JobState if s.terminal):
            for job in self.list([state]):
                if job.updated_at < before and self._purge_one(job.id, before):
                    purged += 1
        return purged

    def _purge_one(self, job_id: str, before: float) -> bool:
        keys = self.keys

        def body(pipe: Any) -> bool:
            raw = pipe.get(keys.job(job_id))
            job = None if raw is None else decode_job(raw)
            if job is None or not job.state.terminal or job.updated_at >= before:
                return False
            pipe.multi()
            pipe.delete(keys.job(job_id))
            pipe.zrem(keys.jobs, job_id)
            pipe.zrem(keys.state(job.state), job_id)
            pipe.hincrby(keys.counts, f"{job.pool}:{job.state.value}", -1)
            return True

        return bool(self.redis.transaction(body, keys.job(job_id), value_from_callable=True))

    # -- reads ---------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.get(self.keys.job(job_id))
        return None if raw is None else decode_job(raw)

    def list(self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None,
             limit: int | None = None) -> builtins.list[Job]:
        sources = [self.keys.state(JobState(s)) for s in dict.fromkeys(states)] or [self.keys.jobs]
        streams = [[(score, m.decode()) for m, score in self.redis.zrange(k, 0, -1, withscores=True)] for k in sources]
        ids = [job_id for _, job_id in heapq.merge(*streams)]
        jobs: builtins.list[Job] = []
        for start in range(0, len(ids), 1000):
            for raw in self.redis.mget([self.keys.job(i) for i in ids[start:start + 1000]]):
                if raw is None:
                    continue
                job = decode_job(raw)
                if (pool is None or job.pool == pool) and (tag is None or tag in job.spec.tags):
                    jobs.append(job)
                    if limit is not None and len(jobs) >= limit:
                        return jobs
        return jobs

    def stats(self) -> Stats:
        counts: dict[str, dict[str, int]] = {}
        for field, value in self.redis.hgetall(self.keys.counts).items():
            pool, _, state = field.decode().rpartition(":")
            counts.setdefault(pool, {})[state] = int(value)
        draining = {m.decode() for m in self.redis.smembers(self.rq.draining_key)}
        pools = {p: PoolStats(**{s: n for s, n in counts.get(p, {}).items() if n}, draining=p in draining)
                 for p in sorted(set(counts) | draining)}
        return Stats(pools=pools, last_seq=int(self.redis.get(self.keys.seq) or 0), backend="redis",
                     extra=self.rq.counts(sorted(pools)))

    def events(self, after_seq: int = 0, limit: int = 1000) -> builtins.list[Event]:
        entries = self.redis.xrange(self.keys.events, min=str(after_seq + 1), max="+", count=limit)
        return [msgspec.structs.replace(decode_event(fields[b"e"]), seq=int(entry_id.split(b"-")[0]))
                for entry_id, fields in entries]

    def report_progress(self, job_id: str, attempt: int, points: Sequence[ProgressPoint]) -> None:
        if points:
            self.redis.rpush(self.keys.curve(job_id, attempt), *(_encode(p) for p in points))

    def announce(self, pool: str, worker_id: str, seconds: float) -> None:
        self.redis.hset(self.keys.workers(pool), worker_id, repr(self.clock() + seconds))

    def serving(self, pool: str) -> int | None:
        """Announced workers (a local fleet on this queue) plus RQ's live workers on the pool's queue."""
        now = self.clock()
        announced = self.redis.hgetall(self.keys.workers(pool))
        live = sum(1 for until in announced.values() if float(until) > now)
        return live + self.rq.workers(pool)

    def _curve(self, job_id: str, attempt: int) -> builtins.list[ProgressPoint]:
        return [_decode_point(raw) for raw in self.redis.lrange(self.keys.curve(job_id, attempt), 0, -1)]

    def _observations(self, after: int) -> builtins.list[tuple[int, Observation]]:
        raws = self.redis.lrange(self.keys.observations, after, -1)
        return [(after + i + 1, _decode_obs(raw)) for i, raw in enumerate(raws)]

    def close(self) -> None:
        self.redis.close()
