"""One attempt's live curve, stored in the queue, and its stopping rule checked as points arrive.

The log pump feeds the child's output to a ProgressCapture (workers/progress.py); the
runner's supervision loop calls `CurveWatch.poll()`, which reports the points of closed
intervals in one `report_progress` call and, when the spec carries a rule and the curve
has passed a new checkpoint, asks core.stopping whether to stop. Reference curves come
from the queue: succeeded jobs comparable with this one (same track, same training
budget), cached per worker process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from golfq.core.broker import Broker
from golfq.core.job import JobState, Lease
from golfq.core.pools import known_pools, track_of
from golfq.core.result import ProgressPoint
from golfq.core.spec import ExperimentSpec
from golfq.core.stopping import Decision, StopRule, comparable, decide, passed
from golfq.workers.progress import ProgressCapture

log = logging.getLogger("golfq.curves")

MAX_UNSENT = 10_000  # points held while the queue is unreachable; older ones are dropped past this


class References:
    """Curves of finished runs for the rules, kept per worker process.

    A succeeded attempt's curve never changes, so curves are kept (least recently used
    dropped past `max_curves`); which runs are comparable is re-read every `refresh` seconds.
    """

    def __init__(self, refresh: float = 60.0, limit: int = 200, max_curves: int = 2000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.refresh, self.limit, self.max_curves, self._clock = refresh, limit, max_curves, clock
        self._lock = threading.Lock()
        self._runs: dict[tuple, tuple[float, list[tuple[str, int]]]] = {}
        self._curves: OrderedDict[tuple[str, str, int], list[ProgressPoint]] = OrderedDict()

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()
            self._curves.clear()

    def curves(self, broker: Broker, spec: ExperimentSpec, rule: StopRule, exclude: str) -> list[list[ProgressPoint]]:
        """The curves of up to `limit` most recently finished runs comparable with spec (not exclude)."""
        key = (broker.url, track_of(spec.pool), spec.budget.train_seconds,
               spec.data if rule.metric == "train_loss" else None)
        with self._lock:
            cached = self._runs.get(key)
        if cached is None or self._clock() - cached[0] >= self.refresh:
            cached = (self._clock(), self._find(broker, spec, rule))
            with self._lock:
                self._runs[key] = cached
        out = []
        for job_id, attempt in cached[1]:
            if job_id != exclude and (curve := self._curve(broker, job_id, attempt)):
                out.append(curve)
        return out

    def _find(self, broker: Broker, spec: ExperimentSpec, rule: StopRule) -> list[tuple[str, int]]:
        track = track_of(spec.pool)
        pools = sorted({name for name, pool in known_pools().items() if pool.track == track} | {spec.pool})
        jobs = [job for pool in pools for job in broker.list(states=[JobState.SUCCEEDED], pool=pool)
                if comparable(spec, job.spec, rule)]
        jobs.sort(key=lambda job: job.updated_at, reverse=True)
        return [(job.id, job.result.attempt if job.result else job.attempt) for job in jobs[:self.limit]]

    def _curve(self, broker: Broker, job_id: str, attempt: int) -> list[ProgressPoint]:
        key = (broker.url, job_id, attempt)
        with self._lock:
            if key in self._curves:
                self._curves.move_to_end(key)
                return self._curves[key]
        curve = broker.curve(job_id, attempt)
        with self._lock:
            self._curves[key] = curve
            while len(self._curves) > self.max_curves:
                self._curves.popitem(last=False)
        return curve


REFERENCES = References()  # one per worker process, shared by its slots


class CurveWatch:
    """The live curve of one attempt: feed it output, poll it from the supervision loop, close it at the end."""

    def __init__(self, broker: Broker, lease: Lease, *, interval: float, references: References | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.broker, self.lease = broker, lease
        self.capture = ProgressCapture(interval, clock)
        self.references = references or REFERENCES
        self.curve: list[ProgressPoint] = []
        self.decisions: list[Decision] = []
        self.stop_reason: str | None = None
        self.notes: list[str] = []  # for the attempt's log, written when the process has ended
        self._unsent: list[ProgressPoint] = []
        self._decided = 0
        self.rule = self._rule()

    def _rule(self) -> StopRule | None:
        rule = self.lease.spec.stop
        if rule is None:
            return None
        # A requeued stopped job is someone overruling the rule: this attempt runs to its end.
        try:
            job = self.broker.get(self.lease.job_id)
        except Exception as error:  # noqa: BLE001 - any backend's outage: the rule stands
            log.warning("stopping rule of %s: could not read the job: %s", self.lease.job_id, error)
            return rule
        if job is not None and job.result is not None and job.result.status == JobState.STOPPED.value:
            self.notes.append(f"stopping rule off: attempt {job.result.attempt} was stopped and the job requeued")
            return None
        return rule

    def feed(self, chunk: bytes) -> None:
        self.capture.feed(chunk)

    def poll(self) -> str | None:
        """Store the points of closed intervals; the reason to stop, once the rule says so."""
        points = self.capture.take()
        if not points:
            return None
        self._store(points)
        if self.rule is not None and self.stop_reason is None:
            self._check(self.rule)
        return self.stop_reason

    def close(self) -> None:
        """The process has ended: store what is left (rules are no longer checked)."""
        self.capture.finish()
        self._store(self.capture.take(final=True))

    def _store(self, points: list[ProgressPoint]) -> None:
        self.curve += points
        self._unsent = (self._unsent + points)[-MAX_UNSENT:]
        if not self._unsent:
            return
        try:
            self.broker.report_progress(self.lease.job_id, self.lease.attempt, self._unsent)
        except Exception as error:  # noqa: BLE001 - any backend's outage: the points go with the next report
            log.warning("progress of %s: %s (%d point(s) held)", self.lease.job_id, error, len(self._unsent))
            return
        self._unsent = []

    def _check(self, rule: StopRule) -> None:
        budget = self.lease.spec.budget.train_seconds
        count = passed(rule, self.curve, budget)
        if count <= self._decided:
            return
        try:
            references = (self.references.curves(self.broker, self.lease.spec, rule, exclude=self.lease.job_id)
                          if rule.needs_references else [])
        except Exception as error:  # noqa: BLE001 - no references now: check again with the next points
            log.warning("stopping rule of %s: reference curves unavailable: %s", self.lease.job_id, error)
            return
        self._decided = count
        decision = decide(rule, self.curve, references, budget)
        if decision is None:
            return
        self.decisions.append(decision)
        self.notes.append(("stop: " if decision.stop else "keep: ") + decision.reason)
        if decision.stop:
            self.stop_reason = decision.reason
