"""`golfq worker --queue redis://...`: forking RQ workers for one pool, plus a watchdog.

The supervisor starts N RQ worker processes (each with its own CUDA_VISIBLE_DEVICES
slice) on the pool's RQ queue, restarts any that die, and every few seconds runs
golfq's reaper: a lease that stopped being heartbeated (a dead machine, a killed
worker) is an `infra` failure after `detect_seconds` (default 120, against RQ's
~10 minutes), RQ's started registry is cleaned for it at once, and the job goes
back to its queue; a token a dead worker took but never claimed goes back too. Work
horses are forked, so a crash kills only the horse.

Each RQ worker holds the read end of a pipe only the supervisor writes (as training
processes do with their watchdog, workers/process.py): if the supervisor dies by any
means, the RQ worker sees the pipe close, stops at once (its running attempt is
released and queued again) and exits, so a restarted supervisor never doubles the
machine's workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rq import Worker

from golfq.core.backends.redis.broker import RedisBroker, connect, redact
from golfq.core.backends.redis.rq import RQSide, queue_name
from golfq.core.broker import BrokerError
from golfq.core.pools import get_pool
from golfq.core.settings import settings
from golfq.workers.fleet import gpu_slots, parse_devices
from golfq.workers.rq import job as rq_job

log = logging.getLogger("golfq.rq_worker")
EXIT_RESTART = 3


@dataclass(frozen=True)
class Timing:
    """How often things happen, from the one number an operator sets: detection time."""

    detect_seconds: float

    @property
    def reap_every(self) -> float:
        return min(5.0, self.detect_seconds / 10)

    @property
    def lease_seconds(self) -> float:  # a lease lapses, then the next reap sees it: detect_seconds at most
        return self.detect_seconds - self.reap_every

    @property
    def heartbeat_seconds(self) -> float:
        return min(10.0, self.lease_seconds / 4)

    @property
    def job_monitoring_interval(self) -> int:  # RQ's own worker heartbeat while a horse runs
        return max(1, int(min(30.0, self.detect_seconds / 4)))


def run_rq_workers(url: str, pool: str, concurrency: int | None = None, burst: bool = False,
                   max_idle: float | None = None, gpus: str | None = None, *, work_dir: Path | None = None,
                   detect_seconds: float | None = None, runner: str | None = None,
                   progress_seconds: float | None = None) -> int:
    """Run until stopped (or, with burst/max_idle, until every worker has exited); returns 0."""
    timing = Timing(detect_seconds or settings().detect_seconds)
    if timing.detect_seconds < 1:
        raise BrokerError(f"detect seconds {timing.detect_seconds:g}: must be at least 1")
    _, slots = gpu_slots(parse_devices(gpus), get_pool(pool).gpus, concurrency)
    broker = RedisBroker(url)  # fails fast, with one line, on a server it cannot reach
    options = ["--monitor", str(timing.job_monitoring_interval), "--lease", repr(timing.lease_seconds),
               "--heartbeat", repr(timing.heartbeat_seconds)]
    if work_dir is not None:
        options += ["--work-dir", str(Path(work_dir).resolve())]
    if runner:
        options += ["--runner", runner]
    if progress_seconds is not None:
        options += ["--progress", repr(progress_seconds)]
    if burst:
        options.append("--burst")
    if max_idle is not None:
        options += ["--max-idle", str(int(max_idle))]
    fleet = _Fleet(url, pool, slots, options, timing)
    print(f"golfq worker: {len(slots)} RQ worker(s) on {queue_name(pool)} at {redact(url)}, "
          f"dead workers detected within {timing.detect_seconds:g} s", file=sys.stderr, flush=True)
    try:
        fleet.run(broker)
    finally:
        broker.close()
    return 0


class _Fleet:
    def __init__(self, url: str, pool: str, slots: list[str | None], options: list[str], timing: Timing) -> None:
        self.url, self.pool, self.slots, self.options, self.timing = url, pool, slots, options, timing
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(slots)
        self.lifelines: list[int | None] = [None] * len(slots)
        self.done = [False] * len(slots)
        self.signals = 0
        self.stranded_since: dict[str, float] = {}

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        env = dict(os.environ)
        argv = [sys.executable, "-m", "golfq.workers.rq.worker", self.url, self.pool, *self.options]
        if self.slots[i] is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.slots[i] or ""
            argv += ["--gpus", self.slots[i] or ""]
        previous = self.lifelines[i]
        if previous is not None:
            os.close(previous)  # the last worker in this slot is gone
        read_end, self.lifelines[i] = os.pipe()
        try:
            # a session of its own: no signal meant for a worker's group can reach this one
            return subprocess.Popen([*argv, "--lifeline", str(read_end)], env=env, start_new_session=True,
                                    pass_fds=(read_end,))
        finally:
            os.close(read_end)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1
        for proc in self.procs:  # RQ: the first SIGTERM finishes the running job, a second kills it
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    def run(self, broker: RedisBroker) -> None:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            while not all(self.done):
                for i, proc in enumerate(self.procs):
                    if self.done[i] or (proc is not None and proc.poll() is None):
                        continue
                    if proc is not None and (proc.returncode == 0 or self.signals):
                        self.done[i] = True  # burst/idle exit, or shutting down
                    else:
                        if proc is not None:
                            log.warning("golfq worker: RQ worker %d exited %s; restarting", i, proc.returncode)
                        self.procs[i] = self._start(i)
                self._watch(broker)
                time.sleep(self.timing.reap_every)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for proc in self.procs:
                if proc is not None and proc.poll() is None:
                    proc.wait()
            for fd in self.lifelines:
                if fd is not None:
                    os.close(fd)

    def _watch(self, broker: RedisBroker) -> None:
        """The reaper, plus RQ's intermediate list: a token a dead worker moved there
        but never started is pushed back once it has sat there for the detection time."""
        try:
            for job_id in broker.reap():
                print(f"golfq worker: {job_id}: lease expired, worker presumed dead (infra)", file=sys.stderr,
                      flush=True)
            for tok in broker.release_held([self.pool]):
                print(f"golfq worker: {tok}: the spend caps allow it now; queued again", file=sys.stderr, flush=True)
            now = time.monotonic()
            stranded = set(broker.stranded(self.pool))
            self.stranded_since = {t: self.stranded_since.get(t, now) for t in stranded}
            for tok, since in list(self.stranded_since.items()):
                # first seen up to reap_every after it was taken: back within detect_seconds in all
                if now - since >= self.timing.lease_seconds and broker.unstrand(self.pool, tok):
                    print(f"golfq worker: {tok}: taken by a worker that died before claiming it; queued again",
                          file=sys.stderr, flush=True)
                    del self.stranded_since[tok]
        except BrokerError as error:
            log.warning("golfq worker: %s", error)
        except Exception as error:  # the server restarting: try again next round
            log.warning("golfq worker: watchdog: %s", error)


def _exited(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel whether it is still there
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True


class PromptExit:
    """A worker mixin: leave the command channel without sleeping out RQ's 60 s pubsub wait.

    RQ 3.0's unsubscribe() sends UNSUBSCRIBE, then stops its pubsub thread. With redis-py 8,
    stop() joins that thread, and a thread that loops again after the unsubscribe is confirmed
    waits in get_message() for a subscription for its full sleep_time (60 s): a burst worker,
    or one asked to stop, hung for up to a minute at exit. Clearing the thread's flag first
    lets the unsubscribe reply end its loop.
    """

    pubsub: Any
    pubsub_thread: Any

    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if thread is None:
            return
        thread.stop(timeout=0)  # only clears the flag: the thread is still reading the socket
        self.pubsub.unsubscribe()
        thread.join(timeout=1)
        self.pubsub.close()


class GolfqWorker(PromptExit, Worker):
    """RQ's forking worker, but a horse is asked to stop (SIGTERM) before it is killed.

    RQ kills the horse's process group with SIGKILL on a stop command or a cold
    shutdown; the training process has a group of its own and would live on, holding
    its GPU. The horse's runner turns SIGTERM into a clean stop of that group.
    """

    horse_grace = 15.0  # the runner's kill grace (10 s) and some

    def kill_horse(self, sig: signal.Signals = signal.SIGKILL) -> None:
        pid = self.horse_pid
        if pid and sig == signal.SIGKILL:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                return
            give_up = time.monotonic() + self.horse_grace
            while time.monotonic() < give_up and not _exited(pid):
                time.sleep(0.05)
        if not pid or _exited(pid):
            return  # RQ zeroes horse_pid once reaped, and killpg(getpgid(0)) would hit this worker's own group
        try:
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, sig)
        except ProcessLookupError:
            pass


def _watch_lifeline(fd: int) -> None:
    """Stop this RQ worker at once when its supervisor is gone (the pipe reads EOF).

    Two SIGTERMs are RQ's cold shutdown: the horse is asked to stop (GolfqWorker), its
    runner stops the training group and releases the lease, so the job is queued again.
    """
    def watch() -> None:
        while True:
            try:
                if not os.read(fd, 1):
                    break
            except InterruptedError:
                continue
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1.5)  # RQ ignores a second signal within a second of the first
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="golfq-lifeline", daemon=True).start()


def _worker_main(argv: list[str] | None = None) -> int:
    """One RQ worker process (started by the supervisor; not a user command)."""
    parser = argparse.ArgumentParser(prog="python -m golfq.workers.rq.worker")
    parser.add_argument("url")
    parser.add_argument("pool")
    parser.add_argument("--monitor", type=int, default=30)
    parser.add_argument("--lease", type=float, default=60.0)
    parser.add_argument("--heartbeat", type=float, default=10.0)
    parser.add_argument("--gpus", default=None)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--runner", default=rq_job.RUNNER)
    parser.add_argument("--lifeline", type=int, default=None)
    parser.add_argument("--burst", action="store_true")
    parser.add_argument("--max-idle", type=int, default=None)
    parser.add_argument("--progress", type=float, default=None)
    args = parser.parse_args(argv)
    # Horses are forked from this process, so they run with this configuration.
    rq_job.config = rq_job.HorseConfig(lease_seconds=args.lease, heartbeat_seconds=args.heartbeat,
                                       gpus=args.gpus or None, work_dir=args.work_dir or settings().work_dir,
                                       runner=args.runner,
                                       progress_seconds=args.progress)
    if args.lifeline is not None:
        _watch_lifeline(args.lifeline)
    connection = connect(args.url)
    rq_job._broker(connection)  # made here once, so every forked horse starts with it
    side = RQSide(connection, "golfq")
    worker = GolfqWorker([side.queue(args.pool)], connection=connection, serializer=RQSide.serializer,
                         name=f"golfq.{socket.gethostname()}.{os.getpid()}", job_monitoring_interval=args.monitor,
                         work_horse_killed_handler=rq_job.on_horse_killed)
    worker.work(burst=args.burst, max_idle_time=args.max_idle, logging_level="WARNING")
    # RQ's work() also returns after an error it could not handle; only a requested stop
    # or a burst/idle exit with nothing left is a clean end, anything else is restarted.
    if getattr(worker, "_stop_requested", False):
        return 0
    idle_exit = args.burst or args.max_idle is not None
    return 0 if idle_exit and side.queue(args.pool).count == 0 else EXIT_RESTART


if __name__ == "__main__":
    sys.exit(_worker_main())
