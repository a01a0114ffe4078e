from __future__ import annotations

import math

import pytest
import torch

from golfq.workers.golf.model import (
    GPT,
    GPTConfig,
    baseline_parameter_count,
    cast_like_reference,
    pin_flash_attention,
    set_attention_backends,
)
from golfq.workers.golf.optim import Muon, OptimizerConfig, build_optimizers, orthogonalize, set_schedule
from golfq.workers.golf.train import DistributedTokenLoader, Hyperparameters, lr_multiplier

TINY = GPTConfig(num_layers=3, model_dim=64, num_heads=4, num_kv_heads=2)


def test_baseline_shape_has_the_challenge_parameter_count():
    assert baseline_parameter_count() == 17_059_912


def test_fresh_model_is_uniform_and_causal():
    torch.manual_seed(0)
    model = GPT(TINY)
    inputs = torch.randint(0, TINY.vocab_size, (2, 16))
    # zero-initialised output projections + tiny tied embedding: loss starts at ln(vocab)
    targets = torch.randint(0, TINY.vocab_size, (2, 16))
    assert model(inputs, targets).item() == pytest.approx(math.log(TINY.vocab_size), abs=0.05)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    logits = model(inputs)
    changed = inputs.clone()
    changed[:, 10:] = (changed[:, 10:] + 1) % TINY.vocab_size
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-5)
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])
    assert logits.abs().max() <= TINY.logit_softcap


def test_untied_head_and_odd_layer_counts_build():
    model = GPT(GPTConfig(num_layers=5, model_dim=32, num_heads=2, num_kv_heads=1, tie_embeddings=False, vocab_size=64))
    assert model.lm_head is not None and model.skip_weights.shape == (2, 32)
    assert model(torch.randint(0, 64, (1, 8)), torch.randint(0, 64, (1, 8))).isfinite()


def test_newton_schulz_orthogonalizes():
    torch.manual_seed(0)
    for shape in ((64, 32), (32, 64)):
        update = orthogonalize(torch.randn(*shape), steps=5, dtype=torch.float32)
        singular_values = torch.linalg.svdvals(update)
        # the quintic trades exactness for speed: singular values land in roughly [0.7, 1.2]
        assert update.shape == shape and singular_values.min() > 0.5 and singular_values.max() < 1.3


def test_optimizers_split_matrices_from_scalars():
    model = GPT(TINY)
    adam, muon = build_optimizers(model, OptimizerConfig(), tie_embeddings=True, device=torch.device("cpu"))
    assert isinstance(muon, Muon)
    muon_params = {id(p) for g in muon.param_groups for p in g["params"]}
    names = {name for name, p in model.named_parameters() if id(p) in muon_params}
    assert names and all(n.startswith("blocks.") and ("c_" in n or "proj" in n or "fc" in n) for n in names)
    adam_lrs = {id(p): g["lr"] for g in adam.param_groups for p in g["params"]}
    assert adam_lrs[id(model.tok_emb.weight)] == 0.05
    assert adam_lrs[id(model.blocks[0].resid_mix)] == 0.04 and adam_lrs[id(model.skip_weights)] == 0.04
    assert len(muon_params) + len(adam_lrs) == len(list(model.parameters()))
    set_schedule([adam, muon], 0.5, 250, OptimizerConfig())
    assert muon.param_groups[0]["momentum"] == pytest.approx(0.90) and muon.param_groups[0]["lr"] == pytest.approx(0.02)


def test_warmdown_follows_the_wallclock():
    hp = Hyperparameters(max_wallclock_seconds=10.0, warmdown_iters=20)
    assert lr_multiplier(hp, 10, 1000.0) == 1.0  # 100 ms/step: the warm-down is the last 20 x 100 ms
    assert lr_multiplier(hp, 90, 9000.0) == pytest.approx(0.5)
    assert lr_multiplier(hp, 45, 9000.0) == pytest.approx(0.25)  # 200 ms/step: a 4 s warm-down
    assert lr_multiplier(hp, 100, 10000.0) == 0.0
    by_steps = Hyperparameters(max_wallclock_seconds=0, iterations=100, warmdown_iters=20)
    assert lr_multiplier(by_steps, 50, 0) == 1.0 and lr_multiplier(by_steps, 90, 0) == pytest.approx(0.5)


def test_tiny_model_loss_falls_on_stdlib_data(stdlib_data):
    torch.manual_seed(0)
    model = GPT(TINY)
    optimizers = build_optimizers(model, OptimizerConfig(), True, torch.device("cpu"))
    loader = DistributedTokenLoader(str(stdlib_data.data_path), 0, 1, torch.device("cpu"))
    losses = []
    for step in range(40):
        inputs, targets = loader.next_batch(2048, 64)
        loss = model(inputs, targets)
        loss.backward()
        set_schedule(optimizers, 1.0, step, OptimizerConfig())
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(1024), abs=0.05)
    assert sum(losses[-5:]) / 5 < losses[0] - 1.5, losses


