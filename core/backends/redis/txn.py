"""One atomic step of the Redis broker (golfq.core.backends.txn.JobTxn) over a WATCH/MULTI/EXEC pipeline.

Reads WATCH each key before they read it (the pipeline is then in immediate mode),
writes are buffered and go out in one MULTI/EXEC with the step's events. If any
watched key changed meanwhile, EXEC fails and redis-py runs the whole step again
on a fresh RedisTxn, so a step must only read and compute until it commits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from redis.client import Pipeline

from golfq.core.backends.redis.reads import decode_job
from golfq.core.backends.txn import RequireMixin
from golfq.core.broker import Job, JobState
from golfq.core.events import Event
from golfq.core.pareto import Observation

if TYPE_CHECKING:
    from golfq.core.backends.redis.broker import RedisBroker


class RedisTxn(RequireMixin):
    def __init__(self, broker: RedisBroker, pipe: Pipeline, now: float, via_rq: bool = False) -> None:
        self.broker, self.pipe, self.now, self.via_rq = broker, pipe, now, via_rq
        self.events: list[Event] = []
        self.saved: list[tuple[Job | None, Job]] = []
        self.created: list[Job] = []
        self.writes: list[Callable[[Pipeline], object]] = []  # other writes for the MULTI

    def load_many(self, ids: Sequence[str]) -> dict[str, Job]:
        if not ids:
            return {}
        keys = [self.broker._job_key(job_id) for job_id in ids]
        self.pipe.watch(*keys)
        return {job.id: job for raw in self.pipe.mget(keys) if raw is not None and (job := decode_job(raw))}

    def load(self, job_id: str) -> Job | None:
        return self.load_many([job_id]).get(job_id)

    def jobs_in(self, states: Sequence[JobState]) -> list[Job]:
        # The index is read unwatched; each job is then watched, and read again, under the step.
        found = self.load_many([m.decode() for s in states for m in self.broker.redis.zrange(
            self.broker._k("state", s.value), 0, -1)])
        return sorted((job for job in found.values() if job.state in states), key=lambda job: job.order)

    def save(self, old: Job | None, new: Job, events: Iterable[Event]) -> None:
        self.events.extend(events)
        if new is not old:
            self.saved.append((old, new))

    def reserve_orders(self, count: int) -> int:
        return int(self.broker.redis.incrby(self.broker._k("order"), count)) - count + 1  # gaps are harmless

    def insert(self, jobs: list[Job]) -> None:
        self.created.extend(jobs)

    def draining(self, pool: str) -> bool:
        self.pipe.watch(self.broker.rq.draining_key)
        return bool(self.pipe.sismember(self.broker.rq.draining_key, pool))

    def set_draining(self, pool: str, draining: bool) -> None:
        self.writes.append(lambda pipe: (self.broker.rq.park if draining else self.broker.rq.unpark)(pipe, pool))

    def observe(self, obs: Observation) -> None:
        key = self.broker._k("obs", obs.track)
        self.writes.append(lambda pipe: pipe.hset(key, obs.job_id, self.broker.encode(obs)))
        self.writes.append(lambda pipe: pipe.sadd(self.broker._k("tracks"), obs.track))

    def commit(self) -> None:
        """Send the buffered writes and events in one MULTI/EXEC (redis-py runs the EXEC)."""
        if not (self.saved or self.created or self.writes or self.events):
            return
        self.pipe.multi()
        self.broker._write_new(self.pipe, self.created)
        for old, new in self.saved:
            self.broker._write_transition(self.pipe, old, new, via_rq=self.via_rq)
        for write in self.writes:
            write(self.pipe)
        self.broker._events(self.pipe, self.events)
