"""The job records every backend stores and every process trades: frozen msgspec Structs.

They cross process boundaries (queue files, Redis, Modal Dicts, RQ payloads), so they
are plain data; the rules that move a job between states are golfq.core.lifecycle.
"""

from __future__ import annotations

import enum

import msgspec

from golfq.core.result import Result
from golfq.core.spec import ExperimentSpec


class JobState(str, enum.Enum):
    QUEUED = "queued"
    LEASED = "leased"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the experiment failed (user) and its retries are spent
    DEAD = "dead"  # infra/timeout retries spent: the system gave up
    CANCELLED = "cancelled"
    STOPPED = "stopped"  # ended early by a stopping rule: not a failure, never on a front; requeue resumes it

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
    resume: bool = False  # the next attempt goes on from the job's checkpoint (infra failure, requeue --resume)

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
    resume: bool = False  # go on from the job's checkpoint rather than start afresh (Job.resume at the claim)


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
    stopped: int = 0
    draining: bool = False


class Stats(msgspec.Struct, frozen=True, kw_only=True):
    pools: dict[str, PoolStats]
    last_seq: int
    backend: str
    extra: dict[str, int] = {}  # backend-specific counters (RQ registries, Modal calls, ...)

    def total(self, state: JobState) -> int:
        return sum(getattr(p, state.value) for p in self.pools.values())
