"""What spawned calls cost: steps that keep call records and charge pools their billed GPU time.

Charges live in the log like everything else, keyed by attempt, so two dispatchers (a
rolling redeploy) can never charge one call twice, and a pool's GPU-hours cap reads
cold starts and idle scale-down as well as training.
"""

from __future__ import annotations

import msgspec

from golfq.core import budget
from golfq.core.backends.modal.records import Call, Usage
from golfq.core.backends.modal.txn import StateTxn
from golfq.core.cost import attempt_cost, cost_usd
from golfq.core.events import Event, EventKind
from golfq.core.job import JobState, Lease
from golfq.core.pools import known_pools
from golfq.core.result import Result

KEEP_ENDED_SECONDS = 3600.0  # past its container's scale-down window, an ended call is forgotten
_replace = msgspec.structs.replace


def record_start(tx: StateTxn, lease: Lease, container: str, billing_since: float, cold: bool) -> None:
    """The runner of a spawned call started; a warm container's previous call stops charging its tail."""
    call = tx.call(lease.job_id, lease.attempt)
    if call is None:
        return  # claimed by a plain worker: nothing spawned, nothing billed by golfq
    since = min(billing_since, tx.now)
    rerun = call.rerun
    if call.ran_at is not None and call.billing_since is not None:  # Modal re-runs it: the lost container billed
        lost = call.gpus * max(since - call.billing_since, 0.0)
        _charge(tx, call.pool, lost, rerun=lost)
        rerun += lost
    if container and not cold:
        for key, other in tx.calls().items():
            if other.container == container and other.tail and other.ended_at is not None:
                job_id, attempt = key.rsplit("/", 1)
                refunded = _replace(other, charged=other.charged - other.tail, tail=0.0)
                tx.set_call(job_id, int(attempt), refunded)
                _charge(tx, other.pool, -other.tail, idle=-other.tail)
                _bill(tx, job_id, int(attempt), refunded, spent_before=_usd(other.pool, other.charged + other.rerun))
    tx.set_call(lease.job_id, lease.attempt, _replace(call, billing_since=since, ran_at=tx.now, container=container,
                                                      cold=cold, rerun=rerun))


def end_calls(tx: StateTxn, tails: dict[str, float]) -> list[tuple[str, Call, bool]]:
    """Charge every call whose attempt has ended, once; return (key, call, reported) for each, where
    `reported` says the runner reported a result (so its call needs no cancelling)."""
    ended = []
    for key, call in tx.calls().items():
        if call.ended_at is not None:
            continue
        job_id, attempt = key.rsplit("/", 1)
        job = tx.job(job_id)
        if job is not None and job.state is JobState.LEASED and job.attempt == int(attempt):
            continue
        result = job.result if job is not None else None
        reported = result is not None and result.attempt == int(attempt)
        end = result.finished_at if result is not None and reported and result.finished_at else tx.now
        done = _replace(call, ended_at=end)
        if call.billing_since is not None:
            end = max(end, call.billing_since)
            tail = call.gpus * tails.get(call.pool, 0.0)
            run = call.gpus * (end - call.billing_since)
            before = call.gpus * max((call.ran_at or end) - call.billing_since, 0.0)
            done = _replace(done, charged=run + tail, tail=tail)
            _charge(tx, call.pool, run + tail, cold=before if call.cold else 0.0,
                    idle=tail + (0.0 if call.cold else before), calls=1)
            _bill(tx, job_id, int(attempt), done, spent_before=attempt_cost(result)[1] if reported and result else 0.0)
        tx.set_call(job_id, int(attempt), done)
        ended.append((key, done, reported))
    return ended


def _usd(pool: str, gpu_seconds: float) -> float:
    found = known_pools().get(pool)
    return cost_usd(found.gpu_type if found else pool, 1, gpu_seconds)


def _bill(tx: StateTxn, job_id: str, attempt: int, call: Call, spent_before: float) -> None:
    """The call's billed figure becomes what the attempt spent (golfq.core.budget) and what `ops cost`
    reports: a `billed` event carries it, in place of the runner's own time."""
    job = tx.job(job_id)
    if job is None:
        return
    seconds = call.charged + call.rerun
    usd = _usd(call.pool, seconds)
    budget.replace_spent(tx, budget.attempt_key(job_id, attempt), usd, spent_before, budget.scopes_of(job.spec))
    pool = known_pools().get(call.pool)
    billed = Result(spec_id=job_id, attempt=attempt, status="billed", gpu_name=pool.gpu_type if pool else None,
                    gpu_count=call.gpus, gpu_seconds=round(seconds, 3), cost_usd=usd, finished_at=call.ended_at)
    tx.events.append(Event(seq=0, ts=tx.now, kind=EventKind.BILLED, job_id=job_id, pool=call.pool, attempt=attempt,
                           result=billed))


def forget_ended(tx: StateTxn) -> list[str]:
    """Drop call records an hour past their end; return their "JOB/ATTEMPT" keys."""
    forgotten = []
    for key, call in tx.calls().items():
        if call.ended_at is not None and call.ended_at + KEEP_ENDED_SECONDS < tx.now:
            job_id, attempt = key.rsplit("/", 1)
            tx.set_call(job_id, int(attempt), None)
            forgotten.append(key)
    return forgotten


def _charge(tx: StateTxn, pool: str, seconds: float, *, cold: float = 0.0, idle: float = 0.0, rerun: float = 0.0,
            calls: int = 0) -> None:
    usage = tx.usage(pool)
    tx.set_usage(pool, Usage(gpu_seconds=usage.gpu_seconds + seconds, cold_seconds=usage.cold_seconds + cold,
                             idle_seconds=usage.idle_seconds + idle, rerun_seconds=usage.rerun_seconds + rerun,
                             calls=usage.calls + calls))


def waiting_for_capacity(calls: dict[str, Call]) -> dict[str, list[float]]:
    """Per pool, since when each spawned call has waited for a container (never started, not ended)."""
    out: dict[str, list[float]] = {}
    for call in calls.values():
        if call.ran_at is None and call.ended_at is None:
            out.setdefault(call.pool, []).append(call.spawned_at)
    return out
