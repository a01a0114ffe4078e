"""SQLite-specific behaviour: URLs, the file, WAL, locking, fork and thread safety, crash atomicity.

The semantics every backend shares are in tests/contract/; these are the parts only SQLite has.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from golfq.core.backends import open_broker
from golfq.core.backends.sqlite.broker import SqliteBroker
from golfq.core.backends.sqlite.store import parse_url
from golfq.core.broker import BrokerError
from golfq.core.events import EventKind
from golfq.core.job import CompleteOutcome, JobState
from tests.contract.conftest import ManualClock
from tests.contract.helpers import all_events, spec, success

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'q.db'}"


@pytest.mark.parametrize(("text", "path"), [
    ("sqlite:///rel/q.db", "rel/q.db"),
    ("sqlite:////abs/q.db", "/abs/q.db"),
    ("sqlite://", ".golfq/golfq.db"),
    ("sqlite:///", ".golfq/golfq.db"),
])
def test_url_paths(text, path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert parse_url(text).path == (tmp_path / path if not path.startswith("/") else Path(path))


def test_url_options():
    options = parse_url("sqlite:////q.db?synchronous=FULL&busy_timeout=2.5")
    assert (options.synchronous, options.busy_seconds) == ("full", 2.5)
    assert parse_url("sqlite:////q.db").synchronous == "normal"


@pytest.mark.parametrize(("text", "says"), [
    ("sqlite://host/q.db", "no host"),
    ("sqlite:///:memory:", "need a file"),
    ("sqlite:////q.db?synchronous=sometimes", "synchronous='sometimes'"),
    ("sqlite:////q.db?busy_timeout=-1", "busy_timeout"),
    ("sqlite:////q.db?journal=delete", "journal"),
    ("postgres:///q", "not a sqlite"),
])
def test_bad_urls_are_one_line_errors(text, says):
    with pytest.raises(BrokerError) as error:
        parse_url(text)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_default_file_is_created_in_wal_mode_on_first_use(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GOLFQ_QUEUE", raising=False)
    broker = open_broker()
    assert isinstance(broker, SqliteBroker)
    broker.submit([spec()])
    db = tmp_path / ".golfq" / "golfq.db"
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
    broker.close()


def test_an_unusable_path_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    broker = SqliteBroker(f"sqlite:///{blocker / 'q.db'}")
    assert broker.list() == []  # nothing there yet: an empty queue to read
    with pytest.raises(BrokerError, match=f"cannot create {blocker / 'q.db'}"):
        broker.submit([spec()])
    (tmp_path / "junk.db").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(BrokerError, match="junk.db is not a golfq queue") as error:
        SqliteBroker(f"sqlite:///{tmp_path / 'junk.db'}")
    assert "\n" not in str(error.value)


def test_reads_of_a_queue_that_does_not_exist_create_nothing(tmp_path):
    db = tmp_path / "fresh" / ".golfq" / "golfq.db"
    broker = SqliteBroker(f"sqlite:///{db}")
    assert (broker.list(), broker.events(), broker.tracks(), broker.get("aaaaaaaaaaaaaaaa")) == ([], [], [], None)
    assert broker.stats().pools == {} and broker.stats().last_seq == 0
    assert not (tmp_path / "fresh").exists()
    broker.submit([spec()])
    assert db.is_file() and [p.name for p in db.parent.iterdir() if p.name.endswith(".new")] == []
    broker.close()


def _state(db):
    """The database file itself (WAL's -shm coordination file may appear beside it for readers)."""
    return db.stat().st_mtime_ns, db.read_bytes()


def test_reads_never_change_the_file(url, tmp_path):
    writer = SqliteBroker(url)
    [job] = writer.submit([spec()])
    writer.close()  # the last connection checkpoints: the file is at rest
    db = tmp_path / "q.db"
    before = _state(db)
    reader = SqliteBroker(url)
    reader.get(job.id), reader.list(), reader.stats(), reader.events(), reader.tracks(), reader.front("cpu")
    reader.close()
    assert _state(db) == before


def test_a_read_only_queue_reads_and_refuses_writes_in_one_line(url, tmp_path, monkeypatch):
    SqliteBroker(url).submit([spec()])
    from golfq.core.backends.sqlite import store
    # The suite may run as root, which no permission bit stops: stand in for a read-only mount.
    monkeypatch.setattr(store.os, "access", lambda path, mode: mode != os.W_OK)
    broker = SqliteBroker(url)
    assert len(broker.list()) == 1
    with pytest.raises(BrokerError, match="q.db is read-only for this user: reads work, this command writes"):
        broker.submit([spec(seed=2)])


def test_a_truncated_or_damaged_file_is_named_in_one_line(url, tmp_path):
    db = tmp_path / "q.db"
    broker = SqliteBroker(url)
    broker.submit([spec(seed=s) for s in range(200)])
    broker.close()
    size = db.stat().st_size
    with open(db, "r+b") as handle:  # every page past the first (the schema) damaged
        handle.seek(4096)
        handle.write(b"\xff" * (size - 4096))
    with pytest.raises(BrokerError, match=r"q.db is damaged \(.*\); restore it from a backup") as error:
        SqliteBroker(url).list()
    assert "\n" not in str(error.value)
    db.write_bytes(b"")
    with pytest.raises(BrokerError, match=r"q.db is empty \(0 bytes\)"):
        SqliteBroker(url)


def test_a_newer_schema_is_refused_untouched(url, tmp_path):
    SqliteBroker(url).close()
    with sqlite3.connect(tmp_path / "q.db") as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(BrokerError, match="schema version 99"):
        SqliteBroker(url)


def test_closed_broker_says_so(url):
    broker = SqliteBroker(url)
    broker.close()
    with pytest.raises(BrokerError, match="closed"):
        broker.list()


def test_claim_reaps_expired_leases_itself(url):
    clock = ManualClock()
    broker = SqliteBroker(url, clock=clock)
    job = broker.submit([spec()])[0]
    lost = broker.claim("cpu", "w1", lease_seconds=5)
    clock.advance(6)
    again = broker.claim("cpu", "w2")  # no reaper process: the next claim re-delivers
    assert (again.job_id, again.attempt) == (job.id, 2)
    assert broker.complete(lost, success(lost)) is CompleteOutcome.SUPERSEDED
    assert [e.kind for e in all_events(broker)][-4:] == [EventKind.FAILED, EventKind.REQUEUED, EventKind.CLAIMED,
                                                         EventKind.SUPERSEDED]


def test_handles_on_one_file_share_jobs_and_fronts(url):
    first, second = SqliteBroker(url), SqliteBroker(url)
    first.submit([spec(seed=1), spec(seed=2)])
    assert second.front("cpu").results == 0  # caches an empty fold...
    lease = second.claim("cpu", "w")
    second.complete(lease, success(lease))
    other = first.claim("cpu", "w")
    first.complete(other, success(other))
    assert second.front("cpu").results == 2 == first.front("cpu").results  # ...and catches up
    assert second.front("cpu") == first.front("cpu")


def test_writers_wait_for_the_lock_then_give_up_with_one_line(url, tmp_path):
    broker = SqliteBroker(url + "?busy_timeout=0.3")
    broker.drain("cpu")  # the file exists once something is written
    holder = sqlite3.connect(tmp_path / "q.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.1, lambda: holder.execute("COMMIT"))
    release.start()
    assert broker.submit([spec(seed=1)])[0].state is JobState.QUEUED  # waited ~0.1 s, then went in
    release.join()
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(BrokerError, match="locked"):
        broker.submit([spec(seed=2)])
    holder.execute("ROLLBACK")
    assert [j.spec.seed for j in broker.list()] == [1]
    assert broker.get(spec(seed=1).id) is not None  # reads never waited on the writer


def test_a_thread_can_heartbeat_while_another_works(url):
    broker = SqliteBroker(url)
    broker.submit([spec()])
    lease = broker.claim("cpu", "w", lease_seconds=30)
    beats: list[bool] = []
    thread = threading.Thread(target=lambda: beats.extend(broker.heartbeat(lease) for _ in range(20)))
    thread.start()
    thread.join()
    assert beats == [True] * 20
    assert broker.complete(lease, success(lease)) is CompleteOutcome.COUNTED
    broker.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(url):
    broker = SqliteBroker(url)
    broker.submit([spec(seed=1), spec(seed=2)])
    broker.list()  # the parent's connection is open before the fork
    pid = os.fork()
    if pid == 0:  # the child uses the same object; it must not share the parent's sqlite handle
        code = 1
        try:
            lease = broker.claim("cpu", "child")
            code = 0 if broker.complete(lease, success(lease)) is CompleteOutcome.COUNTED else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    lease = broker.claim("cpu", "parent")  # the parent's connection still works after the child left
    assert broker.complete(lease, success(lease)) is CompleteOutcome.COUNTED
    assert {j.worker_id for j in broker.list(states=[JobState.SUCCEEDED])} == {"child", "parent"}


def test_sigkill_during_a_big_submit_leaves_all_or_nothing(url):
    program = ("import sys; from golfq.core.backends import open_broker; from tests.contract.helpers import spec; "
               "b = open_broker(sys.argv[1]); specs = [spec(seed=i) for i in range(20000)]; "
               "print('open', flush=True); b.submit(specs); print('done', flush=True)")
    child = subprocess.Popen([sys.executable, "-c", program, url], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "open"
    time.sleep(0.3)  # about midway through the one transaction
    child.send_signal(signal.SIGKILL)
    child.wait()
    broker = SqliteBroker(url)
    jobs = broker.list()
    assert len(jobs) in (0, 20000)
    assert sum(e.kind is EventKind.SUBMITTED for e in all_events(broker, page=50_000)) == len(jobs)
    assert broker.submit([spec(seed=3)])[0].id == spec(seed=3).id  # and the file is usable


def test_a_long_lived_reader_sees_what_other_processes_wrote_after_they_closed(tmp_path):
    """Opening a connection once read the file's header with open()/close(), which drops every POSIX lock this
    process holds on it: the next process to close the queue then deleted the WAL under this one's connections,
    which went on reading a stale state (then 'disk I/O error'). The MCP server and `golfq wait` live like this."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    reader = open_broker(url)
    [job] = reader.submit([spec()])
    assert reader.get(job.id).state is JobState.QUEUED  # the read connection opens after the write one
    step = ("import sys; from golfq.core.backends import open_broker; b = open_broker(sys.argv[1]); "
            "lease = b.claim('cpu', 'other'); b.release(lease, 'released') if lease else None; b.close()")
    from tests.golfq_helpers import subprocess_env

    for attempt in (1, 2, 3):  # each process opens the queue, writes, and closes it: the last to close
        subprocess.run([sys.executable, "-c", step, url], check=True, env=subprocess_env(), timeout=60)
        seen = reader.get(job.id)
        assert (seen.state, seen.attempt) == (JobState.QUEUED, attempt)
        assert [e.kind for e in reader.events()][-1] is EventKind.REQUEUED
    reader.close()
