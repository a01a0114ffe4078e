"""The in-memory Modal stand-ins copy every semantic the reference lists (docs/modal-semantics.md)."""

from __future__ import annotations

import queue
import threading
import time

import pytest
from modal.exception import InvalidError, RequestSizeError

from tests.contract.conftest import ManualClock
from tests.modal_fakes import FakeDict, FakeQueue, MiB


def test_dict_put_skip_if_exists_returns_whether_it_wrote():
    d = FakeDict()
    assert d.put("k", b"first", skip_if_exists=True) is True
    assert d.put("k", b"second", skip_if_exists=True) is False
    assert d.get("k") == b"first"
    assert d.put("k", b"third") is True and d.get("k") == b"third"


def test_dict_pop_without_default_raises_key_error():
    d = FakeDict()
    with pytest.raises(KeyError):
        d.pop("missing")
    assert d.pop("missing", None) is None
    d["k"] = b"v"
    assert d.pop("k") == b"v" and not d.contains("k")
    with pytest.raises(KeyError):
        d["k"]


def test_dict_entries_expire_after_seven_idle_days_and_reads_extend_them():
    clock = ManualClock()
    d = FakeDict(clock=clock)
    d.update({"read": b"1", "idle": b"2"})
    clock.advance(6 * 86400)
    assert d.get("read") == b"1"  # a read resets the idle clock
    clock.advance(2 * 86400)
    assert d.get("read") == b"1"
    assert d.get("idle") is None and not d.contains("idle")
    assert d.put("idle", b"again", skip_if_exists=True) is True  # an expired key is free again


def test_dict_refuses_oversized_values_and_big_updates():
    d = FakeDict(max_value_bytes=1024)
    with pytest.raises(RequestSizeError):
        d.put("k", b"x" * 1025)
    with pytest.raises(RequestSizeError):
        d.update({"a": b"x" * 600, "b": b"x" * 600})
    assert d.get("k") is None and d.get("a") is None  # nothing partially written
    with pytest.raises(InvalidError):
        FakeDict().update({f"k{i}": b"" for i in range(10_001)})
    assert FakeDict.MAX_VALUE_BYTES == 100 * MiB


def test_dict_wants_primitive_keys_and_byte_values():
    d = FakeDict()
    with pytest.raises(TypeError):
        d.put(("a", ["list"]), b"v")
    with pytest.raises(TypeError):
        d.put("k", {"a": 1})  # golfq stores msgspec bytes, never pickled objects


def test_queue_get_is_a_destructive_pop():
    q = FakeQueue()
    q.put_many([b"a", b"b"], partition="h100")
    assert q.get(partition="h100") == b"a"
    assert q.len(partition="h100") == 1
    assert list(q.iterate(partition="h100")) == [b"b"] and q.len(partition="h100") == 1  # iterate reads only
    assert q.get(partition="h100") == b"b" and q.len(partition="h100") == 0


def test_queue_nonblocking_get_on_empty_returns_none_and_warns_about_a_timeout():
    q = FakeQueue()
    assert q.get(block=False) is None
    assert q.get_many(5, block=False) == []
    with pytest.warns(UserWarning):
        assert q.get(block=False, timeout=1.0) is None


def test_queue_blocking_get_raises_empty_when_the_timeout_runs_out():
    q = FakeQueue()
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.2, partition="cpu")
    assert time.monotonic() - started >= 0.15


def test_queue_blocking_get_wakes_on_a_put_and_get_many_returns_what_is_there():
    q = FakeQueue()
    threading.Timer(0.1, lambda: q.put_many([b"x", b"y"], partition="p")).start()
    assert q.get_many(10, timeout=5, partition="p") == [b"x", b"y"]


def test_queue_partitions_are_independent_and_len_total_excludes_partition():
    q = FakeQueue()
    q.put(b"1", partition="a")
    q.put(b"2", partition="b")
    q.put(b"3")
    assert (q.len(partition="a"), q.len(), q.len(total=True)) == (1, 1, 3)
    with pytest.raises(InvalidError):
        q.len(partition="a", total=True)
    q.clear(partition="a")
    assert q.len(total=True) == 2


