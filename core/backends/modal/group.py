"""Group commit: the lease cycle's steps under a wave, without a race for every log slot.

A claim, start, complete, fail, release or stop first tries the log's next slot alone (one
put, no read first). A writer that lost the slot three times leaves its step as a
Request under `req/RID` in the `APP-requests` Dict (one put, idempotent: the key is
its own) and waits, reading the log, now and then trying a commit itself. Every
lease-cycle put lists the pending requests in the same round trip, and the writer's
next entry carries them out, in one step, recording each one's outcome by rid; their
writers fold that entry and find their outcome there. So the writer that keeps
winning slots does the losers' work, and N writers finishing in the same instant
need a few slots, not N, and none gives up.

- **Once, exactly.** A request is carried out only by an entry built on a state in
  which its rid has no outcome yet, and an entry lands only on the state it read: no
  request runs twice, and none is lost while its writer waits (it carries its own).
- **Never guessed.** A writer learns its outcome only from a committed entry (or a
  snapshot holding it): a lost response is read back, like every commit.
- **Errors are outcomes.** A request whose step raises (a purged job) is undone and
  committed as that error, which its writer raises; the others in the entry stand.
"""

from __future__ import annotations

import functools
import logging
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from golfq.core.backends.modal.records import Entry, Outcome, Request
from golfq.core.backends.modal.state import DONE_KEEP_SECONDS, State
from golfq.core.backends.modal.store import DictLike, decode, encode
from golfq.core.backends.modal.txn import StateTxn
from golfq.core.broker import BrokerError
from golfq.core.job import CompleteOutcome, JobState, Lease
from golfq.core.result import FailureKind, Result

if TYPE_CHECKING:
    from golfq.core.backends.modal.broker import ModalBroker

log = logging.getLogger("golfq.modal")

MAX_PER_ENTRY = 256  # requests carried out by one entry (it stays far below the value limit)
ORPHAN_SECONDS = 120.0  # a carried-out request whose writer never deleted its key is deleted by a committer
MAX_ROUNDS = 10_000
COMMIT_EVERY = 3  # a waiting writer tries a commit of its own every this many rounds, and reads between
DIRECT_TRIES = 3  # tries for the next slot alone before the request is left for a group commit


class ClaimArgs(msgspec.Struct, frozen=True):
    pool: str
    worker_id: str
    lease_seconds: float


class StartArgs(msgspec.Struct, frozen=True):
    lease: Lease
    lease_seconds: float
    container: str = ""
    billing_since: float | None = None
    cold: bool = True


class CompleteArgs(msgspec.Struct, frozen=True):
    lease: Lease
    result: Result


class FailArgs(msgspec.Struct, frozen=True):
    lease: Lease
    error: str
    kind: FailureKind
    result: Result | None = None


class StopArgs(msgspec.Struct, frozen=True):
    lease: Lease
    reason: str
    result: Result | None = None


# op -> (its arguments, what its step returns); each op's step is the broker's `_OP_in(txn, **args)`.
OPS: dict[str, tuple[type, Any]] = {
    "claim": (ClaimArgs, Lease | None),
    "start": (StartArgs, bool),
    "complete": (CompleteArgs, CompleteOutcome),
    "fail": (FailArgs, JobState),
    "stop": (StopArgs, JobState),
    "release": (StopArgs, JobState),  # the same arguments: the lease, why, and what the attempt spent
}
ENDS = frozenset({"complete", "fail", "stop", "release"})  # steps by which a runner ends its own attempt


def request_key(rid: str) -> str:
    return f"req/{rid}"


def make_request(rid: str, op: str, args: dict[str, Any], ts: float, writer: str) -> Request:
    kind, _ = OPS[op]
    return Request(rid=rid, op=op, args=msgspec.Raw(msgspec.msgpack.encode(kind(**args))), ts=ts, writer=writer)


def _arguments(request: Request) -> dict[str, Any]:
    kind, _ = OPS[request.op]
    args: Any = msgspec.msgpack.decode(request.args, type=kind)
    return {name: getattr(args, name) for name in args.__struct_fields__}


def outcome_value(op: str, outcome: Outcome) -> Any:
    """The step's return value, or its error raised again at its writer."""
    if outcome.error:
        raise KeyError(outcome.error) if outcome.missing else BrokerError(outcome.error)
    return msgspec.msgpack.decode(outcome.value, type=OPS[op][1])


def note_end(tx: StateTxn, op: str, args: dict[str, Any]) -> None:
    if op in ENDS:
        lease = args["lease"]
        tx.own_ends.add((lease.job_id, lease.attempt))


