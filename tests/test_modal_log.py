"""The Modal backend's commit log at real latency: racing writers, lost responses, skewed clocks, idle expiry."""

from __future__ import annotations

import collections
import threading

from golfq.core.events import EventKind
from golfq.core.job import CompleteOutcome, JobState
from golfq.core.spec import ExperimentSpec
from tests.contract.conftest import ManualClock
from tests.contract.helpers import all_events, replayed_front, spec, success
from tests.modal_fakes import FakeModal
from tests.modal_net import Network, VirtualClock

DAY = 86400.0


def test_a_commit_whose_response_was_lost_is_read_back_not_made_twice():
    net = Network()
    fake = FakeModal(net=net)
    broker = fake.broker()
    broker.submit([spec(seed=1)])
    store = fake.dicts["/golfq-test-state"]
    answers = []
    put = store.put

    def put_and_note(key, value, *, skip_if_exists=False):
        if key.startswith("log/"):
            net.plan("response", "ok")  # the commit lands, its answer is lost; the client's retry hears "taken"
        answers.append(put(key, value, skip_if_exists=skip_if_exists))
        return answers[-1]

    def put_listing_and_note(key, value, listed, *, skip_if_exists=False):  # the put, with a listing alongside
        if key.startswith("log/"):
            net.plan("response", "ok")
        written, items = put_listing(key, value, listed, skip_if_exists=skip_if_exists)
        answers.append(written)
        return written, items

    put_listing = store.put_listing
    store.put = put_and_note  # type: ignore[method-assign]
    store.put_listing = put_listing_and_note  # type: ignore[method-assign]
    lease = broker.claim("cpu", "w")
    assert answers == [False] and net.responses_lost == 1 and broker.conflicts == 0 and lease is not None
    assert [e.kind for e in all_events(fake.broker())] == [EventKind.SUBMITTED, EventKind.CLAIMED]  # claimed once


def test_a_step_is_never_committed_on_a_state_it_did_not_read():
    clock = ManualClock()
    fake = FakeModal()
    a, b = fake.broker(clock=clock), fake.broker(clock=clock)
    a.submit([spec(seed=1)])
    b.view()  # b folds the submit...
    runs = []
    original = b.log.append

    def a_commits_first(state, entry, listing=None):
        if not runs:
            runs.append(1)
            a.cancel([spec(seed=1).id])  # ...then a commits before b: b's step read a stale state
        return original(state, entry, listing)

    b.log.append = a_commits_first  # type: ignore[method-assign]
    assert b.claim("cpu", "w") is None  # b's step ran again on the newer state: nothing left to claim
    assert b.conflicts == 1 and fake.broker().get(spec(seed=1).id).state is JobState.CANCELLED


def test_racing_writers_at_real_latency_lose_nothing_and_count_nothing_twice():
    clock = VirtualClock()
    net = Network(0.03, lost_responses=0.05, lost_requests=0.02, seed=5, clock=clock)
    fake = FakeModal(clock=clock, net=net)
    fake.broker(clock=clock).submit([spec(seed=i) for i in range(120)])
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def worker(name: str, skew: float) -> None:
        broker = fake.broker(clock=lambda: clock() + skew, writer=name)
        while (lease := broker.claim("cpu", name, lease_seconds=3600)) is not None:
            assert broker.heartbeat(lease, 3600)
            outcome = broker.complete(lease, success(lease))
            with lock:
                outcomes[outcome.value] += 1

    clock.join()
    threads = [clock.start(worker, f"w{i}", skew, name=f"w{i}") for i, skew in enumerate((0.0, 2.5, -40.0, 900.0))]
    clock.leave()
    for thread in threads:
        thread.join(timeout=120)
    reader = fake.broker(clock=clock)
    events = all_events(reader)
    assert outcomes == {CompleteOutcome.COUNTED.value: 120}
    assert collections.Counter(e.kind for e in events) == {EventKind.SUBMITTED: 120, EventKind.CLAIMED: 120,
                                                            EventKind.SUCCEEDED: 120}
    assert [e.seq for e in events] == list(range(1, 361))
    assert [e.ts for e in events] == sorted(e.ts for e in events)  # skewed writers never date an event backwards
    assert reader.stats().total(JobState.SUCCEEDED) == 120 and reader.front("cpu") == replayed_front(reader, "cpu")
    assert net.responses_lost > 0 and net.requests_lost > 0
    assert clock() - 1_800_000_000.0 < 120 * 0.03 * 20  # a few round trips per job, spread over four writers


