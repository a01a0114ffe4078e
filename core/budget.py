"""Spend caps: the rule that no attempt starts whose worst case would take its money past a cap.

A cap is in dollars on a scope: the whole queue (`queue`), a pool (`pool:NAME`) or a tag
(`tag:NAME`). An attempt belongs to the queue, its pool and each of its tags. Its worst
case is its pool's price x GPUs x the spec's hard timeout (golfq.core.cost). The ledger
every backend keeps beside its jobs, in the same atomic step as the transitions:

- `held`: one `Hold` per attempt since its claim: its worst case ("committed") while it
  runs. When the attempt ends with a result, the hold goes and the result's cost
  (`attempt_cost`) is added to `spent`. When it ends without one (reaped, cancelled
  while running), the elapsed time at its pool's price is spent as an estimate and the hold
  stays, ended, until a late result or the Modal dispatcher's billed figure replaces it. While a
  billed figure is still to come (`billed_later`), an attempt's own figure is kept in its ended hold.
- `spent`: dollars per scope, kept for every scope whether capped or not, so a cap set
  later counts what was spent before it.

`check` is the claim step's rule (pure) and `startable` the job a claim takes: the pool's
next by priority that no cap holds, so a capped job keeps its place without holding the
pool. `settle` turns one step's events into ledger writes and runs inside every backend's
atomic step (golfq.core.broker).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import msgspec

from golfq.core.cost import attempt_cost, price_table
from golfq.core.errors import GolfqError
from golfq.core.events import Event, EventKind
from golfq.core.job import Job, JobState
from golfq.core.pools import known_pools
from golfq.core.spec import ExperimentSpec

if TYPE_CHECKING:
    from golfq.core.broker import Txn

QUEUE = "queue"
_SLACK = 1e-9  # dollars: float sums of the same money must not block an exact fit


class BudgetError(GolfqError, ValueError):
    """A bad cap or scope: one line."""


class Hold(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An attempt's reservation: its worst case while it runs; once `ended`, the estimate it spent."""

    usd: float
    since: float
    scopes: tuple[str, ...]
    ended: bool = False
    estimate: float = 0.0  # spent when it ended without a result; replaced by the real figure later


class ScopeBudget(msgspec.Struct, frozen=True, kw_only=True):
    """One scope as a reader sees it: its cap (None: none), spent and committed dollars."""

    scope: str
    cap: float | None
    spent: float
    committed: float

    @property
    def left(self) -> float | None:
        return None if self.cap is None else self.cap - self.spent - self.committed


class Waiting(msgspec.Struct, frozen=True, kw_only=True):
    """A pool's first queued job that a cap keeps from starting, and why (one line); jobs behind it
    that fit the caps still start."""

    pool: str
    job_id: str
    reason: str


class BudgetView(msgspec.Struct, frozen=True, kw_only=True):
    scopes: list[ScopeBudget]
    waiting: list[Waiting] = []

    def reason(self, pool: str) -> str | None:
        return next((w.reason for w in self.waiting if w.pool == pool), None)

    def holds_back(self, worst: float, scopes: Sequence[str]) -> str:
        """Why a queued attempt of this worst case in these scopes (scopes_of) would wait now ("" if it
        would not): check() from this view's figures, for a reader that holds no atomic step."""
        caps = {s.scope: s.cap for s in self.scopes if s.cap is not None}
        if not caps:
            return ""
        return over_cap(worst, scopes, caps, {s.scope: s.spent for s in self.scopes},
                        {s.scope: s.committed for s in self.scopes})


