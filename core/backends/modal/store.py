"""What the Modal backend stores its bytes in: modal.Dict (through DictLike) and the artifacts Volume.

Values are msgspec MessagePack, zlib-compressed past a kilobyte, behind a one-byte
header, never cloudpickled objects: producers and containers need not share library
versions, and a 10,000-spec batch stays far below Modal's value limits.
"""

from __future__ import annotations

import asyncio
import io
import re
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl

import msgspec

from golfq.core.broker import BrokerError

T = TypeVar("T")
MAX_VALUE_BYTES = 4 * 1024 * 1024  # Modal recommends objects under 5 MiB; we stay under it on purpose
MAX_UPDATE_ENTRIES = 10_000  # Modal's limit per Dict.update
MAX_UPDATE_BYTES = 16 * 1024 * 1024  # one update request carries at most this much (several chunks)
_COMPRESS_OVER = 1024
_APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
_RAW, _ZLIB = b"m", b"z"

_encoder = msgspec.msgpack.Encoder()


def parse_url(url: str) -> tuple[str, str | None]:
    """modal://APP[?env=ENV] -> (app, environment)."""
    if not url.startswith("modal://"):
        raise BrokerError(f"queue URL {url!r}: not a modal:// URL")
    app, _, query = url.removeprefix("modal://").partition("?")
    app = app.rstrip("/")
    if not _APP_NAME.match(app):
        raise BrokerError(f"queue URL {url!r}: app name must be 1-48 of [A-Za-z0-9._-] (modal://APP[?env=ENV])")
    env = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "env" or not value:
            raise BrokerError(f"queue URL {url!r}: bad option {key}={value!r} (only env=ENVIRONMENT)")
        env = value
    return app, env


def modal_dict(name: str, env: str | None) -> Any:
    import modal

    return modal.Dict.from_name(name, environment_name=env, create_if_missing=True)


def modal_queue(name: str, env: str | None) -> Any:
    import modal

    return modal.Queue.from_name(name, environment_name=env, create_if_missing=True)


def encode(value: Any) -> bytes:
    data = _encoder.encode(value)
    if len(data) > _COMPRESS_OVER:
        return _ZLIB + zlib.compress(data, 1)
    return _RAW + data


def decode(data: bytes | None, kind: type[T]) -> T | None:
    if data is None:
        return None
    body = memoryview(data)[1:]
    raw = zlib.decompress(body) if data[:1] == _ZLIB else body
    return msgspec.msgpack.decode(raw, type=kind)


def check_size(key: str, data: bytes) -> bytes:
    if len(data) > MAX_VALUE_BYTES:
        raise BrokerError(f"{key}: {len(data):,} bytes is over the {MAX_VALUE_BYTES:,}-byte value limit")
    return data


class DictLike(Protocol):
    """The part of modal.Dict the backend uses (tests pass tests.modal_fakes.FakeDict)."""

    def get(self, key: Any, default: Any = None) -> Any: ...
    def contains(self, key: Any) -> bool: ...
    def put(self, key: Any, value: Any, *, skip_if_exists: bool = False) -> bool: ...
    def update(self, other: Any = None, /, **kwargs: Any) -> None: ...
    def pop(self, key: Any, default: Any = ...) -> Any: ...
    def items(self) -> Any: ...


def read_many(store: DictLike, keys: list[str]) -> list[Any]:
    """Several Dict reads in flight at once (modal's `.aio` calls, gathered): about one round trip, not one
    each. Sequential where that cannot be done (no `.aio`, or already inside an event loop)."""
    concurrent = getattr(store, "get_concurrently", None)  # the stand-ins model it as one round trip
    if concurrent is not None:
        return list(concurrent(keys))
    aio = getattr(store.get, "aio", None)
    if aio is None or len(keys) == 1 or _in_event_loop():
        return [store.get(key) for key in keys]

    async def gather() -> list[Any]:
        return list(await asyncio.gather(*(aio(key) for key in keys)))

    return asyncio.run(gather())


