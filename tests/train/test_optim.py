"""Weight decay on weights only; biases and normalisation weights excluded; decay against the phase LR."""

import dataclasses

import pytest
import torch

from mcbio.config.schema import OptimizerConfig
from mcbio.train.optim import apply_lr, build_optimizer, weight_decay_groups


def test_groups_split_weights_from_biases_and_norms(tiny_model_factory):
    model = tiny_model_factory()
    decay, skip = weight_decay_groups(model, 1e-5)
    names = {id(p): n for n, p in model.named_parameters()}
    decay_names = {names[id(p)] for p in decay["params"]}
    skip_names = {names[id(p)] for p in skip["params"]}
    assert decay["weight_decay"] == 1e-5 and skip["weight_decay"] == 0.0
    assert skip_names and all(n.endswith("bias") or "norm" in n for n in skip_names), skip_names
    assert all(not n.endswith("bias") and "norm" not in n for n in decay_names), decay_names
    assert "model.embeddings.tok_embeddings.weight" in decay_names
    # Every parameter exactly once (the tied decoder/embedding weight included once).
    assert len(decay_names) + len(skip_names) == len(list(model.parameters()))


def test_decoupled_adamw_with_paper_hyperparameters(tiny_model_factory):
    opt = build_optimizer(tiny_model_factory(), OptimizerConfig(), lr=2e-4)
    assert type(opt).__name__ == "DecoupledAdamW"
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.98) and group["eps"] == 1e-6 and group["lr"] == 2e-4
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-5, 0.0]


def test_norm_weights_do_not_decay(tiny_model_factory):
    model = tiny_model_factory()
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.5), lr=1e-2)
    norm = model.model.final_norm.weight
    dense = model.model.layers[0].mlp.Wi.weight
    before_norm, before_dense = norm.detach().clone(), dense.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only decay moves a parameter
    opt.step()
    assert torch.equal(norm, before_norm)
    assert not torch.equal(dense, before_dense)
    # Decoupled decay: p <- p * (1 - lr / initial_lr * weight_decay) = p * 0.5 here.
    torch.testing.assert_close(dense.detach(), before_dense * 0.5)


@pytest.mark.parametrize("lr,phase_lr", [(2e-4, 2e-4), (1e-4, 2e-4), (2e-5, 2e-4), (5e-4, 1e-3)])
def test_weight_decay_is_against_the_phase_lr(tiny_model_factory, lr, phase_lr):
    """Per step: p <- p * (1 - weight_decay * lr / phase lr), whatever LR the optimizer was built with."""
    model = tiny_model_factory()
    opt = build_optimizer(model, OptimizerConfig(weight_decay=0.1), lr=1.0)  # a build LR that must not matter
    apply_lr(opt, lr, phase_lr)
    dense = model.model.layers[0].mlp.Wi.weight
    before = dense.detach().clone()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    assert opt.param_groups[0]["lr"] == lr
    torch.testing.assert_close(dense.detach(), before * (1 - 0.1 * lr / phase_lr))


def test_no_optimizer_lr_key():
    """The phase's lr is the only learning-rate key (train.optimizer.lr used to only rescale weight decay)."""
    assert "lr" not in {f.name for f in dataclasses.fields(OptimizerConfig)}
