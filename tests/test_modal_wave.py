"""A whole wave finishing at once on the Modal backend: group commit, and the leads of issue 17.

Everything runs on the latency-true stand-ins (tests/modal_fakes.py), in virtual time
where timing matters; the speed figures themselves are in bench/modal_wave.py.
"""

from __future__ import annotations

import collections
import threading

import msgspec
import pytest

from golfq.core.backends.modal.effects import DISPATCH_PARTITION
from golfq.core.backends.modal.group import request_key
from golfq.core.backends.modal.records import Call
from golfq.core.backends.modal.store import encode
from golfq.core.job import CompleteOutcome, JobState
from tests.contract.conftest import ManualClock
from tests.contract.helpers import all_events, spec, success
from tests.modal_fakes import FakeModal
from tests.modal_net import Network, VirtualClock

DAY = 86400.0


def _wave(writers: int, lost: float, seed: int) -> tuple[FakeModal, list, collections.Counter, list]:
    """`writers` runners, each holding one lease, all completing at the same virtual instant."""
    clock = VirtualClock()
    net = Network(0.03, lost_responses=lost, lost_requests=lost / 2, seed=seed, clock=clock)
    fake = FakeModal(clock=clock, net=net)
    setup = fake.broker(clock=clock, writer="setup")
    setup.submit([spec(seed=i) for i in range(writers)])
    leases = [setup.claim("cpu", f"w{i}", lease_seconds=3600) for i in range(writers)]
    outcomes: collections.Counter[str] = collections.Counter()
    errors: list[BaseException] = []
    brokers = [fake.broker(clock=clock, writer=f"w{i}") for i in range(writers)]
    for broker in brokers:
        broker.view()
    lock = threading.Lock()

    def finish(index: int) -> None:
        try:
            outcome = brokers[index].complete(leases[index], success(leases[index]))
        except BaseException as error:  # noqa: BLE001 - counted: a wave must have none
            with lock:
                errors.append(error)
            return
        with lock:
            outcomes[outcome.value] += 1

    clock.join()
    threads = [clock.start(finish, i, name=f"w{i}") for i in range(writers)]
    clock.leave()
    for thread in threads:
        thread.join(timeout=120)
    return fake, brokers, outcomes, errors


def test_a_wave_of_completions_is_committed_in_a_few_entries_each_counted_once():
    fake, brokers, outcomes, errors = _wave(40, lost=0.0, seed=1)
    assert errors == [] and outcomes == {CompleteOutcome.COUNTED.value: 40}
    reader = fake.broker(writer="reader")
    assert reader.stats().total(JobState.SUCCEEDED) == 40
    assert sum(b.group.grouped for b in brokers) > 0  # they did contend: the losers were carried out in groups
    assert reader.view().pos < 41 + 40 + 15  # submit + 40 claims, then far fewer entries than completions
    assert not list(fake.dicts["/golfq-test-requests"].items())  # every request key was deleted


def test_lost_responses_in_a_wave_lose_nothing_and_count_nothing_twice():
    fake, brokers, outcomes, errors = _wave(40, lost=0.15, seed=7)
    assert errors == [] and outcomes == {CompleteOutcome.COUNTED.value: 40}
    events = all_events(fake.broker(writer="reader"))
    assert collections.Counter(e.kind.value for e in events) == {"submitted": 40, "claimed": 40, "succeeded": 40}
    assert [e.seq for e in events] == list(range(1, 121))
    assert fake.net.responses_lost > 0


def test_writers_that_never_pause_carry_each_others_requests():
    clock = VirtualClock()
    net = Network(0.1, lost_responses=0.02, seed=3, clock=clock)
    fake = FakeModal(clock=clock, net=net)
    fake.broker(clock=clock, writer="submit").submit([spec(seed=i) for i in range(90)])
    brokers = [fake.broker(clock=clock, writer=f"w{i}") for i in range(3)]
    counted: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def worker(broker) -> None:
        while (lease := broker.claim("cpu", broker.writer, lease_seconds=3600)) is not None:
            outcome = broker.complete(lease, success(lease))
            with lock:
                counted[outcome.value] += 1

    clock.join()
    threads = [clock.start(worker, b, name=b.writer) for b in brokers]
    clock.leave()
    for thread in threads:
        thread.join(timeout=120)
    assert counted == {CompleteOutcome.COUNTED.value: 90}
    assert sum(b.group.carried for b in brokers) > 0  # the winners' entries did the losers' steps
    events = all_events(fake.broker(writer="reader"))
    assert collections.Counter(e.kind.value for e in events) == {"submitted": 90, "claimed": 90, "succeeded": 90}


