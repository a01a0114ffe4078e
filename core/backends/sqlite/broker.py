"""The embedded default backend: one SQLite file in WAL mode, shared by many processes.

Every mutation is one `BEGIN IMMEDIATE` transaction (golfq.core.broker's `_atomic`)
that reads the job records, applies golfq.core.lifecycle and writes the records and
their events back, so the log and the records never disagree and a SIGKILL at any
instant leaves either the whole transition or none of it. The file, its schema,
connections and locking are in store.py.

Decisions:
- claim() reaps expired leases (all pools) in its own transaction before it picks
  a job, so a set of plain workers re-delivers lost work without a reaper process.
  An idle claim polls with a read-only query (cheap in WAL mode, so the pause
  between looks stops growing at 20 ms) and only takes the write lock when there
  is something to claim or reap.
- Observations (the fronts' input) are rows appended in the completion
  transaction; purge() deletes job records only, so fronts and replays never change.
- A drain or resume that changes nothing appends no event.
- complete() or fail() for a job that no longer exists (purged) raises KeyError.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import msgspec

from golfq.core import budget
from golfq.core.backends.sqlite.store import SqliteStore, Tx, decode_job
from golfq.core.broker import Broker
from golfq.core.events import Event
from golfq.core.job import Job, JobState, PoolStats, Stats
from golfq.core.pareto import Observation
from golfq.core.result import ProgressPoint
from golfq.core.spec import blob_ref, stored_ref

T = TypeVar("T")
_TERMINAL = tuple(s.value for s in JobState if s.terminal)
_decode_event = msgspec.json.Decoder(Event).decode
_decode_obs = msgspec.json.Decoder(Observation).decode
_decode_point = msgspec.json.Decoder(ProgressPoint).decode
_encode = msgspec.json.Encoder().encode


class SqliteBroker(Broker):
    """The broker contract over one SQLite file; safe for many processes and threads."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(url, clock)
        self._store = SqliteStore(url, clock)
        self._read = self._store.read

    def _atomic(self, step: Callable[[Tx], T]) -> T:
        return self._store.write(step)

    def _look(self, step: Callable[[Tx], T]) -> T:
        return self._store.snapshot(step)

    def __repr__(self) -> str:
        return f"SqliteBroker({self.url!r})"

    def put_script(self, content: bytes) -> str:
        ref = stored_ref(bytes(content))
        self._atomic(lambda tx: tx.conn.execute("INSERT OR IGNORE INTO scripts (sha, content) VALUES (?, ?)",
                                               (ref, bytes(content))))
        return ref

    def get_script(self, ref: str) -> bytes:
        rows = self._read("SELECT content FROM scripts WHERE sha = ?", (blob_ref(ref),))
        if not rows:
            raise KeyError(f"script {ref}: not stored in {self.url}")
        return bytes(rows[0][0])

    def _worth_claiming(self, pool: str) -> bool:
        """A read-only look, so idle workers poll without taking the write lock (a job that a spend
        cap holds is nothing to claim)."""
        (queued, expired), = self._read(
            "SELECT (EXISTS (SELECT 1 FROM jobs WHERE pool = ? AND state = 'queued')"
            "        AND NOT EXISTS (SELECT 1 FROM pools WHERE name = ? AND draining)),"
            "    EXISTS (SELECT 1 FROM jobs WHERE state = 'leased' AND lease_deadline <= ?)",
            (pool, pool, self.clock()))
        return bool(expired) or bool(queued) and self._look(lambda tx: budget.startable(tx, pool) is not None)

    def purge(self, before: float) -> int:
        terminal = f"state IN ({','.join('?' * len(_TERMINAL))}) AND updated_at < ?"
        params = (*_TERMINAL, before)

        def work(tx: Tx) -> int:
            tx.conn.execute(f"DELETE FROM job_tags WHERE job_id IN (SELECT id FROM jobs WHERE {terminal})", params)
            return tx.conn.execute(f"DELETE FROM jobs WHERE {terminal}", params).rowcount

        return self._atomic(work)

    # -- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        rows = self._read("SELECT body FROM jobs WHERE id = ?", (job_id,))
        return decode_job(rows[0][0]) if rows else None

    def list(self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None,
             limit: int | None = None) -> builtins.list[Job]:
        clauses: builtins.list[str] = []
        params: builtins.list[object] = []
        if states:
            clauses.append(f"state IN ({','.join('?' * len(states))})")
            params += [JobState(s).value for s in states]
        if pool is not None:
            clauses.append("pool = ?")
            params.append(pool)
        if tag is not None:
            clauses.append("id IN (SELECT job_id FROM job_tags WHERE tag = ?)")
            params.append(tag)
        sql = "SELECT body FROM jobs" + (" WHERE " + " AND ".join(clauses) if clauses else "") + " ORDER BY ord"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(int(limit), 0))
        return [decode_job(row[0]) for row in self._read(sql, params)]

    def stats(self) -> Stats:
        def snapshot(tx: Tx) -> tuple[list, list, int]:
            counts = tx.conn.execute("SELECT pool, state, COUNT(*) FROM jobs GROUP BY pool, state").fetchall()
            flags = tx.conn.execute("SELECT name, draining FROM pools").fetchall()
            return counts, flags, tx.last_seq()

        counts, flags, last_seq = self._store.snapshot(snapshot)
        pools: dict[str, dict] = {}
        for pool, state, count in counts:
            pools.setdefault(pool, {})[state] = count
        for pool, draining in flags:
            pools.setdefault(pool, {})["draining"] = bool(draining)
        return Stats(pools={p: PoolStats(**fields) for p, fields in sorted(pools.items())},
                     last_seq=last_seq, backend="sqlite")

    def events(self, after_seq: int = 0, limit: int = 1000) -> builtins.list[Event]:
        rows = self._read("SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, max(limit, 0)))
        return [_decode_event(row[0]) for row in rows]

    def report_progress(self, job_id: str, attempt: int, points: Sequence[ProgressPoint]) -> None:
        rows = [(job_id, attempt, _encode(p)) for p in points]
        if rows:
            self._atomic(lambda tx: tx.conn.executemany(
                "INSERT INTO progress (job_id, attempt, body) VALUES (?, ?, ?)", rows))

    def announce(self, pool: str, worker_id: str, seconds: float) -> None:
        until = self.clock() + seconds
        self._atomic(lambda tx: tx.conn.execute(
            "INSERT INTO workers (worker_id, pool, until) VALUES (?, ?, ?) "
            "ON CONFLICT (worker_id) DO UPDATE SET pool = excluded.pool, until = excluded.until",
            (worker_id, pool, until)))

    def serving(self, pool: str) -> int | None:
        (count,), = self._read("SELECT COUNT(*) FROM workers WHERE pool = ? AND until > ?", (pool, self.clock()))
        return int(count)

    def _curve(self, job_id: str, attempt: int) -> builtins.list[ProgressPoint]:
        rows = self._read("SELECT body FROM progress WHERE job_id = ? AND attempt = ? ORDER BY seq", (job_id, attempt))
        return [_decode_point(row[0]) for row in rows]

    def _observations(self, after: int) -> builtins.list[tuple[int, Observation]]:
        rows = self._read("SELECT seq, body FROM observations WHERE seq > ? ORDER BY seq", (after,))
        return [(seq, _decode_obs(body)) for seq, body in rows]

    def close(self) -> None:
        self._store.close()
