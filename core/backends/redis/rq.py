"""RQ's side of the Redis backend: one RQ queue per pool, one RQ job per attempt.

golfq's job record is the only source of truth. An RQ job is a delivery token for
one attempt, id "<spec id>-<attempt>" ([A-Za-z0-9_-] only, as RQ requires); it is
created in the same MULTI/EXEC that queues the golfq job, and whoever claims the
attempt (an RQ work horse through golfq.workers.rq.job, or Broker.claim) does so under
WATCH on the golfq record, so only one of them ever wins it.

RQ's own Retry is never used: a retry in RQ re-runs the same job id, i.e. an
attempt whose lease is gone. golfq's failure classes and budgets decide instead,
and each retry is a fresh RQ job for the next attempt.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

from rq import Callback, Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job as RQJob
from rq.job import JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry, FinishedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from golfq.core.job import Job

# redis-py types every reply as the union of what decode_responses=True and False could give;
# golfq's clients never decode, so replies are bytes. `Client` stands in for that missing precision.
Client = Any
Pipeline = Any

QUEUE_PREFIX = "golfq:"
RUN_ATTEMPT = "golfq.workers.rq.job.run_attempt"
ON_FAILURE = "golfq.workers.rq.job.on_failure"
ON_STOPPED = "golfq.workers.rq.job.on_stopped"
RESULT_TTL = 3600  # finished RQ jobs are only a view; golfq's record keeps the result
FAILURE_TTL = 30 * 24 * 3600
# RQ's hard limit sits above the runner's own hard timeout, so the runner (which
# kills the training process group cleanly) always acts first.
TIMEOUT_MARGIN = 120
_TOKEN = re.compile(r"^([a-z2-7]{16})-(\d+)$")

# Insert a token into the pool's RQ list before the first queued token that the
# ready set (tokens scored by priority, then FIFO) ranks after it, so RQ workers
# take jobs in golfq's order; the common case (nothing ranks after it) is an RPUSH. While the pool
# drains, tokens go to the parked list, which RQ workers do not listen on.
_INSERT = """
local list = KEYS[1]
if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then list = KEYS[2] end
local score = tonumber(ARGV[3]) or tonumber(redis.call('ZSCORE', KEYS[3], ARGV[1]))
if score then
  local later = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. string.format('%.17g', score), '+inf', 'LIMIT', 0, 16)
  for _, pivot in ipairs(later) do
    if redis.call('LINSERT', list, 'BEFORE', pivot, ARGV[1]) > 0 then return 1 end
  end
