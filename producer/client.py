"""golfq's Python client: enqueue specs, wait for results, read the Pareto front.

Importable without torch; talks only to the Broker protocol, so the same code
works against SQLite, Redis and Modal queues:

    from golfq.producer.client import Client
    with Client("sqlite:///.golfq/golfq.db") as q:
        job = q.submit(pool="cpu", env={"NUM_LAYERS": "4"}, budget={"train_seconds": 60})
        [result] = q.wait([job.id], timeout=600)
        print(result.val_bpb, q.front("cpu"))
"""

from __future__ import annotations

import builtins
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import msgspec

from golfq.core.backends import open_broker
from golfq.core.broker import Broker, iter_events
from golfq.core.budget import BudgetView, parse_cap, scope
from golfq.core.errors import EXIT_JOB_FAILED, GolfqError, NotFoundError
from golfq.core.events import Event
from golfq.core.hyperparameters import check_builtin_env
from golfq.core.job import Job, JobState
from golfq.core.pareto import FrontPoint
from golfq.core.pools import resolve_track
from golfq.core.promotion import Promoted, promote
from golfq.core.result import FailureKind, ProgressPoint, Result
from golfq.core.significance import CHALLENGE_RULE, RecordRule
from golfq.core.spec import ExperimentSpec
from golfq.producer.codefolder import pack_folder
from golfq.producer.grid import Sweep, expand
from golfq.producer.loop import FINAL_EVENTS, CompareReport, NextResult, compare_refs, unserved_pools, wait_next
from golfq.producer.specfile import InputError, Prepared, prepare, read_script

log = logging.getLogger("golfq.client")

SpecLike = ExperimentSpec | Mapping[str, Any]


class WaitTimeout(GolfqError, TimeoutError):
    """wait() ran out of time; .results holds what finished, .pending the ids still running."""

    def __init__(self, results: list[Result], pending: list[str], timeout: float) -> None:
        super().__init__(f"{len(pending)} job(s) still unfinished after {timeout:g} s: {', '.join(pending[:5])}",
                         exit_code=EXIT_JOB_FAILED)
        self.results, self.pending = results, pending


def final_result(job: Job) -> Result:
    """The Result that ended a finished job; jobs that ended without one (cancelled, reaped) get a stand-in."""
    if (job.result is not None and job.result.attempt == job.attempt
            and (job.state is JobState.SUCCEEDED or not job.result.succeeded)):
        return job.result
    if job.state is JobState.STOPPED:
        return Result(spec_id=job.id, attempt=job.attempt, status="stopped", error=job.error or "stopped")
    failure = None if job.state is JobState.CANCELLED else _last_failure(job)
    return Result(spec_id=job.id, attempt=job.attempt, status="failed", error=job.error or job.state.value,
                  failure=failure)


def _last_failure(job: Job) -> FailureKind | None:
    kinds = [FailureKind(k) for k, n in job.failures.items() if n]
    return kinds[-1] if kinds else None


def _script_bytes(script: bytes | str | Path | None) -> bytes | None:
    if script is None or isinstance(script, bytes):
        return script
    return read_script(script)


