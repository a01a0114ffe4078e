"""The Modal backend's storage layer: msgspec values in modal.Dicts, one writer at a time.

A modal.Dict has no transactions and one conditional write, put(skip_if_exists=True).
Every mutation therefore runs under a writer lock made of that primitive, and writes
its whole outcome in one Dict.update (one request), the way a SQLite transaction
commits:

- The lock is a chain of epochs `lock/1`, `lock/2`, ... in the leases Dict. A writer
  takes epoch n+1 by put-if-absent when epoch n is released or past its deadline;
  exactly one writer wins each epoch, so the epoch number is a fencing token. Only
  the holder of epoch n ever overwrites `lock/n` (to renew or release it), and a
  new epoch is only ever created, never rewritten, so no write can resurrect a lock.
- Before it commits, a writer checks that `lock/n+1` does not exist and its own
  deadline has not passed. Critical sections are a few round trips, far inside the
  30-second lease; a holder that is paused longer than that between its check and
  its single update is the one case this cannot fence (documented in docs/modal.md).
- Old epochs are never deleted (a deleted epoch could be re-created by a writer
  with a stale view); nothing reads them again, so Modal's 7-day idle expiry drops them.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from golfq.core.broker import BrokerError

T = TypeVar("T")
MAX_VALUE_BYTES = 4 * 1024 * 1024  # Modal recommends objects under 5 MiB; we stay under it on purpose
MAX_UPDATE_ENTRIES = 10_000  # Modal's limit per Dict.update
LOCK_SECONDS = 30.0
LOCK_WAIT_SECONDS = 120.0

_encoder = msgspec.msgpack.Encoder()


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def decode(data: bytes | None, kind: type[T]) -> T | None:
    return None if data is None else msgspec.msgpack.decode(data, type=kind)


class DictLike(Protocol):
    """The part of modal.Dict the backend uses (tests pass tests.modal_fakes.FakeDict)."""

    def get(self, key: Any, default: Any = None) -> Any: ...
    def contains(self, key: Any) -> bool: ...
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...
    def update(self, other: Any = None, /, **kwargs: Any) -> None: ...
    def pop(self, key: Any, default: Any = ...) -> Any: ...
    def items(self) -> Iterable[tuple[Any, Any]]: ...
    def keys(self) -> Iterable[Any]: ...


class LockRecord(msgspec.Struct, frozen=True):
    owner: str
    deadline: float
    released: bool = False


class WriterLock:
    """A mutual-exclusion lease over a Dict, built from put-if-absent epochs."""

    def __init__(self, store: DictLike, *, owner: str = "", clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, seconds: float = LOCK_SECONDS,
                 wait_seconds: float = LOCK_WAIT_SECONDS) -> None:
        self.store = store
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock, self.sleep = clock, sleep
        self.seconds, self.wait_seconds = seconds, wait_seconds

    def acquire(self) -> tuple[int, float]:
        """Take the lock; return (epoch, deadline). BrokerError if it stays held past wait_seconds."""
        epoch = decode(self.store.get("lock/head"), int) or 0
        give_up = time.monotonic() + self.wait_seconds
        delay = 0.002
        while True:
            current = decode(self.store.get(f"lock/{epoch}"), LockRecord) if epoch else None
            now = self.clock()
            if current is None or current.released or current.deadline <= now:
                deadline = now + self.seconds
                if self.store.put(f"lock/{epoch + 1}", encode(LockRecord(self.owner, deadline)), skip_if_exists=True):
                    return epoch + 1, deadline
                epoch += 1  # someone took it first: look at their epoch
                continue
            if time.monotonic() > give_up:
                raise BrokerError(f"the queue's writer lock has been held by {current.owner} for over "
                                  f"{self.wait_seconds:.0f} s")
            self.sleep(delay)
            delay = min(delay * 2, 0.1)

    def held(self, epoch: int, deadline: float) -> bool:
        """Still ours: nobody took the next epoch, and our lease has a margin left."""
        return self.clock() < deadline - 1.0 and not self.store.contains(f"lock/{epoch + 1}")

    def release(self, epoch: int) -> None:
        self.store.update({f"lock/{epoch}": encode(LockRecord(self.owner, 0.0, True)), "lock/head": encode(epoch)})


class DictTxn:
    """Reads through a cache, buffers writes; commit() sends them in one Dict.update."""

    def __init__(self, store: DictLike, now: float) -> None:
        self.store, self.now = store, now
        self._cache: dict[str, Any] = {}
        self._writes: dict[str, Any] = {}
        self._deletes: set[str] = set()

    def get(self, key: str, kind: type[T]) -> T | None:
        if key not in self._cache:
            self._cache[key] = decode(self.store.get(key), kind)
        return self._cache[key]

    def seed(self, key: str, value: Any) -> None:
        """Prime the cache with a value read in bulk (items()) inside this transaction."""
        self._cache.setdefault(key, value)

    def seed_over(self, key: str, value: Any) -> None:
        """Cache a fresh value for a key that read as missing, so later reads share it."""
        self._cache[key] = value

    def put(self, key: str, value: Any) -> None:
        self._cache[key] = value
        self._writes[key] = value
        self._deletes.discard(key)

    def delete(self, key: str) -> None:
        self._cache[key] = None
        self._writes.pop(key, None)
        self._deletes.add(key)

    @property
    def dirty(self) -> bool:
        return bool(self._writes or self._deletes)

    def encoded(self) -> dict[str, bytes]:
        out = {}
        for key, value in self._writes.items():
            data = encode(value)
            if len(data) > MAX_VALUE_BYTES:
                raise BrokerError(f"{key}: {len(data):,} bytes is over the {MAX_VALUE_BYTES:,}-byte value limit")
            out[key] = data
        return out

    def commit(self) -> None:
        items = list(self.encoded().items())
        for start in range(0, len(items), MAX_UPDATE_ENTRIES):
            self.store.update(dict(items[start:start + MAX_UPDATE_ENTRIES]))
        for key in self._deletes:
            self.store.pop(key, None)


def scan(store: DictLike, prefix: str, kind: type[T]) -> Iterator[tuple[str, T]]:
    """Every entry under a key prefix, decoded (one streaming request)."""
    for key, value in store.items():
        if isinstance(key, str) and key.startswith(prefix):
            yield key, msgspec.msgpack.decode(value, type=kind)


class BlobStore(Protocol):
    """Where scripts (and, by the runner, logs) live: the artifacts Volume."""

    def put(self, path: str, data: bytes) -> None: ...
    def get(self, path: str) -> bytes: ...


class VolumeBlobStore:
    """A modal.Volume: read from the mount inside a container, through the API outside one."""

    def __init__(self, volume: Any, mount: str | None = None) -> None:
        self.volume, self.mount = volume, mount

    def put(self, path: str, data: bytes) -> None:
        with self.volume.batch_upload(force=True) as batch:
            batch.put_file(io.BytesIO(data), "/" + path.lstrip("/"))

    def get(self, path: str) -> bytes:
        if self.mount and Path(self.mount).is_dir():
            local = Path(self.mount) / path
            if not local.is_file():
                self.volume.reload()  # uploaded after this container started
            if local.is_file():
                return local.read_bytes()
            raise KeyError(f"{path}: not on the volume")
        try:
            return b"".join(self.volume.read_file(path))
        except FileNotFoundError:
            raise KeyError(f"{path}: not on the volume") from None