def test_a_request_listed_by_several_committers_is_carried_out_once():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    owner, other, third = (fake.broker(clock=clock, writer=w) for w in ("owner", "other", "third"))
    owner.submit([spec(seed=1), spec(seed=2)])
    lease = owner.claim("cpu", "w")
    from golfq.core.backends.modal.group import make_request

    # The owner left its request and died before reading the outcome: two others commit after it.
    request = make_request("r-dead", "complete", {"lease": lease, "result": success(lease)}, clock(), "owner")
    fake.dicts["/golfq-test-requests"].put(request_key("r-dead"), encode(request))
    for broker in (other, third):
        broker.view()
    other.group._until_done(make_request("r-2", "claim", {"pool": "cpu", "worker_id": "x", "lease_seconds": 60.0},
                                         clock(), "other"))
    third.group._until_done(make_request("r-3", "claim", {"pool": "cpu", "worker_id": "y", "lease_seconds": 60.0},
                                         clock(), "third"))
    state = fake.broker(clock=clock).view()
    assert state.jobs[lease.job_id].state is JobState.SUCCEEDED
    assert [e.kind.value for e in state.events].count("succeeded") == 1
    clock.advance(600)
    third.group._until_done(make_request("r-4", "claim", {"pool": "cpu", "worker_id": "z", "lease_seconds": 60.0},
                                         clock(), "third"))
    assert fake.dicts["/golfq-test-requests"].get(request_key("r-dead")) is None  # an orphan, deleted


def test_an_error_in_one_request_is_its_writers_alone():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock)
    broker.submit([spec(seed=1)])
    lease = broker.claim("cpu", "w")
    broker.cancel([lease.job_id])
    broker.purge(before=clock() + 1)
    from golfq.core.backends.modal.group import make_request

    request = make_request("r-gone", "complete", {"lease": lease, "result": success(lease)}, clock(), "w")
    with pytest.raises(KeyError):
        from golfq.core.backends.modal.group import outcome_value

        outcome_value("complete", broker.group._until_done(request))


def test_a_commit_whose_side_effects_fail_still_reports_success():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock, kick=lambda: None)
    broker.submit([spec(seed=1), spec(seed=2)])

    def broken(*args, **kwargs):
        raise RuntimeError("Modal is down")

    fake.dicts["/golfq-test-leases"].update = broken  # type: ignore[method-assign]
    fake.queues["/golfq-test-wake"].put = broken  # type: ignore[method-assign]
    lease = broker.claim("cpu", "w")
    assert lease is not None  # committed: a claim that commits never raises
    assert broker.cancel([lease.job_id]) == [lease.job_id]  # its revocation marker failed, the cancel stands
    other = broker.claim("cpu", "w")
    assert broker.complete(other, success(other)) is CompleteOutcome.COUNTED


def _unanswered_log_puts(fake: FakeModal, net: Network, count: int) -> list[int]:
    """The next `count` log puts never reach Modal, each after the client's own retries: the writer cannot
    tell whether they landed. Returns the count still to fail."""
    store = fake.dicts["/golfq-test-state"]
    put, put_listing, failing = store.put, store.put_listing, [count]

    def unanswered(key: str) -> None:
        if key.startswith("log/") and failing[0]:
            failing[0] -= 1
            net.plan(*(["request"] * 4))

    def put_unanswered(key, value, *, skip_if_exists=False):
        unanswered(key)
        return put(key, value, skip_if_exists=skip_if_exists)

    def put_listing_unanswered(key, value, listed, *, skip_if_exists=False):
        unanswered(key)
        return put_listing(key, value, listed, skip_if_exists=skip_if_exists)

    store.put = put_unanswered  # type: ignore[method-assign]
    store.put_listing = put_listing_unanswered  # type: ignore[method-assign]
    return failing


def test_a_commit_whose_outcome_stays_unknown_for_long_is_still_read_back():
    clock = VirtualClock()
    net = Network(0.03, clock=clock)
    fake = FakeModal(clock=clock, net=net)
    broker = fake.broker(clock=clock)
    broker.view()
    failing = _unanswered_log_puts(fake, net, 7)  # the old backend gave up after 5
    job = broker.submit([spec(seed=1)])[0]
    assert failing == [0]
    assert fake.broker(clock=clock).get(job.id) is not None


def test_the_first_commit_of_a_spawned_call_outlasts_a_bad_minute_of_modal():
    clock = VirtualClock()
    net = Network(0.03, clock=clock)
    fake = FakeModal(clock=clock, net=net)
    broker, runner = fake.broker(clock=clock), fake.broker(clock=clock, writer="container")
    broker.submit([spec(seed=1)])
    lease = broker.claim("cpu", "modal/cpu", lease_seconds=600)
    runner.view()
    failing = _unanswered_log_puts(fake, net, 6)
    began = clock()
    assert runner.start(lease, 120, container="ta-1", billing_since=began) is True
    assert failing == [0] and clock() - began > 10  # it kept reading back through the outage
    assert fake.broker(clock=clock).get(lease.job_id).lease_deadline == pytest.approx(began + 120, abs=1)


def test_wake_partitions_nobody_reads_never_fill_up():
    fake = FakeModal()
    broker = fake.broker(kick=lambda: None)
    wake = fake.queue("golfq-test-wake")
    wake.put_many(list(range(5000)), partition="cpu")
    wake.put_many(list(range(5000)), partition=DISPATCH_PARTITION)
    broker.submit([spec(seed=1)])
    assert wake.len(partition="cpu") == 1 and wake.len(partition=DISPATCH_PARTITION) == 1


