"""The Parameter Golf baseline GPT.

Token embedding -> RMS norm -> a U-Net of transformer blocks (the first half
stores skips that the second half adds back with learned weights) -> RMS norm ->
tied output head -> logit soft-cap. Each block mixes its input with the embedded
input x0, then runs GQA attention (QK RMS-norm, RoPE, a learned per-head query
gain) and a relu^2 MLP, each scaled by a learned per-channel gain. Output
projections start at zero, so every block starts as the identity.

Dtypes follow the challenge's train_gpt.py on CUDA (cast_like_reference): linear
weights and control tensors are fp32 and cast at matmul time, while the embedding
and the RoPE frequencies are bf16, so the residual stream runs in bf16 under autocast.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golfq.workers.golf.optim import is_control_tensor


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: int = 2
    tie_embeddings: bool = True
    tied_embed_init_std: float = 0.005
    rope_base: float = 10000.0
    logit_softcap: float = 30.0
    qk_gain_init: float = 1.5
    softcap_fp32: bool = False  # tanh on fp32 logits; the reference's runs in the head's dtype (bf16 under autocast)


class CastedLinear(nn.Linear):
    """A bias-free linear layer whose fp32 weight is cast to the input's dtype at matmul time.

    Under bf16 autocast the optimizer still updates fp32 master weights.
    """

    def __init__(self, in_features: int, out_features: int, zero_init: bool = False) -> None:
        super().__init__(in_features, out_features, bias=False)
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype))


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, seq_len: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        # Recomputed each call: cheap next to attention, and no Python-side cache for torch.compile to trace.
        # Positions take inv_freq's dtype, as the reference's do: bf16 (rounded above 256) once cast like it.
        positions = torch.arange(seq_len, device=self.inv_freq.device, dtype=self.inv_freq.dtype)
        angles = torch.outer(positions, self.inv_freq)
        return angles.cos()[None, None].to(dtype), angles.sin()[None, None].to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    half = x.size(-1) // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.model_dim % config.num_heads:
            raise ValueError(f"MODEL_DIM={config.model_dim} must be divisible by NUM_HEADS={config.num_heads}")
        if config.num_heads % config.num_kv_heads:
            raise ValueError(f"NUM_HEADS={config.num_heads} must be divisible by NUM_KV_HEADS={config.num_kv_heads}")
        self.num_heads, self.num_kv_heads = config.num_heads, config.num_kv_heads
        self.head_dim = config.model_dim // config.num_heads
        if self.head_dim % 2:
            raise ValueError(f"head dim {self.head_dim} must be even for RoPE")
        kv_dim = self.num_kv_heads * self.head_dim
        self.c_q = CastedLinear(config.model_dim, config.model_dim)
        self.c_k = CastedLinear(config.model_dim, kv_dim)
        self.c_v = CastedLinear(config.model_dim, kv_dim)
        self.proj = CastedLinear(config.model_dim, config.model_dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((self.num_heads,), config.qk_gain_init, dtype=torch.float32))
        self.rotary = Rotary(self.head_dim, config.rope_base)

    def forward(self, x: Tensor) -> Tensor:
        batch, seq_len, dim = x.shape
        q = self.c_q(x).view(batch, seq_len, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(batch, seq_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(batch, seq_len, self.num_kv_heads, self.head_dim).transpose(1, 2)
        q, k = F.rms_norm(q, (self.head_dim,)), F.rms_norm(k, (self.head_dim,))
        cos, sin = self.rotary(seq_len, q.dtype)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads)
        return self.proj(y.transpose(1, 2).reshape(batch, seq_len, dim))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        hidden = config.mlp_mult * config.model_dim
        self.fc = CastedLinear(config.model_dim, hidden)
        self.proj = CastedLinear(hidden, config.model_dim, zero_init=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        dim = config.model_dim
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        # resid_mix[0] weighs the running residual, resid_mix[1] the embedded input x0.
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(F.rms_norm(x, (x.size(-1),)))
        x = x + self.mlp_scale.to(x.dtype) * self.mlp(F.rms_norm(x, (x.size(-1),)))
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.model_dim)
        self.num_encoder_layers = config.num_layers // 2
        self.num_decoder_layers = config.num_layers - self.num_encoder_layers
        num_skips = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, config.model_dim, dtype=torch.float32))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.lm_head = (None if config.tie_embeddings
                        else CastedLinear(config.model_dim, config.vocab_size, zero_init=True))
        if config.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=config.tied_embed_init_std)

    def forward(self, input_ids: Tensor, target_ids: Tensor | None = None) -> Tensor:
        """Mean cross-entropy over targets (fp32); logits if target_ids is None."""
        x = F.rms_norm(self.tok_emb(input_ids), (self.config.model_dim,))
        x0 = x
        skips: list[Tensor] = []
        for block in self.blocks[: self.num_encoder_layers]:
            x = block(x, x0)
            skips.append(x)
        for i, block in enumerate(self.blocks[self.num_encoder_layers :]):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = block(x, x0)
        x = F.rms_norm(x, (self.config.model_dim,))
        head = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, head.to(x.dtype))
        if self.config.softcap_fp32:
            logits = logits.float()
        cap = self.config.logit_softcap
        if cap > 0:
            logits = cap * torch.tanh(logits / cap)
        logits = logits.float()
        if target_ids is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), target_ids.reshape(-1))


def cast_like_reference(model: nn.Module, embed_dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """The reference's dtypes: everything in embed_dtype, then linear layers and small/control parameters in fp32.

    Only the embedding (a matrix that is neither) and the non-persistent RoPE buffer keep embed_dtype.
    """
    model.to(embed_dtype)
    for module in model.modules():
        if isinstance(module, CastedLinear):
            module.float()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim < 2 or is_control_tensor(name):
                param.data = param.data.float()
    return model


def pin_flash_attention() -> dict[str, bool]:
    """Let SDPA use only the flash kernel on CUDA, as the reference does; returns the flags it replaced."""
    backends = torch.backends.cuda
    before = {"cudnn": backends.cudnn_sdp_enabled(), "flash": backends.flash_sdp_enabled(),
              "mem_efficient": backends.mem_efficient_sdp_enabled(), "math": backends.math_sdp_enabled()}
    set_attention_backends({"cudnn": False, "flash": True, "mem_efficient": False, "math": False})
    return before


def set_attention_backends(flags: dict[str, bool]) -> None:
    backends = torch.backends.cuda
    backends.enable_cudnn_sdp(flags["cudnn"])
    backends.enable_flash_sdp(flags["flash"])
    backends.enable_mem_efficient_sdp(flags["mem_efficient"])
    backends.enable_math_sdp(flags["math"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def baseline_parameter_count() -> int:
    """17,059,912 for the challenge's baseline shape (a check that the shape matches)."""
    with torch.device("meta"):
        return count_parameters(GPT(GPTConfig()))
