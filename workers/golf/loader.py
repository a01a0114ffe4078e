"""The training stream: the train shards in order, each rank taking its own span of every batch."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from golfq.workers.golf.shards import read_shard, read_token_count, shard_files


class LoaderError(ValueError):
    """The train shards cannot feed a run; reported as one line."""


class TokenStream:
    """The train shards in order, read one at a time, wrapping around at the end."""

    def __init__(self, data_path: str) -> None:
        self.files = shard_files(data_path, "train")
        if sum(read_token_count(path) for path in self.files) == 0:
            raise LoaderError(f"the train shards in {data_path} hold no tokens")
        self.file_index = -1
        self.tokens = np.empty(0, dtype=np.uint16)
        self.position = 0

    def take(self, count: int) -> np.ndarray:
        pieces, needed = [], count
        while needed > 0:
            if self.position >= self.tokens.size:
                self.file_index = (self.file_index + 1) % len(self.files)
                self.tokens, self.position = read_shard(self.files[self.file_index]), 0
                continue
            piece = self.tokens[self.position : self.position + needed]
            pieces.append(piece)
            self.position += piece.size
            needed -= piece.size
        return np.concatenate(pieces)

    def state(self) -> dict:
        return {"file_index": self.file_index, "position": self.position}

    def restore(self, state: dict) -> None:
        """Go back to a saved place: the same shard, the same token within it."""
        self.file_index, self.position = int(state["file_index"]), int(state["position"])
        if self.file_index >= 0:
            self.tokens = read_shard(self.files[self.file_index])


class DistributedTokenLoader:
    """Each call takes world_size contiguous spans of the stream; this rank keeps its own span."""

    def __init__(self, data_path: str, rank: int, world_size: int, device: torch.device) -> None:
        self.stream = TokenStream(data_path)
        self.rank, self.world_size, self.device = rank, world_size, device

    def next_batch(self, local_tokens: int, seq_len: int) -> tuple[Tensor, Tensor]:
        span = local_tokens + 1
        chunk = self.stream.take(span * self.world_size)
        local = torch.from_numpy(chunk[self.rank * span : (self.rank + 1) * span].astype(np.int64))
        if self.device.type == "cuda":
            local = local.pin_memory()
        local = local.to(self.device, non_blocking=True)
        return local[:-1].view(-1, seq_len), local[1:].view(-1, seq_len)