class LedgerTxn(abc.ABC):
    """The ledger's half of an atomic step (golfq.core.broker.Txn): every backend keeps caps, dollars
    spent per scope and holds per attempt ("job/attempt") beside its jobs."""

    events: list[Event]
    settled = 0  # events[:settled] are in the ledger already (settle)

    @abc.abstractmethod
    def load(self, job_id: str) -> Job | None: ...
    @abc.abstractmethod
    def caps(self) -> dict[str, float]: ...
    @abc.abstractmethod
    def set_cap(self, scope: str, usd: float | None) -> None: ...
    @abc.abstractmethod
    def spent(self) -> dict[str, float]: ...
    @abc.abstractmethod
    def add_spent(self, scopes: Sequence[str], usd: float) -> None:
        """Add to each scope's dollars: a blind increment, it reads nothing."""
    @abc.abstractmethod
    def holds(self) -> dict[str, Hold]: ...
    @abc.abstractmethod
    def set_hold(self, key: str, hold: Hold | None) -> None: ...

    def billed_later(self, key: str) -> bool:
        """Whether a billed figure is still to replace what this ended attempt spent (the Modal
        dispatcher's, golfq.core.backends.modal.usage); no other backend bills."""
        return False


def scope(pool: str | None = None, tag: str | None = None) -> str:
    """The scope key for the queue (neither), a pool or a tag."""
    if pool is not None and tag is not None:
        raise BudgetError("budget: give a pool or a tag, not both")
    if pool is not None:
        if pool not in known_pools():
            raise BudgetError(f"budget: unknown pool {pool!r} (known: {', '.join(sorted(known_pools()))})")
        return f"pool:{pool}"
    if tag is not None:
        if not tag or len(tag) > 64:
            raise BudgetError("budget: a tag is 1 to 64 characters")
        return f"tag:{tag}"
    return QUEUE


def parse_cap(text: object) -> float:
    """Dollars from user input: a finite number >= 0 (a string such as "12.50" or "$12.50" too)."""
    value: object = text
    if isinstance(text, str):
        try:
            value = float(text.strip().removeprefix("$").replace(",", ""))
        except ValueError:
            raise BudgetError(f"budget: {text!r} is not a number of dollars") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BudgetError(f"budget: {text!r} is not a number of dollars")
    if value < 0:
        raise BudgetError(f"budget: a cap cannot be negative ({value:g})")
    return float(value)


def scopes_of(spec: ExperimentSpec) -> tuple[str, ...]:
    return (QUEUE, f"pool:{spec.pool}", *(f"tag:{tag}" for tag in dict.fromkeys(spec.tags)))


def hourly_usd(pool_name: str) -> float:
    """The pool's price per hour of one job (all its GPUs); 0 for CPU pools and pools unknown here."""
    pool = known_pools().get(pool_name)
    if pool is None or not pool.gpus:
        return 0.0
    return price_table().get(pool.gpu_type, 0.0) * pool.gpus


def worst_case(spec: ExperimentSpec, hourly: float | None = None) -> float:
    """The most an attempt of this spec can cost: its pool's price x GPUs (`hourly`, if the caller has
    read it already) x its hard timeout."""
    return round((hourly_usd(spec.pool) if hourly is None else hourly) * spec.budget.hard_timeout / 3600.0, 6)


def committed(held: Mapping[str, Hold]) -> dict[str, float]:
    out: dict[str, float] = {}
    for hold in held.values():
        if not hold.ended:
            for key in hold.scopes:
                out[key] = out.get(key, 0.0) + hold.usd
    return out


def check(spec: ExperimentSpec, caps: Mapping[str, float], spent: Mapping[str, float],
          held: Mapping[str, Hold]) -> str:
    """Why an attempt of this spec may not start now ("" if it may): the first cap it would pass."""
    worst = worst_case(spec)
    return over_cap(worst, scopes_of(spec), caps, spent, committed(held)) if worst else ""


