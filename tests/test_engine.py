import copy
import math

import pytest
import torch
from torch import nn

from unlearnkit.data import make_split
from unlearnkit.errors import ConfigError, DivergenceError
from unlearnkit.runtime import seed_everything
from unlearnkit.unlearning import masks
from unlearnkit.unlearning.context import Batch, Context
from unlearnkit.unlearning.engine import unlearn
from unlearnkit.unlearning.fisher import diagonal_fisher
from unlearnkit.unlearning.forgetting import AdaptiveAscent, adaptive_weights
from unlearnkit.unlearning.geometry import Stepper
from unlearnkit.unlearning.methods import METHODS
from unlearnkit.unlearning.task import Task

EXPECTED = {"sfron", "sfron_fron", "sfron_ron", "sfron_r", "ft", "ga", "neggrad_plus", "rl", "salun", "l1_sparse",
            "bad_teacher", "scrub", "iu", "fisher", "ssd", "boundary_shrink", "boundary_expand", "retrain", "sisa",
            "one_step"}


def test_every_method_resolves_and_declares_its_table_row():
    assert EXPECTED <= set(METHODS.names())
    for name, method in METHODS.items():
        assert METHODS.get(name) is method
        row = method.columns()
        assert set(row) == {"mask", "forgetting", "remaining", "geometry", "kind"} and row["geometry"], name
        assert row["kind"] in ("gradient", "procedure"), name
        for dataset in (None, "digits", "cifar10"):
            for spec in (None, "random:0.1", "class:3"):
                assert method.parameters(spec), (name, dataset, spec)


def test_unknown_method_and_hyperparameter_list_the_valid_ones(tiny_data):
    split = make_split("class:1", tiny_data)
    with pytest.raises(ConfigError, match="unknown method 'forget_everything'; expected one of: sfron"):
        unlearn(nn.Linear(1, 1), split, "forget_everything")
    with pytest.raises(ConfigError, match=r"method 'sfron' has no hyperparameter\(s\) \['gama'\]; valid: .*gamma"):
        METHODS.get("sfron").resolve({"gama": 2})
    with pytest.raises(ConfigError, match="method 'sfron': iters: Input should be a valid integer"):
        METHODS.get("sfron").resolve({"iters": "many"})
    assert METHODS.get("sfron").resolve({"alpha": 3})["alpha"] == 3.0