def test_model_traces_as_one_graph_for_torch_compile():
    # CUDA runs compile with fullgraph=True; a graph break would fail there, so trace it here on CPU.
    torch._dynamo.reset()
    model = GPT(TINY)
    compiled = torch.compile(model, fullgraph=True, dynamic=False, backend="eager")
    inputs = torch.randint(0, TINY.vocab_size, (2, 32))
    loss = compiled(inputs, inputs)
    loss.backward()
    assert loss.item() == pytest.approx(model(inputs, inputs).item(), abs=1e-6)


def reference_dtypes(model: torch.nn.Module) -> dict[str, torch.dtype]:
    """The challenge's own recipe, restated: the whole model to bf16, linear layers back to fp32,
    then every parameter that is low-dimensional or a control tensor back to fp32."""
    model.bfloat16()
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.float()
    for name, p in model.named_parameters():
        if p.ndim < 2 or any(k in name for k in ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weight")):
            p.data = p.data.float()
    return {name: t.dtype for name, t in [*model.named_parameters(), *model.named_buffers()]}


@pytest.mark.parametrize("tied", [True, False])
def test_cast_like_reference_gives_the_reference_dtypes(tied):
    config = GPTConfig(num_layers=3, model_dim=64, num_heads=4, num_kv_heads=2, tie_embeddings=tied)
    ours = cast_like_reference(GPT(config))
    got = {name: t.dtype for name, t in [*ours.named_parameters(), *ours.named_buffers()]}
    assert got == reference_dtypes(GPT(config))
    assert got["tok_emb.weight"] == torch.bfloat16 and got["blocks.0.attn.c_q.weight"] == torch.float32
    assert got["skip_weights"] == got["blocks.0.resid_mix"] == got["blocks.0.attn.q_gain"] == torch.float32
    # RoPE positions take the bf16 buffer's dtype, so far positions round as the reference's do
    rotary = ours.blocks[0].attn.rotary
    cos, sin = rotary(300, torch.bfloat16)
    angles = torch.outer(torch.arange(300, dtype=torch.bfloat16), rotary.inv_freq)
    assert torch.equal(cos[0, 0], angles.cos()) and torch.equal(sin[0, 0], angles.sin())
    assert torch.equal(cos[0, 0, 257], cos[0, 0, 256])  # 257 is not a bf16 number


def test_embedding_dtype_is_bf16_on_cuda_and_a_setting_elsewhere():
    assert Hyperparameters().embedding_dtype(use_cuda=True) == torch.bfloat16
    assert Hyperparameters().embedding_dtype(use_cuda=False) == torch.float32  # CPUs have no bf16 autocast here
    assert Hyperparameters.from_env({"EMBED_DTYPE": "bf16"}).embedding_dtype(use_cuda=False) == torch.bfloat16
    assert Hyperparameters.from_env({"EMBED_DTYPE": "fp32"}).embedding_dtype(use_cuda=True) == torch.float32


class TanhInputs(torch.overrides.TorchFunctionMode):
    def __init__(self) -> None:
        super().__init__()
        self.dtypes: list[torch.dtype] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.tanh:
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("softcap_fp32", "expected"), [(False, torch.bfloat16), (True, torch.float32)])
def test_soft_cap_runs_in_the_heads_dtype_unless_asked(softcap_fp32, expected):
    torch.manual_seed(0)
    config = GPTConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, softcap_fp32=softcap_fp32)
    model = cast_like_reference(GPT(config))
    inputs, targets = torch.randint(0, 1024, (2, 2, 16))
    recorder = TanhInputs()
    with torch.autocast("cpu", dtype=torch.bfloat16), recorder:
        logits = model(inputs)
        loss = model(inputs, targets)
    assert recorder.dtypes == [expected, expected]
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32  # cross-entropy in fp32 either way
    assert loss.item() == pytest.approx(math.log(1024), abs=0.05)


def test_pin_flash_attention_switches_every_other_kernel_off():
    before = pin_flash_attention()
    try:
        backends = torch.backends.cuda
        assert backends.flash_sdp_enabled()
        assert not (backends.math_sdp_enabled() or backends.mem_efficient_sdp_enabled() or backends.cudnn_sdp_enabled())
    finally:
        set_attention_backends(before)
    assert torch.backends.cuda.math_sdp_enabled() == before["math"]


def test_reference_dtypes_and_newton_schulz_trace_as_one_graph():
    torch._dynamo.reset()
    model = cast_like_reference(GPT(TINY))
    compiled = torch.compile(model, fullgraph=True, dynamic=False, backend="eager")
    inputs = torch.randint(0, TINY.vocab_size, (2, 32))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert compiled(inputs, inputs).item() == pytest.approx(model(inputs, inputs).item(), abs=1e-6)
    update = torch.randn(48, 32)
    traced = torch.compile(orthogonalize, fullgraph=True, backend="eager")
    assert torch.equal(traced(update, 5, torch.bfloat16), orthogonalize(update, 5, torch.bfloat16))