def test_queue_limits():
    q = FakeQueue()
    with pytest.raises(InvalidError):
        q.put(b"x", partition="p" * 65)
    with pytest.raises(InvalidError):
        q.put(b"x", partition="")
    with pytest.raises(RequestSizeError):
        q.put(b"x" * (MiB + 1))
    q.put_many([b"."] * FakeQueue.MAX_ITEMS, partition="full")
    with pytest.raises(queue.Full):
        q.put(b"one more", block=False, partition="full")
    with pytest.raises(queue.Full):
        q.put(b"one more", timeout=0.05, partition="full")
    assert q.len(partition="full") == FakeQueue.MAX_ITEMS


def test_queue_partition_is_cleared_its_ttl_after_the_last_put():
    clock = ManualClock()
    q = FakeQueue(clock=clock)
    q.put(b"old", partition="p", partition_ttl=60)
    clock.advance(50)
    q.put(b"new", partition="p", partition_ttl=60)  # a put restarts the partition's clock
    clock.advance(50)
    assert q.len(partition="p") == 2
    clock.advance(11)
    assert q.len(partition="p") == 0 and q.get(block=False, partition="p") is None
    q.put(b"x", partition="d")
    clock.advance(24 * 3600)
    assert q.len(partition="d") == 0  # the default TTL is 24 h


# -- the network: latency, lost requests and responses, the client's retries ----------------------

from grpclib.exceptions import GRPCError  # noqa: E402

from tests.modal_net import Network, VirtualClock  # noqa: E402


def test_each_call_costs_its_latency_and_bandwidth_in_virtual_time():
    clock = VirtualClock(start=0.0)
    net = Network(0.1, bandwidth=1 * MiB, clock=clock)
    d = FakeDict(clock=clock, net=net)
    started = clock()
    d.put("k", b"x" * MiB)
    assert clock() - started == pytest.approx(0.1 + 1.0)  # a round trip and a second of upload
    d.get("k")
    assert clock() - started == pytest.approx(2 * 0.1 + 2.0) and net.calls == 2


def test_a_lost_response_makes_a_retried_put_if_absent_read_as_taken():
    net = Network(lost_responses=1.0, retries=1)  # the first response is lost; the retry's too
    d = FakeDict(net=net)
    with pytest.raises(GRPCError):
        d.put("lock", b"mine", skip_if_exists=True)
    assert net.responses_lost == 2 and net.attempts == 2
    net.lost_responses = 0.0
    assert d.get("lock") == b"mine"  # applied all the same: the caller cannot tell from the answer
    net.lost_responses, net.retries = 0.3, 3
    net.rng.seed(3)
    outcomes = [d.put(f"k{i}", b"v", skip_if_exists=True) for i in range(40)]
    assert False in outcomes and all(d.get(f"k{i}") == b"v" for i in range(40))  # False, though it wrote


def test_a_lost_request_is_retried_and_applied_once():
    net = Network(lost_requests=0.3, seed=1)
    q = FakeQueue(net=net)
    for i in range(20):
        q.put(i, partition="p")
    assert q.len(partition="p") == 20 and net.requests_lost > 0


def test_a_lost_queue_get_response_loses_the_item():
    net = Network()
    q = FakeQueue(net=net)
    q.put_many([1, 2], partition="p")
    net.lost_responses, net.retries = 1.0, 1
    with pytest.raises(GRPCError):
        q.get(block=False, partition="p")
    net.lost_responses = 0.0
    assert q.get(block=False, partition="p") is None  # both popped, neither delivered: no ack, no redelivery


def test_virtual_time_moves_only_when_every_actor_sleeps():
    clock = VirtualClock(start=0.0)
    seen: list[tuple[str, float]] = []

    def actor(name: str, step: float) -> None:
        for _ in range(3):
            clock.sleep(step)
            seen.append((name, clock()))

    clock.join()  # hold time still while both start
    threads = [clock.start(actor, "a", 1.0, name="a"), clock.start(actor, "b", 1.5, name="b")]
    clock.leave()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(seen, key=lambda x: (x[1], x[0])) == [("a", 1.0), ("b", 1.5), ("a", 2.0), ("a", 3.0),
                                                        ("b", 3.0), ("b", 4.5)]


def test_a_blocking_queue_get_waits_in_virtual_time():
    clock = VirtualClock(start=0.0)
    q = FakeQueue(clock=clock, net=Network(0.01, clock=clock))
    with pytest.raises(queue.Empty):
        q.get(timeout=30, partition="p")
    assert 30 <= clock() < 31