def over_cap(worst: float, scopes: Sequence[str], caps: Mapping[str, float], spent: Mapping[str, float],
             busy: Mapping[str, float]) -> str:
    """The first cap of these scopes that `worst` more dollars would pass, as a line ("" if none)."""
    if not worst:
        return ""  # free (a CPU pool): it never takes money past a cap
    for key in scopes:
        cap = caps.get(key)
        if cap is None:
            continue
        used = spent.get(key, 0.0) + busy.get(key, 0.0)
        if used + worst > cap + _SLACK:
            return (f"budget {label(key)}: ${spent.get(key, 0.0):.2f} spent + ${busy.get(key, 0.0):.2f} committed "
                    f"+ ${worst:.2f} worst case > ${cap:.2f} cap")
    return ""


LOOK_AHEAD = 64  # queued jobs a claim looks at past a capped head


def startable(tx: Txn, pool: str) -> Job | None:
    """The pool's next job by priority that no cap holds (a capped job keeps its place, and the jobs
    behind it that fit go first), among its first LOOK_AHEAD; None if there is none."""
    head = tx.next_queued(pool)
    if head is None:
        return None
    ledger = _ledger_over(tx, head.spec)
    if ledger is None or not check(head.spec, *ledger):
        return head
    return next((job for job in tx.queued(pool, LOOK_AHEAD) if not check(job.spec, *ledger)), None)


def blocked(tx: Txn, spec: ExperimentSpec) -> str:
    """check() inside an atomic step."""
    ledger = _ledger_over(tx, spec)
    return "" if ledger is None else check(spec, *ledger)


def _ledger_over(tx: Txn, spec: ExperimentSpec) -> tuple[dict[str, float], dict[str, float], dict[str, Hold]] | None:
    """Caps, spent and holds, the holds of claims earlier in this step included (the Modal dispatcher
    claims several in one step); None, having read no more, when no cap covers the spec. An attempt on a
    free pool (CPU) costs nothing, so it never passes a cap and reads nothing."""
    if not hourly_usd(spec.pool):
        return None
    caps = tx.caps()
    if not any(key in caps for key in scopes_of(spec)):
        return None
    held = tx.holds()
    for event in tx.events:
        if event.kind is EventKind.CLAIMED and (job := tx.load(event.job_id)) is not None:
            held[attempt_key(job.id, event.attempt)] = _hold(job.spec, event.ts)
    return caps, tx.spent(), held


def _hold(spec: ExperimentSpec, since: float) -> Hold:
    return Hold(usd=worst_case(spec), since=since, scopes=scopes_of(spec))


def label(key: str) -> str:
    return "of the queue" if key == QUEUE else key.replace(":", " ", 1)


def attempt_key(job_id: str, attempt: int) -> str:
    return f"{job_id}/{attempt}"


def _result_usd(event: Event) -> float:
    return attempt_cost(event.result)[1] if event.result is not None else 0.0


# Events that never end a running attempt: `dead` follows an ending in the same step; pool events. A
# `requeued` event may end one (a worker's graceful release), so it is looked at like the others.
_NOT_AN_END = {EventKind.SUBMITTED, EventKind.CLAIMED, EventKind.DEAD, EventKind.DRAINED, EventKind.RESUMED,
               EventKind.BILLED}