def test_a_batch_is_a_few_round_trips_however_many_specs_it_holds():
    fake = FakeModal()
    broker = fake.broker()
    broker.view()
    before = fake.calls()
    jobs = broker.submit([ExperimentSpec(pool="h100", seed=s, env={"LR": str(s)}) for s in range(10_000)])
    assert len({j.id for j in jobs}) == 10_000 and fake.calls() - before <= 12
    before = fake.calls()
    assert len(broker.cancel([j.id for j in jobs])) == 10_000 and fake.calls() - before <= 4
    before = fake.calls()
    assert broker.purge(before=broker.clock() + 1) == 10_000 and fake.calls() - before <= 4


def test_after_thirty_idle_days_with_every_entry_expired_the_queue_is_restored_from_the_volume():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock)
    jobs = broker.submit([spec(seed=i) for i in range(300)])  # over a page of events
    for _ in range(5):
        lease = broker.claim("cpu", "w")
        broker.complete(lease, success(lease))
    broker.checkpoint()  # what the dispatcher does after each pass that changed something
    front, events = broker.front("cpu"), all_events(broker)
    clock.advance(30 * DAY)
    assert all(d.len() == 0 for d in fake.dicts.values())  # Modal dropped every entry
    fresh = fake.broker(clock=clock)
    assert [j.id for j in fresh.list()] == [j.id for j in jobs] and fresh.front("cpu") == front
    assert all_events(fresh) == events and fresh.stats().total(JobState.SUCCEEDED) == 5
    assert fresh.view().gen == 2  # a new generation: nothing of the old one can be folded into it by mistake
    lease = fresh.claim("cpu", "w")
    assert fresh.complete(lease, success(lease)) is CompleteOutcome.COUNTED
    assert broker.get(lease.job_id).state is JobState.SUCCEEDED  # the old process re-reads the pointer and follows


def test_concurrent_restorers_agree_on_one_generation():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock)
    broker.submit([spec(seed=1)])
    broker.checkpoint()
    clock.advance(8 * DAY)
    first, second = fake.broker(clock=clock), fake.broker(clock=clock)
    second.log.restore()  # another process got there first, with its own snapshot of generation 2
    assert first.view().gen == 2 and first.submit([spec(seed=2)])[0].state is JobState.QUEUED
    assert [j.id for j in second.list()] == [spec(seed=1).id, spec(seed=2).id]


def test_old_snapshots_are_collected_and_pages_outlive_the_dict():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock)
    for i in range(6):
        broker.submit([spec(seed=s) for s in range(i * 100, i * 100 + 100)])
        broker.checkpoint()
    manifests = [k for k in fake.dicts["/golfq-test-state"]._data if str(k).count("/") == 2 and k.startswith("snap/")]
    assert len(manifests) == 2  # the newest two, for readers holding the older pointer
    assert sum(1 for path in fake.blobs.files if path.startswith("/snapshots/") and path.endswith(".bin")) == 2
    events = all_events(broker)
    for key in [k for k in fake.dicts["/golfq-test-state"]._data if k.startswith("events/")]:
        fake.dicts["/golfq-test-state"].pop(key)  # expired from the Dict: the Volume has the pages
    assert all_events(fake.broker(clock=clock)) == events and len(events) == 600


def test_a_heartbeat_for_a_purged_job_is_refused_not_raised():
    clock = ManualClock()
    fake = FakeModal()
    broker = fake.broker(clock=clock)
    job = broker.submit([spec(seed=1)])[0]
    lease = broker.claim("cpu", "w")
    broker.cancel([job.id])
    assert broker.purge(before=clock.now + 1) == 1
    assert fake.broker(clock=clock).heartbeat(lease) is False  # another process: a first beat, a commit
    assert broker.heartbeat(lease) is False


def test_a_pointer_to_a_lost_snapshot_restores_a_new_generation_from_the_volume():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock)
    broker.submit([spec(seed=1)])
    ptr = broker.checkpoint()
    broker.submit([spec(seed=2)])
    fake.dicts["/golfq-test-state"].pop(f"snap/{ptr.gen}/{ptr.pos}/0")  # gone from the Dict, not the Volume
    fresh = fake.broker(clock=clock)
    assert fresh.view().gen == ptr.gen + 1 and len(fresh.list()) == 2  # the Dict's entries salvaged


def test_each_restore_starts_a_generation_past_every_earlier_one():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    fake.broker(clock=clock).submit([spec(seed=1)])
    fake.broker(clock=clock).checkpoint()
    gens = []
    for _ in range(2):
        clock.advance(30 * DAY)
        broker = fake.broker(clock=clock)
        gens.append(broker.view().gen)
        broker.submit([spec(seed=len(gens) + 1)])
        broker.checkpoint()  # the dispatcher's pass after the commit
    assert gens == [2, 3]
    assert [j.id for j in fake.broker(clock=clock).list()] == [spec(seed=s).id for s in (1, 2, 3)]
