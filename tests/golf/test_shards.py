from __future__ import annotations

import numpy as np
import pytest

from golfq.workers.golf.shards import (
    HEADER_BYTES,
    SHARD_MAGIC,
    ShardError,
    read_shard,
    read_token_count,
    shard_files,
    write_shard,
)


def test_round_trip_is_the_challenge_format(tmp_path):
    tokens = np.array([1, 0, 65535, 1023, 7] * 1000, dtype=np.uint16)
    path = tmp_path / "fineweb_train_000000.bin"
    size = write_shard(path, tokens)
    raw = path.read_bytes()
    assert size == len(raw) == HEADER_BYTES + 2 * tokens.size
    header = np.frombuffer(raw[:HEADER_BYTES], dtype="<i4")
    assert header[0] == SHARD_MAGIC and header[1] == 1 and header[2] == tokens.size
    assert not header[3:].any()
    assert raw[HEADER_BYTES : HEADER_BYTES + 4] == b"\x01\x00\x00\x00"  # little-endian uint16 tokens 1, 0
    assert np.array_equal(read_shard(path), tokens)
    assert read_token_count(path) == tokens.size


def test_empty_shard_round_trips(tmp_path):
    path = tmp_path / "empty.bin"
    write_shard(path, [])
    assert read_shard(path).size == 0


def test_tokens_outside_uint16_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint16"):
        write_shard(tmp_path / "x.bin", [70000])


def _corrupt(path, offset: int, word: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = int(word).to_bytes(4, "little", signed=True)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: _corrupt(p, 0, 12345), "bad magic 12345"),
        (lambda p: _corrupt(p, 4, 2), "unsupported version 2"),
        (lambda p: p.write_bytes(p.read_bytes()[:-2]), "truncated file"),
        (lambda p: p.write_bytes(p.read_bytes() + b"\x00\x00"), "oversized file"),
        (lambda p: p.write_bytes(p.read_bytes()[:100]), "truncated header"),
        (lambda p: _corrupt(p, 8, 11), "truncated file"),
    ],
)
def test_corrupt_files_raise_one_line_error_naming_the_file(tmp_path, damage, message):
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, np.arange(10, dtype=np.uint16))
    damage(path)
    with pytest.raises(ShardError) as error:
        read_shard(path)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text
    assert isinstance(error.value, ValueError)


def test_shard_files_are_sorted_and_split(tmp_path):
    for name in ("fineweb_train_000001.bin", "fineweb_train_000000.bin", "fineweb_val_000000.bin"):
        write_shard(tmp_path / name, [1, 2])
    names = [p.rsplit("/", 1)[1] for p in shard_files(tmp_path, "train")]
    assert names == ["fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    with pytest.raises(FileNotFoundError, match="fineweb_test"):
        shard_files(tmp_path, "test")