class Client:
    """A handle on one queue. `Client()` uses $GOLFQ_QUEUE or the embedded SQLite file.

    >>> q = Client("sqlite:///tmp/demo.db")
    >>> q.submit(pool="cpu", env={"MODEL_DIM": "256"}).state
    <JobState.QUEUED: 'queued'>
    """

    def __init__(self, queue: str | None = None, *, broker: Broker | None = None) -> None:
        self.broker = broker if broker is not None else open_broker(queue)

    @property
    def url(self) -> str:
        return self.broker.url

    def close(self) -> None:
        self.broker.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ submit

    def submit_prepared(self, prepared: Sequence[Prepared]) -> list[tuple[Job, bool]]:
        """Store the scripts, then queue the specs: (job, created by this call) pairs, in order.

        >>> [(job.id, new) for job, new in q.submit_prepared(prepare_all(docs))]
        """
        for item in prepared:  # scripts first, so no queued job ever names a missing script
            if item.script is not None:
                self.broker.put_script(item.script)
        specs = [p.spec for p in prepared]
        submit_new = getattr(self.broker, "submit_new", None)
        if submit_new is not None:
            return submit_new(specs)
        # Without submit_new, "new" comes from a look before the submit: racing producers may each see a job as new.
        existing = {spec.id for spec in specs if self.broker.get(spec.id) is not None}
        pairs, seen = [], set()
        for job in self.broker.submit(specs):
            pairs.append((job, job.id not in existing and job.id not in seen))
            seen.add(job.id)
        return pairs

    def _enqueue(self, prepared: Sequence[Prepared]) -> list[Job]:
        return [job for job, _ in self.submit_prepared(prepared)]

    def submit(self, spec: SpecLike | None = None, /, *, script: bytes | str | Path | None = None,
               code: str | Path | None = None, **fields: Any) -> Job:
        """Queue one spec (a spec, a dict, or keyword fields); the same spec twice returns the existing job.
        `code` is a folder to run (its train_gpt.py, or the spec's `entry`, in its own environment).

        >>> q.submit({"pool": "cpu", "env": {"NUM_LAYERS": "4"}}, script="train_gpt.py")
        >>> q.submit({"pool": "h100x8"}, code="records/2026-04-29_my_run")
        """
        return self.submit_many([_merge(spec, fields)], script=script, code=code)[0]

    def submit_many(self, specs: Iterable[SpecLike], *, script: bytes | str | Path | None = None,
                    code: str | Path | None = None) -> list[Job]:
        """Queue several specs at once; all are validated before any is queued.

        >>> q.submit_many([{"seed": s} for s in (1, 2, 3)])
        """
        content = _script_bytes(script)
        packed = pack_folder(code) if code is not None else None
        prepared = [Prepared(check_builtin_env(s), content)
                    if isinstance(s, ExperimentSpec) and content is None and packed is None
                    else prepare(_as_dict(s), script=content, code=packed, where=f"spec #{i + 1}")
                    for i, s in enumerate(specs)]
        return self._enqueue(prepared)

    def sweep(self, grid: Mapping[str, Sequence[Any]] | Sweep | None = None, *, base: SpecLike | None = None,
              points: Sequence[Mapping[str, Any]] = (), seeds: Sequence[int] = (),
              script: bytes | str | Path | None = None, name: str = "") -> list[Job]:
        """Queue one spec per grid point (cartesian product, then explicit points) and seed.

        >>> q.sweep({"MATRIX_LR": [0.02, 0.04], "NUM_LAYERS": [8, 9]}, base={"pool": "cpu"}, seeds=[1, 2])
        """
        if not isinstance(grid, Sweep):
            grid = Sweep(base=_as_dict(base or {}), grid=dict(grid or {}), points=list(points), seeds=list(seeds),
                         script=_script_bytes(script))
        return self._enqueue(expand(grid, name=name))

    def put_script(self, script: bytes | str | Path) -> str:
        """Store a training script; returns the 'sha256:...' ref to use as a spec's trainer."""
        return self.broker.put_script(_script_bytes(script) or b"")

    # ------------------------------------------------------------------ read

    def get(self, job_id: str) -> Job | None:
        """The job, or None. >>> q.get(job.id).state"""
        return self.broker.get(job_id)

    def list(self, state: JobState | str | Sequence[JobState | str] | None = None, *, pool: str | None = None,
             tag: str | None = None, limit: int | None = None) -> builtins.list[Job]:
        """Jobs matching every filter, in submission order. >>> q.list("failed", pool="h100")"""
        states = [state] if isinstance(state, (str, JobState)) else builtins.list(state or [])
        unknown = [s for s in states if s not in {j.value for j in JobState} | set(JobState)]
        if unknown:
            raise InputError(f"state {unknown[0]!r}: unknown (one of {', '.join(j.value for j in JobState)})")
        return self.broker.list(states=[JobState(s) for s in states], pool=pool, tag=tag, limit=limit)

    def curve(self, job_id: str, attempt: int | None = None) -> builtins.list[ProgressPoint]:
        """One attempt's live curve (default: the latest attempt), oldest first; [] before its first point.

        >>> [(p.step, p.val_bpb) for p in q.curve(job.id) if p.val_bpb is not None]
        """
        return self.broker.curve(job_id, attempt)

    def events(self, after: int = 0, limit: int = 1000) -> builtins.list[Event]:
        """Events with seq > after, oldest first. >>> [e.kind for e in q.events(after=10)]"""
        return self.broker.events(after_seq=after, limit=limit)

    def tracks(self) -> builtins.list[str]:
        return self.broker.tracks()

    def budget(self, *, waiting: bool = True) -> BudgetView:
        """Spend caps, spent and committed dollars per scope, and `waiting`: the pools whose next job a
        cap keeps queued, with why (waiting=False: the ledger alone, a cheaper read).
        >>> [w.reason for w in q.budget().waiting]"""
        return self.broker.budget(waiting)

    def set_budget(self, usd: float | str | None, *, pool: str | None = None, tag: str | None = None) -> None:
        """Cap the queue, a pool or a tag in dollars (None clears it); the next claim sees it.
        >>> q.set_budget(50, pool="h100")"""
        self.broker.set_budget(scope(pool, tag), None if usd is None else parse_cap(usd))

    def front(self, track: str | None = None, feasible_only: bool = False) -> tuple[FrontPoint, ...]:
        """The Pareto front of a track (or of a pool's track), best val_bpb first.

        >>> [(p.val_bpb, p.artifact_bytes) for p in q.front("8xH100", feasible_only=True)]
        """
        return self.broker.front(self.resolve_track(track)).view(feasible_only)

    def resolve_track(self, track: str | None) -> str:
        """A track name from a track, a pool name, or None when the queue has exactly one track (else ValueError)."""
        return resolve_track(track, self.broker.tracks())

    # ------------------------------------------------------------------ control

    def cancel(self, ids: Sequence[str]) -> builtins.list[str]:
        """Cancel queued or running jobs; returns those that changed. >>> q.cancel([job.id])"""
        return self.broker.cancel(builtins.list(ids))

    def wait(self, ids: Sequence[str], timeout: float | None = None, *, poll: float = 0.2,
             on_done: Callable[[Job, Result], None] | None = None,
             on_unserved: Callable[[str, int], None] | None = None) -> builtins.list[Result]:
        """Block until every job is finished; Results in the order of ids. Raises WaitTimeout.

        When no worker serves a pool that unfinished jobs wait in, `on_unserved(pool, jobs)` is
        called once (again after a worker came and went); by default it logs a warning.

        >>> [r.val_bpb for r in q.wait([a.id, b.id], timeout=3600)]
        """
        unserved = Unserved(self.broker, on_unserved or _warn_unserved)
        ids = builtins.list(dict.fromkeys(ids))
        deadline = None if timeout is None else time.monotonic() + timeout
        seq = self.broker.stats().last_seq  # before the first look, so no finish is missed
        done: dict[str, Result] = {}
        pending: set[str] = set()
        for job_id in ids:
            job = self.broker.get(job_id)
            if job is None:
                raise NotFoundError(f"job {job_id}: not found in {self.url}")
            unserved.pools[job_id] = job.pool
            self._check(job, done, pending, on_done)
        while pending:
            events = list(iter_events(self.broker, after_seq=seq))
            for event in events:
                seq = max(seq, event.seq)
            touched = {e.job_id for e in events if e.kind in FINAL_EVENTS and e.job_id in pending}
            for job_id in sorted(touched):
                job = self.broker.get(job_id)
                if job is not None:
                    self._check(job, done, pending, on_done)
            if not pending:
                break
            unserved.check(pending)
            if timeout is not None and deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout([done[i] for i in ids if i in done], [i for i in ids if i in pending], timeout)
            if not events:
                time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic())))
        return [done[i] for i in ids]

    # ------------------------------------------------------------------ the research loop

    def ranking(self, track: str | None = None) -> tuple[FrontPoint, ...]:
        """Every config of a track (on the front or not), best mean val_bpb first, each tested against the incumbent."""
        return self.broker.ranking(self.resolve_track(track))

    def compare(self, a: str, b: str, *, level: float = 0.95, rule: RecordRule = CHALLENGE_RULE) -> CompareReport:
        """Welch's test of config a (candidate) against b, each named by a job id or a config key.

        >>> c = q.compare(new.id, incumbent.id).comparison; (c.diff, c.ci_low, c.ci_high, c.p_value, c.significant)
        """
        return compare_refs(self.broker, a, b, level, rule)

    def promote(self, from_track: str | None, to: str, *, top: int = 3, seeds: int | Sequence[int] = 3,
                min_seeds: int = 1, env: Mapping[str, str | None] | None = None,
                dry_run: bool = False) -> builtins.list[Promoted]:
        """Queue the best `top` feasible configs of a track (or a pool's) in pool `to`, `seeds` seeds each;
        promoting again queues nothing new. >>> [p.new for p in q.promote("h100", "h100x8", top=3)]"""
        return promote(self.broker, self.resolve_track(from_track), to, top, seeds, min_seeds=min_seeds, env=env,
                       dry_run=dry_run)

    def wait_next(self, ids: Sequence[str] = (), *, after: int | None = None, timeout: float = 60.0,
                  poll: float = 0.2) -> NextResult:
        """The next of `ids` (or of any job) to finish, or timed_out; pass .cursor as `after` to go on.

        >>> nxt = q.wait_next(pending, timeout=600); pending = nxt.pending
        """
        return wait_next(self.broker, ids, after, timeout, poll, result_of=final_result)

    @staticmethod
    def _check(job: Job, done: dict[str, Result], pending: set[str], on_done) -> None:
        if job.state.terminal:
            pending.discard(job.id)
            if job.id not in done:
                done[job.id] = final_result(job)
                if on_done:
                    on_done(job, done[job.id])
        else:
            pending.add(job.id)


