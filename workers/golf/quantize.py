"""Post-training quantization and the artifact format.

Large 2-D float tensors are stored per row, as the challenge's train_gpt.py does:
clip each row at the 99.99984th percentile of |w|, keep an fp16 scale per row and
round to int8 (QUANT_BITS=8, levels -127..127) or int6 (QUANT_BITS=6, levels
-31..31, four values packed in three bytes; the embedding stays int8, as the int6
records do). An int8 row's scale is clip/127 but never below 1/127, so rows whose
values stay under 1 share one fixed step (INT8_SCALE_FLOOR=0: every row uses its
full range). Other large float tensors get one fp32 scale. Small float tensors pass
through, in fp32 when they are control tensors (gains, mixes) and fp16 otherwise;
non-float tensors pass through as they are.

Artifact = compress(u32 header length | JSON header | raw buffers), with no
pickle: the header lists each tensor's name, encoding, shape, dtype and byte
range. The compressor (zlib 9, zstd 22 or lzma 9) is recognised from the
stream's magic bytes on load.
"""

from __future__ import annotations

import json
import lzma
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from golfq.workers.golf.optim import is_control_tensor

ARTIFACT_FORMAT = "golfq_per_row_v2"
READABLE_FORMATS = ("golfq_per_row_v1", ARTIFACT_FORMAT)  # v1 kept per-tensor scales in fp16
CLIP_QUANTILE = 0.9999984
SMALL_TENSOR_ELEMENTS = 65536
COMPRESSORS = ("zlib", "zstd", "lzma")
ZSTD_MAGIC, XZ_MAGIC = b"\x28\xb5\x2f\xfd", b"\xfd7zXZ\x00"
KEEP_INT8_NAMES = ("tok_emb", "lm_head")  # quantized to int8 even when QUANT_BITS=6


@dataclass(frozen=True)
class TensorEntry:
    name: str
    encoding: str  # rows_int8 | rows_int6 | tensor_int8 | fp16 | fp32 | raw
    shape: list[int]
    dtype: str  # the original dtype, restored on load
    offset: int
    nbytes: int
    scale_offset: int = 0
    scale_nbytes: int = 0


def artifact_label(bits: int, compressor: str) -> str:
    return f"int{bits}+{compressor}"


def row_clip(weights: Tensor, quantile: float = CLIP_QUANTILE) -> Tensor:
    """torch.quantile(|w|, quantile, dim=1), bit for bit, for inputs of any size (torch.quantile refuses huge ones)."""
    magnitudes = weights.abs().sort(dim=1).values
    # torch.quantile computes the rank in the input's dtype and interpolates with lerp: so do we, to match its bits.
    rank = torch.tensor(quantile, dtype=magnitudes.dtype) * (weights.size(1) - 1)
    below, above = int(rank.floor()), int(rank.ceil())
    return torch.lerp(magnitudes[:, below], magnitudes[:, above], rank - below)


def quantize_rows(weights: Tensor, levels: int, scale_floor: bool = True) -> tuple[Tensor, Tensor]:
    """(int8 values in [-levels, levels], fp16 scale per row); scale_floor keeps every scale >= 1/levels."""
    weights = weights.float()
    clip = row_clip(weights)
    if scale_floor:
        scale = (clip / levels).clamp_min(1.0 / levels)
    else:
        scale = (clip / levels).clamp_min(1e-12)
        scale = torch.where(scale.half() > 0, scale, torch.ones_like(scale))  # a clip so small fp16 loses it
    clipped = torch.maximum(torch.minimum(weights, clip[:, None]), -clip[:, None])
    values = torch.round(clipped / scale[:, None]).clamp(-levels, levels).to(torch.int8)
    return values, scale.to(torch.float16)


def quantize_tensor(weights: Tensor) -> tuple[Tensor, Tensor]:
    """(int8 values, one fp32 scale) for a large float tensor that is not a matrix."""
    flat = weights.float().reshape(1, -1)
    clip = float(row_clip(flat)[0]) if flat.numel() else 0.0
    scale = torch.tensor(clip / 127.0 if clip > 0 else 1.0, dtype=torch.float32)
    values = torch.round(flat.clamp(-clip, clip) / scale).clamp(-127, 127).to(torch.int8)
    return values.reshape(weights.shape), scale


