"""One-shot unlearning methods: closed forms of their updates, and each one forgetting on a tiny problem."""
import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.config import TrainRecipe
from unlearnkit.data import load_dataset
from unlearnkit.data.splits import ForgetSplit
from unlearnkit.errors import ConfigError
from unlearnkit.models import spec_for
from unlearnkit.runtime import Runtime, seed_everything
from unlearnkit.training import accuracy, fit, sgd_step_sizes
from unlearnkit.unlearning.context import Context
from unlearnkit.unlearning.engine import unlearn
from unlearnkit.unlearning.fisher import diagonal_fisher
from unlearnkit.unlearning.oneshot import (
    dampen,
    expected_fisher,
    select_synapses,
    woodfisher_code,
    woodfisher_exact,
)

RECIPE = TrainRecipe(epochs=15, batch_size=32, lr=0.05, augment=False)
ONE_STEP_RECIPE = {"train_lr": 0.05, "train_epochs": 15, "train_batch_size": 32, "train_schedule": "cosine"}
FORGET = 3


@pytest.fixture(scope="module")
def trained():
    """A small CNN (with BatchNorm) trained on 400 digits, and a split forgetting class 3 (about 40 samples)."""
    digits = load_dataset("digits")
    data = replace(digits, name="digits-400", train_images=digits.train_images[:400],
                   train_labels=digits.train_labels[:400], _fingerprint=None)
    seed_everything(0)
    model = spec_for("cnn", data, width=16).build()
    fit(model, data.train(), RECIPE, Runtime.create("cpu", 1), seed=0)
    labels = data.train_labels.numpy()
    split = ForgetSplit(f"class:{FORGET}", 0, np.flatnonzero(labels == FORGET), np.flatnonzero(labels != FORGET),
                        (FORGET,), data)
    return data, model.eval(), split


def context(data, model, split) -> Context:
    return Context(model, data, data.train(split.forget), data.train(split.remain), {}, Runtime.create("cpu", 1),
                   torch.Generator().manual_seed(0))


def forget_accuracy(model, data, split) -> float:
    return accuracy(model, data.train(split.forget), Runtime.create("cpu", 1))


# --- SSD -------------------------------------------------------------------------------------------------

def test_ssd_dampens_only_selected_parameters_by_the_closed_form():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    forget = {"weight": torch.tensor([[5.0, 1.0], [100.0, 50.0]])}
    whole = {"weight": torch.tensor([[1.0, 1.0], [2.0, 0.5]])}
    mask = select_synapses(forget, whole, alpha=10.0)
    assert mask["weight"].tolist() == [[0.0, 0.0], [1.0, 1.0]]  # 5 and 1 are below 10·I_D
    dampen(model, mask, forget, whole, dampening=3.0)
    # β = min(3·2/100, 1) = 0.06 and min(3·0.5/50, 1) = 0.03; unselected weights are untouched.
    assert torch.allclose(model.weight, torch.tensor([[1.0, 2.0], [3.0 * 0.06, 4.0 * 0.03]]))


def test_ssd_dampening_never_scales_a_weight_up():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    forget, whole = {"weight": torch.tensor([[4.0]])}, {"weight": torch.tensor([[1.0]])}
    dampen(model, select_synapses(forget, whole, alpha=2.0), forget, whole, dampening=8.0)  # λ I_D / I_f = 2
    assert model.weight.item() == 2.0


def test_ssd_selects_nothing_when_alpha_reaches_the_forget_share_bound(trained):
    # With per-sample importances I_D = (n_f I_f + n_r I_r) / N, so I_f / I_D <= N / n_f.
    data, original, split = trained
    bound = (len(split.forget) + len(split.remain)) / len(split.forget)
    result = unlearn(copy.deepcopy(original), split, "ssd", runtime=Runtime.create("cpu", 1),
                     selection_weighting=bound, fisher_batch_size=1)
    assert result.details["mask_density"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(result.model.parameters(), original.parameters()))


def test_ssd_leaves_a_frozen_layer_as_it_is(trained):
    """A frozen parameter is not edited, even where a Fisher cached from the same weights (here D_f's, as
    SFR-on's mask takes it at SSD's batch size) was taken while it trained."""
    data, original, split = trained
    ctx = context(data, copy.deepcopy(original), split)
    diagonal_fisher(ctx, ctx.forget.eval(), 128)
    model = copy.deepcopy(original)
    model.features[0].weight.requires_grad_(False)
    result = unlearn(model, split, "ssd", runtime=Runtime.create("cpu", 1), selection_weighting=5.0)
    assert torch.equal(result.model.features[0].weight, original.features[0].weight)
    assert not torch.equal(result.model.fc.weight, original.fc.weight)  # the rest is dampened


# --- IU --------------------------------------------------------------------------------------------------

def test_exact_woodfisher_is_the_dense_inverse():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(5, 7, generator=g, dtype=torch.float64)
    v = torch.randn(7, generator=g, dtype=torch.float64)
    dense = torch.eye(7, dtype=torch.float64) + grads.T @ grads / 5
    assert torch.allclose(woodfisher_exact(v, list(grads)), torch.linalg.solve(dense, v))


