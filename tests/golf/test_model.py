from __future__ import annotations

import math

import pytest
import torch

from golfq.workers.golf.model import GPT, GPTConfig, baseline_parameter_count
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
