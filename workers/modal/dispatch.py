"""The Modal dispatcher: claims queued jobs within each pool's caps and spawns one call per job.

It runs as one Modal function on a schedule and whenever a client kicks it, but
correctness never depends on there being one: its decisions are steps committed to
the queue's log like any other write, so two dispatchers (a rolling redeploy) claim
different jobs, never overshoot a cap (the caps are checked inside the step, against
the committed state) and never charge a call twice (charges are keyed by attempt).
Each pass:

1. one step: reap leases that really ran out (heartbeat keys, then the call's own
   state in Modal: a call still waiting for a GPU is *waiting*, never failed), charge
   every call whose attempt ended (cold start, run and scale-down tail), and claim
   jobs while the caps allow, writing a call record (an intent) for each lease;
2. spawn one call per lease (and re-spawn intents a crashed dispatcher left), and
   cancel the calls of attempts that ended without reporting;
3. one step: record the call ids; a spawn that raised is an infra failure of that
   attempt; a lease whose spawn was not tried stays an intent for the next pass;
4. page out events and snapshot the state to the Dict and the Volume when due.

A spawn is at-least-once: Modal re-runs a call after a preemption, and a duplicated
spawn is possible. The pool function takes the attempt's run token first (same input:
same token), so only one container ever trains an attempt (golfq.workers.modal.call).
"""

from __future__ import annotations

import base64
import logging
import queue
import tarfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from golfq.core import budget, lifecycle
from golfq.core.backends.modal.broker import DISPATCH_PARTITION, ModalBroker
from golfq.core.backends.modal.records import Call
from golfq.core.backends.modal.txn import StateTxn
from golfq.core.backends.modal.usage import end_calls, forget_ended
from golfq.core.errors import GolfqError
from golfq.core.job import Job, Lease
from golfq.core.pools import known_pools
from golfq.core.result import FailureKind
from golfq.workers.modal.config import SETUP_SECONDS, ModalConfig, ModalConfigError, PoolConfig, call_timeout

if TYPE_CHECKING:
    from golfq.workers.modal.envimage import EnvironmentImages

log = logging.getLogger("golfq.modal.dispatch")
SANDBOX_PREFIX = "sb-"  # Modal's Sandbox ids; FunctionCall ids start "fc-"

WAKE_DRAIN = 5_000  # a partition's item limit: one get_many empties it
RESPAWN_AFTER_SECONDS = 120.0  # an intent older than this was left by a dispatcher that stopped: spawn it
CHECKPOINT_ENTRIES = 64  # snapshot after this many entries...
CHECKPOINT_SECONDS = 300.0  # ...or this long after the last snapshot, if anything changed


class Spawner(Protocol):
    """Starts, watches and stops calls of the app's pool functions (tests and benches inject their own)."""

    def spawn(self, function: str, payload: bytes, timeout_seconds: int | None) -> str:
        """Spawn one call; return its call id."""

    def alive(self, call_id: str) -> bool:
        """Whether the call is still pending or running in Modal."""

    def cancel(self, call_id: str) -> None: ...


class PoolReport(msgspec.Struct, frozen=True, kw_only=True):
    spawned: list[str] = []
    waiting: int = 0  # queued jobs left behind
    blocked: str = ""  # why claiming stopped while jobs wait: draining, max_containers, max_gpus, max_gpu_hours


class DispatchReport(msgspec.Struct, frozen=True, kw_only=True):
    reaped: list[str] = []
    retired: list[str] = []  # "JOB/ATTEMPT" of calls whose attempt ended (and were charged)
    cancelled: list[str] = []  # call ids cancelled because their attempt ended without reporting
    failed_spawns: list[str] = []
    woken: int = 0  # wake-ups drained
    pools: dict[str, PoolReport] = {}
    checkpoint: int = 0  # the log position snapshotted in this pass (0: none)


Failed = tuple[Lease, str, FailureKind]


class _Plan(msgspec.Struct, kw_only=True):
    reaped: list[str]
    ended: list[tuple[str, Call, bool]]
    leases: dict[str, list[Lease]]
    respawn: list[Lease]
    blocked: dict[str, str]
    forgotten: list[str]


def lease_payload(lease: Lease) -> bytes:
    return msgspec.msgpack.encode(lease)


