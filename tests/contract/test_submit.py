"""Submit, dedupe by spec id, scripts, get."""

from __future__ import annotations

import pytest

from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.spec import SpecError
from tests.contract.helpers import all_events, spec


def test_submit_queues_each_spec_in_order(broker, clock):
    specs = [spec(seed=i) for i in range(5)]
    jobs = broker.submit(specs)
    assert [j.id for j in jobs] == [s.id for s in specs]
    assert all(j.state is JobState.QUEUED and j.attempt == 0 and j.spec == s for j, s in zip(jobs, specs, strict=True))
    assert all(j.submitted_at == clock.now for j in jobs)
    assert [j.order for j in jobs] == sorted({j.order for j in jobs})  # strictly increasing FIFO positions
    assert broker.get(specs[2].id) == jobs[2]
    assert broker.get("a" * 16) is None


def test_same_spec_again_returns_the_existing_job(broker, clock):
    first = broker.submit([spec(seed=7, priority=1, tags=("a",), name="first")])[0]
    clock.advance(10)
    # name, tags and priority do not change the outcome, so they do not make a new job
    again = broker.submit([spec(seed=7, priority=9, tags=("b",), name="second"), spec(seed=8)])
    assert again[0] == first
    assert again[1].id != first.id
    assert [j.id for j in broker.list()] == [first.id, again[1].id]
    submitted = [e for e in all_events(broker) if e.kind is EventKind.SUBMITTED]
    assert [e.job_id for e in submitted] == [first.id, again[1].id]
    assert submitted[0].spec == first.spec  # the log alone can replay


def test_duplicates_inside_one_batch_make_one_job(broker):
    jobs = broker.submit([spec(seed=1), spec(seed=2), spec(seed=1, name="dup")])
    assert jobs[0] == jobs[2]
    assert len(broker.list()) == 2


def test_resubmitting_a_finished_job_does_not_queue_it_again(broker):
    job = broker.submit([spec(seed=1)])[0]
    broker.cancel([job.id])
    assert broker.submit([spec(seed=1)])[0].state is JobState.CANCELLED
    assert broker.stats().total(JobState.QUEUED) == 0


def test_submit_refuses_what_is_not_a_spec(broker):
    with pytest.raises((SpecError, TypeError)):
        broker.submit([spec(seed=1), {"pool": "cpu"}])
    assert broker.list() == []


def test_scripts_round_trip_by_content_hash(broker):
    content = b"print('train')\n"
    ref = broker.put_script(content)
    assert ref.startswith("sha256:") and broker.put_script(content) == ref
    assert broker.get_script(ref) == content
    with pytest.raises(KeyError):
        broker.get_script("sha256:" + "0" * 64)
