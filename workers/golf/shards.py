"""Token shards in the Parameter Golf format.

A shard is a 1024-byte header of 256 little-endian int32 words (magic 20240520,
version 1, token count, then zeros) followed by the tokens as little-endian
uint16. Readers check all three header fields and the exact file size.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_WORDS = 256
HEADER_BYTES = HEADER_WORDS * 4
HEADER_DTYPE = np.dtype("<i4")
TOKEN_DTYPE = np.dtype("<u2")


class ShardError(ValueError):
    """A shard file that is not in the challenge's format."""


def write_shard(path: str | os.PathLike[str], tokens: np.ndarray | list[int]) -> int:
    """Write tokens to path atomically; return the file size in bytes."""
    array = np.asarray(tokens)
    if array.ndim != 1:
        raise ValueError(f"{path}: tokens must be 1-D, got shape {array.shape}")
    if array.size and (int(array.min()) < 0 or int(array.max()) >= 2**16):
        raise ValueError(f"{path}: token ids must fit in uint16")
    header = np.zeros(HEADER_WORDS, dtype=HEADER_DTYPE)
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, array.size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header.tobytes())
        f.write(array.astype(TOKEN_DTYPE, copy=False).tobytes())
    os.replace(tmp, path)
    return HEADER_BYTES + 2 * array.size


def read_token_count(path: str | os.PathLike[str]) -> int:
    """Validate the header and file size of a shard and return its token count."""
    size = os.path.getsize(path)
    if size < HEADER_BYTES:
        raise ShardError(f"{path}: truncated header ({size} bytes, need {HEADER_BYTES})")
    with open(path, "rb") as f:
        header = np.frombuffer(f.read(HEADER_BYTES), dtype=HEADER_DTYPE)
    magic, version, count = int(header[0]), int(header[1]), int(header[2])
    if magic != SHARD_MAGIC:
        raise ShardError(f"{path}: bad magic {magic} (expected {SHARD_MAGIC})")
    if version != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported version {version} (expected {SHARD_VERSION})")
    if count < 0:
        raise ShardError(f"{path}: negative token count {count}")
    expected = HEADER_BYTES + 2 * count
    if size != expected:
        problem = "truncated" if size < expected else "oversized"
        raise ShardError(f"{path}: {problem} file ({size} bytes, header says {count} tokens = {expected} bytes)")
    return count


def read_shard(path: str | os.PathLike[str]) -> np.ndarray:
    """Return the tokens of one shard as a uint16 array."""
    count = read_token_count(path)
    with open(path, "rb") as f:
        f.seek(HEADER_BYTES)
        tokens = np.frombuffer(f.read(2 * count), dtype=TOKEN_DTYPE)
    return tokens.astype(np.uint16, copy=False)


def shard_files(data_path: str | os.PathLike[str], split: str) -> list[str]:
    """The sorted fineweb_{split}_*.bin files of a dataset directory; at least one."""
    pattern = os.path.join(os.fspath(data_path), f"fineweb_{split}_*.bin")
    files = sorted(glob.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no shards match {pattern}")
    return files