def pack_int6(values: Tensor) -> bytes:
    """Four values in -31..31 -> three bytes (offset by 32 to 6-bit unsigned)."""
    flat = (values.reshape(-1).to(torch.int16) + 32).numpy().astype(np.uint32)
    flat = np.concatenate([flat, np.full((-flat.size) % 4, 32, dtype=np.uint32)]).reshape(-1, 4)
    word = flat[:, 0] | (flat[:, 1] << 6) | (flat[:, 2] << 12) | (flat[:, 3] << 18)
    return np.stack([word & 0xFF, (word >> 8) & 0xFF, (word >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()


def unpack_int6(data: bytes, count: int) -> Tensor:
    triples = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.uint32)
    word = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
    flat = np.stack([(word >> shift) & 0x3F for shift in (0, 6, 12, 18)], axis=1).reshape(-1)[:count]
    return torch.from_numpy(flat.astype(np.int16) - 32).to(torch.int8)


def _tensor_bytes(tensor: Tensor) -> bytes:
    tensor = tensor.detach().cpu().contiguous()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().tobytes()
    return tensor.numpy().tobytes()


def _tensor_from(data: bytes, dtype: torch.dtype, shape: list[int]) -> Tensor:
    if dtype == torch.bfloat16:
        return torch.from_numpy(np.frombuffer(data, dtype=np.int16).copy()).view(torch.bfloat16).reshape(shape)
    numpy_dtype = torch.empty((), dtype=dtype).numpy().dtype
    return torch.from_numpy(np.frombuffer(data, dtype=numpy_dtype).copy()).reshape(shape)


def serialize(state_dict: dict[str, Tensor], bits: int = 8, int8_scale_floor: bool = True) -> bytes:
    """The uncompressed payload: header length, JSON header, raw buffers."""
    if bits not in (6, 8):
        raise ValueError(f"QUANT_BITS must be 8 or 6, got {bits}")
    entries: list[TensorEntry] = []
    buffers: list[bytes] = []
    offset = 0

    def add(data: bytes) -> tuple[int, int]:
        nonlocal offset
        buffers.append(data)
        offset += len(data)
        return offset - len(data), len(data)

    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        dtype = str(tensor.dtype).removeprefix("torch.")
        shape = list(tensor.shape)
        if not tensor.is_floating_point():
            entries.append(TensorEntry(name, "raw", shape, dtype, *add(_tensor_bytes(tensor))))
        elif tensor.numel() <= SMALL_TENSOR_ELEMENTS:
            if is_control_tensor(name):
                entries.append(TensorEntry(name, "fp32", shape, dtype, *add(_tensor_bytes(tensor.float()))))
            elif tensor.dtype in (torch.float32, torch.bfloat16):
                entries.append(TensorEntry(name, "fp16", shape, dtype, *add(_tensor_bytes(tensor.half()))))
            else:
                entries.append(TensorEntry(name, "raw", shape, dtype, *add(_tensor_bytes(tensor))))
        elif tensor.ndim == 2:
            row_bits = 8 if any(part in name for part in KEEP_INT8_NAMES) else bits
            if row_bits == 8:
                values, scale = quantize_rows(tensor, 127, int8_scale_floor)
                data = _tensor_bytes(values)
            else:
                values, scale = quantize_rows(tensor, 31, scale_floor=False)
                data = pack_int6(values)
            value_range, scale_range = add(data), add(_tensor_bytes(scale))
            entries.append(TensorEntry(name, f"rows_int{row_bits}", shape, dtype, *value_range, *scale_range))
        else:
            values, scale = quantize_tensor(tensor)
            value_range, scale_range = add(_tensor_bytes(values)), add(_tensor_bytes(scale.reshape(1)))
            entries.append(TensorEntry(name, "tensor_int8", shape, dtype, *value_range, *scale_range))
    header = {"format": ARTIFACT_FORMAT, "bits": bits, "tensors": [asdict(e) for e in entries]}
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return len(encoded).to_bytes(4, "little") + encoded + b"".join(buffers)


def deserialize(payload: bytes) -> dict[str, Tensor]:
    """Dequantized float tensors (in their original dtypes) from a payload."""
    header_length = int.from_bytes(payload[:4], "little")
    header = json.loads(payload[4 : 4 + header_length])
    if header.get("format") not in READABLE_FORMATS:
        raise ValueError(f"unknown artifact format {header.get('format')!r}")
    body = memoryview(payload)[4 + header_length :]
    state_dict: dict[str, Tensor] = {}
    for entry in (TensorEntry(**e) for e in header["tensors"]):
        dtype = getattr(torch, entry.dtype)
        data = bytes(body[entry.offset : entry.offset + entry.nbytes])
        scale_data = bytes(body[entry.scale_offset : entry.scale_offset + entry.scale_nbytes])
        count = int(np.prod(entry.shape))
        if entry.encoding == "raw":
            state_dict[entry.name] = _tensor_from(data, dtype, entry.shape)
        elif entry.encoding in ("fp16", "fp32"):
            stored = _tensor_from(data, torch.float16 if entry.encoding == "fp16" else torch.float32, entry.shape)
            state_dict[entry.name] = stored.to(dtype)
        elif entry.encoding == "tensor_int8":
            scale_dtype = torch.float32 if header["format"] == ARTIFACT_FORMAT else torch.float16
            scale = _tensor_from(scale_data, scale_dtype, [1]).float()
            values = _tensor_from(data, torch.int8, [count])
            state_dict[entry.name] = (values.float() * scale).reshape(entry.shape).to(dtype)
        else:
            int6 = entry.encoding == "rows_int6"
            values = unpack_int6(data, count) if int6 else _tensor_from(data, torch.int8, [count])
            scale = _tensor_from(scale_data, torch.float16, [-1])
            rows = values.float().reshape(scale.numel(), -1) * scale.float()[:, None]
            state_dict[entry.name] = rows.reshape(entry.shape).to(dtype)
    return state_dict


def compress(payload: bytes, compressor: str) -> bytes:
    if compressor == "zlib":
        return zlib.compress(payload, level=9)
    if compressor == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=22).compress(payload)
    if compressor == "lzma":
        return lzma.compress(payload, preset=9)
    raise ValueError(f"COMPRESSOR must be one of {', '.join(COMPRESSORS)}, got {compressor!r}")


def decompress(blob: bytes) -> bytes:
    if blob.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().decompress(blob)
    if blob.startswith(XZ_MAGIC):
        return lzma.decompress(blob)
    return zlib.decompress(blob)


def pack_artifact(state_dict: dict[str, Tensor], bits: int = 8, compressor: str = "zlib",
                  int8_scale_floor: bool = True) -> tuple[bytes, int]:
    """(compressed artifact, uncompressed payload size)."""
    payload = serialize(state_dict, bits, int8_scale_floor)
    return compress(payload, compressor), len(payload)


def unpack_artifact(blob: bytes) -> dict[str, Tensor]:
    return deserialize(decompress(blob))
