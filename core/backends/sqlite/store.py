"""The SQLite file under the SQLite broker: URL, schema, connections and transactions.

One connection per (process, thread), opened lazily; a forked child opens its own
and never touches (or closes) the parent's. Writes run as `BEGIN IMMEDIATE`
transactions, so a writer holds the write lock from its first read and no
read-modify-write can interleave with another process's; a busy lock is waited
for (busy timeout, then our own jittered retry) up to `busy_timeout` seconds.
In WAL mode readers never wait for the writer.

synchronous=NORMAL is the default: in WAL mode it survives any process crash
(SIGKILL included); `?synchronous=full` also survives power loss, at an fsync
per commit.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, quote

import msgspec

from golfq.core.backends.sqlite.ledger import LedgerTx
from golfq.core.broker import BrokerError, Txn
from golfq.core.events import Event
from golfq.core.job import Job, JobState, Lease
from golfq.core.pareto import Observation

DEFAULT_PATH = ".golfq/golfq.db"
SCHEMA_VERSION = 3  # 2: progress (live curves), workers (who serves a pool); 3: caps, spent, holds (budget)
SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, pool TEXT NOT NULL, state TEXT NOT NULL, priority INTEGER NOT NULL,
    ord INTEGER NOT NULL, lease_deadline REAL, updated_at REAL NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (pool, priority DESC, ord) WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, updated_at);  -- also finds expired leases: one per worker
CREATE INDEX IF NOT EXISTS jobs_pool ON jobs (pool, state);
CREATE INDEX IF NOT EXISTS jobs_order ON jobs (ord);
CREATE TABLE IF NOT EXISTS job_tags (tag TEXT NOT NULL, job_id TEXT NOT NULL, PRIMARY KEY (tag, job_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS scripts (sha TEXT PRIMARY KEY, content BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS pools (name TEXT PRIMARY KEY, draining INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS workers (worker_id TEXT PRIMARY KEY, pool TEXT NOT NULL, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS progress (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, attempt INTEGER NOT NULL, body BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS progress_attempt ON progress (job_id, attempt, seq);
CREATE TABLE IF NOT EXISTS caps (scope TEXT PRIMARY KEY, usd REAL NOT NULL);
CREATE TABLE IF NOT EXISTS spent (scope TEXT PRIMARY KEY, usd REAL NOT NULL);
CREATE TABLE IF NOT EXISTS holds (key TEXT PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS observations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, track TEXT NOT NULL, body BLOB NOT NULL);
"""
_CHUNK = 500  # ids per IN (...) query, well under SQLite's variable limit
_SYNC_MODES = ("off", "normal", "full", "extra")

T = TypeVar("T")
encode = msgspec.json.Encoder().encode
decode_job = msgspec.json.Decoder(Job).decode
_abandoned: list[sqlite3.Connection] = []  # a forked child's copies of the parent's connections: never closed


class SqliteOptions(msgspec.Struct, frozen=True):
    path: Path
    synchronous: str = "normal"
    busy_seconds: float = 30.0


def parse_url(url: str) -> SqliteOptions:
    """sqlite:///relative/path, sqlite:////absolute/path, sqlite:// for the default file."""
    if not url.startswith("sqlite://"):
        raise BrokerError(f"queue URL {url!r}: not a sqlite:// URL")
    rest, _, query = url.removeprefix("sqlite://").partition("?")
    if rest and not rest.startswith("/"):
        raise BrokerError(f"queue URL {url!r}: sqlite URLs name no host; use sqlite:///relative or sqlite:////absolute")
    raw = rest[1:] or DEFAULT_PATH
    if raw == ":memory:" or raw.startswith("file:"):
        raise BrokerError(f"queue URL {url!r}: workers in other processes need a file; give a path")
    synchronous, busy_seconds = "normal", 30.0
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "synchronous" and value.lower() in _SYNC_MODES:
            synchronous = value.lower()
        elif key == "busy_timeout" and _is_positive(value):
            busy_seconds = float(value)
        else:
            raise BrokerError(f"queue URL {url!r}: bad option {key}={value!r} "
                              "(synchronous=normal|full, busy_timeout=SECONDS)")
    return SqliteOptions(Path(raw).expanduser().absolute(), synchronous, busy_seconds)


