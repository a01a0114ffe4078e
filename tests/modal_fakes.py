"""In-memory stand-ins for modal.Dict, modal.Queue and a Volume, behaving like the cloud.

Modal has no local emulator, so the Modal backend is tested against these. They copy
the semantics listed in docs/modal-semantics.md, errors included, and every call
goes through a tests.modal_net.Network, so they can also be slow (per-call latency,
bandwidth), lossy (lost requests, lost responses retried by the client as modal's
does) and, with a VirtualClock, run hours of a fleet in virtual time:

- Dict: put(skip_if_exists=True) returns a bool (a retried put whose first response
  was lost returns False: it wrote the key itself); pop without a default raises
  KeyError; an entry expires after 7 days without reads or writes (a read extends
  it, iteration does not); oversized values raise RequestSizeError; len() is capped
  at 100,000; one update carries at most 10,000 entries; keys must be primitive.
- Queue: get is a destructive pop with no ack (a lost response loses the item); a
  retried put duplicates it; a non-blocking get on an empty partition returns None
  (and warns if given a timeout); a blocking get raises queue.Empty when its timeout
  runs out; get_many never blocks past the first item; partitions hold 5,000 items
  and 64 MiB, items 1 MiB, keys 1-64 bytes; a partition is cleared partition_ttl
  seconds after its last put.
- Volume (MemoryBlobStore): paths to bytes, each call a round trip.

Values are measured as the bytes they would take on the wire; golfq only stores
msgspec bytes (and small ints as wake-ups), so the fakes refuse other value types.
"""

from __future__ import annotations

import copy
import queue
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from modal.exception import InvalidError, RequestSizeError

from tests.modal_net import Network

MiB = 1024 * 1024
_NO_DEFAULT = object()
_PRIMITIVE_KEYS = (str, int, float, bytes, bool, type(None))


def _wire_size(value: Any) -> int:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return len(value)
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (int, float, bool)) or value is None:
        return 16
    raise TypeError(f"golfq stores msgspec bytes in Modal objects, not {type(value).__name__}")


def _reply_size(value: Any) -> int:
    if isinstance(value, (list, tuple)):  # several values in one reply (gathered gets, items())
        return sum(_reply_size(v) for v in value)
    return _wire_size(value) if isinstance(value, (bytes, bytearray, str)) else 0


