"""One atomic step of the Redis broker (golfq.core.broker.Txn) over a WATCH/MULTI/EXEC pipeline.

Reads WATCH each key before they read it (the pipeline is then in immediate mode),
writes are buffered and go out in one MULTI/EXEC with the step's events. If any
watched key changed meanwhile, EXEC fails and redis-py runs the whole step again
on a fresh RedisTxn, so a step must only read and compute until it commits.

Keys, all under one prefix (default "golfq"), beside RQ's own "rq:" keys:
  job:<id>        the Job, msgspec JSON           jobs          zset id -> order
  state:<state>   zset id -> order, per state      counts        hash "<pool>:<state>" -> n
  ready:<pool>    zset token -> priority, order    leases        zset id -> lease deadline
  events          stream, entry id "<seq>-0"        seq, order    counters
  obs             list of Observations (fronts)    scripts       hash ref -> bytes
  draining        set of pools                     parked:<pool> the RQ list of a draining pool
  curve:<id>:<n>  list of an attempt's ProgressPoints (its runner alone appends)
  workers:<pool>  hash worker id -> until (workers announcing that they serve the pool)
  budget:caps     hash scope -> dollars          budget:spent  hash scope -> dollars (HINCRBYFLOAT)
  budget:holds    hash "<id>/<attempt>" -> Hold (golfq.core.budget)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import msgspec

from golfq.core import lifecycle
from golfq.core.backends.redis.rq import Client, Lua, Pipeline, RQSide, next_token, parse_token
from golfq.core.broker import Txn
from golfq.core.budget import Hold
from golfq.core.events import Event, encode_event
from golfq.core.job import Job, JobState, Lease
from golfq.core.pareto import Observation

encode = msgspec.json.Encoder().encode
decode_job = msgspec.json.Decoder(Job).decode
decode_hold = msgspec.json.Decoder(Hold).decode
_PRIORITY_SPAN = 2**41  # ready score = (1000 - priority) * span + order: exact in a double

# Append events: seq numbers and stream ids come from one counter, in commit order.
APPEND_EVENTS = Lua("""
local seq = 0
for i = 1, #ARGV do
  seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], seq .. '-0', 'e', ARGV[i])
end
return seq
""")


class Keys:
    """The key layout above, for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.jobs, self.counts, self.leases = f"{prefix}:jobs", f"{prefix}:counts", f"{prefix}:leases"
        self.events, self.seq, self.order = f"{prefix}:events", f"{prefix}:seq", f"{prefix}:order"
        self.observations, self.scripts = f"{prefix}:obs", f"{prefix}:scripts"
        self.caps, self.spent, self.holds = f"{prefix}:budget:caps", f"{prefix}:budget:spent", f"{prefix}:budget:holds"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def workers(self, pool: str) -> str:
        return f"{self.prefix}:workers:{pool}"

    def curve(self, job_id: str, attempt: int) -> str:
        return f"{self.prefix}:curve:{job_id}:{attempt}"

    def state(self, state: JobState) -> str:
        return f"{self.prefix}:state:{state.value}"


def ready_score(job: Job) -> float:
    return (1000 - job.spec.priority) * _PRIORITY_SPAN + job.order