def put_listing(store: DictLike, key: str, data: bytes, listed: DictLike) -> tuple[bool, list[Any] | None]:
    """put(skip_if_exists=True), and `listed`'s items in the same round trip (modal's `.aio` calls
    gathered); the items are None where that cannot be done (no `.aio`, or inside an event loop)."""
    together = getattr(store, "put_listing", None)  # the stand-ins model it as one round trip
    if together is not None:
        written, items = together(key, data, listed, skip_if_exists=True)
        return written, list(items)
    put, items = getattr(store.put, "aio", None), getattr(listed.items, "aio", None)
    if put is None or items is None or _in_event_loop():
        return store.put(key, data, skip_if_exists=True), None

    async def both() -> tuple[bool, list[Any]]:
        async def listing() -> list[Any]:
            return [pair async for pair in items()]
        written, found = await asyncio.gather(put(key, data, skip_if_exists=True), listing())
        return written, found

    return asyncio.run(both())


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def update_in_batches(store: DictLike, items: Iterable[tuple[str, bytes]]) -> int:
    """Write entries in as few Dict.update requests as Modal's limits allow; return the requests."""
    batch: dict[str, bytes] = {}
    size = requests = 0
    for key, data in items:
        if batch and (len(batch) >= MAX_UPDATE_ENTRIES or size + len(data) > MAX_UPDATE_BYTES):
            store.update(batch)
            requests += 1
            batch, size = {}, 0
        batch[key] = data
        size += len(data)
    if batch:
        store.update(batch)
        requests += 1
    return requests


class BlobStore(Protocol):
    """Files on the artifacts Volume: scripts, logs, snapshots and event pages."""

    def put(self, path: str, data: bytes) -> None: ...
    def put_many(self, files: dict[str, bytes]) -> None:
        """Several files in one request."""
    def get(self, path: str) -> bytes:
        """KeyError when there is no such file."""
    def delete(self, path: str) -> None: ...
    def list(self, folder: str) -> list[str]:
        """Paths of the files directly in a folder (empty when there is none), read from the source."""


def volume_path(path: str) -> str:
    """One spelling of a Volume path for every call (uploads, reads, deletes): rooted, no '..'."""
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise ValueError(f"{path!r}: not a path inside the Volume")
    return "/" + "/".join(parts)


class VolumeBlobStore:
    """A modal.Volume: read from the mount inside a container, through the API outside one."""

    def __init__(self, volume: Any, mount: str | None = None) -> None:
        self.volume, self.mount = volume, mount

    def _local(self, path: str) -> Path | None:
        if self.mount and Path(self.mount).is_dir():
            return Path(self.mount) / volume_path(path).lstrip("/")
        return None

    def put(self, path: str, data: bytes) -> None:
        self.put_many({path: data})

    def put_many(self, files: dict[str, bytes]) -> None:
        with self.volume.batch_upload(force=True) as batch:
            for path, data in files.items():
                batch.put_file(io.BytesIO(data), volume_path(path))

    def get(self, path: str) -> bytes:
        local = self._local(path)
        if local is not None:
            if not local.is_file():
                self.volume.reload()  # written after this container started
            if local.is_file():
                return local.read_bytes()
            raise KeyError(f"{path}: not on the volume")
        try:
            return b"".join(self.volume.read_file(volume_path(path)))
        except FileNotFoundError:
            raise KeyError(f"{path}: not on the volume") from None

    def list(self, folder: str) -> list[str]:
        try:  # through the API, never the mount: a container's mounted copy may be stale
            return [entry.path for entry in self.volume.listdir(volume_path(folder))]
        except Exception as error:  # Modal raises its NotFoundError for a folder not yet made
            if not isinstance(error, FileNotFoundError) and type(error).__name__ != "NotFoundError":
                raise
            return []

    def delete(self, path: str) -> None:
        try:
            self.volume.remove_file(volume_path(path))
        except Exception as error:  # Modal raises its NotFoundError; anything else is real
            if not isinstance(error, FileNotFoundError) and type(error).__name__ != "NotFoundError":
                raise