class GroupCommit:
    """The writer's side of group commit, for one ModalBroker (see the module docstring)."""

    def __init__(self, broker: ModalBroker, requests: DictLike) -> None:
        self.broker, self.requests = broker, requests
        self.grouped = 0  # requests this process left for a group commit (they lost a slot first)
        self.carried = 0  # requests carried out by this process's entries (others', and its own in group rounds)
        self._seen: list[Request] = []  # pending requests listed with this process's last put

    def request(self, op: str, args: dict[str, Any]) -> Any:
        broker = self.broker
        rid = uuid.uuid4().hex
        with broker._mutex:
            state = broker._sync(optimistic=True)  # the put tells whether the slot is free: no read first
            synced = False
            tries = 0
            while tries < DIRECT_TRIES:
                tx = broker._txn(state)
                value = getattr(broker, f"_{op}_in")(tx, **args)
                if tx.empty:
                    if not synced:  # an answer without a commit must come from the newest state
                        state, synced = broker._sync(), True
                        continue
                    return value  # nothing to write (no job to claim): no commit
                tries += 1
                note_end(tx, op, args)
                self._carry(tx, state, self._seen)
                committed = self._append(state, tx.entry(rid, broker.writer))
                if committed:
                    broker.commits += 1
                    broker._after_commit(tx)
                    return value
                broker.conflicts += 1  # the lost put read the slots after it: the next try is at the head it saw
            self.grouped += 1
            request = make_request(rid, op, args, broker.clock(), broker.writer)
            self._put(request)
            try:
                outcome = self._until_done(request)
            finally:
                self._forget(rid)
        return outcome_value(op, outcome)

    def _carry(self, tx: StateTxn, state: State, requests: list[Request], own: Request | None = None) -> None:
        """Carry out, in this entry, the pending requests that the state has no outcome for yet."""
        for request in requests[:MAX_PER_ENTRY]:
            if request.rid not in state.done and request.rid not in tx.outcomes and request is not own:
                tx.outcomes[request.rid] = self._carry_out(tx, request)

    def _append(self, state: State, entry: Entry) -> bool:
        """Commit the entry, listing the pending requests in the same round trip (for the next entry)."""
        committed = self.broker.log.append(state, entry, self.requests)
        if self.broker.log.listed is not None:
            self._seen = self._decoded(self.broker.log.listed, state, self.broker.clock())
        if committed:
            self.carried += len(entry.outcomes)
        return committed

    def _put(self, request: Request) -> None:
        key, data = request_key(request.rid), encode(request)
        for tries in range(1, 1_000_000):
            try:
                self.requests.put(key, data)  # idempotent: the key is this request's alone
                return
            except Exception as error:  # noqa: BLE001 - retried; its own writer also carries it out
                if tries >= 3:
                    log.info("request %s not stored (%s); carrying it out ourselves", request.rid, error)
                    return
                self.broker.pause(0.5 * tries)

    def _forget(self, rid: str) -> None:
        try:
            self.requests.pop(request_key(rid), None)
        except Exception as error:  # noqa: BLE001 - a committer deletes it later (an orphan)
            log.info("request %s not deleted: %s", rid, error)

    def _until_done(self, own: Request) -> Outcome:
        broker = self.broker
        lost = False
        for rounds in range(MAX_ROUNDS):
            state = broker._sync(optimistic=lost)  # after a lost put, the state is at the head it read
            if own.rid in state.done:
                return state.done[own.rid][1]
            if broker.clock() - own.ts > DONE_KEEP_SECONDS / 2:  # its outcome could be pruned: never run it twice
                raise BrokerError(f"{broker.url}: request {own.rid} ({own.op}) has waited too long; whether it "
                                  "was carried out is unknown: look before doing it again")
            if rounds % COMMIT_EVERY:  # in between, only read: whoever wins the next slot carries it out
                lost = False
                continue
            tx = broker._txn(state)
            if rounds == 0 and not self._seen:
                self._seen = self._listed(state, tx.now)
            tx.outcomes[own.rid] = self._carry_out(tx, own)
            if tx.empty_but_outcomes and not [r for r in self._seen if r.rid not in state.done and r.rid != own.rid]:
                return tx.outcomes[own.rid]  # our step alone, and it writes nothing (no job to claim): no commit
            self._carry(tx, state, self._seen, own)
            lost = not self._append(state, tx.entry(uuid.uuid4().hex, broker.writer))
            if lost:
                broker.conflicts += 1
            else:
                broker.commits += 1
                broker._after_commit(tx)
        raise BrokerError(f"{broker.url}: request {own.rid} has no outcome after {MAX_ROUNDS} commits")

    def _listed(self, state: State, now: float) -> list[Request]:
        """Every request waiting for a commit, oldest first (one call)."""
        try:
            listed = list(self.requests.items())
        except Exception as error:  # noqa: BLE001 - carry out our own alone this time
            log.info("could not list pending requests: %s", error)
            return []
        return self._decoded(listed, state, now)

    def _decoded(self, listed: list, state: State, now: float) -> list[Request]:
        """The listed requests still waiting, oldest first; deletes orphans."""
        found: dict[str, Request] = {}
        for _, data in listed:
            request = decode(bytes(data), Request)
            if request is None or request.rid in found or request.op not in OPS:
                continue
            done = state.done.get(request.rid)
            if done is not None or request.ts < now - DONE_KEEP_SECONDS:
                if done is None or done[0] < now - ORPHAN_SECONDS:
                    self._forget(request.rid)  # its writer is gone: it was carried out, or is too old to
                continue
            found[request.rid] = request
        return sorted(found.values(), key=lambda r: (r.ts, r.rid))

    def _carry_out(self, tx: StateTxn, request: Request) -> Outcome:
        """Run one request's step in tx; an error undoes its writes and becomes its outcome."""
        args = _arguments(request)
        mark = tx.mark()
        try:
            value = functools.partial(getattr(self.broker, f"_{request.op}_in"), tx)(**args)
        except KeyError as error:
            tx.rollback(mark)
            return Outcome(error=str(error.args[0] if error.args else error), missing=True)
        except Exception as error:  # noqa: BLE001 - one request's error must not sink the others in the entry
            tx.rollback(mark)
            return Outcome(error=str(error) or type(error).__name__)
        note_end(tx, request.op, args)
        return Outcome(value=msgspec.Raw(msgspec.msgpack.encode(value)))
