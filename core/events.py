"""The append-only event log every backend keeps: one event per state transition."""

from __future__ import annotations

import enum

import msgspec

from golfq.core.result import FailureKind, Result
from golfq.core.spec import ExperimentSpec


class EventKind(str, enum.Enum):
    SUBMITTED = "submitted"
    CLAIMED = "claimed"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUEUED = "requeued"
    DEAD = "dead"
    CANCELLED = "cancelled"
    STOPPED = "stopped"  # a stopping rule ended the attempt early
    SUPERSEDED = "superseded"  # a result from an attempt that no longer holds the lease
    DRAINED = "drained"
    RESUMED = "resumed"
    BILLED = "billed"  # Modal's billed GPU time of an ended attempt (its result: gpu_seconds, cost_usd)


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    seq: int  # per-broker, strictly increasing; 0 until the backend appends it
    ts: float
    kind: EventKind
    job_id: str = ""  # empty for pool events (drained, resumed)
    pool: str = ""
    attempt: int = 0
    worker_id: str = ""
    failure: FailureKind | None = None
    error: str | None = None
    result: Result | None = None
    spec: ExperimentSpec | None = None  # on submitted events, so the log alone can replay


def encode_event(event: Event) -> bytes:
    return msgspec.json.encode(event)


def decode_event(data: bytes | str) -> Event:
    return msgspec.json.decode(data, type=Event)