def test_code_woodfisher_follows_the_official_recursion():
    g0, g1, g2 = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 0.0])
    v, n = torch.tensor([1.0, 2.0, 3.0]), 4
    k, o = v.clone(), g0.clone()
    for g in (g1, g2):
        t = o @ g
        k = k - (k @ g) / (n + t) * o
        o = o - t / (n + t) * o
    assert torch.allclose(woodfisher_code(v, [g0, g1, g2], n), k)


def test_iu_step_is_alpha_times_the_inverse_fisher_influence(trained):
    data, _, split = trained
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, data.num_classes))  # small enough for a dense inverse
    params = list(linear.parameters())

    def flat_grad(indices):
        x, y = data.train(indices, augment=False).batch(torch.arange(len(indices)))
        loss = F.cross_entropy(linear(x), y, reduction="sum")
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    n_f, n_r = len(split.forget), len(split.remain)
    v = flat_grad(split.forget) / (n_f + n_r) - flat_grad(split.remain) * n_f / ((n_f + n_r) * n_r)
    per_sample = torch.stack([flat_grad(split.remain[i : i + 1]) for i in range(n_r)])
    fisher = torch.eye(len(v)) + per_sample.T @ per_sample / n_r
    expected = torch.cat([p.detach().reshape(-1) for p in params]) + 3.0 * torch.linalg.solve(fisher, v)
    result = unlearn(copy.deepcopy(linear), split, "iu", runtime=Runtime.create("cpu", 1), alpha=3.0,
                     woodfisher="exact", hessian_samples=n_r, calibrate=False)  # the closed form, unscaled
    after = torch.cat([p.detach().reshape(-1) for p in result.model.parameters()])
    assert torch.allclose(after, expected, atol=1e-5)
    assert result.sample_passes == n_f + 2 * n_r


def test_iu_rejects_an_unknown_woodfisher_variant(trained):
    data, original, split = trained
    with pytest.raises(ConfigError, match="woodfisher"):
        unlearn(copy.deepcopy(original), split, "iu", runtime=Runtime.create("cpu", 1), woodfisher="dense")


# --- one_step ----------------------------------------------------------------------------------------------

def test_sgd_step_sizes_follow_the_schedule():
    assert sgd_step_sizes(0.1, 3, "constant") == pytest.approx([0.1, 0.1, 0.1])
    assert sgd_step_sizes(0.1, 4, "cosine") == pytest.approx([0.1 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])


def test_one_step_adds_the_scaled_forget_gradient_at_the_initial_weights(trained):
    data, original, split = trained
    seed_everything(0)
    initial = spec_for("cnn", data, width=16).build().train()
    x, y = data.train(split.forget, augment=False).batch(torch.arange(len(split.forget)))
    assert len(split.forget) <= 64  # so one training batch of 64 holds all of D_f, as below
    loss = F.cross_entropy(initial(x), y, reduction="sum")
    gradient = torch.autograd.grad(loss, list(initial.parameters()))
    scale = sum(0.05 * (1 + np.cos(np.pi * e / 15)) / 2 for e in range(15)) / 64  # Σ_e η_e / b
    result = unlearn(copy.deepcopy(original), split, "one_step", runtime=Runtime.create("cpu", 1),
                     **{**ONE_STEP_RECIPE, "train_batch_size": 64}, calibrate=False)
    for before, after, g in zip(original.parameters(), result.model.parameters(), gradient):
        assert torch.allclose(after, before + scale * g, atol=1e-6)
    for name, buffer in original.state_dict().items():  # BatchNorm statistics are those of the trained model
        if "running" in name:
            assert torch.equal(result.model.state_dict()[name], buffer)


def test_one_step_leaves_a_frozen_layer_as_it_is_at_w0_and_after(trained):
    """A frozen layer is not trained, so the gradient is taken with it at the value it holds, and not moved."""
    data, original, split = trained
    seed_everything(0)
    initial = spec_for("cnn", data, width=16).build().train()
    with torch.no_grad():
        initial.features[0].weight.copy_(original.features[0].weight)
    initial.features[0].weight.requires_grad_(False)
    x, y = data.train(split.forget, augment=False).batch(torch.arange(len(split.forget)))
    trainable = [p for p in initial.parameters() if p.requires_grad]
    gradient = torch.autograd.grad(F.cross_entropy(initial(x), y, reduction="sum"), trainable)
    scale = sum(0.05 * (1 + np.cos(np.pi * e / 15)) / 2 for e in range(15)) / 64
    model = copy.deepcopy(original)
    model.features[0].weight.requires_grad_(False)
    result = unlearn(model, split, "one_step", runtime=Runtime.create("cpu", 1),
                     **{**ONE_STEP_RECIPE, "train_batch_size": 64}, calibrate=False)
    assert torch.equal(result.model.features[0].weight, original.features[0].weight)
    moved = [(a, b) for (n, a), b in zip(result.model.named_parameters(), original.parameters())
             if n != "features.0.weight"]
    for (after, before), g in zip(moved, gradient):
        assert torch.allclose(after, before + scale * g, atol=1e-6)