class FakeDict:
    """modal.Dict semantics, in memory; `clock` drives the 7-day idle expiry."""

    IDLE_TTL_SECONDS = 7 * 24 * 3600
    MAX_VALUE_BYTES = 100 * MiB
    MAX_UPDATE_ENTRIES = 10_000
    MAX_LEN = 100_000

    def __init__(self, name: str = "", *, clock: Callable[[], float] = time.time, max_value_bytes: int | None = None,
                 net: Network | None = None) -> None:
        self.name = name
        self.clock = clock
        self.net = net or Network()
        self.max_value_bytes = max_value_bytes or self.MAX_VALUE_BYTES
        self._data: dict[Any, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self.calls = 0  # round trips a real Dict would make (retries not counted): what the benches count

    def _check(self, key: Any, value: Any = _NO_DEFAULT) -> None:
        if not isinstance(key, _PRIMITIVE_KEYS):
            raise TypeError(f"Dict keys are cloudpickled; use a primitive key, not {type(key).__name__}")
        if value is not _NO_DEFAULT and _wire_size(value) > self.max_value_bytes:
            raise RequestSizeError("Dict.put request is too large")

    def _live(self, key: Any) -> tuple[Any, float] | None:
        entry = self._data.get(key)
        if entry is not None and self.clock() - entry[1] >= self.IDLE_TTL_SECONDS:
            del self._data[key]
            return None
        return entry

    def _touch(self, key: Any) -> Any:
        entry = self._live(key)
        if entry is None:
            return _NO_DEFAULT
        self._data[key] = (entry[0], self.clock())
        return entry[0]

    def _call(self, op: Callable[[], Any], size: int = 0) -> Any:
        self.calls += 1
        return self.net.call(op, size, _reply_size)

    # -- the modal.Dict API ----------------------------------------------------------------

    def get(self, key: Any, default: Any = None) -> Any:
        def op() -> Any:
            with self._lock:
                self._check(key)
                value = self._touch(key)
                return default if value is _NO_DEFAULT else copy.copy(value)
        return self._call(op)

    def put_listing(self, key: Any, value: Any, listed: FakeDict, *, skip_if_exists: bool = False) -> tuple:
        """A put and another Dict's items() in flight together (modal's `.aio` calls gathered): one round
        trip, two calls; a lost response retries both (the put then answers False, as a retried put does)."""
        self._check(key, value)

        def op() -> tuple[bool, list[tuple[Any, Any]]]:
            with self._lock:
                written = not (skip_if_exists and self._live(key) is not None)
                if written:
                    self._data[key] = (copy.copy(value), self.clock())
            with listed._lock:
                items = [(k, e[0]) for k in list(listed._data) if (e := listed._live(k)) is not None]
            return written, items
        listed.calls += 1
        return self._call(op, _wire_size(value))

    def get_concurrently(self, keys: list[Any]) -> list[Any]:
        """Several gets in flight at once (modal's `.aio` gets, gathered): one round trip for all of them,
        each still a call; a lost response retries them all (reads change nothing but expiry)."""
        def op() -> list[Any]:
            with self._lock:
                out = []
                for key in keys:
                    self._check(key)
                    value = self._touch(key)
                    out.append(None if value is _NO_DEFAULT else copy.copy(value))
                return out
        self.calls += len(keys) - 1
        return self._call(op)

    def contains(self, key: Any) -> bool:
        def op() -> bool:
            with self._lock:
                self._check(key)
                return self._touch(key) is not _NO_DEFAULT
        return self._call(op)

    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool:
        self._check(key, value)

        def op() -> bool:
            with self._lock:
                if skip_if_exists and self._live(key) is not None:
                    return False
                self._data[key] = (copy.copy(value), self.clock())
                return True
        return self._call(op, _wire_size(value))

    def update(self, other: Any = None, /, **kwargs: Any) -> None:
        contents = dict(other or {})
        contents.update(kwargs)
        if len(contents) > self.MAX_UPDATE_ENTRIES:
            raise InvalidError(f"Dict.update carries at most {self.MAX_UPDATE_ENTRIES} entries")
        total = 0
        for key, value in contents.items():
            self._check(key)
            total += _wire_size(value)
        if total > self.max_value_bytes:
            raise RequestSizeError("Dict.update request is too large")

        def op() -> None:
            with self._lock:
                now = self.clock()
                for key, value in contents.items():
                    self._data[key] = (copy.copy(value), now)
        self._call(op, total)

    def pop(self, key: Any, default: Any = _NO_DEFAULT) -> Any:
        def op() -> Any:
            with self._lock:
                self._check(key)
                entry = self._live(key)
                if entry is None:
                    if default is _NO_DEFAULT:
                        raise KeyError(f"{key} not in dict {self.name}")
                    return default
                del self._data[key]
                return entry[0]
        return self._call(op)

    def len(self) -> int:
        def op() -> int:
            with self._lock:
                return min(sum(1 for k in list(self._data) if self._live(k) is not None), self.MAX_LEN)
        return self._call(op)

    def clear(self) -> None:
        def op() -> None:
            with self._lock:
                self._data.clear()
        self._call(op)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """One call when asked (a list iterator, so it also crosses a process boundary)."""
        def op() -> list[tuple[Any, Any]]:
            with self._lock:
                return [(k, e[0]) for k in list(self._data) if (e := self._live(k)) is not None]
        return iter(self._call(op))

    def keys(self) -> Iterator[Any]:
        for key, _ in self.items():
            yield key

    def values(self) -> Iterator[Any]:
        for _, value in self.items():
            yield value

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _NO_DEFAULT)
        if value is _NO_DEFAULT:
            raise KeyError(f"{key} not in dict {self.name}")
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self.pop(key)

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)


class _Partition:
    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.bytes = 0
        self.expires_at = float("inf")