def _warn_unserved(pool: str, jobs: int) -> None:
    log.warning("no worker is serving pool %s, where %d job(s) wait (start one: golfq worker --pool %s)",
                pool, jobs, pool)


class Unserved:
    """Says once per pool when the jobs being waited for sit queued in a pool nobody serves.

    A look costs one stats read and one presence read per pool, however many jobs are waited
    for: a job's pool never changes, so `pools` is filled once by the wait."""

    CHECK_SECONDS = 5.0  # also the grace before the first look: a worker may be starting

    def __init__(self, broker: Broker, say: Callable[[str, int], None]) -> None:
        self.broker, self.say = broker, say
        self.pools: dict[str, str] = {}  # job id -> pool
        self.said: set[str] = set()
        self.next_check = time.monotonic() + self.CHECK_SECONDS

    def check(self, pending: set[str]) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.CHECK_SECONDS
        idle = unserved_pools(self.broker, Counter(self.pools[job_id] for job_id in pending))
        for pool, count in idle.items():
            if pool not in self.said:
                self.said.add(pool)
                self.say(pool, count)
        self.said &= set(idle)


def _as_dict(spec: SpecLike) -> dict[str, Any]:
    if isinstance(spec, ExperimentSpec):
        return msgspec.to_builtins(spec)
    if not isinstance(spec, Mapping):
        hint = " (spec text: read it with golfq.producer.specfile.read_documents)" if isinstance(
            spec, (str, bytes)) else ""
        raise InputError(f"spec: expected a dict or an ExperimentSpec, got {type(spec).__name__}{hint}")
    return dict(spec)


def _merge(spec: SpecLike | None, fields: Mapping[str, Any]) -> SpecLike:
    if spec is None:
        return dict(fields)
    if not fields:
        return spec
    return {**_as_dict(spec), **fields}
