"""The local fleet: N claim loops in one supervisor process, each running one job at a time.

Stopping is graceful: `stop()` ends claiming at once, lets running jobs finish for
a grace period, then kills them and releases their leases (not counted as a failure: the
jobs are queued again immediately instead of after their leases expire).
`burst` exits when the pool is empty; `max_idle` exits after that many seconds
with nothing running, so a machine's fleet scales to zero by itself.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from golfq.core.backends import open_broker
from golfq.core.broker import Broker
from golfq.core.errors import GolfqError
from golfq.core.job import Lease
from golfq.core.pools import get_pool
from golfq.core.result import Result
from golfq.core.settings import settings
from golfq.workers.runner import run_claimed

log = logging.getLogger("golfq.fleet")

class FleetError(GolfqError, ValueError):
    """A fleet cannot be set up as asked (bad GPU list, unknown pool); one line."""


def work_root_default() -> Path:
    return settings().work_dir


# How long one claim call may wait for work, on every backend. Each backend wakes a
# waiting claim soon after work arrives (SQLite re-polls every 20 ms at most, Redis
# every 0.5 s at most, Modal on its wake-up queue), so a long call costs no latency
# and spares round trips.
CLAIM_WAIT_SECONDS = 1.0
ANNOUNCE_SECONDS = 5.0  # how often a fleet says it serves its pool (each saying lasts three times this)


def parse_devices(text: str | None) -> tuple[str, ...]:
    """'0,1,3' -> ('0', '1', '3'); None or '' -> ()."""
    if not text:
        return ()
    devices = tuple(d.strip() for d in text.split(","))
    if not all(d.isdigit() for d in devices) or len(set(devices)) != len(devices):
        raise FleetError(f"--gpus {text!r}: expected distinct device numbers separated by commas, e.g. 0,1,2,3")
    return devices


def gpu_slots(devices: Sequence[str], per_job: int, concurrency: int | None) -> tuple[int, list[str | None]]:
    """(concurrency, the CUDA_VISIBLE_DEVICES of each slot); slots never share a device."""
    if not devices:
        n = concurrency or 1
        return n, [None] * n
    per_job = max(1, per_job)
    n = concurrency or len(devices) // per_job
    if n < 1 or n * per_job > len(devices):
        raise FleetError(f"--gpus: {len(devices)} device(s) cannot give {concurrency or 1} job(s) "
                         f"{per_job} GPU(s) each")
    return n, [",".join(devices[i * per_job:(i + 1) * per_job]) for i in range(n)]


@dataclass(frozen=True)
class FleetConfig:
    queue: str | None
    pool: str
    concurrency: int | None = None  # default: one per GPU group, or 1
    burst: bool = False
    max_idle: float | None = None
    gpus: tuple[str, ...] = ()
    work_root: Path = field(default_factory=work_root_default)
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 10.0
    grace_seconds: float = 60.0
    poll_seconds: float = CLAIM_WAIT_SECONDS  # one claim call's wait
    progress_seconds: float | None = None  # a live curve keeps one point per this (default: settings)


@dataclass
class FleetSummary:
    results: list[Result] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # runner crashes (each failed its attempt at once)

    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)


class Fleet:
    """`run()` blocks until the fleet stops; `stop()` and `abort()` are safe from any thread or signal handler."""

    def __init__(self, config: FleetConfig, *, opener: Callable[[str | None], Broker] = open_broker,
                 on_start: Callable[[Lease, str | None], None] | None = None,
                 on_finish: Callable[[Lease, Result], None] | None = None) -> None:
        self.config = config
        pool = get_pool(config.pool)  # KeyError names the known pools
        self.concurrency, self.slots = gpu_slots(config.gpus, pool.gpus, config.concurrency)
        self._open = opener
        self._on_start, self._on_finish = on_start, on_finish
        self._stopping = threading.Event()  # no new claims
        self._abort = threading.Event()  # kill running jobs and release their leases
        self._lock = threading.Lock()
        self._busy = 0
        self._idle_since = time.monotonic()
        self._timer: threading.Timer | None = None
        self.summary = FleetSummary()
        self._host = f"{socket.gethostname()}:{os.getpid()}"
        self._poll = config.poll_seconds

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self, grace: float | None = None) -> None:
        """Stop claiming; jobs still running after the grace period are killed and released."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        grace = self.config.grace_seconds if grace is None else grace
        self._timer = threading.Timer(grace, self._abort.set)
        self._timer.daemon = True
        self._timer.start()

    def abort(self) -> None:
        self._stopping.set()
        self._abort.set()

    def run(self) -> FleetSummary:
        threads = [threading.Thread(target=self._loop, args=(i, gpus), name=f"golfq-slot-{i}", daemon=True)
                   for i, gpus in enumerate(self.slots)]
        for thread in threads:
            thread.start()
        reaper = self._open(self.config.queue)
        next_reap = next_announce = 0.0
        try:
            while any(t.is_alive() for t in threads):
                # join with a timeout keeps the main thread free to run signal handlers
                threads[0].join(0.2) if threads[0].is_alive() else time.sleep(0.2)
                now = time.monotonic()
                if now >= next_announce:  # so `golfq wait` can tell a served pool from an abandoned one
                    next_announce = now + ANNOUNCE_SECONDS
                    self._announce(reaper, 3 * ANNOUNCE_SECONDS)
                if now >= next_reap:
                    next_reap = now + max(1.0, self.config.lease_seconds / 2)
                    try:
                        reaper.reap()
                    except Exception as error:
                        log.warning("reap failed: %s", error)
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._announce(reaper, 0.0)
            reaper.close()
        return self.summary

    def _announce(self, broker: Broker, seconds: float) -> None:
        try:
            broker.announce(self.config.pool, self._host, seconds)
        except Exception as error:  # presence is a courtesy to waiters; the work goes on without it
            log.info("announce failed: %s", error)

    def _idle_expired(self) -> bool:
        if self.config.max_idle is None:
            return False
        with self._lock:
            expired = self._busy == 0 and time.monotonic() - self._idle_since >= self.config.max_idle
        if expired:
            self._stopping.set()  # one slot seeing an idle fleet stops them all
        return expired

    def _set_busy(self, delta: int) -> None:
        with self._lock:
            self._busy += delta
            self._idle_since = time.monotonic()

    def _loop(self, slot: int, gpus: str | None) -> None:
        config = self.config
        worker_id = f"{self._host}:{slot}"
        broker = self._open(config.queue)
        try:
            while not self._stopping.is_set():
                wait = 0.0 if config.burst else self._poll
                try:
                    lease = broker.claim(config.pool, worker_id, config.lease_seconds, timeout=wait)
                except Exception as error:
                    log.warning("claim failed: %s", error)
                    self._stopping.wait(max(self._poll, 1.0))
                    continue
                if lease is None:
                    if config.burst or self._idle_expired():
                        return
                    continue
                self._run_one(broker, lease, gpus, worker_id)
        finally:
            broker.close()

    def _run_one(self, broker: Broker, lease: Lease, gpus: str | None, worker_id: str) -> None:
        self._set_busy(+1)
        try:
            if self._on_start:
                self._on_start(lease, gpus)
            result = run_claimed(broker, lease, work_root=self.config.work_root, gpus=gpus,
                                 heartbeat_seconds=self.config.heartbeat_seconds,
                                 lease_seconds=self.config.lease_seconds, worker_id=worker_id, stop=self._abort,
                                 progress_seconds=self.config.progress_seconds)
            with self._lock:
                self.summary.results.append(result)
                if result.error and result.error.startswith("runner error:"):
                    self.summary.errors.append(f"{lease.job_id}: {result.error}")
            if self._on_finish:
                self._on_finish(lease, result)
        except Exception as error:  # an announcement hook failed; the attempt itself was reported
            log.exception("after %s", lease.job_id)
            with self._lock:
                self.summary.errors.append(f"{lease.job_id}: {type(error).__name__}: {error}")
        finally:
            self._set_busy(-1)
