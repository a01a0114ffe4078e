"""Spend caps (golfq.core.budget) on every backend: the claim step refuses an attempt whose worst
case would take committed plus spent money past a cap; ended attempts spend what they cost.

Prices are the built-in table: one H100 at $3.95 an hour, so a spec with a one-hour hard
timeout has a worst case of $3.95, and one of 360 s a worst case of $0.395.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from golfq.core.budget import BudgetError, parse_cap, scope, worst_case
from golfq.core.events import EventKind
from golfq.core.job import JobState
from golfq.core.result import Result
from golfq.core.spec import Budget, ExperimentSpec
from tests.contract.helpers import all_events
from tests.modal_server import open_url as open_broker

ROOT = Path(__file__).resolve().parents[2]
HOUR = 3600.0


def gpu_spec(seed: int, pool: str = "h100", timeout: float = HOUR, tags: tuple[str, ...] = ()) -> ExperimentSpec:
    return ExperimentSpec(name=f"b{seed}", pool=pool, seed=seed, tags=tags,
                          budget=Budget(train_seconds=min(timeout, 600.0), timeout_seconds=timeout))


def ran(lease, gpu_seconds: float) -> Result:
    return Result(spec_id=lease.job_id, attempt=lease.attempt, status="succeeded", val_bpb=1.2,
                  artifact_bytes=1000, train_seconds=10.0, gpu_name="NVIDIA H100 80GB HBM3", gpu_count=1,
                  gpu_seconds=gpu_seconds)


def scope_of(broker, key: str):
    return next(s for s in broker.budget().scopes if s.scope == key)


def test_worst_case_is_price_times_gpus_times_hard_timeout():
    assert worst_case(gpu_spec(1)) == pytest.approx(3.95)
    assert worst_case(gpu_spec(1, pool="h100x8", timeout=1800)) == pytest.approx(3.95 * 8 / 2)
    assert worst_case(gpu_spec(1, pool="cpu")) == 0.0


def test_a_cap_keeps_jobs_queued_with_a_reason_and_raising_it_releases_them(broker):
    first, second = broker.submit([gpu_spec(1), gpu_spec(2)])
    broker.set_budget(scope(), 5.0)
    lease = broker.claim("h100", "w1")
    assert lease is not None and lease.job_id == first.id
    assert broker.claim("h100", "w2") is None  # 3.95 committed + 3.95 > 5
    assert broker.get(second.id).state is JobState.QUEUED
    view = broker.budget()
    [waiting] = view.waiting
    assert (waiting.pool, waiting.job_id) == ("h100", second.id)
    assert "$3.95 committed" in waiting.reason and "$5.00 cap" in waiting.reason
    assert scope_of(broker, "queue").committed == pytest.approx(3.95)
    broker.set_budget(scope(), 7.9)
    assert broker.claim("h100", "w2").job_id == second.id  # the next claim sees the raised cap
    assert broker.budget().waiting == []


def test_an_ended_attempt_spends_its_cost_in_place_of_its_worst_case(broker):
    broker.submit([gpu_spec(1), gpu_spec(2), gpu_spec(3)])
    broker.set_budget(scope(pool="h100"), 5.0)
    lease = broker.claim("h100", "w1")
    broker.complete(lease, ran(lease, gpu_seconds=360.0))  # 0.1 h of an H100: $0.395
    pool = scope_of(broker, "pool:h100")
    assert (pool.spent, pool.committed) == (pytest.approx(0.395), 0.0)
    assert broker.claim("h100", "w1") is not None  # 0.395 + 3.95 <= 5
    assert broker.claim("h100", "w2") is None  # 0.395 + 3.95 + 3.95 > 5
    assert scope_of(broker, "queue").spent == pytest.approx(0.395)  # spent counts in every scope, capped or not


def test_caps_on_a_tag_or_another_pool_leave_other_jobs_alone(broker):
    tagged, other = broker.submit([gpu_spec(1, tags=("agent-a",)), gpu_spec(2, pool="h100x8", timeout=600)])
    broker.set_budget(scope(tag="agent-a"), 1.0)
    broker.set_budget(scope(pool="h100"), 100.0)
    assert broker.claim("h100", "w") is None
    assert "tag agent-a" in broker.budget().reason("h100")
    assert broker.claim("h100x8", "w").job_id == other.id
    broker.set_budget(scope(tag="agent-a"), None)  # cleared: no cap on the tag at all
    assert broker.claim("h100", "w").job_id == tagged.id


def test_a_capped_job_keeps_its_place_and_the_jobs_behind_it_that_fit_start(broker):
    """One agent's cap holds that agent's jobs, not the pool: the next job by priority that fits goes."""
    a_first, b_job, a_cheap = broker.submit([gpu_spec(1, tags=("agent-a",)), gpu_spec(2, tags=("agent-b",)),
                                             gpu_spec(3, tags=("agent-a",), timeout=360)])
    broker.set_budget(scope(tag="agent-a"), 1.0)
    assert broker.claim("h100", "w").job_id == b_job.id  # agent-a's $3.95 job waits, agent-b's goes
    assert broker.claim("h100", "w").job_id == a_cheap.id  # $0.395 fits agent-a's $1
    assert broker.claim("h100", "w") is None
    [waiting] = broker.budget().waiting
    assert waiting.job_id == a_first.id and "tag agent-a" in waiting.reason
    broker.set_budget(scope(tag="agent-a"), 10.0)
    assert broker.claim("h100", "w").job_id == a_first.id


def test_a_reaped_attempt_spends_the_time_it_ran_until_its_late_result_arrives(broker, clock):
    broker.submit([gpu_spec(1)])
    lease = broker.claim("h100", "w", lease_seconds=360)
    clock.advance(720)  # 360 s past its deadline: reaped, having held an H100 for 720 s
    assert broker.reap() == [lease.job_id]
    queue = scope_of(broker, "queue")
    assert (queue.spent, queue.committed) == (pytest.approx(3.95 * 720 / HOUR), 0.0)
    broker.complete(lease, ran(lease, gpu_seconds=900.0))  # the lost worker reports: superseded
    assert scope_of(broker, "queue").spent == pytest.approx(3.95 * 900 / HOUR)


def test_a_cancelled_running_attempt_stops_committing_and_a_queued_one_spends_nothing(broker, clock):
    running, waiting = broker.submit([gpu_spec(1), gpu_spec(2)])
    lease = broker.claim("h100", "w")
    clock.advance(HOUR / 2)
    broker.cancel([running.id, waiting.id])
    queue = scope_of(broker, "queue")
    assert (queue.spent, queue.committed) == (pytest.approx(3.95 / 2), 0.0)
    assert lease.job_id == running.id


@pytest.mark.parametrize("bad", ["-1", "abc", "nan", "inf", "", True, None, [3]])
def test_a_cap_is_a_finite_number_of_dollars(bad):
    with pytest.raises(BudgetError):
        parse_cap(bad)
    assert parse_cap("$12.50") == 12.5 and parse_cap(0) == 0.0


def test_a_scope_names_a_known_pool_or_a_tag():
    with pytest.raises(BudgetError, match="unknown pool 'nope'"):
        scope(pool="nope")
    with pytest.raises(BudgetError):
        scope(pool="h100", tag="x")
    assert (scope(), scope(pool="h100"), scope(tag="x")) == ("queue", "pool:h100", "tag:x")


# -- two processes race for the last dollars ----------------------------------------------------

CLAIM_AT = """
import sys, time
from tests.modal_server import open_url
broker = open_url(sys.argv[1])
broker.budget()  # connected and caught up before the start
time.sleep(max(float(sys.argv[2]) - time.time(), 0))
lease = broker.claim("h100", sys.argv[3], lease_seconds=60)
print(lease.job_id if lease else "none", flush=True)
"""


def test_two_workers_racing_for_the_last_dollars_only_one_starts(broker_url):
    """Each round leaves room for one more worst case; two processes claim at the same instant."""
    broker = open_broker(broker_url)
    try:
        broker.submit([gpu_spec(i) for i in range(6)])
        for round_ in range(3):
            broker.set_budget(scope(pool="h100"), 3.95 * (round_ + 1) + 1.0)
            start = time.time() + 3.0
            procs = [subprocess.Popen([sys.executable, "-c", CLAIM_AT, broker_url, repr(start), f"w{round_}{i}"],
                                      cwd=ROOT, stdout=subprocess.PIPE, text=True) for i in range(2)]
            outs = [p.communicate(timeout=60)[0].strip() for p in procs]
            assert sorted(o == "none" for o in outs) == [False, True], outs
        leased = broker.list([JobState.LEASED])
        assert len(leased) == 3
        assert scope_of(broker, "pool:h100").committed == pytest.approx(3 * 3.95)
        claims = [e for e in all_events(broker) if e.kind is EventKind.CLAIMED]
        assert len(claims) == 3 and math.isclose(scope_of(broker, "queue").committed, 3 * 3.95)
    finally:
        broker.close()


def test_a_zero_cap_stops_every_gpu_attempt_and_no_cpu_one(broker):
    gpu, cpu = broker.submit([gpu_spec(1), gpu_spec(2, pool="cpu")])
    broker.set_budget(scope(), 0.0)
    assert broker.claim("h100", "w") is None
    assert broker.claim("cpu", "w").job_id == cpu.id  # free: it never takes money past a cap
    assert [w.pool for w in broker.budget().waiting] == ["h100"]


def test_a_released_attempt_stops_committing_and_spends_what_it_ran(broker, clock):
    """A worker's graceful stop gives the attempt back (a `requeued` event): its hold goes with it."""
    first, second = broker.submit([gpu_spec(1), gpu_spec(2)])
    lease = broker.claim("h100", "w")
    clock.advance(HOUR / 4)
    broker.release(lease, "worker stopped")  # no result: the time it held the lease is spent
    queue = scope_of(broker, "queue")
    assert (queue.committed, queue.spent) == (0.0, pytest.approx(3.95 / 4))
    again = broker.claim("h100", "w")
    broker.release(again, "worker stopped", ran(again, gpu_seconds=360.0))  # with its own figure
    queue = scope_of(broker, "queue")
    assert (queue.committed, queue.spent) == (0.0, pytest.approx(3.95 / 4 + 0.395))


