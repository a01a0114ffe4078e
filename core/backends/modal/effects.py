"""What a Modal commit tells others outside the log: revocation markers, wake-ups, kicks, snapshots.

All of it happens after the entry landed, so none of it may turn a committed step
into an error at its caller: each effect is a hint (a runner's next beat, the next
scheduled dispatch and the dispatcher's own snapshots make up for a lost one), and
an effect that fails is logged, never raised.

- **Revocation markers** go only to attempts that someone else ended (a reap, a
  cancel): a runner that completes its own attempt does not need to be told.
- **Wake-ups** are one item per commit per pool with new work, and one for the
  dispatcher. Nothing reads a pool's partition on a Modal-only deployment, so a full
  partition (5,000 items) is cleared and the wake-up put again: hints are never owed.
- **Kicks.** `dispatch/listening` holds until when a dispatcher needs no kick. A
  committer that kicks first moves it `KICK_HOLD_SECONDS` ahead, so a wave of commits
  spawns one dispatch input, not one each; a kick that fails (the app is not
  deployed) moves it `ABSENT_SECONDS` ahead and journals the state to the Volume once.
- **Snapshots.** Whoever commits an entry at a multiple of `SNAPSHOT_EVERY` publishes
  a snapshot in the Dict, so a process loading the queue folds at most that many
  entries whether or not a dispatcher runs.
"""

from __future__ import annotations

import functools
import logging
import queue
from collections.abc import Callable, Sequence
from typing import Any

from golfq.core.backends.modal.store import DictLike, decode, encode
from golfq.core.backends.modal.txn import StateTxn
from golfq.core.events import EventKind
from golfq.core.job import JobState

log = logging.getLogger("golfq.modal")

WAKE_TTL_SECONDS = 24 * 3600
DISPATCH_PARTITION = "golfq-dispatch"  # the dispatcher's own wake-ups; pools have one partition each
LISTENING_KEY = "dispatch/listening"  # until when no kick is needed (a dispatcher listens, or was just kicked)
KICK_HOLD_SECONDS = 30.0  # a kicked dispatcher starts and marks itself listening well within this
ABSENT_SECONDS = 300.0  # after a failed kick (no app deployed), how long commits neither kick nor journal
SNAPSHOT_EVERY = 32


class Effects:
    def __init__(self, leases: DictLike, wake: Any, clock: Callable[[], float], kick: Callable[[], None] | None,
                 journal: Callable[[], object], publish: Callable[[], object]) -> None:
        self.leases, self.wake, self.clock, self.kick = leases, wake, clock, kick
        self.journal, self.publish = journal, publish
        self.kicks = self.failed = 0

    def after(self, txn: StateTxn) -> None:
        """Every effect of a landed commit; failures are logged, never raised."""
        ended = [(old.id, old.attempt) for old, new in txn.saved if old is not None and old.state is JobState.LEASED
                 and not (new.state is JobState.LEASED and new.attempt == old.attempt)]
        fresh = {e.pool for e in txn.events if e.kind in (EventKind.SUBMITTED, EventKind.REQUEUED)}
        self._guarded("revocation markers", lambda: self.mark_revoked([a for a in ended if a not in txn.own_ends]))
        ended = [a for a in ended if txn.call(*a) is not None]  # the dispatcher charges spawned calls only
        for partition in sorted(fresh) + ([DISPATCH_PARTITION] if fresh or ended else []):
            self._guarded(f"wake-up for {partition}", functools.partial(self._wake, partition, txn.state.pos))
        if fresh or ended:
            self._guarded("kick", self._kick)
        if txn.state.pos % SNAPSHOT_EVERY == 0:
            self._guarded("snapshot", self.publish)

    def _guarded(self, what: str, effect: Callable[[], object]) -> None:
        try:
            effect()
        except Exception as error:  # noqa: BLE001 - a hint: never an error for a step that committed
            self.failed += 1
            log.info("%s after a commit failed: %s", what, error)

    def mark_revoked(self, attempts: Sequence[tuple[str, int]]) -> None:
        """Tell these attempts' runners, at their next beat, that their lease is gone (one request)."""
        if attempts:
            self.leases.update({f"revoked/{job_id}/{attempt}": b"1" for job_id, attempt in attempts})

    def _wake(self, partition: str, pos: int) -> None:
        try:
            self.wake.put(pos, block=False, partition=partition, partition_ttl=WAKE_TTL_SECONDS)
        except queue.Full:  # nobody reads this partition (no claimer outside Modal): start it afresh
            self.wake.clear(partition=partition)
            self.wake.put(pos, block=False, partition=partition, partition_ttl=WAKE_TTL_SECONDS)

    def no_kick_until(self) -> float:
        return decode(self.leases.get(LISTENING_KEY), float) or 0.0

    def hold(self, until: float) -> None:
        self.leases.put(LISTENING_KEY, encode(until))

    def _kick(self) -> None:
        if self.kick is None or self.no_kick_until() > self.clock():
            return
        self.hold(self.clock() + KICK_HOLD_SECONDS)
        try:
            self.kick()
            self.kicks += 1
        except Exception as error:  # noqa: BLE001 - not deployed, or a blip
            log.warning("could not kick the dispatcher (%s); journalling to the Volume here", error)
            self.hold(self.clock() + ABSENT_SECONDS)
            self.journal()  # nobody else will while the app is not running
