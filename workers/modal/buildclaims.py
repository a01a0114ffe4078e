"""Build once across Modal containers: a claim in a Dict, the output published on a Volume.

A file lock on a Volume does not reach other containers (each sees the Volume as it was at
its last reload, and commits are last-writer-wins), so the containers that need the same new
folder decide who builds in a Dict, through its one conditional write, put(skip_if_exists):

- the claim of a target is the key `made/NAME/GEN`, GEN counting from 0; its value is a lease
  (owner, deadline, beat) that the builder renews every third of the lease while it builds;
- the builder fills a folder of its own next to the target (`.NAME.OWNER`), commits the
  Volume, renames the folder to the target (its ready marker inside, written before), commits
  again, and marks the claim done;
- the others reload the Volume every poll until the target's marker is there. A claim whose
  value has not changed for a whole lease, by the waiter's own clock (so clocks may differ
  between containers), belonged to a builder that died: the waiters race for GEN+1 with
  put(skip_if_exists), and the one that wins builds;
- a build that fails writes its error into the claim, and every job that waited on it, or that
  comes across it within FAILURE_HOLD_SECONDS of the failure, fails with that error; a job that
  comes later builds afresh (GEN+1), as the local file lock's next job does (a download that
  failed once may work an hour later).

A put whose response was lost is retried by the client and then answers False, so a False
put is read back: the claim is this builder's when it names this owner.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec

from golfq.workers.buildonce import READY, BuildClaim, BuildError

log = logging.getLogger("golfq.buildclaims")

LEASE_SECONDS = 120.0  # a builder that has not renewed for this long is taken for dead
POLL_SECONDS = 5.0  # how often a waiter reloads the Volume and reads the claim
# Jobs of one sweep start within minutes of each other: they all fail with the one build's error. Far more than
# the clock skew between containers, which this is compared across.
FAILURE_HOLD_SECONDS = 600.0


class Lease(msgspec.Struct, frozen=True):
    """The value of a claim key: who builds, until when, and how it ended."""

    owner: str
    deadline: float  # wall clock, for people reading the Dict: waiters time a silent lease on their own clock
    beat: int = 0
    done: bool = False
    error: str | None = None
    tail: str = ""
    ended: float = 0.0  # wall clock: when it was done or failed


class Volume(Protocol):
    def commit(self) -> None: ...

    def reload(self) -> None: ...


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Lease).decode


class VolumeClaims:
    """A BuildGuard for targets on a mounted Volume, coordinated through a Dict (modal.Dict or a stand-in)."""

    def __init__(self, claims: Any, volume: Volume, owner: str, *, lease_seconds: float = LEASE_SECONDS,
                 poll_seconds: float = POLL_SECONDS, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, wall: Callable[[], float] = time.time) -> None:
        self.claims, self.volume, self.owner = claims, volume, owner
        self.lease_seconds, self.poll_seconds = lease_seconds, poll_seconds
        self.clock, self.sleep, self.wall = clock, sleep, wall

    def _lease(self, beat: int = 0) -> Lease:
        return Lease(owner=self.owner, deadline=self.wall() + self.lease_seconds, beat=beat)

    def _read(self, key: str) -> Lease | None:
        raw = self.claims.get(key)
        return None if raw is None else _decode(raw)

    def _take(self, key: str) -> Lease | None:
        """Claim key if nobody has; the claim's value either way (this owner's when taken)."""
        mine = self._lease()
        if self.claims.put(key, _encode(mine), skip_if_exists=True):
            return mine
        return self._read(key)  # the other's claim, or this one's whose first answer was lost

    def _reload(self) -> None:
        try:
            self.volume.reload()
        except Exception as error:  # noqa: BLE001 - open files, a blip: look again at the next poll
            log.warning("data Volume not reloaded: %s", error)

    @contextmanager
    def claim(self, target: Path) -> Iterator[BuildClaim | None]:
        marker = target / READY
        generation, waited_on = 0, False
        seen: tuple[Lease, float] | None = None  # the claim's value as last read, and when it was first read so
        unreachable: float | None = None  # since when the Dict has not answered
        self._reload()
        while True:
            if marker.is_file():
                yield None
                return
            key = f"made/{target.name}/{generation}"
            try:
                lease = self._read(key)
                if lease is None:
                    lease, waited_on = self._take(key), True
                unreachable = None
            except Exception:  # a put that went unanswered may have claimed it: read again at the next poll
                unreachable = self.clock() if unreachable is None else unreachable
                if self.clock() - unreachable >= self.lease_seconds:
                    raise
                self.sleep(self.poll_seconds)
                continue
            if lease is not None and lease.owner == self.owner and not lease.done and lease.error is None:
                held = _Held(self, key, target)
                try:
                    yield held
                finally:
                    held.stop()
                return
            if lease is not None and lease.error is not None:
                if waited_on or self.wall() - lease.ended < FAILURE_HOLD_SECONDS:
                    raise BuildError(lease.error, lease.tail)
                generation, seen = generation + 1, None  # an earlier job's failure: build afresh
                continue
            waited_on = True
            now = self.clock()
            if seen is None or seen[0] != lease:
                seen = (lease, now) if lease is not None else None
            elif now - seen[1] >= self.lease_seconds:  # a silent builder, or a done one whose output is gone
                log.warning("claim %s of %s unchanged for %.0f s: building afresh", lease.owner, target.name,
                            now - seen[1])
                generation, seen = generation + 1, None
                continue
            self.sleep(self.poll_seconds)
            self._reload()


class _Held:
    """A claim this container holds: renewed from a thread until the build ends."""

    def __init__(self, guard: VolumeClaims, key: str, target: Path) -> None:
        self.guard, self.key, self.target = guard, key, target
        self.staging = target.parent / f".{target.name}.{_safe(guard.owner)}"
        self._ended = False
        self._lock = threading.Lock()
        threading.Thread(target=self._renew, name=f"renew:{key}", daemon=True).start()

    def _renew(self) -> None:
        beat = 0
        while True:
            self.guard.sleep(self.guard.lease_seconds / 3)
            beat += 1
            with self._lock:
                if self._ended:
                    return
                try:
                    self.guard.claims.put(self.key, _encode(self.guard._lease(beat)))
                except Exception as error:  # noqa: BLE001 - a missed renewal: the lease outlives two of them
                    log.warning("claim %s not renewed: %s", self.key, error)

    def _end(self, lease: Lease | None) -> None:
        with self._lock:  # no renewal after this one: it would overwrite how the build ended
            self._ended = True
            if lease is not None:
                self._again(lambda: self.guard.claims.put(self.key, _encode(lease)), f"claim {self.key}")

    def stop(self) -> None:
        """The build ended without an outcome (this container is going down): the lease runs out."""
        with self._lock:
            self._ended = True

    def _again(self, step: Callable[[], object], what: str, tries: int = 3) -> None:
        for attempt in range(tries):
            try:
                step()
                return
            except Exception as error:  # commits and plain puts repeat safely: an hour's build is worth a retry
                if attempt == tries - 1:
                    raise
                log.warning("%s failed: %s", what, error)
                self.guard.sleep(self.guard.poll_seconds)

    def _commit(self) -> None:
        self._again(self.guard.volume.commit, "data Volume commit")

    def done(self, text: str) -> None:
        (self.staging / READY).write_text(text)
        self._commit()  # the output, under this builder's own name
        if self.target.exists():
            shutil.rmtree(self.target)  # a builder before this one died half-way through its rename
        os.rename(self.staging, self.target)
        self._commit()
        self._end(msgspec.structs.replace(self.guard._lease(), done=True, ended=self.guard.wall()))

    def failed(self, error: BuildError) -> None:
        self._end(msgspec.structs.replace(self.guard._lease(), error=str(error), tail=error.tail,
                                          ended=self.guard.wall()))


def _safe(owner: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in owner)[:64]
