"""The embedded default backend: one SQLite file in WAL mode, shared by many processes.

Every mutation is one `BEGIN IMMEDIATE` transaction that reads the job records,
applies core.lifecycle and writes the records and their events back, so the log
and the records never disagree and a SIGKILL at any instant leaves either the
whole transition or none of it. The file, its schema, connections and locking
are in core.backends.sqlite_store.

Decisions:
- claim() reaps expired leases (all pools) in its own transaction before it picks
  a job, so a set of plain workers re-delivers lost work without a reaper process.
  An idle claim polls with a read-only query and only takes the write lock when
  there is something to claim or reap.
- The front is computed from stored observations, not kept as reducer state in
  the database: every counted success appends one core.pareto.Observation row in
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

from core import lifecycle
from core.backends.sqlite_store import SqliteStore, Tx, decode_job, encode
from core.broker import CompleteOutcome, Job, JobState, Lease, PoolStats, Stats
from core.events import Event, EventKind
from core.pareto import Front, Observation, Reducer, observation
from core.result import FailureKind, Result
from core.spec import ExperimentSpec, SpecError, script_ref

_TERMINAL = tuple(s.value for s in JobState if s.terminal)
_decode_event = msgspec.json.Decoder(Event).decode
_decode_obs = msgspec.json.Decoder(Observation).decode


class SqliteBroker:
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

    # -- submit and scripts -------------------------------------------------------------------

    def submit(self, specs: Sequence[ExperimentSpec]) -> list[Job]:
        specs = list(specs)
        for spec in specs:
            if not isinstance(spec, ExperimentSpec):
                raise SpecError(f"spec: expected an ExperimentSpec, got {type(spec).__name__}")
        ids = [spec.id for spec in specs]

        def work(tx: Tx) -> list[Job]:
            jobs = tx.load_many(list(dict.fromkeys(ids)))
            order = tx.conn.execute("SELECT COALESCE(MAX(ord), 0) FROM jobs").fetchone()[0]
            rows, tags = [], []
            for spec, job_id in zip(specs, ids):
                if job_id in jobs:
                    continue
                order += 1
                job, events = lifecycle.new_job(spec, tx.now, order)
                jobs[job_id] = job
                tx.events.extend(events)
                rows.append((job_id, spec.pool, job.state.value, spec.priority, order, job.updated_at, encode(job)))
                tags.extend((tag, job_id) for tag in set(spec.tags))
            tx.conn.executemany("INSERT INTO jobs (id, pool, state, priority, ord, updated_at, body) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            tx.conn.executemany("INSERT INTO job_tags (tag, job_id) VALUES (?, ?)", tags)
            return [jobs[job_id] for job_id in ids]

        return self._write(work)

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

    # -- the lease cycle ----------------------------------------------------------------------

    def claim(self, pool: str, worker_id: str, lease_seconds: float = 60.0, timeout: float = 0.0) -> Lease | None:
        give_up = time.monotonic() + max(timeout, 0.0)
        delay = 0.005
        while True:
            if self._worth_claiming(pool):
                lease = self._write(lambda tx: self._claim_in(tx, pool, worker_id, lease_seconds))
                if lease is not None:
                    return lease
            left = give_up - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(delay, left))
            delay = min(delay * 2, 0.1)

    def _worth_claiming(self, pool: str) -> bool:
        """A read-only look, so idle workers poll without taking the write lock."""
        (worth,), = self._read(
            "SELECT (EXISTS (SELECT 1 FROM jobs WHERE pool = ? AND state = 'queued')"
            "        AND NOT EXISTS (SELECT 1 FROM pools WHERE name = ? AND draining))"
            "    OR EXISTS (SELECT 1 FROM jobs WHERE state = 'leased' AND lease_deadline <= ?)",
            (pool, pool, self.clock()))
        return bool(worth)

    def _claim_in(self, tx: Tx, pool: str, worker_id: str, lease_seconds: float) -> Lease | None:
        self._reap_in(tx)
        if tx.conn.execute("SELECT 1 FROM pools WHERE name = ? AND draining", (pool,)).fetchone():
            return None
        found = tx.jobs("SELECT body FROM jobs WHERE pool = ? AND state = 'queued' "
                        "ORDER BY priority DESC, ord LIMIT 1", (pool,))
        if not found:
            return None
        job, lease, events = lifecycle.claim(found[0], worker_id, lease_seconds, tx.now)
        tx.apply(found[0], job, events)
        return lease

    def heartbeat(self, lease: Lease, lease_seconds: float = 60.0) -> bool:
        def work(tx: Tx) -> bool:
            job = tx.load(lease.job_id)
            extended = lifecycle.heartbeat(job, lease, lease_seconds, tx.now) if job else None
            if extended is None:
                return False
            tx.apply(job, extended, ())
            return True

        return self._write(work)

    def complete(self, lease: Lease, result: Result) -> CompleteOutcome:
        def work(tx: Tx) -> CompleteOutcome:
            job = tx.require(lease.job_id)
            done, events, outcome = lifecycle.complete(job, lease, result, tx.now)
            tx.apply(job, done, events)
            if outcome is CompleteOutcome.COUNTED and done.state is JobState.SUCCEEDED:
                obs = observation(done.id, done.spec, result)
                if obs is not None:
                    tx.conn.execute("INSERT INTO observations (job_id, track, body) VALUES (?, ?, ?)",
                                    (obs.job_id, obs.track, encode(obs)))
            return outcome

        return self._write(work)

    def fail(self, lease: Lease, error: str, kind: FailureKind, result: Result | None = None) -> JobState:
        def work(tx: Tx) -> JobState:
            job = tx.require(lease.job_id)
            failed, events = lifecycle.fail(job, lease, error, FailureKind(kind), tx.now, result)
            tx.apply(job, failed, events)
            return failed.state

        return self._write(work)

    def reap(self) -> list[str]:
        return self._write(self._reap_in)

    def _reap_in(self, tx: Tx) -> list[str]:
        for job in tx.jobs("SELECT body FROM jobs WHERE state = 'leased' AND lease_deadline <= ?", (tx.now,)):
            tx.apply(job, *lifecycle.expire(job, tx.now))
        return list(tx.changed)

    # -- operations ---------------------------------------------------------------------------

    def _transition_each(self, ids: Sequence[str], states: Sequence[JobState], step) -> list[str]:
        """Apply one lifecycle step to the named jobs and to every job in the given states."""
        wanted = [JobState(s).value for s in states]

        def work(tx: Tx) -> list[str]:
            named = tx.load_many(list(dict.fromkeys(ids)))
            jobs = [named[i] for i in dict.fromkeys(ids) if i in named]
            if wanted:
                marks = ",".join("?" * len(wanted))
                jobs += [j for j in tx.jobs(f"SELECT body FROM jobs WHERE state IN ({marks}) ORDER BY ord", wanted)
                         if j.id not in named]
            for job in jobs:
                tx.apply(job, *step(job, tx.now))
            return list(tx.changed)

        return self._write(work)

    def cancel(self, ids: Sequence[str]) -> list[str]:
        return self._transition_each(ids, (), lifecycle.cancel)

    def requeue(self, ids: Sequence[str] = (), states: Sequence[JobState] = ()) -> list[str]:
        return self._transition_each(ids, states, lifecycle.requeue)

    def drain(self, pool: str) -> None:
        self._set_draining(pool, True, EventKind.DRAINED)

    def resume(self, pool: str) -> None:
        self._set_draining(pool, False, EventKind.RESUMED)

    def _set_draining(self, pool: str, draining: bool, kind: EventKind) -> None:
        def work(tx: Tx) -> None:
            row = tx.conn.execute("SELECT draining FROM pools WHERE name = ?", (pool,)).fetchone()
            if bool(row and row[0]) == draining:
                return  # already so: no event, so the log holds changes only
            tx.conn.execute("INSERT INTO pools (name, draining) VALUES (?, ?) "
                            "ON CONFLICT (name) DO UPDATE SET draining = excluded.draining", (pool, int(draining)))
            tx.events.append(lifecycle.pool_event(kind, pool, tx.now))

        self._write(work)

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