def read_lease(payload: bytes) -> Lease:
    return msgspec.msgpack.decode(payload, type=Lease)


def reserved_seconds(job: Job, gpus: int, pool: PoolConfig) -> float:
    """The most GPU time a job can be billed: its hard timeout, set-up and its container's scale-down."""
    return gpus * (job.spec.budget.hard_timeout + SETUP_SECONDS + pool.scaledown_window)


class Dispatcher:
    def __init__(self, broker: ModalBroker, spawner: Spawner, config: ModalConfig) -> None:
        self.broker, self.spawner, self.config = broker, spawner, config
        self.gpus = {name: known_pools()[name].gpus for name in config.pools}
        self._checkpointed = (0, broker.clock())
        broker.probe = self._probe

    # -- one pass ------------------------------------------------------------------------------

    def run_once(self) -> DispatchReport:
        woken = self._drain_wakeups()
        plan = self.broker.transact(self._plan)
        cancelled = self._cancel_unreported(plan.ended)
        self.broker.forget_attempts(plan.forgotten)
        spawned, failed = self._spawn_all(plan)
        if spawned or failed:
            self.broker.transact(lambda tx: self._record(tx, spawned, failed))
        state = self.broker.view()
        pools = {}
        for name, leases in plan.leases.items():
            ok = {lease.job_id for lease, _ in spawned}
            pools[name] = PoolReport(spawned=[lease.job_id for lease in leases if lease.job_id in ok],
                                     waiting=len(state.queued.get(name, ())), blocked=plan.blocked.get(name, ""))
        return DispatchReport(reaped=plan.reaped, retired=[key for key, _, _ in plan.ended], cancelled=cancelled,
                              failed_spawns=[lease.job_id for lease, _, _ in failed], woken=woken, pools=pools,
                              checkpoint=self._maybe_checkpoint())

    def serve(self, seconds: float, tick: float = 15.0) -> list[DispatchReport]:
        """Dispatch, then listen for wake-ups for up to `seconds` more (a pass at least every `tick`)."""
        clock = self.broker.clock
        reports = [self.run_once()]
        until = clock() + seconds
        self.broker.set_listening(until)
        while (left := until - clock()) > 0:
            try:
                self.broker.wake.get(block=True, timeout=min(tick, left), partition=DISPATCH_PARTITION)
            except queue.Empty:
                pass
            reports.append(self.run_once())
        self._maybe_checkpoint(force=True)
        return reports

    # -- steps ---------------------------------------------------------------------------------

    def _plan(self, tx: StateTxn) -> _Plan:
        reaped = self.broker.reap_step(tx)
        tails = {name: float(pool.scaledown_window) for name, pool in self.config.pools.items()}
        ended = end_calls(tx, tails)
        forgotten = forget_ended(tx)
        leases: dict[str, list[Lease]] = {}
        blocked: dict[str, str] = {}
        for name, pool in self.config.pools.items():
            leases[name] = []
            if tx.draining(name):
                blocked[name] = "draining" if tx.next_queued(name) else ""
                continue
            while (head := tx.next_queued(name)) is not None:
                if reason := self._cap_reached(tx, name, pool, head):
                    blocked[name] = reason
                    break
                job = budget.startable(tx, name)  # a spend cap holds its job, not the jobs behind it
                if job is None:
                    blocked[name] = budget.blocked(tx, head.spec)
                    break
                claimed, lease, events = lifecycle.claim(job, f"modal/{name}", pool.startup_seconds, tx.now)
                tx.save(job, claimed, events)
                tx.set_call(job.id, lease.attempt, Call(pool=name, gpus=self.gpus[name], spawned_at=tx.now))
                leases[name].append(lease)
        respawn = []
        for key, call in tx.calls().items():  # intents a stopped dispatcher never spawned
            job_id, attempt = key.rsplit("/", 1)
            job = tx.job(job_id)
            if (not call.call_id and call.ended_at is None and call.spawned_at + RESPAWN_AFTER_SECONDS <= tx.now
                    and job is not None and job.attempt == int(attempt)):
                respawn.append(Lease(job_id=job.id, attempt=job.attempt, worker_id=job.worker_id, pool=job.pool,
                                     deadline=job.lease_deadline or tx.now, spec=job.spec))
        return _Plan(reaped=reaped, ended=ended, leases=leases, respawn=respawn, blocked=blocked, forgotten=forgotten)

    def _cap_reached(self, tx: StateTxn, name: str, pool: PoolConfig, job: Job) -> str:
        running = tx.leased(name)
        gpus = self.gpus[name]
        if len(running) >= pool.max_containers:
            return "max_containers"
        if gpus and pool.max_gpus is not None and (len(running) + 1) * gpus > pool.max_gpus:
            return "max_gpus"
        if gpus and pool.max_gpu_hours is not None:
            held = sum(reserved_seconds(j, gpus, pool) for j in running)
            if tx.usage(name).gpu_seconds + held + reserved_seconds(job, gpus, pool) > pool.max_gpu_hours * 3600:
                return "max_gpu_hours"
        return ""

    def _record(self, tx: StateTxn, spawned: list[tuple[Lease, str]], failed: list[Failed]) -> None:
        for lease, call_id in spawned:
            call = tx.call(lease.job_id, lease.attempt)
            if call is not None and not call.call_id:  # a second dispatcher's duplicate keeps the first id
                tx.set_call(lease.job_id, lease.attempt, msgspec.structs.replace(call, call_id=call_id))
        for lease, error, kind in failed:
            job = tx.job(lease.job_id)
            if job is None:
                continue
            new, events = lifecycle.fail(job, lease, error, kind, tx.now)
            tx.save(job, new, events)
            if new is not job:
                tx.set_call(lease.job_id, lease.attempt, None)

    # -- side effects --------------------------------------------------------------------------

    def _spawn_all(self, plan: _Plan) -> tuple[list[tuple[Lease, str]], list[Failed]]:
        spawned: list[tuple[Lease, str]] = []
        failed: list[Failed] = []
        for leases in [*plan.leases.values(), plan.respawn]:
            for lease in leases:
                pool = self.config.pools.get(lease.pool)
                if pool is None:
                    continue
                try:
                    timeout = call_timeout(pool, lease.spec.budget.hard_timeout)
                    spawned.append((lease, self.spawner.spawn(pool.function, lease_payload(lease), timeout)))
                except ModalConfigError as error:  # a budget past Modal's 24 h: the spec's fault
                    failed.append((lease, str(error), FailureKind.USER))
                except Exception as error:  # noqa: BLE001 - Modal's API: the lease stays an intent or fails
                    reason = " ".join(str(error).split())[:300] or type(error).__name__
                    failed.append((lease, f"spawn on {pool.function} failed: {reason}", FailureKind.INFRA))
                    log.warning("spawn of %s failed (%s)", lease.job_id, reason)
                    break  # the rest of this pool stays claimed as intents and is spawned next pass
        return spawned, failed

    def _cancel_unreported(self, ended: list[tuple[str, Call, bool]]) -> list[str]:
        """Stop the calls of attempts that ended without reporting (reaped, cancelled): no GPU runs for a
        lease nobody holds. Their runners also find the revocation marker at their next beat."""
        cancelled = []
        gone = []
        for key, call, reported in ended:
            if reported:
                continue
            job_id, attempt = key.rsplit("/", 1)
            gone.append((job_id, int(attempt)))
            if call.call_id:
                try:
                    self.spawner.cancel(call.call_id)
                    cancelled.append(call.call_id)
                except Exception as error:  # noqa: BLE001 - its runner stops at its next heartbeat anyway
                    log.warning("could not cancel call %s: %s", call.call_id, error)
        self.broker.mark_revoked(gone)
        return cancelled

    def _probe(self, job: Job, call: Call, now: float, beat: float | None) -> float | None:
        """A spawned call whose lease ran out: waiting for a GPU or re-running after a preemption (keep
        it, with a new deadline), or gone (reap it)."""
        pool = self.config.pools.get(call.pool)
        if pool is None:
            return None
        if not call.call_id:
            return now + pool.startup_seconds  # spawning, or left as an intent: the plan re-spawns it
        try:
            alive = self.spawner.alive(call.call_id)
        except Exception as error:  # noqa: BLE001 - cannot tell: do not fail a job for Modal's blip
            log.info("could not look at call %s: %s", call.call_id, error)
            alive = True
        if not alive:
            return None
        if call.ran_at is None:
            return now + pool.startup_seconds  # still waiting for capacity: never a failure
        last = beat if beat is not None else call.ran_at + self.config.lease_seconds
        grace = last + pool.startup_seconds  # silent but alive: Modal may be re-running it on a new container
        return grace if grace > now else None

    def _drain_wakeups(self) -> int:
        try:
            return len(self.broker.wake.get_many(WAKE_DRAIN, block=False, partition=DISPATCH_PARTITION))
        except Exception as error:  # noqa: BLE001 - wake-ups are hints; the log is the truth
            log.info("could not drain wake-ups: %s", error)
            return 0

    def _maybe_checkpoint(self, force: bool = False) -> int:
        state = self.broker.view()
        pos, at = self._checkpointed
        now = self.broker.clock()
        if state.pos > pos and (force or state.pos - pos >= CHECKPOINT_ENTRIES or now - at >= CHECKPOINT_SECONDS):
            ptr = self.broker.checkpoint()
            self._checkpointed = (ptr.pos, now)
            return ptr.pos
        return 0