class FakeQueue:
    """modal.Queue semantics, in memory: partitions, limits, TTL, destructive gets."""

    MAX_PARTITIONS = 100_000
    MAX_ITEMS = 5_000
    MAX_ITEM_BYTES = 1 * MiB
    MAX_PARTITION_BYTES = 64 * MiB
    DEFAULT_TTL = 24 * 3600
    FULL_RETRY_SECONDS = 30.0  # a blocking put on a full partition retries this long when given no timeout
    POLL_SECONDS = 0.05  # how often a blocking call looks again when time is virtual

    def __init__(self, name: str = "", *, clock: Callable[[], float] = time.time, net: Network | None = None) -> None:
        self.name = name
        self.clock = clock
        self.net = net or Network()
        self._parts: dict[str, _Partition] = {}
        self._cond = threading.Condition()

    @staticmethod
    def _key(partition: str | None) -> str:
        if partition is None:
            return ""
        size = len(partition.encode("utf-8"))
        if not 1 <= size <= 64:
            raise InvalidError("Queue partition key must be between 1 and 64 bytes.")
        return partition

    def _part(self, key: str, create: bool = False) -> _Partition | None:
        part = self._parts.get(key)
        if part is not None and self.clock() >= part.expires_at:
            del self._parts[key]
            part = None
        if part is None and create:
            if len(self._parts) >= self.MAX_PARTITIONS:
                raise queue.Full(f"queue {self.name} has {self.MAX_PARTITIONS} partitions")
            part = self._parts[key] = _Partition()
        return part

    def _wait(self, give_up: float | None) -> bool:
        """Wait a little for a change (real time: a condition wait); False once give_up has passed."""
        left = None if give_up is None else give_up - time.monotonic()
        if left is not None and left <= 0:
            return False
        if self.net.sleep is None:
            self._cond.wait(0.05 if left is None else min(left, 0.05))
        else:  # real sleeps (the multi-process workspace): poll
            self._cond.release()
            try:
                self.net.sleep(0.05 if left is None else min(left, 0.05))
            finally:
                self._cond.acquire()
        return True

    def _wait_virtual(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        assert self.net.clock is not None
        return self.net.clock.wait_until(ready, timeout)

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    def put(self, v: Any, block: bool = True, timeout: float | None = None, *, partition: str | None = None,
            partition_ttl: int = DEFAULT_TTL) -> None:
        self.put_many([v], block, timeout, partition=partition, partition_ttl=partition_ttl)

    def put_many(self, vs: list, block: bool = True, timeout: float | None = None, *, partition: str | None = None,
                 partition_ttl: int = DEFAULT_TTL) -> None:
        key = self._key(partition)
        sizes = [_wire_size(v) for v in vs]
        if any(size > self.MAX_ITEM_BYTES for size in sizes):
            raise RequestSizeError("Queue.put request is too large")
        give_up = self._deadline(self.FULL_RETRY_SECONDS if timeout is None else timeout)

        def op() -> None:
            with self._cond:
                while True:
                    part = self._part(key, create=True)
                    if (len(part.items) + len(vs) <= self.MAX_ITEMS
                            and part.bytes + sum(sizes) <= self.MAX_PARTITION_BYTES):
                        break
                    if not block or not self._wait(give_up):
                        raise queue.Full(f"queue {self.name} partition {key!r} is full")
                part.items.extend(copy.copy(v) for v in vs)
                part.bytes += sum(sizes)
                part.expires_at = self.clock() + partition_ttl
                self._cond.notify_all()
            if self.net.clock is not None:
                self.net.clock.notify()
        self.net.call(op, sum(sizes))

    def get(self, block: bool = True, timeout: float | None = None, *, partition: str | None = None) -> Any:
        values = self._take(1, block, timeout, partition)
        return values[0] if values else None

    def get_many(self, n_values: int, block: bool = True, timeout: float | None = None, *,
                 partition: str | None = None) -> list:
        return self._take(n_values, block, timeout, partition)

    def _take(self, n: int, block: bool, timeout: float | None, partition: str | None) -> list:
        key = self._key(partition)
        if not block and timeout is not None:
            warnings.warn("Timeout is ignored for non-blocking get.", stacklevel=3)
        give_up = self._deadline(timeout)

        def pop() -> list:
            part = self._part(key)
            if part is None or not part.items:
                return []
            taken = [part.items.popleft() for _ in range(min(n, len(part.items)))]
            part.bytes -= sum(_wire_size(v) for v in taken)
            self._cond.notify_all()
            return taken

        def op() -> list:  # one long poll: the latency is paid once, however long it waits
            if self.net.clock is not None and block:
                taken: list = []

                def ready() -> bool:
                    with self._cond:
                        taken[:] = pop()
                    return bool(taken)

                if not self._wait_virtual(ready, timeout):
                    raise queue.Empty()
                return taken
            with self._cond:
                while True:
                    taken = pop()
                    if taken or not block:
                        return taken
                    if not self._wait(give_up):
                        raise queue.Empty()
        return self.net.call(op)

    def len(self, *, partition: str | None = None, total: bool = False) -> int:
        if partition is not None and total:
            raise InvalidError("Partition must be null when requesting total length.")

        def op() -> int:
            with self._cond:
                if total:
                    return sum(len(p.items) for k in list(self._parts) if (p := self._part(k)) is not None)
                part = self._part(self._key(partition))
                return len(part.items) if part else 0
        return self.net.call(op)

    def clear(self, *, partition: str | None = None, all: bool = False) -> None:
        if partition is not None and all:
            raise InvalidError("Partition must be null when requesting to clear all.")

        def op() -> None:
            with self._cond:
                if all:
                    self._parts.clear()
                else:
                    self._parts.pop(self._key(partition), None)
        self.net.call(op)

    def iterate(self, *, partition: str | None = None, item_poll_timeout: float = 0.0) -> Iterator[Any]:
        with self._cond:
            part = self._part(self._key(partition))
            items = list(part.items) if part else []
        yield from items


class MemoryBlobStore:
    """Stands in for the artifacts Volume: paths to bytes, each call a round trip."""

    def __init__(self, net: Network | None = None) -> None:
        self.files: dict[str, bytes] = {}
        self.net = net or Network()
        self._lock = threading.Lock()

    @staticmethod
    def _path(path: str) -> str:
        from golfq.core.backends.modal.store import volume_path

        return volume_path(path)

    def put(self, path: str, data: bytes) -> None:
        def op() -> None:
            with self._lock:
                self.files[self._path(path)] = bytes(data)
        self.net.call(op, len(data))

    def put_many(self, files: dict[str, bytes]) -> None:
        def op() -> None:
            with self._lock:
                for path, data in files.items():
                    self.files[self._path(path)] = bytes(data)
        self.net.call(op, sum(len(d) for d in files.values()))

    def get(self, path: str) -> bytes:
        def op() -> bytes:
            with self._lock:
                try:
                    return self.files[self._path(path)]
                except KeyError:
                    raise KeyError(f"{path}: not on the volume") from None
        return self.net.call(op, 0, len)

    def delete(self, path: str) -> None:
        def op() -> None:
            with self._lock:
                self.files.pop(self._path(path), None)
        self.net.call(op)

    def list(self, folder: str) -> list[str]:
        def op() -> list[str]:
            prefix = self._path(folder) + "/"
            with self._lock:
                return sorted(p for p in self.files if p.startswith(prefix) and "/" not in p[len(prefix):])
        return self.net.call(op)


class FakeModal:
    """One workspace's named Dicts and Queues and its artifacts Volume, handed out by name like
    from_name(create_if_missing=True); every call goes through `net`."""

    def __init__(self, clock: Callable[[], float] = time.time, net: Network | None = None) -> None:
        self.clock = clock
        self.net = net or Network()
        self.dicts: dict[str, FakeDict] = {}
        self.queues: dict[str, FakeQueue] = {}
        self.blobs = MemoryBlobStore(self.net)
        self._lock = threading.Lock()

    def dict(self, name: str, environment: str | None = None) -> FakeDict:
        with self._lock:
            return self.dicts.setdefault(f"{environment or ''}/{name}", FakeDict(name, clock=self.clock, net=self.net))

    def queue(self, name: str, environment: str | None = None) -> FakeQueue:
        with self._lock:
            return self.queues.setdefault(f"{environment or ''}/{name}",
                                          FakeQueue(name, clock=self.clock, net=self.net))

    def calls(self) -> int:
        return sum(d.calls for d in self.dicts.values())

    def broker(self, url: str = "modal://golfq-test", clock: Callable[[], float] = time.time, **kwargs: Any):
        from golfq.core.backends.modal.broker import ModalBroker

        return ModalBroker(url, clock, dict_factory=self.dict, queue_factory=self.queue, blob_store=self.blobs,
                           **kwargs)
