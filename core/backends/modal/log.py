"""The commit log of a Modal queue: append by put-if-absent, fold, snapshot, restore.

- **Commit.** A writer folds the log up to position N, runs its step, and creates
  `log/GEN/N+1` with put(skip_if_exists=True). Exactly one writer wins each slot, and
  a slot is only won by a step that read the state just before it, so no lock is held
  and no late write can land on a state it did not read (Delta Lake commits its log
  the same way). A put whose response was lost reads as "taken"; the writer reads the
  slot back and finds its own rid.
- **Fold.** Every process applies the same entries in the same order (State.apply).
  Each entry names its predecessor's rid, so a gap is never folded over silently.
- **Snapshots.** `snap/GEN/POS/I` chunks (<= 4 MiB each) hold the state after POS;
  `snap/ptr` names the newest. The Volume keeps copies (`snapshots/`), so a queue
  whose Dict entries all expired (7 idle days) is restored from it: the restorer
  starts generation GEN+1 by put-if-absent on `gen/GEN+1`, so concurrent restorers
  agree and no entry of an abandoned generation is ever folded into the new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from golfq.core.backends.modal.records import (
    EVENTS_PER_PAGE,
    OBSERVATIONS_PER_PAGE,
    Entry,
    Pointer,
    Snapshot,
    log_key,
    page_key,
    snap_key,
)
from golfq.core.backends.modal.state import State
from golfq.core.backends.modal.store import (
    MAX_VALUE_BYTES,
    BlobStore,
    DictLike,
    check_size,
    decode,
    encode,
    put_listing,
    read_many,
    update_in_batches,
)
from golfq.core.broker import BrokerError

log = logging.getLogger("golfq.modal")

PTR = "snap/ptr"
APPEND_TRIES = 40  # each a put and a read-back, each retried by the client: minutes of outage before giving up
READ_TRIES = 8
# Log slots read at once (one round trip): catching up starts with the next one alone (usually nothing is
# new) and then reads ahead; a lost put reads its slot and the ones after it (someone won: more may follow).
READ_AHEAD_FIRST, READ_AHEAD_MAX, READ_BACK = 1, 16, 4
FOLD_BEFORE_LOOKING = 64  # entries folded one by one before a newer snapshot is looked for
VOLUME_LATEST = "snapshots/LATEST"  # written for people; readers list snapshots/ (this file can move backwards)
MAX_GENERATIONS_TRIED = 8


def _volume_snapshot(gen: int, pos: int) -> str:
    return f"snapshots/{gen:06d}-{pos:012d}.bin"


class Log:
    def __init__(self, store: DictLike, blobs: BlobStore, writer: str, clock: Callable[[], float],
                 pause: Callable[[float], None] | None = None) -> None:
        self.store, self.blobs, self.writer, self.clock = store, blobs, writer, clock
        self.pause = pause or (lambda seconds: None)
        self.listed: list | None = None  # what the last append's listing found

    # -- reading -------------------------------------------------------------------------------

    def load(self) -> State:
        """The newest state: from the snapshot `snap/ptr` names (or the Volume's), then the entries after it."""
        gen = 0
        for _ in range(3):
            ptr = decode(self.store.get(PTR), Pointer)
            if ptr is None:
                return self.restore()
            gen = ptr.gen
            state = self.read_snapshot(ptr)
            if state is not None:
                return self.advance(state)
        # The snapshot the pointer names is gone. The Volume's copy may be behind, and entries after it may
        # have expired: folding on in the same generation could recreate an expired slot, so this starts a
        # new generation, like a restore.
        log.warning("snapshot of generation %d is gone from the Dict; restoring as a new generation", gen)
        return self.restore()

    def _volume_snapshots(self) -> list[tuple[int, int]]:
        """(gen, pos) of every snapshot on the Volume, oldest first: listed, never taken from one file that
        any process rewrites (last writer wins, so LATEST could name an older one)."""
        found = []
        for name in self.blobs.list("snapshots"):
            stem = name.rsplit("/", 1)[-1].removesuffix(".bin")
            gen, _, pos = stem.partition("-")
            if name.endswith(".bin") and gen.isdigit() and pos.isdigit():
                found.append((int(gen), int(pos)))
        return sorted(found)

    def _volume_state(self) -> State | None:
        for gen, pos in reversed(self._volume_snapshots()):
            try:
                snap = decode(self.blobs.get(_volume_snapshot(gen, pos)), Snapshot)
            except KeyError:
                continue  # deleted since the listing
            if snap is not None:
                return State(snap)
        return None

    def pointer(self) -> Pointer | None:
        return decode(self.read(PTR), Pointer)

    def read(self, key: str) -> bytes | None:
        return self.read_many([key])[0]

    def read_many(self, keys: list[str]) -> list[bytes | None]:
        """Dict reads in flight together (store.read_many), tried again while Modal answers with errors (a read
        changes nothing): a writer waiting for its outcome must not give up on a blip."""
        for tries in range(READ_TRIES):
            try:
                return read_many(self.store, keys)
            except Exception:  # noqa: BLE001 - the client's own retries ran out; tried again below
                if tries == READ_TRIES - 1:
                    raise
                self.pause(min(0.5 * 2 ** tries, 5.0))
        return [None] * len(keys)

    def read_snapshot(self, ptr: Pointer) -> State | None:
        parts = self.read_many([f"{snap_key(ptr.gen, ptr.pos)}/{index}" for index in range(ptr.chunks)])
        if any(part is None for part in parts):
            return None  # replaced and collected meanwhile
        snap = decode(b"".join(bytes(part) for part in parts if part is not None), Snapshot)
        return None if snap is None else State(snap)

    def catch_up(self, state: State) -> None:
        """Fold every entry after state.pos."""
        while (data := self.store.get(log_key(state.gen, state.pos + 1))) is not None:
            self._fold(state, decode(data, Entry))

    def advance(self, state: State) -> State:
        """The newest state from this one: folds entries one by one, and past FOLD_BEFORE_LOOKING of them
        loads a newer snapshot if there is one (committers publish one every few dozen entries)."""
        folded, ahead = 0, READ_AHEAD_FIRST
        while True:
            found = self.read_many([log_key(state.gen, state.pos + i) for i in range(1, ahead + 1)])
            for data in found:
                if data is None:
                    return state  # the first empty slot is the end of the log
                self._fold(state, decode(data, Entry))
                folded += 1
                if folded % FOLD_BEFORE_LOOKING == 0:
                    ptr = self.pointer()
                    if ptr is not None and ptr.gen == state.gen and ptr.pos > state.pos:
                        newer = self.read_snapshot(ptr)
                        if newer is not None:
                            state = newer
                            break  # the rest of this batch is behind the snapshot
            ahead = READ_AHEAD_MAX

    def _fold(self, state: State, entry: Entry | None) -> None:
        if entry is None or entry.prev != state.rid:
            raise BrokerError(f"{log_key(state.gen, state.pos + 1)} does not follow entry {state.pos} "
                              "(a writer with a stale view?); re-open the queue")
        state.apply(entry)

    # -- committing ----------------------------------------------------------------------------

    def append(self, state: State, entry: Entry, listing: DictLike | None = None) -> bool:
        """Commit entry as slot state.pos+1: True if it is there now (state advanced by it), False if
        another writer's entry is (state advanced by theirs: run the step again). With `listing`, its items
        are read in the same round trip as the first put, into `self.listed` (None when they were not)."""
        key = log_key(state.gen, state.pos + 1)
        data = check_size(key, encode(entry))
        problem: Exception | None = None
        self.listed = None
        for tries in range(APPEND_TRIES):
            try:
                if listing is not None and tries == 0:
                    written, self.listed = put_listing(self.store, key, data, listing)
                else:
                    written = self.store.put(key, data, skip_if_exists=True)
                if written:
                    state.apply(entry)
                    return True
            except Exception as error:  # noqa: BLE001 - the client's retries ran out: the outcome is unknown
                problem = error
            try:  # the slot, and the slots after it in the same round trip: a loser learns the whole head
                found, *after = read_many(self.store, [log_key(state.gen, state.pos + i)
                                                       for i in range(1, READ_BACK + 1)])
            except Exception as error:  # noqa: BLE001 - read back again on the next try
                problem = error
                self.pause(min(0.5 * 2 ** min(tries, 4), 5.0))
                continue
            if found is None:  # not applied, or not yet: the put is retried, never moved to another slot
                if problem is not None:
                    self.pause(min(0.5 * 2 ** min(tries, 4), 5.0))  # Modal is having a bad minute
                continue
            theirs = decode(found, Entry)
            ours = theirs is not None and theirs.rid == entry.rid
            self._fold(state, entry if ours else theirs)  # ours: only the response was lost
            for data in after:
                if data is None:
                    break
                self._fold(state, decode(data, Entry))
            return ours
        raise BrokerError(f"could not learn whether {key} was committed after {APPEND_TRIES} tries ({problem}); "
                          "re-open the queue and look before doing it again")

    # -- snapshots -----------------------------------------------------------------------------

    def write_snapshot(self, state: State, prev: Pointer | None = None, data: bytes | None = None) -> Pointer:
        """Store the state in the Dict (chunks + manifest) and return its pointer (not yet published)."""
        data = encode(state.snapshot()) if data is None else data
        chunks = [data[i:i + MAX_VALUE_BYTES] for i in range(0, len(data), MAX_VALUE_BYTES)] or [b""]
        ptr = Pointer(state.gen, state.pos, len(chunks), self.clock(),
                      None if prev is None else (prev.gen, prev.pos, prev.chunks))
        base = snap_key(state.gen, state.pos)
        update_in_batches(self.store, [*((f"{base}/{i}", c) for i, c in enumerate(chunks)), (base, encode(ptr))])
        return ptr

    def checkpoint(self, state: State) -> Pointer:
        """Snapshot the state in the Dict and publish it, dropping the one two back; copy it to the Volume."""
        data = encode(state.snapshot())
        ptr = self.publish(state, data)
        self.journal(state, data)
        return ptr

    def publish(self, state: State, data: bytes | None = None) -> Pointer:
        """Snapshot the state in the Dict and point `snap/ptr` at it unless a newer one is there."""
        data = encode(state.snapshot()) if data is None else data
        old = self.pointer()
        ptr = self.write_snapshot(state, old, data)
        if old is None or (old.gen, old.pos) < (ptr.gen, ptr.pos):
            self.store.put(PTR, encode(ptr))
            if old is not None and old.prev is not None:  # two stay, for readers holding an older pointer
                gen, pos, chunks = old.prev
                for index in range(chunks):
                    self.store.pop(f"{snap_key(gen, pos)}/{index}", None)
                self.store.pop(snap_key(gen, pos), None)
        return ptr

    def journal(self, state: State, data: bytes | None = None) -> None:
        """Copy the state to the Volume, where Modal's idle expiry cannot reach it; keep two copies."""
        self.blobs.put(_volume_snapshot(state.gen, state.pos), encode(state.snapshot()) if data is None else data)
        snapshots = self._volume_snapshots()
        self.blobs.put(VOLUME_LATEST, " ".join(f"{g} {p}" for g, p in reversed(snapshots[-2:])).encode())
        for gen, pos in snapshots[:-2]:  # never one newer than ours: a listing holds at least ours
            if (gen, pos) < (state.gen, state.pos):
                self.blobs.delete(_volume_snapshot(gen, pos))

    def restore(self) -> State:
        """Start a new generation from the Volume's newest snapshot (an empty state for a new queue)."""
        state = self._volume_state() or State(Snapshot(gen=0))
        from_volume = state.gen > 0
        if from_volume:
            self._salvage(state)
        first = state.gen + 1
        for gen in range(first, first + MAX_GENERATIONS_TRIED):
            state.gen = gen
            ptr = self.write_snapshot(state)
            if self.store.put(f"gen/{gen}", encode(ptr), skip_if_exists=True):
                self.store.put(PTR, encode(ptr))
                if from_volume:  # the Volume learns the new generation at once, so a later restore goes past it
                    self.journal(state)
                    log.warning("restored %s from the Volume: generation %d at entry %d", PTR, gen, state.pos)
                return state
            theirs = decode(self.store.get(f"gen/{gen}"), Pointer)
            restored = self.read_snapshot(theirs) if theirs is not None else None
            if restored is not None:  # another process restored first: use theirs
                self.catch_up(restored)
                return restored
        raise BrokerError(f"could not restore the queue: generations {first}..{gen} are all taken")

    def _salvage(self, state: State) -> None:
        """Fold what the Dict still holds of the Volume snapshot's own generation, up to the first gap."""
        while (data := self.store.get(log_key(state.gen, state.pos + 1))) is not None:
            entry = decode(data, Entry)
            if entry is None or entry.prev != state.rid:
                return
            state.apply(entry)

    # -- pages ---------------------------------------------------------------------------------

    def write_pages(self, state: State) -> tuple[int, int] | None:
        """Store every full page of events and observations still in the state's tail, in the Dict and on
        the Volume; return how far the tail may be dropped (None: nothing new to page)."""
        ev_upto = state.seq // EVENTS_PER_PAGE * EVENTS_PER_PAGE
        ob_upto = state.observed // OBSERVATIONS_PER_PAGE * OBSERVATIONS_PER_PAGE
        if ev_upto <= state.events_paged and ob_upto <= state.obs_paged:
            return None
        writes: list[tuple[str, bytes]] = []
        for first in range(state.events_paged, ev_upto, EVENTS_PER_PAGE):
            events = [e for e in state.events if first < e.seq <= first + EVENTS_PER_PAGE]
            writes.append((page_key("events", state.gen, first // EVENTS_PER_PAGE), encode(events)))
        for first in range(state.obs_paged, ob_upto, OBSERVATIONS_PER_PAGE):
            offset = first - state.obs_paged
            observations = state.observations[offset:offset + OBSERVATIONS_PER_PAGE]
            writes.append((page_key("obs", state.gen, first // OBSERVATIONS_PER_PAGE), encode(observations)))
        self.blobs.put_many({f"pages/{key}.bin": data for key, data in writes})
        update_in_batches(self.store, writes)
        return max(ev_upto, state.events_paged), max(ob_upto, state.obs_paged)

    def read_page(self, kind: str, gen: int, page: int, decoder: Callable[[bytes], list]) -> list:
        key = page_key(kind, gen, page)
        data = self.store.get(key)
        if data is None:  # expired from the Dict: the Volume has it
            try:
                data = self.blobs.get(f"pages/{key}.bin")
            except KeyError:
                raise BrokerError(f"{key}: page lost from both the Dict and the Volume") from None
            self.store.put(key, data)
        return decoder(bytes(data))