def test_one_step_unrolls_the_recipe_it_is_given(trained):
    data, original, split = trained
    adam = {**RECIPE.model_dump(), "optimizer": "adam"}
    with pytest.raises(ConfigError, match="original was trained with adam: pass train_lr"):
        unlearn(copy.deepcopy(original), split, "one_step", recipe=adam, runtime=Runtime.create("cpu", 1))
    slow = unlearn(copy.deepcopy(original), split, "one_step", recipe={**RECIPE.model_dump(), "lr": RECIPE.lr / 10},
                   runtime=Runtime.create("cpu", 1), calibrate=False)
    fast = unlearn(copy.deepcopy(original), split, "one_step", runtime=Runtime.create("cpu", 1), calibrate=False)
    # the step scales with the sum of the recipe's learning rates: a tenth of the rate, a tenth of the step
    names = [k for k, _ in original.named_parameters()]
    moved = [float(sum((r.model.state_dict()[k] - original.state_dict()[k]).abs().sum() for k in names))
             for r in (slow, fast)]
    assert moved[0] == pytest.approx(moved[1] / 10, rel=1e-3)


# --- FF --------------------------------------------------------------------------------------------------

def test_expected_fisher_of_one_sample_is_the_model_fisher(trained):
    data, original, split = trained
    model = copy.deepcopy(original).eval()
    remain = split.remain[:20]
    ctx = context(data, model, replace(split, remain=remain))
    fisher = expected_fisher(ctx, ctx.remain, batch_size=1)
    params = list(model.parameters())
    expected = [torch.zeros_like(p) for p in params]
    for i in range(len(remain)):
        x, _ = data.train(remain[i : i + 1], augment=False).batch(torch.arange(1))
        logits = model(x)
        prob = logits.softmax(-1).detach()[0]
        for c in range(data.num_classes):
            grads = torch.autograd.grad(F.cross_entropy(logits, torch.tensor([c])), params, retain_graph=True)
            for e, g in zip(expected, grads):
                e += prob[c] * g ** 2
    for f, e in zip(fisher.values(), expected):
        assert torch.allclose(f, e / len(remain), rtol=1e-4, atol=1e-9)
    assert ctx.sample_passes == len(remain) * data.num_classes


def test_fisher_forgetting_silences_forgotten_classes_and_keeps_weights_at_tiny_noise(trained):
    data, original, split = trained
    result = unlearn(copy.deepcopy(original), split, "fisher", runtime=Runtime.create("cpu", 1), alpha=1e-12)
    fc, kept = result.model.fc, [c for c in range(data.num_classes) if c != FORGET]
    assert fc.weight[FORGET].abs().max() < 0.2 and fc.bias[FORGET].abs() < 0.2  # N(0, 1e-3): the row is gone
    assert torch.allclose(fc.weight[kept], original.fc.weight[kept], atol=1e-3)
    assert torch.allclose(result.model.features[0].weight, original.features[0].weight, atol=1e-3)


def test_fisher_forgetting_reads_only_the_share_of_the_remain_set_its_budget_pays_for(trained):
    """With few epochs a Fisher pass over all of D_r (C backward passes per sample) would cost C / epochs of a
    retraining: here 10 / 2. It reads a seeded subset instead, as much as `budget` of a retraining pays for."""
    data, original, split = trained
    short = TrainRecipe(epochs=2, batch_size=32, lr=0.05, augment=False)
    result = unlearn(copy.deepcopy(original), split, "fisher", recipe=short, runtime=Runtime.create("cpu", 1),
                     alpha=1e-12, calibrate=False, budget=0.25)
    retraining = short.epochs * len(split.remain)
    assert result.sample_passes <= 0.25 * retraining
    assert result.sample_passes >= 0.25 * retraining - data.num_classes  # the whole share, to one sample
    fc = result.model.fc
    assert fc.weight[FORGET].abs().max() < 0.2  # and it still silences the forgotten class


# --- every one-shot method forgets ------------------------------------------------------------------------

@pytest.mark.parametrize("method, hyperparameters", [
    ("iu", {"alpha": 3.0, "hessian_samples": 50}),
    ("fisher", {}),
    ("ssd", {"selection_weighting": 5.0, "fisher_batch_size": 1}),
    ("one_step", ONE_STEP_RECIPE),
])
def test_one_shot_methods_forget_a_class_and_keep_the_rest(trained, method, hyperparameters):
    data, original, split = trained
    runtime = Runtime.create("cpu", 1)
    assert forget_accuracy(original, data, split) == 100.0
    result = unlearn(copy.deepcopy(original), split, method, runtime=runtime, **hyperparameters)
    assert forget_accuracy(result.model, data, split) < 20.0
    assert accuracy(result.model, data.train(split.remain), runtime) > 80.0
    assert result.sample_passes > 0