def test_fisher_ratio_mask_follows_the_rule(monkeypatch, tiny_data, runtime):
    forget = {"w": torch.tensor([4.0, 1.0, 0.0, 2.0, 0.0])}
    remain = {"w": torch.tensor([1.0, 2.0, 0.0, 2.0, 5.0])}
    monkeypatch.setattr(masks, "diagonal_fisher",
                        lambda ctx, view, batch, clip: forget if view is ctx.forget else remain)
    ctx = _context(tiny_data, runtime, {"gamma": 1.0, "fisher_batch_size": 8, "fisher_samples": 0, "fisher_clip": 0.0})
    # ratios (F_f + 1e-15) / (F_r + 1e-15): 4, 0.5, 1 (both zero), 1, ~0
    assert masks.FisherRatioMask().compute(ctx)["w"].tolist() == [1.0, 0.0, 1.0, 1.0, 0.0]
    ctx.hp["gamma"] = 2.0
    assert masks.FisherRatioMask().compute(ctx)["w"].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_diagonal_fisher_is_the_mean_squared_minibatch_gradient(tiny_data, runtime):
    ctx = _context(tiny_data, runtime, {}, model=nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
    view = tiny_data.train(torch.arange(10), augment=False)
    fisher = diagonal_fisher(ctx, view, batch_size=4)
    expected = torch.zeros_like(ctx.model[1].weight)
    for chunk in (slice(0, 4), slice(4, 8), slice(8, 10)):
        x, y = view.batch(torch.arange(10)[chunk])
        ctx.model.zero_grad()
        nn.functional.cross_entropy(ctx.model(x), y).backward()
        expected += ctx.model[1].weight.grad ** 2 / 3
    assert torch.allclose(fisher["1.weight"], expected, atol=1e-7)


class Losses(Task):
    """A task whose per-sample losses are given directly."""

    def forward(self, ctx, batch, train):
        return batch.x

    def losses(self, outputs, batch):
        return outputs


def test_adaptive_weights_equal_their_closed_form(tiny_data, runtime):
    losses = torch.tensor([1.0, 4.0, 0.25])
    # λ = 0.5: l^(-λ) = 1, 1/2, 2  -> normalised 2/7, 1/7, 4/7
    assert torch.allclose(adaptive_weights(losses, 0.5), torch.tensor([2, 1, 4]) / 7)
    assert torch.allclose(adaptive_weights(losses, 0.0), torch.full((3,), 1 / 3))
    ctx = _context(tiny_data, runtime, {"lambd": 0.5, "alpha": 10.0, "alpha_decay": "cosine", "normalise": "batch"})
    ctx.task, ctx.step, ctx.total_steps = Losses(), 1, 4
    batch = Batch(losses, torch.zeros(3, dtype=torch.long), torch.arange(3))
    objective = (2 * 1 + 1 * 4 + 4 * 0.25) / 7
    alpha_t = 10 * (1 + math.cos(math.pi / 4)) / 2
    assert AdaptiveAscent().loss(ctx, losses, batch).item() == pytest.approx(-alpha_t * objective)
    ctx.hp["alpha_decay"] = "linear"
    assert AdaptiveAscent().loss(ctx, losses, batch).item() == pytest.approx(-10 * 0.75 * objective)


def test_strict_mask_freezes_unmasked_weights_against_momentum_and_decay(tiny_data, runtime):
    model = nn.Linear(4, 1)
    hp = METHODS.get("ft").resolve({"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.1,
                                    "lr_schedule": "constant", "strict_mask": True})
    mask = {"weight": torch.tensor([[1.0, 0.0, 1.0, 0.0]]), "bias": torch.tensor([0.0])}
    for strict in (True, False):
        net = copy.deepcopy(model)
        ctx = _context(tiny_data, runtime, {**hp, "strict_mask": strict}, model=net)
        stepper = Stepper(ctx, mask, 10)
        before = net.weight.detach().clone()
        for _ in range(3):
            stepper.step(net(torch.ones(2, 4)).sum(), masked=True)
        frozen_moved = not torch.equal(net.weight[0, [1, 3]], before[0, [1, 3]])
        assert frozen_moved is (not strict)  # weight decay still moves them unless strictly frozen
        assert not torch.equal(net.weight[0, [0, 2]], before[0, [0, 2]])


def test_divergence_rolls_back_and_raises(tiny_data, runtime):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(DivergenceError, match="method 'ga' diverged and was rolled back.*: lower lr or"):
        unlearn(model, make_split("class:1", tiny_data), "ga", runtime=runtime, lr=1e38, clip=0.0, epochs=3,
                calibrate=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # The advice names the setting that was read: an absolute lr overrides lr_scale.
    with pytest.raises(DivergenceError, match=": lower lr_scale or"):
        unlearn(model, make_split("class:1", tiny_data), "ga", runtime=runtime, lr_scale=1e38, clip=0.0, epochs=3,
                calibrate=False)


def test_fast_slow_schedule_counts(tiny_data, runtime):
    split = make_split("class:1", tiny_data)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    result = unlearn(model, split, "sfron_fron", runtime=runtime, iters=10, forget_freq=3, batch_size=10,
                     calibrate=False)
    # 30 forget and 60 remain samples: forget steps at t = 0, 3, 6, 9 (4 x 10), a remain step every iteration (10 x 10)
    assert result.steps == 10 and result.sample_passes == 4 * 10 + 10 * 10


@pytest.mark.parametrize("spec, differ", [("random:0.3", True), ("class:1", False)])
def test_the_fron_ablation_adds_the_adaptive_weights_where_sfron_has_them(tiny_data, runtime, spec, differ):
    # {F,R,on} is {R,on} with SFR-on's adaptive weighting (λ 0.5 random); class-wise SFR-on's λ is 0, so the two
    # ablations coincide there.
    split, weights = make_split(spec, tiny_data, seed=1), {}
    for name in ("sfron_fron", "sfron_ron"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
        unlearn(model, split, name, runtime=runtime, iters=10, forget_freq=1, batch_size=10, calibrate=False)
        weights[name] = model.state_dict()
    same = all(torch.equal(weights["sfron_fron"][k], v) for k, v in weights["sfron_ron"].items())
    assert same is not differ


def test_same_seed_same_unlearned_weights(tiny_data, runtime):
    split = make_split("random:0.2", tiny_data, seed=1)
    seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    runs = [unlearn(copy.deepcopy(model), split, "sfron", runtime=runtime, seed=5, iters=6, batch_size=8).model
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()))


def _context(data, runtime, hp, model=None):
    model = model or nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    split = make_split("class:1", data)
    return Context(model, data, data.train(split.forget), data.train(split.remain), hp, runtime,
                   torch.Generator().manual_seed(0), recipe=data.recipe)


def test_the_calibration_rewinds_a_step_size_that_would_diverge(tiny_data, runtime):
    from unlearnkit.training import fit

    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    fit(model, tiny_data.train(), tiny_data.recipe.with_overrides({"epochs": 5, "batch_size": 16}), runtime, 0)
    before = copy.deepcopy(model.state_dict())
    result = unlearn(model, make_split("class:1", tiny_data), "ga", runtime=runtime, lr=1e38, clip=0.0, epochs=3)
    assert "rewound to step 0, the last check before the damage" in result.details["calibration"]["decision"]
    assert all(torch.equal(before[k], v) for k, v in result.model.state_dict().items())


def test_divergence_during_model_surgery_still_rolls_back(tiny_data, runtime):
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(DivergenceError, match="boundary_expand"):
        unlearn(model, make_split("class:1", tiny_data), "boundary_expand", runtime=runtime, lr=1e38, epochs=2,
                calibrate=False)
    assert model[1].out_features == 3
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
