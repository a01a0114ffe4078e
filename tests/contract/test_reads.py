"""Event order and cursors, stats, list filters, purge."""

from __future__ import annotations

from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.result import FailureKind
from tests.contract.helpers import all_events, spec, success


def busy_history(broker, clock) -> list:
    jobs = broker.submit([spec(seed=i, tags=("even",) if i % 2 == 0 else ()) for i in range(6)]
                         + [spec(seed=0, pool="h100", tags=("even", "gpu"))])
    clock.advance(1)
    ok = broker.claim("cpu", "w")
    broker.complete(ok, success(ok))
    clock.advance(1)
    bad = broker.claim("cpu", "w")
    broker.fail(bad, "exit 1", FailureKind.USER)
    broker.claim("cpu", "w")
    broker.cancel([jobs[3].id])
    return jobs


def test_every_transition_appends_one_event_in_order(broker, clock):
    jobs = busy_history(broker, clock)
    events = all_events(broker)
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs)) and seqs[0] >= 1
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert [e.kind for e in events if e.job_id == jobs[0].id] == [EventKind.SUBMITTED, EventKind.CLAIMED,
                                                                   EventKind.SUCCEEDED]
    assert [e.kind for e in events if e.job_id == jobs[1].id] == [EventKind.SUBMITTED, EventKind.CLAIMED,
                                                                   EventKind.FAILED]
    assert len(events) == 7 + 2 + 2 + 1 + 1
    assert broker.stats().last_seq == seqs[-1]


def test_cursor_pages_cover_the_log_exactly_once(broker, clock):
    busy_history(broker, clock)
    everything = broker.events(after_seq=0, limit=10_000)
    assert broker.events(after_seq=everything[-1].seq) == []
    pages, cursor = [], 0
    while page := broker.events(after_seq=cursor, limit=3):
        assert len(page) <= 3
        pages += page
        cursor = page[-1].seq
    assert pages == everything
    middle = everything[4].seq
    assert broker.events(after_seq=middle, limit=2) == everything[5:7]
    ok = broker.submit([spec(seed=99)])[0]  # a follower sees only what is new
    assert [(e.kind, e.job_id) for e in broker.events(after_seq=cursor)] == [(EventKind.SUBMITTED, ok.id)]


def test_stats_count_jobs_per_pool_and_state(broker, clock):
    busy_history(broker, clock)
    stats = broker.stats()
    cpu, gpu = stats.pools["cpu"], stats.pools["h100"]
    assert (cpu.queued, cpu.leased, cpu.succeeded, cpu.failed, cpu.dead, cpu.cancelled) == (2, 1, 1, 1, 0, 1)
    assert (gpu.queued, gpu.leased) == (1, 0) and not cpu.draining
    assert stats.total(JobState.QUEUED) == 3


def test_list_filters_combine_and_keep_submission_order(broker, clock):
    jobs = busy_history(broker, clock)
    ids = [j.id for j in jobs]
    assert [j.id for j in broker.list()] == ids
    assert [j.id for j in broker.list(pool="cpu")] == ids[:6]
    assert [j.id for j in broker.list(tag="even")] == [ids[0], ids[2], ids[4], ids[6]]
    assert [j.id for j in broker.list(tag="even", pool="cpu")] == [ids[0], ids[2], ids[4]]
    assert [j.id for j in broker.list(states=[JobState.QUEUED])] == [ids[4], ids[5], ids[6]]
    assert [j.id for j in broker.list(states=[JobState.QUEUED, JobState.CANCELLED], limit=2)] == [ids[3], ids[4]]
    assert [j.id for j in broker.list(states=[JobState.SUCCEEDED], tag="even")] == [ids[0]]
    assert broker.list(tag="nothing") == [] and len(broker.list(limit=3)) == 3


def test_purge_removes_only_old_finished_jobs(broker, clock):
    jobs = busy_history(broker, clock)  # finished: 0 succeeded, 1 failed, 3 cancelled
    front_before = broker.front("cpu")
    log_before = all_events(broker)
    assert broker.purge(before=clock.now - 0.5) == 1  # only jobs[0] finished before then
    clock.advance(5)
    assert broker.purge(before=clock.now) == 2
    assert broker.purge(before=clock.now) == 0
    assert [j.id for j in broker.list()] == [jobs[2].id, jobs[4].id, jobs[5].id, jobs[6].id]
    assert broker.get(jobs[0].id) is None and broker.list(tag="even", states=[JobState.SUCCEEDED]) == []
    assert broker.front("cpu") == front_before  # results and the log outlive the job records
    assert all_events(broker) == log_before
