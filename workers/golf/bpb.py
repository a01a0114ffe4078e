"""Scoring: validation loss and bits per byte, exactly as the challenge counts them.

Every token id gets a byte count from the tokenizer: the UTF-8 length of its
piece without a leading "▁", 1 for a byte-fallback token, 0 for control,
unknown and unused ids, which also mark a boundary. A token whose piece starts
with "▁" adds one byte for the space unless the token before it is a boundary
(a document's first word after BOS has no space in the text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

from golfq.workers.golf.shards import read_shard, shard_files

WORD_START = "\u2581"  # "▁", SentencePiece's marker for a preceding space


@dataclass(frozen=True)
class ByteTables:
    base_bytes: Tensor  # int16 [vocab]
    has_leading_space: Tensor  # bool [vocab]
    is_boundary: Tensor  # bool [vocab]

    def to(self, device: torch.device) -> ByteTables:
        return ByteTables(self.base_bytes.to(device), self.has_leading_space.to(device), self.is_boundary.to(device))


def build_byte_tables(processor, vocab_size: int) -> ByteTables:
    """Byte tables for a sentencepiece processor, padded to vocab_size with boundary ids."""
    size = max(vocab_size, processor.vocab_size())
    base_bytes = np.zeros(size, dtype=np.int16)
    has_leading_space = np.zeros(size, dtype=np.bool_)
    is_boundary = np.ones(size, dtype=np.bool_)
    for token_id in range(processor.vocab_size()):
        if processor.is_control(token_id) or processor.is_unknown(token_id) or processor.is_unused(token_id):
            continue
        is_boundary[token_id] = False
        if processor.is_byte(token_id):
            base_bytes[token_id] = 1
            continue
        piece = processor.id_to_piece(token_id)
        if piece.startswith(WORD_START):
            has_leading_space[token_id] = True
            piece = piece[1:]
        base_bytes[token_id] = len(piece.encode("utf-8"))
    return ByteTables(torch.from_numpy(base_bytes), torch.from_numpy(has_leading_space), torch.from_numpy(is_boundary))


def target_bytes(previous_ids: Tensor, target_ids: Tensor, tables: ByteTables) -> Tensor:
    """Bytes of text each target token stands for, given the token before it."""
    space = tables.has_leading_space[target_ids] & ~tables.is_boundary[previous_ids]
    return tables.base_bytes[target_ids].to(torch.int64) + space.to(torch.int64)


def load_validation_tokens(data_path: str, seq_len: int, max_tokens: int = 0) -> Tensor:
    """All val shards concatenated, cut to whole seq_len windows plus one target; max_tokens > 0 caps it."""
    tokens = np.concatenate([read_shard(path) for path in shard_files(data_path, "val")])
    if max_tokens > 0:
        tokens = tokens[: max_tokens + 1]
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"validation set of {tokens.size} tokens is shorter than TRAIN_SEQ_LEN={seq_len}")
    return torch.from_numpy(tokens[: usable + 1].astype(np.int64))


@torch.inference_mode()
def evaluate(
    model: torch.nn.Module,
    val_tokens: Tensor,
    tables: ByteTables,
    seq_len: int,
    batch_seqs: int,
    device: torch.device,
    autocast,
) -> tuple[float, float]:
    """(val_loss in nats per token, val_bpb) over non-overlapping seq_len windows split across ranks."""
    distributed = dist.is_available() and dist.is_initialized()
    world_size = dist.get_world_size() if distributed else 1
    rank = dist.get_rank() if distributed else 0
    total_seqs = (val_tokens.numel() - 1) // seq_len
    first, last = total_seqs * rank // world_size, total_seqs * (rank + 1) // world_size
    # loss sum, token count, byte count; float64 so millions of tokens add up exactly enough
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    for start in range(first, last, batch_seqs):
        end = min(start + batch_seqs, last)
        window = val_tokens[start * seq_len : end * seq_len + 1].to(device, non_blocking=True)
        inputs, targets = window[:-1].view(-1, seq_len), window[1:].view(-1, seq_len)
        with autocast():
            loss = model(inputs, targets).detach()
        count = targets.numel()
        sums[0] += loss.to(torch.float64) * count
        sums[1] += count
        sums[2] += target_bytes(inputs, targets, tables).sum().to(torch.float64)
    if distributed:
        dist.all_reduce(sums, op=dist.ReduceOp.SUM)
    model.train(was_training)
    loss_sum, token_count, byte_count = sums.tolist()
    val_loss = loss_sum / token_count
    return val_loss, val_loss / math.log(2.0) * token_count / byte_count