def _is_positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


class Tx(LedgerTx, Txn):
    """One transaction (golfq.core.broker.Txn): loads and saves jobs, numbers events as it appends them."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self.conn, self.now = conn, now
        self.events: list[Event] = []
        self.reaped: list[Lease] = []

    def jobs(self, sql: str, params: Sequence = ()) -> list[Job]:
        return [decode_job(row[0]) for row in self.conn.execute(sql, params)]

    def load_many(self, ids: Sequence[str]) -> dict[str, Job]:
        found: dict[str, Job] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update((j.id, j) for j in self.jobs(f"SELECT body FROM jobs WHERE id IN ({marks})", chunk))
        return found

    def jobs_in(self, states: Sequence[JobState]) -> list[Job]:
        marks = ",".join("?" * len(states))
        return self.jobs(f"SELECT body FROM jobs WHERE state IN ({marks}) ORDER BY ord", [s.value for s in states])

    def expired(self) -> list[Job]:
        return self.jobs("SELECT body FROM jobs WHERE state = 'leased' AND lease_deadline <= ?", (self.now,))

    def next_queued(self, pool: str) -> Job | None:
        found = self.jobs("SELECT body FROM jobs WHERE pool = ? AND state = 'queued' "
                          "ORDER BY priority DESC, ord LIMIT 1", (pool,))
        return found[0] if found else None

    def queued(self, pool: str, limit: int) -> list[Job]:
        return self.jobs("SELECT body FROM jobs WHERE pool = ? AND state = 'queued' "
                         "ORDER BY priority DESC, ord LIMIT ?", (pool, limit))

    def save(self, old: Job | None, new: Job, events: Iterable[Event]) -> None:
        """Write a transition's outcome; unchanged jobs are not rewritten."""
        if new is not old:
            self.conn.execute("UPDATE jobs SET state = ?, lease_deadline = ?, updated_at = ?, body = ? WHERE id = ?",
                              (new.state.value, new.lease_deadline, new.updated_at, encode(new), new.id))
        self.events.extend(events)

    def reserve_orders(self, count: int) -> int:
        return self.conn.execute("SELECT COALESCE(MAX(ord), 0) FROM jobs").fetchone()[0] + 1  # the write lock is held

    def insert(self, jobs: list[Job]) -> None:
        self.conn.executemany("INSERT INTO jobs (id, pool, state, priority, ord, updated_at, body) "
                              "VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [(j.id, j.pool, j.state.value, j.spec.priority, j.order, j.updated_at, encode(j))
                               for j in jobs])
        self.conn.executemany("INSERT INTO job_tags (tag, job_id) VALUES (?, ?)",
                              [(tag, j.id) for j in jobs for tag in set(j.spec.tags)])

    def draining(self, pool: str) -> bool:
        return self.conn.execute("SELECT 1 FROM pools WHERE name = ? AND draining", (pool,)).fetchone() is not None

    def set_draining(self, pool: str, draining: bool) -> None:
        self.conn.execute("INSERT INTO pools (name, draining) VALUES (?, ?) "
                          "ON CONFLICT (name) DO UPDATE SET draining = excluded.draining", (pool, int(draining)))

    def observe(self, obs: Observation) -> None:
        self.conn.execute("INSERT INTO observations (job_id, track, body) VALUES (?, ?, ?)",
                          (obs.job_id, obs.track, encode(obs)))

    def last_seq(self) -> int:
        row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return row[0] if row else 0

    def flush(self) -> None:
        """Append the events in the same transaction; the write lock makes seq gap-free and ordered."""
        if not self.events:
            return
        first = self.last_seq() + 1
        self.conn.executemany("INSERT INTO events (seq, body) VALUES (?, ?)",
                              [(first + i, encode(msgspec.structs.replace(e, seq=first + i)))
                               for i, e in enumerate(self.events)])