def test_a_burst_of_commits_kicks_the_dispatcher_once():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    kicks = []
    broker = fake.broker(clock=clock, kick=lambda: kicks.append(clock()))
    for i in range(10):
        broker.submit([spec(seed=i)])
        clock.advance(1)
    assert len(kicks) == 1
    clock.advance(60)
    broker.submit([spec(seed=99)])
    assert len(kicks) == 2


def test_without_an_app_commits_journal_to_the_volume_once_in_a_while_not_each_time():
    clock = ManualClock()
    fake = FakeModal(clock=clock)

    def not_deployed() -> None:
        raise RuntimeError("app not found")

    broker = fake.broker(clock=clock, kick=not_deployed)
    puts = []
    original = fake.blobs.put

    def counted(path, data):
        puts.append(path)
        original(path, data)

    fake.blobs.put = counted  # type: ignore[method-assign]
    for i in range(10):
        broker.submit([spec(seed=i)])
        clock.advance(5)
    assert sum(p.endswith(".bin") for p in puts) == 1  # one journal in 50 s, not ten


def test_a_fresh_process_far_behind_reads_a_snapshot_not_every_entry():
    fake = FakeModal()
    writer = fake.broker(kick=lambda: None)
    for i in range(1000):
        writer.submit([spec(seed=i)])
    before = fake.calls()
    fresh = fake.broker()
    assert len(fresh.list()) == 1000
    assert fake.calls() - before < 60  # the pointer, a snapshot and at most a few dozen entries


def test_a_view_far_behind_loads_a_newer_snapshot_while_catching_up():
    fake = FakeModal()
    writer, reader = fake.broker(kick=lambda: None), fake.broker()
    reader.view()
    for i in range(500):
        writer.submit([spec(seed=i)])
    before = fake.calls()
    assert len(reader.list()) == 500 and fake.calls() - before < 160


def test_latest_on_the_volume_never_moves_backwards():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker, stale = fake.broker(clock=clock), fake.broker(clock=clock)
    broker.submit([spec(seed=1)])
    old_state = stale.view()
    behind = type(old_state)(old_state.snapshot())  # a copy of the state at entry 1
    broker.submit([spec(seed=2)])
    broker.checkpoint()
    stale.log.journal(behind)  # a process with an older view journals last: last writer wins on LATEST
    clock.advance(30 * DAY)
    fresh = fake.broker(clock=clock)
    assert {j.id for j in fresh.list()} == {spec(seed=1).id, spec(seed=2).id}


def test_a_lost_snapshot_with_expired_entries_never_recreates_an_expired_slot():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock)
    broker.submit([spec(seed=1)])
    broker.checkpoint()  # Dict and Volume at entry 1
    for i in range(2, 5):
        broker.submit([spec(seed=i)])  # entries 2..4
    store = fake.dicts["/golfq-test-state"]
    ptr = broker.log.write_snapshot(broker.view())  # a snapshot at 4, published in the Dict only
    store.put("snap/ptr", encode(ptr))
    store.pop(f"snap/{ptr.gen}/{ptr.pos}/0")
    store.pop(f"log/{ptr.gen}/2")  # expired
    fresh = fake.broker(clock=clock)
    fresh.submit([spec(seed=9)])
    again = fake.broker(clock=clock)
    assert spec(seed=9).id in {j.id for j in again.list()}  # every reader can still read the queue


def test_a_started_call_that_goes_silent_is_not_reaped_by_a_worker_within_the_grace():
    clock = ManualClock()
    fake = FakeModal(clock=clock)
    broker = fake.broker(clock=clock)
    broker.submit([spec(seed=1)])
    lease = broker.claim("cpu", "modal/cpu", lease_seconds=60)

    def spawned(tx):
        tx.set_call(lease.job_id, lease.attempt, Call(pool="cpu", gpus=0, spawned_at=clock(), call_id="fc-1",
                                                      ran_at=clock(), billing_since=clock()))

    broker.transact(spawned)
    assert broker.heartbeat(lease, 60)
    clock.advance(600)  # silent for ten minutes: Modal may be re-running it after a preemption
    worker = fake.broker(clock=clock)
    assert worker.reap() == [] and worker.get(lease.job_id).state is JobState.LEASED
    clock.advance(3600)
    assert worker.reap() == [lease.job_id]


def test_requests_carry_their_arguments_exactly():
    from golfq.core.backends.modal.group import _arguments, make_request

    lease = FakeModal().broker().submit([spec(seed=1)])[0]
    request = make_request("r", "claim", {"pool": "cpu", "worker_id": lease.id, "lease_seconds": 5.0}, 1.0, "w")
    assert _arguments(msgspec.msgpack.decode(msgspec.msgpack.encode(request), type=type(request))) == {
        "pool": "cpu", "worker_id": lease.id, "lease_seconds": 5.0}