end
redis.call('RPUSH', list, ARGV[1])
return 1
"""

# The same for a batch of new tokens, sorted by score: each that ranks before an existing
# token goes in before it, the rest (the common case: nothing waiting ranks after them) go
# to the end in one RPUSH per thousand.
_INSERT_MANY = """
local list = KEYS[1]
if redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then list = KEYS[2] end
local top = redis.call('ZRANGE', KEYS[3], -1, -1, 'WITHSCORES')
local highest = tonumber(top[2])
local tail = {}
for i = 2, #ARGV, 2 do
  local tok, score, placed = ARGV[i], tonumber(ARGV[i + 1]), false
  if highest and score < highest then
    local later = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. string.format('%.17g', score), '+inf', 'LIMIT', 0, 16)
    for _, pivot in ipairs(later) do
      if redis.call('LINSERT', list, 'BEFORE', pivot, tok) > 0 then placed = true; break end
    end
  end
  if not placed then tail[#tail + 1] = tok end
end
for i = 1, #tail, 1000 do
  redis.call('RPUSH', list, unpack(tail, i, math.min(i + 999, #tail)))
end
return #tail
"""

# Move every parked token back in front of the live list (they are older).
_UNPARK = """
local n = 0
while true do
  local tok = redis.call('RPOP', KEYS[2])
  if not tok then return n end
  redis.call('LPUSH', KEYS[1], tok)
  n = n + 1
end
"""

# Put back a token that a worker took but never ran: still in RQ's intermediate list, or in
# its started registry (the worker died between starting the RQ job and claiming the
# attempt). Back at the head of the pool's list (it is older than what waits there), or of
# the parked list while the pool drains.
_UNSTRAND = """
local taken = redis.call('LREM', KEYS[1], 1, ARGV[1])
if taken == 0 then
  local prefix = ARGV[1] .. ':'
  for _, member in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    if string.sub(member, 1, #prefix) == prefix then
      taken = taken + redis.call('ZREM', KEYS[3], member)
    end
  end
  if taken == 0 then return 0 end
  redis.call('HSET', KEYS[4], 'status', 'queued')
end
local list = KEYS[2]
if redis.call('SISMEMBER', KEYS[5], ARGV[2]) == 1 then list = KEYS[6] end
redis.call('LPUSH', list, ARGV[1])
return 1
"""


class Lua:
    """A script sent as EVAL. Inside a MULTI, redis-py's registered scripts cost a SCRIPT EXISTS
    round trip on every execute; EVAL costs the script's few hundred bytes, and the server
    caches it compiled by its hash all the same."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, keys: list[str], args: list[Any], client: Client) -> Any:
        return client.eval(self.source, len(keys), *keys, *args)


def token(job_id: str, attempt: int) -> str:
    return f"{job_id}-{attempt}"


def parse_token(rq_job_id: str) -> tuple[str, int] | None:
    match = _TOKEN.match(rq_job_id)
    return (match.group(1), int(match.group(2))) if match else None


def queue_name(pool: str) -> str:
    return QUEUE_PREFIX + pool


def _attempt_fields(job: Job, attempt: int) -> dict[str, Any]:
    """What differs between the RQ jobs of two attempts."""
    return {"args": [job.id, attempt], "timeout": int(job.spec.budget.hard_timeout) + TIMEOUT_MARGIN,
            "description": f"golfq {job.spec.name or job.id} attempt {attempt}",
            "meta": {"golfq_job": job.id, "attempt": attempt}}


def next_token(job: Job) -> str:
    """The token of the attempt a queued job's next claim will be."""
    return token(job.id, job.attempt + 1)


class _GolfqQueue(Queue):
    """An RQ queue whose pushes keep golfq's priority order (see _INSERT)."""

    side: RQSide
    pool: str

    def push_job_id(self, job_id: str, pipeline: Pipeline | None = None, at_front: bool = False) -> None:
        side = self.side
        if side.batch is not None:  # enqueue_new pushes the whole batch at once
            side.batch.append((job_id, side.scores.pop(job_id)))
            return
        keys = [self.key, side.parked_key(self.pool), side.ready_key(self.pool), side.draining_key]
        score = side.scores.pop(job_id, "")  # unknown when RQ itself re-pushes: the script looks it up
        side.insert_script(keys=keys, args=[job_id, self.pool, repr(score) if score != "" else ""],
                           client=pipeline if pipeline is not None else self.connection)


class RQSide:
    """Everything the Redis broker does to RQ's keys, inside the broker's transactions."""

    serializer = JSONSerializer

    def __init__(self, connection: Client, prefix: str) -> None:
        self.connection = connection
        self.prefix = prefix
        self.draining_key = f"{prefix}:draining"
        self.insert_script, self.insert_many_script = Lua(_INSERT), Lua(_INSERT_MANY)
        self.unpark_script, self.unstrand_script = Lua(_UNPARK), Lua(_UNSTRAND)
        self.batch: list[tuple[str, float]] | None = None  # tokens collected while enqueue_new runs
        self._queues: dict[str, _GolfqQueue] = {}
        self.scores: dict[str, float] = {}  # token -> ready score, handed from enqueue to push_job_id

    def ready_key(self, pool: str) -> str:
        return f"{self.prefix}:ready:{pool}"

    def parked_key(self, pool: str) -> str:
        return f"{self.prefix}:parked:{pool}"

    def held_key(self, pool: str) -> str:
        """Tokens a work horse took but a spend cap kept from starting (golfq.core.budget)."""
        return f"{self.prefix}:held:{pool}"

    def queue(self, pool: str) -> _GolfqQueue:
        if pool not in self._queues:
            q = _GolfqQueue(queue_name(pool), connection=self.connection, serializer=self.serializer)
            q.side, q.pool = self, pool
            self._queues[pool] = q
        return self._queues[pool]

    def enqueue(self, pipe: Pipeline, job: Job, score: float) -> RQJob:
        """Create the RQ job for the job's next attempt and push it (pipe is in MULTI)."""
        q = self.queue(job.pool)
        attempt = job.attempt + 1
        self.scores[token(job.id, attempt)] = score
        fields = _attempt_fields(job, attempt)
        rq_job = q.create_job(
            RUN_ATTEMPT, args=fields["args"], job_id=token(job.id, attempt), timeout=fields["timeout"],
            result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL, description=fields["description"], meta=fields["meta"],
            on_failure=Callback(ON_FAILURE), on_stopped=Callback(ON_STOPPED),
        )
        return q.enqueue_job(rq_job, pipeline=pipe)

    def redeliver(self, pipe: Pipeline, job: Job, score: float) -> None:
        """A fresh RQ job for a queued attempt whose RQ job already ran (and did not claim it)."""
        tok = next_token(job)
        FinishedJobRegistry(queue_name(job.pool), connection=self.connection).remove(tok, pipeline=pipe)
        pipe.delete(RQJob.key_for(tok))
        self.enqueue(pipe, job, score)

    def enqueue_new(self, pipe: Pipeline, pool: str, scored: list[tuple[Job, float]]) -> None:
        """enqueue for a batch of new queued jobs of one pool, sorted by score: one push for them all.

        RQ builds the first RQ job; the rest are its stored hash with their own arguments, so a
        batch costs one HSET per job instead of RQ's object per job (tests/test_redis_broker.py
        checks the hashes equal what RQ writes itself).
        """
        self.batch = []
        try:
            first = self.enqueue(pipe, *scored[0]).to_dict()
            for job, score in scored[1:]:
                attempt = job.attempt + 1
                tok = token(job.id, attempt)
                fields = _attempt_fields(job, attempt)
                data = self.serializer.dumps((RUN_ATTEMPT, None, fields["args"], {}))
                pipe.hset(RQJob.key_for(tok), mapping={
                    **first, "data": zlib.compress(data), "timeout": fields["timeout"],
                    "description": fields["description"], "meta": self.serializer.dumps(fields["meta"])})
                self.batch.append((tok, score))
            args: list[object] = [pool]
            for tok, score in self.batch:
                args += [tok, repr(score)]
        finally:
            self.batch = None
        q = self.queue(pool)
        self.insert_many_script(keys=[q.key, self.parked_key(pool), self.ready_key(pool), self.draining_key],
                                args=args, client=pipe)

    def unqueue(self, pipe: Pipeline, job: Job, cancelled: bool) -> None:
        """Take a queued attempt's RQ job out of RQ's lists (pipe is in MULTI).

        Claimed through Broker.claim: the RQ job is deleted, it will never run.
        Cancelled: it goes to RQ's canceled registry, so RQ's tools show it.
        """
        tok = next_token(job)
        for key in (self.queue(job.pool).key, self.parked_key(job.pool)):
            pipe.lrem(key, 1, tok)
        if not cancelled:
            pipe.delete(RQJob.key_for(tok))
            return
        rq_job = RQJob(tok, connection=self.connection, serializer=self.serializer)
        rq_job.set_status(JobStatus.CANCELED, pipeline=pipe)
        CanceledJobRegistry(queue_name(job.pool), connection=self.connection, serializer=self.serializer).add(
            rq_job, ttl=FAILURE_TTL, pipeline=pipe)

    def forget_failures(self, pipe: Pipeline, job: Job) -> None:
        """Drop a requeued job's earlier attempts from RQ's failed and canceled registries."""
        names = [token(job.id, a) for a in range(1, job.attempt + 2)]
        for registry in (FailedJobRegistry, CanceledJobRegistry):
            pipe.zrem(registry(queue_name(job.pool), connection=self.connection).key, *names)

    def stop(self, job_id: str, attempt: int) -> None:
        """RQ's stop command to the worker running this attempt, if one is."""
        try:
            send_stop_job_command(self.connection, token(job_id, attempt), serializer=self.serializer)
        except (InvalidJobOperation, NoSuchJobError):
            pass  # not running under an RQ worker: the runner's heartbeat sees the cancel

    def abandon(self, pool: str, job_id: str, attempt: int) -> int:
        """RQ's started-registry clean-up for one attempt golfq reaped.

        Its executions are scored to 0 and RQ's own cleanup moves the RQ job to the
        failed registry now, not after RQ's maintenance interval (10 min by default).
        """
        registry = StartedJobRegistry(queue_name(pool), connection=self.connection, serializer=self.serializer)
        prefix = token(job_id, attempt) + ":"
        members = [m for m in self.connection.zrange(registry.key, 0, -1) if m.decode().startswith(prefix)]
        if not members:
            return 0
        self.connection.zadd(registry.key, {m: 0 for m in members}, xx=True)
        registry.cleanup(timestamp=1)
        return len(members)

    def taken(self, pool: str) -> list[str]:
        """Tokens workers took off the pool's list: in RQ's intermediate list (BLMOVE's target)
        or in its started registry. Those whose attempt nobody claimed were taken by a worker
        that died in between (the broker checks which)."""
        q = self.queue(pool)
        started = [m.decode().split(":", 1)[0] for m in self.connection.zrange(
            StartedJobRegistry(q.name, connection=self.connection).key, 0, -1)]
        moved = [t.decode() for t in self.connection.lrange(q.intermediate_queue_key, 0, -1)]
        return list(dict.fromkeys(moved + started))

    def unstrand(self, pool: str, tok: str) -> bool:
        q = self.queue(pool)
        started = StartedJobRegistry(q.name, connection=self.connection).key
        keys = [q.intermediate_queue_key, q.key, started, RQJob.key_for(tok), self.draining_key, self.parked_key(pool)]
        return bool(self.unstrand_script(keys=keys, args=[tok, pool], client=self.connection))

    def park(self, pipe: Pipeline, pool: str) -> None:
        """Draining: RQ workers stop seeing the pool's queued jobs (pipe is in MULTI)."""
        pipe.sadd(self.draining_key, pool)
        self.unpark_script(keys=[self.parked_key(pool), self.queue(pool).key], args=[], client=pipe)

    def unpark(self, pipe: Pipeline, pool: str) -> None:
        pipe.srem(self.draining_key, pool)
        self.unpark_script(keys=[self.queue(pool).key, self.parked_key(pool)], args=[], client=pipe)

    def workers(self, pool: str) -> int:
        """RQ's live workers listening on the pool's queue (its registry expires dead ones)."""
        return len(Worker.all(connection=self.connection, queue=self.queue(pool)))

    def counts(self, pools: list[str]) -> dict[str, int]:
        """RQ's own view of each pool, for Stats.extra."""
        out: dict[str, int] = {}
        for pool in pools:
            q = self.queue(pool)
            name = q.name
            out[f"rq.{pool}.queued"] = q.count
            for label, registry in (("started", StartedJobRegistry), ("failed", FailedJobRegistry),
                                    ("finished", FinishedJobRegistry), ("canceled", CanceledJobRegistry)):
                out[f"rq.{pool}.{label}"] = int(self.connection.zcard(registry(name, connection=self.connection).key))
            out[f"rq.{pool}.workers"] = self.workers(pool)
        return out
