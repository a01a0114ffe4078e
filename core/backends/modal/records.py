"""The Modal backend's records: log entries, snapshots, call records and pool usage.

The `APP-state` Dict holds an append-only log: `log/GEN/N` is the N-th committed
Entry of generation GEN, created with put(skip_if_exists=True) by whichever writer
won slot N. An Entry is the *outcome* of one atomic step (the jobs it wrote, the
events it appended, ...), never the intent, so folding the log needs no rules:
golfq.core.lifecycle ran once, in the writer's step. `snap/GEN/N` (chunked) is the
folded state after entry N, `snap/ptr` points at the newest, and the artifacts Volume
keeps copies (`snapshots/`) that outlive Modal's 7-day idle expiry.
"""

from __future__ import annotations

import msgspec

from golfq.core.budget import Hold
from golfq.core.events import Event
from golfq.core.job import Job
from golfq.core.pareto import Observation

EVENTS_PER_PAGE = 256
OBSERVATIONS_PER_PAGE = 1024


class Call(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One spawned Modal call of an attempt, keyed "JOB/ATTEMPT", and what it has been charged.

    Modal bills a container from boot until it scales down. A call is charged from
    `billing_since` (its container's boot, or the end of the container's previous input)
    to its end, plus its container's scale-down tail, refunded when the container takes
    the next input (whose own charge then covers the gap)."""

    pool: str
    gpus: int
    spawned_at: float
    call_id: str = ""  # "" until the spawn returned
    billing_since: float | None = None  # set when the runner starts: None means waiting for capacity
    ran_at: float | None = None  # when the runner started
    container: str = ""
    cold: bool = True  # a fresh container (cold start) rather than a warm one
    ended_at: float | None = None
    charged: float = 0.0  # GPU-seconds charged for it, the provisional tail included
    tail: float = 0.0  # of which the provisional scale-down tail
    rerun: float = 0.0  # GPU-seconds billed for containers Modal lost before it ran the call again


class Usage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A pool's billed GPU time as the dispatcher charges it: what its GPU-hours cap reads."""

    gpu_seconds: float = 0.0  # everything charged: cold starts, runs and idle scale-down tails
    cold_seconds: float = 0.0  # of which between the container starting to bill and the attempt starting
    idle_seconds: float = 0.0  # of which warm containers waiting (scale-down tails, gaps between inputs)
    rerun_seconds: float = 0.0  # of which containers Modal lost (preempted) before it ran the call again
    calls: int = 0


class Outcome(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What a request's step returned (msgpack, typed by its op), or the one-line error it raised."""

    value: msgspec.Raw = msgspec.Raw(b"\xc0")  # msgpack nil
    error: str = ""
    missing: bool = False  # the error was a KeyError (a job not found)


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """One lease-cycle step (claim, start, complete, fail, stop) that its writer left for whoever commits
    next: `req/RID` in the `APP-requests` Dict, written once by its writer, carried out in one entry."""

    rid: str
    op: str
    args: msgspec.Raw  # msgpack of the op's keyword arguments
    ts: float  # when it was written (its writer's clock): very old requests are dropped, never carried out
    writer: str = ""


class Entry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One committed step: a full new value for everything it touched, so applying it is idempotent."""

    rid: str  # the writer's id for this step: a lost response is recognised by reading it back
    prev: str  # the rid of the entry before it: the state this step read
    ts: float
    writer: str = ""
    jobs: list[Job] = []
    deleted: list[str] = []
    events: list[Event] = []  # numbered by the writer (seq) in log order
    observations: list[Observation] = []
    order: int = 0  # the FIFO counter after this step (0: unchanged)
    draining: dict[str, bool] = {}
    calls: dict[str, Call | None] = {}  # None retires a call record
    usage: dict[str, Usage] = {}
    caps: dict[str, float | None] = {}  # spend caps set (None: cleared)
    spent: dict[str, float] = {}  # the new total of each scope it spent in
    holds: dict[str, Hold | None] = {}  # None: the hold is gone
    paged: tuple[int, int] | None = None  # events and observations now on pages: dropped from the tail
    outcomes: dict[str, Outcome] = {}  # rid -> outcome of each request this entry carried out (group commit)


class Snapshot(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The folded state after entry `pos` of generation `gen`."""

    gen: int = 1
    pos: int = 0
    rid: str = ""  # the rid of entry `pos`: the next entry's prev
    ts: float = 0.0  # the time of entry `pos`
    seq: int = 0
    order: int = 0
    observed: int = 0
    jobs: list[Job] = []
    pools: list[str] = []
    draining: list[str] = []
    events: list[Event] = []  # events past events_paged
    events_paged: int = 0
    observations: list[Observation] = []  # observations past obs_paged
    obs_paged: int = 0
    page_gens: list[int] = []  # the generation that wrote each events page (keys carry it)
    obs_page_gens: list[int] = []
    calls: dict[str, Call] = {}
    usage: dict[str, Usage] = {}
    caps: dict[str, float] = {}
    spent: dict[str, float] = {}
    holds: dict[str, Hold] = {}
    done: list[tuple[str, float, Outcome]] = []  # recent requests' outcomes: (rid, entry time, outcome)


class Pointer(msgspec.Struct, frozen=True):
    """`snap/ptr` and each `snap/GEN/POS` manifest: where a snapshot is and how many chunks it has."""

    gen: int
    pos: int
    chunks: int = 0
    ts: float = 0.0  # when it was written (the writer's clock)
    prev: tuple[int, int, int] | None = None  # (gen, pos, chunks) of the snapshot published before it


def log_key(gen: int, pos: int) -> str:
    return f"log/{gen}/{pos}"


def snap_key(gen: int, pos: int) -> str:
    return f"snap/{gen}/{pos}"


def page_key(kind: str, gen: int, page: int) -> str:
    return f"{kind}/{gen}/{page}"


def hb_key(job_id: str, attempt: int) -> str:
    return f"hb/{job_id}/{attempt}"


def call_key(job_id: str, attempt: int) -> str:
    return f"{job_id}/{attempt}"
