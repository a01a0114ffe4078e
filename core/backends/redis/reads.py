"""The read side of the Redis broker (jobs, stats, events, fronts) and purge.

A mixin of RedisBroker, split out to keep each module about one idea; it uses the
broker's client, key names and RQ side.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import msgspec

from golfq.core.broker import Job, JobState, PoolStats, Stats
from golfq.core.events import Event, decode_event
from golfq.core.pareto import Front, Observation, fold

decode_job = msgspec.json.Decoder(Job).decode
_decode_obs = msgspec.json.Decoder(Observation).decode


class RedisReads:
    def get(self, job_id: str) -> Job | None:
        raw = self.redis.get(self._job_key(job_id))
        return None if raw is None else decode_job(raw)

    def list(self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None,
             limit: int | None = None) -> list[Job]:
        sources = [self._k("state", s.value) for s in dict.fromkeys(states)] or [self._k("jobs")]
        streams = [[(score, m.decode()) for m, score in self.redis.zrange(k, 0, -1, withscores=True)] for k in sources]
        ids = [job_id for _, job_id in heapq.merge(*streams)]
        jobs: list[Job] = []
        for start in range(0, len(ids), 1000):
            for raw in self.redis.mget([self._job_key(i) for i in ids[start:start + 1000]]):
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
        for field, value in self.redis.hgetall(self._k("counts")).items():
            pool, _, state = field.decode().rpartition(":")
            counts.setdefault(pool, {})[state] = int(value)
        draining = {m.decode() for m in self.redis.smembers(self.rq.draining_key)}
        pools = {p: PoolStats(**{s: n for s, n in counts.get(p, {}).items() if n}, draining=p in draining)
                 for p in sorted(set(counts) | draining)}
        return Stats(pools=pools, last_seq=int(self.redis.get(self._k("seq")) or 0), backend="redis",
                     extra=self.rq.counts(sorted(pools)))

    def events(self, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        entries = self.redis.xrange(self._k("events"), min=str(after_seq + 1), max="+", count=limit)
        return [msgspec.structs.replace(decode_event(fields[b"e"]), seq=int(entry_id.split(b"-")[0]))
                for entry_id, fields in entries]

    def front(self, track: str) -> Front:
        return fold((_decode_obs(v) for v in self.redis.hvals(self._k("obs", track))), track)

    def tracks(self) -> list[str]:
        return sorted(m.decode() for m in self.redis.smembers(self._k("tracks")))

    def purge(self, before: float) -> int:
        purged = 0
        for state in (s for s in JobState if s.terminal):
            for job in self.list([state]):
                if job.updated_at < before and self._purge_one(job.id, before):
                    purged += 1
        return purged

    def _purge_one(self, job_id: str, before: float) -> bool:
        def body(pipe):
            job = self._load(pipe, job_id)
            if job is None or not job.state.terminal or job.updated_at >= before:
                return False
            pipe.multi()
            pipe.delete(self._job_key(job_id))
            pipe.zrem(self._k("jobs"), job_id)
            pipe.zrem(self._k("state", job.state.value), job_id)
            pipe.hincrby(self._k("counts"), f"{job.pool}:{job.state.value}", -1)
            return True

        return self.redis.transaction(body, self._job_key(job_id), value_from_callable=True)
