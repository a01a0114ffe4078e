"""One spawned call of a pool function, from the container's side.

What every call does before and after it trains, in the real app (golfq.workers.modal.app)
and in the virtual-time bench alike:

1. take the attempt's run token (put-if-absent, keyed by the Modal input): a duplicated
   spawn gets "taken" and exits without training; Modal's re-run of the same input after
   a preemption brings the same token and goes on;
2. start the lease: one commit that records when this container began to bill for the
   call (its boot for a cold container, the end of its previous input for a warm one),
   so cold starts and idle time are charged; a lease no longer held ends the call here;
3. run the attempt (the shared runner heartbeats and reports it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from golfq.core.backends.modal.broker import ModalBroker
from golfq.core.job import Lease


class ContainerLife:
    """What a container knows about its own billing: when it booted, when its last input ended."""

    def __init__(self, booted_at: float, container: str) -> None:
        self.booted_at, self.container = booted_at, container
        self.last_end: float | None = None
        self._lock = threading.Lock()

    def since(self) -> tuple[float, bool]:
        """(billing since, cold): a warm container has billed since its previous input ended."""
        with self._lock:
            return (self.booted_at, True) if self.last_end is None else (self.last_end, False)

    def ended(self, at: float) -> None:
        with self._lock:
            self.last_end = at


def serve_call(broker: ModalBroker, lease: Lease, *, token: str, life: ContainerLife, lease_seconds: float,
               run: Callable[[], str]) -> str:
    """Run one call of an attempt; return a one-line outcome (also the function's return value)."""
    what = f"{lease.job_id}#{lease.attempt}"
    try:
        if not broker.take_run(lease, token):
            return f"{what}: another container runs this attempt (duplicated spawn); nothing to run"
        since, cold = life.since()
        if not broker.start(lease, lease_seconds, container=life.container, billing_since=since, cold=cold):
            return f"{what}: lease no longer held, nothing to run"
        return f"{what}: {run()}"
    finally:
        life.ended(broker.clock())
