from __future__ import annotations

import lzma
import zlib

import pytest
import torch

from golfq.workers.golf.model import GPT, GPTConfig
from golfq.workers.golf.quantize import (
    CLIP_QUANTILE,
    XZ_MAGIC,
    ZSTD_MAGIC,
    decompress,
    pack_artifact,
    pack_int6,
    row_clip,
    serialize,
    unpack_artifact,
    unpack_int6,
)


def trained_like_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=512, num_layers=2, model_dim=128, num_heads=4, num_kv_heads=2))
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.05 if p.ndim == 2 else 0.01))
    state = model.state_dict()
    state["step_counter"] = torch.tensor([7, 8, 9], dtype=torch.int64)
    return state


@pytest.mark.parametrize(("bits", "compressor"), [(8, "zlib"), (8, "zstd"), (6, "zstd"), (6, "lzma")])
def test_round_trip_error_is_bounded_by_the_row_scale(bits, compressor):
    state = trained_like_state_dict()
    blob, payload_bytes = pack_artifact(state, bits, compressor)
    restored = unpack_artifact(blob)
    assert list(restored) == list(state)
    for name, original in state.items():
        back = restored[name]
        assert back.dtype == original.dtype and back.shape == original.shape
        if not original.is_floating_point():
            assert torch.equal(back, original)
        elif original.numel() <= 65536:
            # passthrough: fp16 (relative 2^-11) or exact fp32 for control tensors
            assert torch.allclose(back, original, rtol=2**-10, atol=1e-7)
        else:
            levels = 127 if (bits == 8 or "tok_emb" in name) else 31
            clip = row_clip(original.float().reshape(original.size(0), -1))
            clipped = torch.maximum(torch.minimum(original, clip[:, None]), -clip[:, None])
            # half a quantization step (scale = clip/levels, stored in fp16) plus fp16 rounding slack
            bound = (clip / levels * 0.5 * (1 + 2**-9) + 1e-8)[:, None]
            assert ((back - clipped).abs() <= bound).all(), name
    # the byte count reported is the real size, and the compressor is the one asked for
    assert payload_bytes == len(decompress(blob))
    assert blob.startswith({"zlib": b"\x78", "zstd": ZSTD_MAGIC, "lzma": XZ_MAGIC}[compressor])


def test_int8_and_int6_sizes_match_their_bits():
    state = trained_like_state_dict()
    payload8, payload6 = serialize(state, 8), serialize(state, 6)
    large = [t for n, t in state.items() if t.is_floating_point() and t.ndim == 2 and t.numel() > 65536 and "tok_emb" not in n]
    saved = sum(t.numel() for t in large) // 4  # 8 bits -> 6 bits on those tensors
    assert len(payload8) - len(payload6) == pytest.approx(saved, abs=16)
    blob8, _ = pack_artifact(state, 8, "zlib")
    assert len(blob8) == len(zlib.compress(payload8, 9))
    blob6, _ = pack_artifact(state, 6, "lzma")
    assert lzma.decompress(blob6) == payload6


def test_baseline_sized_artifact_is_about_a_quarter_of_fp32():
    torch.manual_seed(0)
    model = GPT(GPTConfig())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    blob, payload = pack_artifact(model.state_dict(), 8, "zlib")
    raw = sum(t.numel() * 4 for t in model.state_dict().values())
    assert 0.24 * raw < payload < 0.27 * raw
    assert len(blob) < payload


def test_int6_packing_round_trips_every_value():
    values = torch.arange(-31, 32, dtype=torch.int8).repeat(5)[:-1]  # a length that is not a multiple of 4
    data = pack_int6(values)
    assert len(data) == 3 * ((values.numel() + 3) // 4)
    assert torch.equal(unpack_int6(data, values.numel()), values)


def test_outliers_are_clipped_per_row():
    # the clip is the 99.99984th percentile of |w| per row: only extreme outliers in long rows are cut
    torch.manual_seed(0)
    weights = torch.randn(2, 2_000_000)
    weights[0, 0] = 1000.0
    clip = row_clip(weights)
    assert clip[0] < 10
    assert clip[1] == pytest.approx(torch.quantile(weights[1].abs(), CLIP_QUANTILE).item(), rel=1e-3)