class SqliteStore:
    """Connections and transactions on one database file.

    Reads never write: they use a read-only connection (or, while no file exists yet, an
    empty in-memory schema), so `golfq status` neither needs write access nor changes the
    file. The file is created by the first write, fully initialised under a temporary
    name and then linked into place, so no process ever sees a half-made queue, and a
    zero-byte file at the path can only be a damaged one.
    """

    def __init__(self, url: str, clock: Callable[[], float]) -> None:
        self.url, self.clock = url, clock
        self.options = parse_url(url)
        self.path = self.options.path
        self._guard = threading.Lock()
        self._pid = os.getpid()
        self._local = threading.local()
        self._open: list[sqlite3.Connection] = []
        self._closed = False
        if self.path.exists():
            self._readable()  # a file that is there is checked now: one line if it is no queue of ours

    # -- the file ------------------------------------------------------------------------------

    def _fail(self, why: str) -> BrokerError:
        return BrokerError(f"queue {self.url}: {why}")

    def _check_existing(self) -> None:
        """A file that is there must be a golfq queue this version can read; say what it is otherwise."""
        if self.path.is_dir():
            raise self._fail(f"{self.path} is a directory, not a queue file")
        if self.path.stat().st_size == 0:
            raise self._fail(f"{self.path} is empty (0 bytes): not a queue, or one that was truncated; restore it "
                             f"from a backup (golfq ops export/import), or delete it to start a new queue")
        if not os.access(self.path, os.R_OK):  # chmod 000, a file another user owns
            raise self._fail(f"cannot read {self.path}: Permission denied; check its permissions "
                             f"(ls -l {self.path}) or choose another queue with --queue")
        # The header is left to SQLite ("file is not a database", in _open_read_only): opening the file here
        # and closing it would drop every POSIX lock this process holds on it, so another process closing the
        # queue would delete the WAL under this one's open connections (stale reads, then disk I/O errors).

    def _readable(self) -> sqlite3.Connection:
        """This thread's connection for reads: the file read-only, or an empty schema before it exists."""
        if getattr(self._local, "read", None) is None and not self.path.exists():
            return self._thread_conn("empty", self._empty)
        return self._thread_conn("read", self._open_read_only)

    def _writable(self) -> sqlite3.Connection:
        return self._thread_conn("write", self._open_read_write)

    def _thread_conn(self, kind: str, opener: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
        if self._closed:
            raise self._fail("broker is closed")
        if os.getpid() != self._pid:
            with self._guard:
                if os.getpid() != self._pid:  # forked: the parent's connections are not ours to use
                    _abandoned.extend(self._open)
                    self._open, self._pid, self._local = [], os.getpid(), threading.local()
        conn: sqlite3.Connection | None = getattr(self._local, kind, None)
        if conn is None:
            conn = opener()
            setattr(self._local, kind, conn)
            with self._guard:
                self._open.append(conn)
        return conn

    def _empty(self) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        conn.executescript(SCHEMA)
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        self._check_existing()
        uri = f"file:{quote(str(self.path))}?mode=ro"
        conn = self._connect(uri, "read")
        try:
            self._probe(conn)
        except sqlite3.OperationalError:
            # WAL needs its -shm file; in a directory we cannot write, read the file as it stands.
            conn.close()
            conn = self._connect(uri + "&immutable=1", "read")
        self._check_version(conn, writable=False)
        return conn

    def _probe(self, conn: sqlite3.Connection) -> None:
        """The first read: a file that is no SQLite database is named as such (OperationalError passes up)."""
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError:
            conn.close()
            raise self._fail(f"{self.path} is not a golfq queue (not an SQLite database)") from None

    def _open_read_write(self) -> sqlite3.Connection:
        if not self.path.exists():
            self._create()
        self._check_existing()
        if not os.access(self.path, os.W_OK) or not os.access(self.path.parent, os.W_OK):
            where = self.path if not os.access(self.path, os.W_OK) else self.path.parent
            raise self._fail(f"{where} is read-only for this user: reads work, this command writes")
        conn = self._connect(f"file:{quote(str(self.path))}", "write")
        self._retrying(lambda: self._probe(conn))
        self._retrying(lambda: conn.execute("PRAGMA journal_mode = WAL"))
        conn.execute(f"PRAGMA synchronous = {self.options.synchronous}")
        self._check_version(conn, writable=True)
        return conn

    def _connect(self, uri: str, why: str) -> sqlite3.Connection:
        try:
            return sqlite3.connect(uri, uri=True, timeout=self.options.busy_seconds, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as error:
            raise self._fail(f"cannot open {self.path} to {why}: {error}") from None

    def _create(self) -> None:
        """Make the file whole under a temporary name, then link it into place (a race loses quietly)."""
        parent = self.path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".new", dir=parent)
            os.close(fd)
        except OSError as error:
            raise self._fail(f"cannot create {self.path}: {error.strerror or error}") from None
        try:
            conn = sqlite3.connect(temp, isolation_level=None)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(f"BEGIN; {SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            conn.close()
            try:
                os.link(temp, self.path)
            except FileExistsError:
                pass  # another process made it first: theirs is as good as ours
        finally:
            for leftover in (temp, temp + "-wal", temp + "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)

    def _check_version(self, conn: sqlite3.Connection, writable: bool) -> None:
        version = self._retrying(lambda: conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise self._fail(f"schema version {version} is newer than this golfq ({SCHEMA_VERSION}); upgrade golfq")
        if version < SCHEMA_VERSION and writable:  # tables only ever get added: create what is missing
            def migrate() -> None:
                conn.executescript(f"BEGIN IMMEDIATE; {SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
            self._retrying(migrate)

    # -- transactions --------------------------------------------------------------------------

    def _retrying(self, attempt: Callable[[], T]) -> T:
        """Run attempt again while another process holds the lock, up to the busy timeout."""
        deadline = time.monotonic() + self.options.busy_seconds
        delay = 0.001
        while True:
            try:
                return attempt()
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise self._fail(f"{self.path}: {error}") from None
                if time.monotonic() > deadline:
                    raise self._fail(f"database stayed locked for {self.options.busy_seconds:g} s") from None
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.05)
            except sqlite3.DatabaseError as error:  # a damaged page, a file that is not a database
                raise self._fail(f"{self.path} is damaged ({error}); restore it from a backup "
                                 f"(golfq ops export/import) or move it aside") from None

    def write(self, work: Callable[[Tx], T]) -> T:
        """Run work in one write transaction (retried whole if the lock was busy); events go in with it."""
        conn = self._writable()

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                tx = Tx(conn, self.clock())  # read the clock under the lock: times follow commit order
                out = work(tx)
                tx.flush()
                conn.execute("COMMIT")
                return out
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return self._retrying(attempt)

    def snapshot(self, work: Callable[[Tx], T]) -> T:
        """Several reads that see one consistent state (a read transaction, no write lock)."""
        conn = self._readable()

        def attempt() -> T:
            conn.execute("BEGIN")
            try:
                return work(Tx(conn, self.clock()))
            finally:
                conn.execute("COMMIT")

        return self._retrying(attempt)

    def read(self, sql: str, params: Sequence = ()) -> list[tuple]:
        conn = self._readable()
        return self._retrying(lambda: conn.execute(sql, params).fetchall())

    def close(self) -> None:
        with self._guard:
            self._closed = True
            mine, self._open = (self._open if os.getpid() == self._pid else []), []
        for conn in mine:
            conn.close()