class ModalSpawner:
    """Spawns calls of a deployed app's functions, looked up by name; a code folder with an environment
    of its own runs in a Sandbox of its image instead (golfq.workers.modal.envimage), with the pool's options."""

    def __init__(self, app: str, environment: str | None = None, *, images: EnvironmentImages | None = None,
                 sandbox_options: Callable[[str], dict] | None = None,
                 sandbox_command: Sequence[str] = ()) -> None:
        self.app, self.environment = app, environment
        self.images, self.sandbox_options, self.sandbox_command = images, sandbox_options, tuple(sandbox_command)
        self._functions: dict[str, object] = {}

    def own_image(self, payload: bytes):
        """The image the lease's code folder declares, or None: the pool function serves it (the runner
        fails a pack it cannot read, as the experiment's fault, with its message)."""
        if self.images is None:
            return None
        spec = read_lease(payload).spec
        if not spec.is_code_folder:
            return None
        try:
            return self.images.image(spec.trainer)
        except (KeyError, ValueError, GolfqError, tarfile.TarError) as error:
            log.warning("code %s: no image of its own (%s); the pool function runs it", spec.trainer, error)
            return None

    def _sandbox(self, function: str, image, payload: bytes, timeout_seconds: int | None) -> str:
        import modal

        assert self.sandbox_options is not None
        options = self.sandbox_options(function)
        if timeout_seconds is not None:
            options["timeout"] = timeout_seconds
        app = modal.App.lookup(self.app, environment_name=self.environment)
        sandbox = modal.Sandbox.create(*self.sandbox_command, base64.b64encode(payload).decode("ascii"), app=app,
                                       image=image, **options)
        return sandbox.object_id

    def _function(self, name: str):
        import modal

        if name not in self._functions:
            self._functions[name] = modal.Function.from_name(self.app, name, environment_name=self.environment)
        return self._functions[name]

    def spawn(self, function: str, payload: bytes, timeout_seconds: int | None) -> str:
        image = self.own_image(payload)
        if image is not None:
            return self._sandbox(function, image, payload, timeout_seconds)
        fn = self._function(function)
        if timeout_seconds is not None:
            fn = fn.with_options(timeout=timeout_seconds)
        return fn.spawn(payload).object_id

    def alive(self, call_id: str) -> bool:
        import modal
        from modal.exception import TimeoutError as ModalTimeout

        if call_id.startswith(SANDBOX_PREFIX):
            try:
                return modal.Sandbox.from_id(call_id).poll() is None
            except Exception:  # noqa: BLE001 - gone: ended long ago
                return False
        try:
            modal.FunctionCall.from_id(call_id).get(timeout=0)
        except ModalTimeout as error:
            return type(error) is ModalTimeout  # the poll ran out: pending or running (not its own timeout)
        except Exception:  # noqa: BLE001 - it ended by raising, was cancelled, or its output expired
            return False
        return False  # it returned: ended

    def cancel(self, call_id: str) -> None:
        import modal

        if call_id.startswith(SANDBOX_PREFIX):
            modal.Sandbox.from_id(call_id).terminate()
            return
        modal.FunctionCall.from_id(call_id).cancel()