def settle(tx: Txn, events: Iterable[Event] | None = None) -> None:
    """Write what a step's events mean for the ledger, in the same step."""
    holds: dict[str, Hold] | None = None  # read once, only when an event needs it (Redis watches it)
    if events is None:  # the step's events not settled yet: a step may be settled more than once
        events, tx.settled = tx.events[tx.settled:], len(tx.events)
    for event in events:
        key = attempt_key(event.job_id, event.attempt)
        free = not hourly_usd(event.pool)  # a free pool's attempts (CPU) hold nothing: no reads, no writes
        if event.kind is EventKind.CLAIMED:
            if not free and (job := tx.load(event.job_id)) is not None:
                tx.set_hold(key, _hold(job.spec, event.ts))
        elif event.kind in _NOT_AN_END or not event.job_id:
            continue
        elif event.result is not None and event.kind is not EventKind.SUPERSEDED:  # ended, with its cost
            usd = _result_usd(event)
            if (usd or not free) and (job := tx.load(event.job_id)) is not None:
                tx.add_spent(scopes_of(job.spec), usd)
                _spent_in_all(tx, holds, key, _hold(job.spec, event.ts), usd)
        elif not free:
            holds = tx.holds() if holds is None else holds
            hold = holds.get(key)
            if hold is None:
                continue
            if event.kind is EventKind.SUPERSEDED:
                if hold.ended and event.result is not None:  # the late result replaces the estimate
                    usd = _result_usd(event)
                    tx.add_spent(hold.scopes, usd - hold.estimate)
                    _spent_in_all(tx, holds, key, hold, usd)
            elif not hold.ended and not _running(tx, event):  # ended without a result: spend the time it ran
                elapsed = max(event.ts - hold.since, 0.0)
                estimate = min(hold.usd, round(hourly_usd(event.pool) * elapsed / 3600.0, 6))
                holds[key] = msgspec.structs.replace(hold, ended=True, estimate=estimate)
                tx.set_hold(key, holds[key])
                tx.add_spent(hold.scopes, estimate)


def _spent_in_all(tx: Txn, holds: dict[str, Hold] | None, key: str, hold: Hold, usd: float) -> None:
    """The attempt has ended, having spent `usd` by its own figure: its hold goes, or stays ended with that
    figure while a billed one is still to replace it (replace_spent), whatever the job has done since."""
    kept = msgspec.structs.replace(hold, ended=True, estimate=usd) if tx.billed_later(key) else None
    if holds is not None:  # a later event of this attempt in the step (requeued) must see what is left
        if kept is None:
            holds.pop(key, None)
        else:
            holds[key] = kept
    tx.set_hold(key, kept)


def _running(tx: Txn, event: Event) -> bool:
    """Whether the event's attempt still holds its lease after the step (an event kind that ends nothing)."""
    job = tx.load(event.job_id)
    return job is not None and job.state is JobState.LEASED and job.attempt == event.attempt


def replace_spent(tx: Txn, key: str, usd: float, reported: float, scopes: tuple[str, ...]) -> None:
    """An ended attempt's billed figure arrived: spend it in place of what was spent for it so far
    (the estimate of its ended hold, else `reported`: the result's own cost, already spent)."""
    hold = tx.holds().get(key)
    if hold is not None and hold.ended:
        tx.set_hold(key, None)
        tx.add_spent(hold.scopes, usd - hold.estimate)
    else:
        tx.add_spent(scopes, usd - reported)


def read(tx: Txn, pools: Iterable[str]) -> BudgetView:
    """The view() of the ledger in one step, with each pool's first queued jobs when any cap is set."""
    caps = tx.caps()
    queued = {pool: [(job.id, job.spec) for job in tx.queued(pool, LOOK_AHEAD)] for pool in (pools if caps else ())}
    return view(caps, tx.spent(), tx.holds(), queued)


def view(caps: Mapping[str, float], spent: Mapping[str, float], held: Mapping[str, Hold],
         queued: Mapping[str, list[tuple[str, ExperimentSpec]]]) -> BudgetView:
    """Every capped or spending scope, and in each pool the first of its `queued` jobs a cap holds."""
    busy = committed(held)
    keys = sorted(set(caps) | {k for k, v in spent.items() if v} | set(busy),
                  key=lambda k: (k != QUEUE, k))
    scopes = [ScopeBudget(scope=k, cap=caps.get(k), spent=round(spent.get(k, 0.0), 6),
                          committed=round(busy.get(k, 0.0), 6)) for k in keys]
    waiting = []
    for pool, jobs in sorted(queued.items()):
        held_back = next(((job_id, why) for job_id, spec in jobs if (why := check(spec, caps, spent, held))), None)
        if held_back is not None:
            waiting.append(Waiting(pool=pool, job_id=held_back[0], reason=held_back[1]))
    return BudgetView(scopes=scopes, waiting=waiting)
