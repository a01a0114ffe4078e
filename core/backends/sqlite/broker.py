"""The embedded default backend: one SQLite file in WAL mode, shared by many processes.

Every mutation is one `BEGIN IMMEDIATE` transaction that reads the job records,
applies golfq.core.lifecycle and writes the records and their events back (the shared
shape in golfq.core.backends.txn, over sqlite_store.Tx), so the log
and the records never disagree and a SIGKILL at any instant leaves either the
whole transition or none of it. The file, its schema, connections and locking
are in golfq.core.backends.sqlite.store.

Decisions:
- claim() reaps expired leases (all pools) in its own transaction before it picks
  a job, so a set of plain workers re-delivers lost work without a reaper process.
  An idle claim polls with a read-only query (cheap in WAL mode, so the pause
  between looks stops growing at 20 ms) and only takes the write lock when there
  is something to claim or reap.
- The front is computed from stored observations, not kept as reducer state in
  the database: every counted success appends one golfq.core.pareto.Observation row in
  its completion transaction, and each process folds the rows it has not seen
  yet into its own Reducer. Rows are only ever appended, and the fold is order
  independent, so this equals a fold from scratch; no pickled or versioned
  reducer state lives at rest. purge() deletes job records only; results and
  events stay, so fronts and replays do not change.
- A drain or resume that changes nothing appends no event.
- complete() or fail() for a job that no longer exists (purged) raises KeyError.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import msgspec

from golfq.core import lifecycle
from golfq.core.backends.sqlite.store import SqliteStore, Tx, decode_job
from golfq.core.backends.txn import TxnBroker
from golfq.core.broker import Job, JobState, PoolStats, Stats
from golfq.core.events import Event
from golfq.core.pareto import Front, Observation, Reducer
from golfq.core.spec import script_ref

_TERMINAL = tuple(s.value for s in JobState if s.terminal)
_decode_event = msgspec.json.Decoder(Event).decode
_decode_obs = msgspec.json.Decoder(Observation).decode


class SqliteBroker(TxnBroker):
    """The Broker protocol over one SQLite file; safe for many processes and threads."""

    def __init__(self, url: str, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.clock = clock
        self._store = SqliteStore(url, clock)
        self._write, self._read = self._store.write, self._store.read
        self._reducer, self._folded = Reducer(), 0
        self._front_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteBroker({self.url!r})"

    def put_script(self, content: bytes) -> str:
        ref = script_ref(bytes(content))
        self._write(lambda tx: tx.conn.execute("INSERT OR IGNORE INTO scripts (sha, content) VALUES (?, ?)",
                                               (ref, bytes(content))))
        return ref

    def get_script(self, ref: str) -> bytes:
        rows = self._read("SELECT content FROM scripts WHERE sha = ?", (ref,))
        if not rows:
            raise KeyError(f"script {ref}: not stored in {self.url}")
        return bytes(rows[0][0])

    def _worth_claiming(self, pool: str) -> bool:
        """A read-only look, so idle workers poll without taking the write lock."""
        (worth,), = self._read(
            "SELECT (EXISTS (SELECT 1 FROM jobs WHERE pool = ? AND state = 'queued')"
            "        AND NOT EXISTS (SELECT 1 FROM pools WHERE name = ? AND draining))"
            "    OR EXISTS (SELECT 1 FROM jobs WHERE state = 'leased' AND lease_deadline <= ?)",
            (pool, pool, self.clock()))
        return bool(worth)

    def _reap_in(self, tx: Tx) -> list[str]:
        for job in tx.jobs("SELECT body FROM jobs WHERE state = 'leased' AND lease_deadline <= ?", (tx.now,)):
            tx.save(job, *lifecycle.expire(job, tx.now))
        return list(tx.changed)

    def purge(self, before: float) -> int:
        terminal = f"state IN ({','.join('?' * len(_TERMINAL))}) AND updated_at < ?"
        params = (*_TERMINAL, before)

        def work(tx: Tx) -> int:
            tx.conn.execute(f"DELETE FROM job_tags WHERE job_id IN (SELECT id FROM jobs WHERE {terminal})", params)
            return tx.conn.execute(f"DELETE FROM jobs WHERE {terminal}", params).rowcount

        return self._write(work)

    # -- reads --------------------------------------------------------------------------------

    def get(self, job_id: str) -> Job | None:
        rows = self._read("SELECT body FROM jobs WHERE id = ?", (job_id,))
        return decode_job(rows[0][0]) if rows else None

    def list(self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None,
             limit: int | None = None) -> list[Job]:
        clauses, params = [], []
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

    def events(self, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        rows = self._read("SELECT body FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, max(limit, 0)))
        return [_decode_event(row[0]) for row in rows]

    def front(self, track: str) -> Front:
        with self._front_lock:
            self._catch_up()
            return self._reducer.front(track)

    def tracks(self) -> list[str]:
        with self._front_lock:
            self._catch_up()
            return self._reducer.tracks()

    def _catch_up(self) -> None:
        """Fold in the observations other transactions appended since the last look."""
        rows = self._read("SELECT seq, body FROM observations WHERE seq > ? ORDER BY seq", (self._folded,))
        for seq, body in rows:
            self._reducer.add(_decode_obs(body))
            self._folded = seq

    def close(self) -> None:
        self._store.close()
