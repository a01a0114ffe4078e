"""Muon for the blocks' weight matrices, Adam for everything else.

Muon takes SGD-momentum (Nesterov) updates and replaces each 2-D update by the
nearest semi-orthogonal matrix, approximated with five Newton-Schulz iterations
of a quintic tuned to converge fast. Under DDP each rank orthogonalises every
world_size-th matrix and one all-reduce of a flat buffer shares the results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
# Parameters whose names contain one of these are per-channel gains and mixes: Adam at the scalar LR.
CONTROL_TENSOR_NAME_PATTERNS = ("attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes",
                                "q_gain", "skip_weight", "skip_weights")


def orthogonalize(update: Tensor, steps: int, dtype: torch.dtype, eps: float = 1e-7) -> Tensor:
    """Approximately U V^T for update = U S V^T, via the Newton-Schulz quintic."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = update.to(dtype)
    x = x / (x.norm() + eps)
    transposed = x.size(0) > x.size(1)
    if transposed:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float, backend_steps: int, nesterov: bool = True,
                 ns_dtype: torch.dtype = torch.bfloat16, compile_newton_schulz: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps, nesterov=nesterov))
        self.ns_dtype = ns_dtype
        # The reference compiles its Newton-Schulz step: five fused matmul chains instead of dozens of kernels.
        self.orthogonalize = torch.compile(orthogonalize) if compile_newton_schulz else orthogonalize

    @torch.no_grad()
    def step(self, closure=None) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        world_size = dist.get_world_size() if distributed else 1
        rank = dist.get_rank() if distributed else 0
        for group in self.param_groups:
            params: list[Tensor] = group["params"]
            if not params:
                continue
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=self.ns_dtype)
            offset = 0
            for index, p in enumerate(params):
                if index % world_size == rank and p.grad is not None:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    buffer = state["momentum_buffer"]
                    buffer.mul_(group["momentum"]).add_(p.grad)
                    update = p.grad.add(buffer, alpha=group["momentum"]) if group["nesterov"] else buffer
                    update = self.orthogonalize(update, group["backend_steps"], self.ns_dtype)
                    update = update * max(1.0, p.size(0) / p.size(1)) ** 0.5
                    flat[offset : offset + p.numel()] = update.reshape(-1)
                offset += p.numel()
            if world_size > 1:
                dist.all_reduce(flat, op=dist.ReduceOp.SUM)
            offset = 0
            for p in params:
                p.add_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()


@dataclass(frozen=True)
class OptimizerConfig:
    embed_lr: float = 0.6
    head_lr: float = 0.008
    tied_embed_lr: float = 0.05
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8


def is_control_tensor(name: str) -> bool:
    return any(pattern in name for pattern in CONTROL_TENSOR_NAME_PATTERNS)


def build_optimizers(model: nn.Module, config: OptimizerConfig, tie_embeddings: bool, device: torch.device,
                     compile_newton_schulz: bool = False) -> list[torch.optim.Optimizer]:
    """Adam (embedding, head, scalars) and Muon (block matrices); each group remembers its base_lr."""
    matrices, scalars = [], []
    for name, p in model.named_parameters():
        if name.startswith("blocks.") and p.ndim == 2 and not is_control_tensor(name):
            matrices.append(p)
        elif name not in ("tok_emb.weight", "lm_head.weight"):
            scalars.append(p)
    adam_groups = [
        dict(params=[model.tok_emb.weight], lr=config.tied_embed_lr if tie_embeddings else config.embed_lr),
        dict(params=scalars, lr=config.scalar_lr),
    ]
    if not tie_embeddings:
        adam_groups.append(dict(params=[model.lm_head.weight], lr=config.head_lr))
    cuda = device.type == "cuda"
    adam = torch.optim.Adam(adam_groups, betas=(config.beta1, config.beta2), eps=config.adam_eps, fused=cuda)
    # bf16 Newton-Schulz is the baseline's choice on GPU; CPUs (and gloo) are happier in fp32.
    muon = Muon(matrices, lr=config.matrix_lr, momentum=config.muon_momentum, backend_steps=config.muon_backend_steps,
                ns_dtype=torch.bfloat16 if cuda else torch.float32, compile_newton_schulz=compile_newton_schulz)
    optimizers: list[torch.optim.Optimizer] = [adam, muon]
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]
    return optimizers


def set_schedule(optimizers: list[torch.optim.Optimizer], lr_multiplier: float, step: int,
                 config: OptimizerConfig) -> None:
    """Scale every LR by lr_multiplier and warm Muon's momentum up linearly over its first steps."""
    warmup = config.muon_momentum_warmup_steps
    fraction = min(step / warmup, 1.0) if warmup > 0 else 1.0
    momentum = (1 - fraction) * config.muon_momentum_warmup_start + fraction * config.muon_momentum
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * lr_multiplier
            if isinstance(optimizer, Muon):
                group["momentum"] = momentum