def test_a_failed_attempt_queued_for_its_retry_spends_its_own_figure_once(broker, clock):
    """`failed` (with the result) then `requeued` in one step: the requeue must not spend an estimate too."""
    broker.submit([gpu_spec(1)])
    lease = broker.claim("h100", "w")
    clock.advance(HOUR / 2)
    timed_out = Result(spec_id=lease.job_id, attempt=lease.attempt, status="failed", failure="timeout",
                       error="hard timeout", gpu_name="NVIDIA H100 80GB HBM3", gpu_count=1, gpu_seconds=360.0)
    assert broker.fail(lease, "hard timeout", "timeout", timed_out) is JobState.QUEUED  # one timeout retry
    queue = scope_of(broker, "queue")
    assert (queue.committed, queue.spent) == (0.0, pytest.approx(0.395))
    again = broker.claim("h100", "w")
    assert again is not None and scope_of(broker, "queue").committed == pytest.approx(3.95)


def test_a_claim_that_reaps_sees_the_reaped_attempts_spend_in_the_same_step(broker, clock):
    broker.submit([gpu_spec(1), gpu_spec(2)])
    broker.set_budget(scope(), 5.0)
    assert broker.claim("h100", "w", lease_seconds=360) is not None
    clock.advance(HOUR)  # reaped by the next claim, having held an H100 for an hour: $3.95 spent
    assert broker.claim("h100", "w2") is None  # 3.95 spent + 3.95 worst case > 5
    queue = scope_of(broker, "queue")
    assert (queue.committed, queue.spent) == (0.0, pytest.approx(3.95))