class RedisTxn(Txn):
    def __init__(self, client: Client, pipe: Pipeline, keys: Keys, rq: RQSide, now: float,
                 via_rq: bool = False) -> None:
        self.client, self.pipe, self.keys, self.rq = client, pipe, keys, rq
        self.now, self.via_rq = now, via_rq
        self.events: list[Event] = []
        self.reaped: list[Lease] = []
        self.saved: list[tuple[Job | None, Job]] = []
        self.created: list[Job] = []
        self.writes: list[Callable[[Pipeline], object]] = []  # other writes for the MULTI
        self.held: dict[str, Hold | None] = {}  # this step's ledger writes, read back by holds() and spent()
        self.added: dict[str, float] = {}

    # -- reads (each watched) ------------------------------------------------------------------

    def load_many(self, ids: Sequence[str]) -> dict[str, Job]:
        if not ids:
            return {}
        keys = [self.keys.job(job_id) for job_id in ids]
        self.pipe.watch(*keys)
        found = {job.id: job for raw in self.pipe.mget(keys) if raw is not None and (job := decode_job(raw))}
        wanted = set(ids)
        found.update((job.id, job) for job in [*self.created, *(new for _, new in self.saved)] if job.id in wanted)
        return found  # with this step's own (buffered) writes over the stored records

    def jobs_in(self, states: Sequence[JobState]) -> list[Job]:
        # The index is read unwatched; each job is then watched, and read again, under the step.
        found = self.load_many([m.decode() for s in states for m in self.client.zrange(self.keys.state(s), 0, -1)])
        return sorted((job for job in found.values() if job.state in states), key=lambda job: job.order)

    def expired(self) -> list[Job]:
        due = [m.decode() for m in self.client.zrangebyscore(self.keys.leases, "-inf", self.now)]
        found = self.load_many(due)
        gone = sorted(set(due) - set(found))
        if gone:  # lease entries without a job (purged): drop them
            self.writes.append(lambda pipe: pipe.zrem(self.keys.leases, *gone))
        return [job for job in found.values() if lifecycle.is_expired(job, self.now)]

    def next_queued(self, pool: str) -> Job | None:
        """The head of the pool's ready set, as long as its token is the job's next attempt.

        The set is read unwatched (the job record, watched, decides who wins); a stale token
        (claimed or cancelled elsewhere) is dropped at once, outside the step: it can never
        become valid again, and left in place it would block the pool.
        """
        ready = self.rq.ready_key(pool)
        while head := self.client.zrange(ready, 0, 0):
            token = head[0].decode()
            parsed = parse_token(token)
            job = self.load_many([parsed[0]]).get(parsed[0]) if parsed else None
            if job is not None and job.state is JobState.QUEUED and next_token(job) == token:
                return job
            self.client.zrem(ready, token)
        return None

    def caps(self) -> dict[str, float]:
        return self._floats(self.keys.caps)

    def spent(self) -> dict[str, float]:
        spent = self._floats(self.keys.spent)
        return {**spent, **{k: spent.get(k, 0.0) + usd for k, usd in self.added.items()}}

    def holds(self) -> dict[str, Hold]:
        self.pipe.watch(self.keys.holds)
        stored = {k.decode(): decode_hold(v) for k, v in self.pipe.hgetall(self.keys.holds).items()}
        merged = {**stored, **self.held}  # with this step's own (buffered) writes, as load_many
        return {k: hold for k, hold in merged.items() if hold is not None}

    def _floats(self, key: str) -> dict[str, float]:
        self.pipe.watch(key)
        return {k.decode(): float(v) for k, v in self.pipe.hgetall(key).items()}

    def queued(self, pool: str, limit: int) -> list[Job]:
        tokens = [t.decode() for t in self.client.zrange(self.rq.ready_key(pool), 0, limit - 1)]
        pairs = [(t, parsed[0]) for t in tokens if (parsed := parse_token(t))]
        found = self.load_many([job_id for _, job_id in pairs])
        return [job for t, job_id in pairs if (job := found.get(job_id)) is not None
                and job.state is JobState.QUEUED and next_token(job) == t]

    def draining(self, pool: str) -> bool:
        self.pipe.watch(self.rq.draining_key)
        return bool(self.pipe.sismember(self.rq.draining_key, pool))

    # -- buffered writes -----------------------------------------------------------------------

    def save(self, old: Job | None, new: Job, events: Iterable[Event]) -> None:
        self.events.extend(events)
        if new is not old:
            self.saved.append((old, new))

    def reserve_orders(self, count: int) -> int:
        return int(self.client.incrby(self.keys.order, count)) - count + 1  # gaps are harmless

    def insert(self, jobs: list[Job]) -> None:
        self.created.extend(jobs)

    def set_draining(self, pool: str, draining: bool) -> None:
        self.writes.append(lambda pipe: (self.rq.park if draining else self.rq.unpark)(pipe, pool))

    def set_cap(self, scope: str, usd: float | None) -> None:
        key = self.keys.caps
        self.writes.append(lambda pipe: pipe.hdel(key, scope) if usd is None else pipe.hset(key, scope, repr(usd)))

    def add_spent(self, scopes: Sequence[str], usd: float) -> None:
        if usd:  # an increment commutes with any other: written unwatched
            for scope in scopes:
                self.added[scope] = self.added.get(scope, 0.0) + usd
            self.writes.append(lambda pipe: [pipe.hincrbyfloat(self.keys.spent, s, usd) for s in scopes])

    def set_hold(self, key: str, hold: Hold | None) -> None:
        holds = self.keys.holds
        self.held[key] = hold
        self.writes.append(lambda pipe: pipe.hdel(holds, key) if hold is None else pipe.hset(holds, key, encode(hold)))

    def observe(self, obs: Observation) -> None:
        self.writes.append(lambda pipe: pipe.rpush(self.keys.observations, encode(obs)))

    def commit(self) -> None:
        """Send the buffered writes and events in one MULTI/EXEC (redis-py runs the EXEC)."""
        if not (self.saved or self.created or self.writes or self.events):
            return
        self.pipe.multi()
        self._write_new(self.created)
        for old, new in self.saved:
            self._write_transition(old, new)
        for write in self.writes:
            write(self.pipe)
        encoded = [encode_event(e) for e in self.events]
        if encoded:
            APPEND_EVENTS(keys=[self.keys.seq, self.keys.events], args=encoded, client=self.pipe)

    def _write_transition(self, old: Job | None, new: Job) -> None:
        pipe, keys = self.pipe, self.keys
        pipe.set(keys.job(new.id), encode(new))
        if old is None:
            pipe.zadd(keys.jobs, {new.id: new.order})
        if old is None or old.state is not new.state:
            if old is not None:
                pipe.zrem(keys.state(old.state), new.id)
                pipe.hincrby(keys.counts, f"{old.pool}:{old.state.value}", -1)
            pipe.zadd(keys.state(new.state), {new.id: new.order})
            pipe.hincrby(keys.counts, f"{new.pool}:{new.state.value}", 1)
        if new.state is JobState.LEASED:
            pipe.zadd(keys.leases, {new.id: new.lease_deadline or self.now})
        elif old is not None and old.state is JobState.LEASED:
            pipe.zrem(keys.leases, new.id)
        old_token = next_token(old) if old is not None and old.state is JobState.QUEUED else None
        new_token = next_token(new) if new.state is JobState.QUEUED else None
        if old is not None and old_token and old_token != new_token:
            pipe.zrem(self.rq.ready_key(old.pool), old_token)
            if not self.via_rq:
                self.rq.unqueue(pipe, old, cancelled=new.state is JobState.CANCELLED)
        if new_token and new_token != old_token:
            score = ready_score(new)
            pipe.zadd(self.rq.ready_key(new.pool), {new_token: score})
            self.rq.enqueue(pipe, new, score)
        if old is not None and old.state in lifecycle.REQUEUEABLE and new.state is JobState.QUEUED:
            self.rq.forget_failures(pipe, new)

    def _write_new(self, created: list[Job]) -> None:
        """_write_transition for a batch of new queued jobs, with one command per key instead of per job."""
        if not created:
            return
        pipe, keys = self.pipe, self.keys
        pipe.mset({keys.job(job.id): encode(job) for job in created})
        orders = {job.id: job.order for job in created}
        pipe.zadd(keys.jobs, orders)
        pipe.zadd(keys.state(JobState.QUEUED), orders)
        per_pool: dict[str, list[tuple[Job, float]]] = {}
        for job in sorted(created, key=ready_score):  # in order: the batch is pushed as it is
            per_pool.setdefault(job.pool, []).append((job, ready_score(job)))
        for pool, scored in per_pool.items():
            self.rq.enqueue_new(pipe, pool, scored)
            # after the push, so the push never scans for its batch-mates
            pipe.hincrby(keys.counts, f"{pool}:{JobState.QUEUED.value}", len(scored))
            pipe.zadd(self.rq.ready_key(pool), {next_token(job): score for job, score in scored})
