"""The Broker protocol: the one contract every backend (SQLite, Redis, Modal) meets.

The records here cross process boundaries, so they are frozen msgspec Structs.
The semantics (states, leases with fencing, retry budgets) live in golfq.core.lifecycle,
which every backend calls inside its own atomic read-modify-write.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import msgspec

from golfq.core.errors import GolfqError
from golfq.core.events import Event
from golfq.core.pareto import Front
from golfq.core.result import FailureKind, Result
from golfq.core.spec import ExperimentSpec


class JobState(str, enum.Enum):
    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the experiment failed (user) and its retries are spent
    DEAD = "dead"  # infra/timeout retries spent: the system gave up
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.QUEUED, JobState.LEASED)


class Job(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    spec: ExperimentSpec
    state: JobState
    submitted_at: float
    updated_at: float
    order: int = 0  # FIFO tie-break inside a priority; set by the backend at first submit
    attempt: int = 0  # claims so far; the fencing token of the current lease
    worker_id: str = ""
    lease_deadline: float | None = None
    failures: dict[str, int] = {}  # FailureKind value -> failures counted against its budget
    result: Result | None = None  # the counted result of the latest finished attempt
    error: str | None = None

    @property
    def pool(self) -> str:
        return self.spec.pool


class Lease(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    attempt: int
    worker_id: str
    pool: str
    deadline: float
    spec: ExperimentSpec


class CompleteOutcome(str, enum.Enum):
    COUNTED = "counted"
    SUPERSEDED = "superseded"  # the attempt no longer held the lease; kept as an event only
    DUPLICATE = "duplicate"  # the same (job, attempt) was already counted


class PoolStats(msgspec.Struct, frozen=True, kw_only=True):
    queued: int = 0
    leased: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    cancelled: int = 0
    draining: bool = False


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    pools: dict[str, PoolStats]
    last_seq: int
    backend: str
    extra: dict[str, int] = {}  # backend-specific counters (RQ registries, Modal calls, ...)

    def total(self, state: JobState) -> int:
        return sum(getattr(p, state.value) for p in self.pools.values())


class BrokerError(GolfqError, RuntimeError):
    """A backend problem the caller can act on (unreachable, bad URL): one line."""


@runtime_checkable
class Broker(Protocol):
    """Every backend implements exactly this; tests/contract/ proves the semantics."""

    url: str

    def submit(self, specs: Sequence[ExperimentSpec]) -> list[Job]:
        """Queue each spec unless a job with its id exists; return the jobs in order."""

    def put_script(self, content: bytes) -> str:
        """Store a training script once under its sha256; return its 'sha256:...' ref."""

    def get_script(self, ref: str) -> bytes:
        """Raise KeyError for an unknown ref."""

    def claim(self, pool: str, worker_id: str, lease_seconds: float = 60.0, timeout: float = 0.0) -> Lease | None:
        """Lease the next job of the pool (priority, then FIFO); wait up to timeout seconds."""

    def heartbeat(self, lease: Lease, lease_seconds: float = 60.0) -> bool:
        """Extend the lease; False when it is no longer held (cancelled, reaped): stop work."""

    def complete(self, lease: Lease, result: Result) -> CompleteOutcome:
        """Record the attempt's result; idempotent per (job, attempt)."""

    def fail(self, lease: Lease, error: str, kind: FailureKind, result: Result | None = None) -> JobState:
        """Record a failed attempt; the job is queued again or ends, by its retry budget."""

    def reap(self) -> list[str]:
        """Treat every expired lease as an infra failure; return the affected job ids."""

    def cancel(self, ids: Sequence[str]) -> list[str]:
        """Cancel queued or leased jobs; return those that changed."""

    def drain(self, pool: str) -> None:
        """Stop new claims in the pool; leased jobs run to the end."""

    def resume(self, pool: str) -> None: ...

    def requeue(self, ids: Sequence[str] = (), states: Sequence[JobState] = ()) -> list[str]:
        """Queue again the named jobs and/or every job in the given terminal states."""

    def get(self, job_id: str) -> Job | None: ...

    def list(
        self, states: Sequence[JobState] = (), pool: str | None = None, tag: str | None = None, limit: int | None = None
    ) -> list[Job]:
        """Jobs matching every given filter, in submission order."""

    def stats(self) -> Stats: ...

    def events(self, after_seq: int = 0, limit: int = 1000) -> list[Event]:
        """Events with seq > after_seq, oldest first."""

    def front(self, track: str) -> Front:
        """The stored Pareto front of a track (see golfq.core.pareto)."""

    def tracks(self) -> list[str]: ...

    def purge(self, before: float) -> int:
        """Delete terminal jobs last updated before this time; return how many."""

    def close(self) -> None: ...


def iter_events(broker: Broker, after_seq: int = 0, page: int = 1000) -> Iterator[Event]:
    """Every event after after_seq, oldest first, read a page at a time: the one event pager."""
    while True:
        batch = broker.events(after_seq=after_seq, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after_seq = batch[-1].seq
