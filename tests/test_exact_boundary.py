"""Boundary Shrink / Expanding, the retrain oracle as a method, and SISA."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unlearnkit.config import GENERIC_RECIPE as FALLBACK_RECIPE
from unlearnkit.data import load_dataset
from unlearnkit.data.images import ImageDataset
from unlearnkit.data.splits import ForgetSplit, make_split
from unlearnkit.errors import ConfigError
from unlearnkit.models import Ensemble, spec_for
from unlearnkit.pipeline import train
from unlearnkit.runtime import seed_everything
from unlearnkit.training import accuracy, fit
from unlearnkit.unlearning import exact
from unlearnkit.unlearning.boundary import NearestWrongClass, _resized_linear, adversarial_examples
from unlearnkit.unlearning.context import Context
from unlearnkit.unlearning.engine import unlearn
from unlearnkit.unlearning.exact import ShardPlan
from unlearnkit.unlearning.forgetting import fresh_copy
from unlearnkit.unlearning.methods import METHODS


def split_of(data, forget) -> ForgetSplit:
    forget = np.sort(np.asarray(forget))
    remain = np.setdiff1d(np.arange(len(data.train_labels)), forget)
    return ForgetSplit("indices:test", 0, forget, remain, (), data)


def class_split(data, c: int) -> ForgetSplit:
    return make_split(f"class:{c}", data, 0)  # the class is named: class-wise forgetting


@pytest.fixture
def trained(tiny_data, runtime):
    """A small CNN that has learnt the synthetic classes."""
    seed_everything(0)
    model = spec_for("cnn", tiny_data, width=4).build()
    fit(model, tiny_data.train(), FALLBACK_RECIPE.with_overrides({"epochs": 8, "batch_size": 16}), runtime, 0)
    return model


def test_shrink_labels_are_the_adversarial_predictions(tiny_data, trained, runtime):
    split = class_split(tiny_data, 1)
    hp = METHODS.get("boundary_shrink").resolve({"bound": 1.0})
    ctx = Context(trained, tiny_data, tiny_data.train(split.forget), tiny_data.train(split.remain), hp, runtime,
                  torch.Generator().manual_seed(0))
    ctx.snapshot_original()
    part = NearestWrongClass()
    part.prepare(ctx)
    batch = ctx.batch(ctx.forget, torch.arange(len(split.forget)))
    labels = part.relabel(ctx, batch).y
    # FGSM in pixel space, written out: one signed step of size bound, clamped to [0, 1], rounded to 1/255.
    mean, std = 0.3, 0.4
    x = batch.x.clone().requires_grad_(True)
    F.cross_entropy(ctx.original(x), batch.y).backward()
    adv = torch.round((batch.x * std + mean + 1.0 * x.grad.sign()).clamp(0, 1) * 255) / 255
    expected = ctx.original((adv - mean) / std).argmax(1)
    assert torch.equal(labels, expected)
    assert (labels != batch.y).all()
    part.finish(ctx)
    assert ctx.state["attack_success_rate"] == 1.0


def test_on_a_tables_rows_the_attack_is_a_share_of_each_features_range_neither_clamped_nor_rounded():
    """Feature vectors (N, F) have no pixel range: one signed step of bound × each feature's range."""
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 3)
    mean, std = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    low, high = torch.tensor([0.0, -10.0]), torch.tensor([4.0, 10.0])
    x, y = torch.randn(6, 2), torch.randint(0, 3, (6,))
    adv = adversarial_examples(model, x, y, mean, std, 0.3, value_range=(low, high), clamp=False)
    raw = (x * std + mean).requires_grad_(True)
    F.cross_entropy(model((raw - mean) / std), y).backward()
    expected = (raw.detach() + 0.3 * (high - low) * raw.grad.sign() - mean) / std
    assert adv.shape == (6, 2) and torch.allclose(adv, expected, atol=1e-5)
    assert (raw.detach() + 0.3 * (high - low) * raw.grad.sign()).abs().max() > 1  # outside [0, 1]: kept as it is


def test_images_in_other_units_are_attacked_within_their_own_range():
    """Images a user normalised in their own Dataset (values below 0): clamped to the range they were seen in,
    not to [0, 1], which would wash every perturbed image out."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.randn(5, 1, 2, 2), torch.randint(0, 3, (5,))
    low, high = torch.tensor([-1.5]), torch.tensor([1.5])
    zero, one = torch.zeros(1), torch.ones(1)
    adv = adversarial_examples(model, x, y, zero, one, 0.1, value_range=(low, high))
    xg = x.clone().requires_grad_(True)
    F.cross_entropy(model(xg), y).backward()
    assert torch.allclose(adv, (x + 0.3 * xg.grad.sign()).clamp(-1.5, 1.5), atol=1e-6)
    assert adv.min() < 0


def table(rows: torch.Tensor, labels: torch.Tensor, scale: float, shift: float) -> ImageDataset:
    """A table whose features are `rows` × scale + shift, normalised back: its models see the same inputs."""
    raw = (rows * scale + shift)[:, :, None, None]
    mean, std = tuple(shift + scale * rows.mean(0)), tuple(scale * rows.std(0))
    return ImageDataset("table", raw, labels, raw, labels, ["a", "b", "c"], mean, std, vectors=True)


def test_a_tables_adversarial_labels_do_not_depend_on_the_units_of_its_features(runtime):
    """The same rows in other units (metres or millimetres) get the same nearest wrong classes: the default bound
    is a share of each feature's range, not an absolute distance in whatever units the rows came in."""
    torch.manual_seed(0)
    rows, labels = torch.randn(64, 4), torch.randint(0, 3, (64,))
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    found = []
    for scale, shift in ((1.0, 0.0), (1000.0, 50.0)):
        data = table(rows, labels, scale, shift)
        hp = METHODS.get("boundary_shrink").resolve({})
        ctx = Context(model, data, data.train(), data.train(), hp, runtime, torch.Generator().manual_seed(0))
        ctx.snapshot_original()
        part = NearestWrongClass()
        part.prepare(ctx)
        found.append(part.relabel(ctx, ctx.batch(ctx.forget, torch.arange(64))).y)
    assert (found[0] != labels).sum() >= 8  # the default bound moves labels in both units
    assert (found[0] != found[1]).float().mean() < 0.05


def test_shrink_forgets_a_class(tiny_data, trained, runtime):
    split = class_split(tiny_data, 1)
    forget = tiny_data.train(split.forget)
    assert accuracy(trained, forget, runtime) == 100.0
    result = unlearn(trained, split, "boundary_shrink", runtime=runtime, bound=1.0, lr=0.01, batch_size=8)
    assert accuracy(result.model, forget, runtime) < 20.0
    assert accuracy(result.model, tiny_data.train(split.remain), runtime) > 90.0
    assert result.details["attack_success_rate"] == 1.0


def test_expand_restores_the_architecture(tiny_data, trained, runtime):
    split = class_split(tiny_data, 1)
    before = {k: v.shape for k, v in trained.state_dict().items()}
    result = unlearn(trained, split, "boundary_expand", runtime=runtime, lr=0.05, batch_size=8)
    assert result.model is trained and trained.fc.out_features == 3
    assert {k: v.shape for k, v in trained.state_dict().items()} == before
    spec_for("cnn", tiny_data, width=4).build().load_state_dict(trained.state_dict())  # strict: same spec loads it
    assert accuracy(trained, tiny_data.train(split.forget), runtime) < 20.0
    assert accuracy(trained, tiny_data.train(split.remain), runtime) > 90.0


def test_shadow_row_is_initialised_as_the_chosen_code_does():
    layer = torch.nn.Linear(6, 3)
    torch.manual_seed(0)
    xavier = _resized_linear(layer, 4, "xavier")
    torch.manual_seed(0)
    uniform = _resized_linear(layer, 4, "uniform")
    for widened in (xavier, uniform):  # the original rows are copied, whatever the shadow row's draw
        assert torch.equal(widened.weight[:3], layer.weight) and torch.equal(widened.bias[:3], layer.bias)
    assert xavier.bias[3] == 0.0  # the authors' code: Xavier-normal weights, zero bias
    assert uniform.bias[3] != 0.0 and uniform.weight[3].abs().max() <= 1 / 6 ** 0.5  # nn.Linear's U(±1/√fan_in)
    assert not torch.equal(xavier.weight[3], uniform.weight[3])


def test_expand_rejects_an_unknown_shadow_init(tiny_data, trained, runtime):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    with pytest.raises(ConfigError, match="shadow_init: Input should be 'xavier' or 'uniform' \\(given 'zeros'\\)"):
        unlearn(trained, class_split(tiny_data, 1), "boundary_expand", runtime=runtime, shadow_init="zeros")
    assert all(torch.equal(v, before[k]) for k, v in trained.state_dict().items())


def test_retrain_is_an_independent_training_with_the_same_seed(tiny_data, trained, runtime):
    split = split_of(tiny_data, np.arange(0, 90, 9))
    result = unlearn(trained, split, "retrain", runtime=runtime, seed=3, epochs=2, batch_size=16)
    scratch = fresh_copy(trained, 3)
    fit(scratch, tiny_data.train(split.remain), FALLBACK_RECIPE.with_overrides({"epochs": 2, "batch_size": 16}),
        runtime, 3)
    expected = scratch.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in result.model.state_dict().items())
    assert result.sample_passes == 2 * len(split.remain)


SISA = {"shards": 3, "slices": 2, "epochs": 2, "batch_size": 16}


def test_sisa_retrains_only_the_affected_shards_and_reuses_its_training(tiny_data, runtime, isolated_store,
                                                                        monkeypatch):
    model = spec_for("mlp", tiny_data, hidden=(16,)).build()
    plan = ShardPlan.make(90, 3, 2, 2, seed=0)
    shard = plan.shards[1]
    forget = shard[plan.slice_end(1, 0):][:3]  # samples of shard 1's second slice only
    fits = []
    real_fit = exact.fit
    monkeypatch.setattr(exact, "fit", lambda *a, **k: fits.append(k["label"]) or real_fit(*a, **k))

    first = unlearn(model, split_of(tiny_data, forget), "sisa", runtime=runtime, store=isolated_store, **SISA)
    info = first.details["sisa"]
    assert info["affected_shards"] == [1] and info["retrained_slices"] == 1 and not info["original_cached"]
    assert fits[-1] == "SISA shard 1 slice 1" and len(fits) == 3 * 2 + 1  # the sharded training, then one slice
    assert first.sample_passes == plan.slice_end(1, 1) - len(forget)
    # The sharded training is SISA's original, not unlearning: its time stays out of the wall time.
    assert first.wall_time_s < info["unlearning_s"] + info["original_training_s"] / 2

    folder = isolated_store / "sisa" / f"sisa-synthetic-{info['original_key']}"
    for s, constituent in enumerate(first.model.constituents):
        original = spec_for("mlp", tiny_data, hidden=(16,)).build()
        exact.load_weights(original, folder / f"shard{s}-slice1.safetensors")
        same = all(torch.equal(v, original.state_dict()[k]) for k, v in constituent.state_dict().items())
        assert same == (s != 1)

    fits.clear()
    second = unlearn(model, split_of(tiny_data, forget), "sisa", runtime=runtime, store=isolated_store, **SISA)
    assert second.details["sisa"]["original_cached"] and fits == ["SISA shard 1 slice 1"]
    assert second.details["sisa"]["original_key"] == info["original_key"]


def test_sisa_without_a_store_trains_in_a_folder_that_lasts_the_run(tiny_data, runtime, isolated_store):
    model = spec_for("mlp", tiny_data, hidden=(16,)).build()
    result = unlearn(model, split_of(tiny_data, [0, 1, 2]), "sisa", runtime=runtime, **SISA)
    assert len(result.model.constituents) == 3 and not result.details["sisa"]["original_cached"]
    assert not isolated_store.exists() or not (isolated_store / "sisa").exists()  # the engine wrote nothing there


def test_sisa_ensemble_aggregates_constituents():
    torch.manual_seed(0)
    members = [torch.nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    mean_softmax = torch.stack([F.softmax(m(x), 1) for m in members]).mean(0)
    assert torch.allclose(Ensemble(members, "softmax")(x), mean_softmax.log(), atol=1e-6)
    votes = torch.stack([F.one_hot(m(x).argmax(1), 3) for m in members]).float().mean(0)
    voted = Ensemble(members, "vote")(x)
    assert torch.isfinite(voted).all() and torch.allclose(voted.exp(), votes, atol=1e-6)


def test_sisa_of_one_shard_gives_its_model_s_own_softmax():
    torch.manual_seed(0)
    member, x = torch.nn.Linear(4, 3), torch.randn(5, 4)
    for aggregation in ("vote", "softmax"):
        assert torch.allclose(Ensemble([member], aggregation)(x), F.log_softmax(member(x), 1), atol=1e-6)


@pytest.mark.parametrize("epochs, shards", [(15, 5), (1, 1)])
def test_sisa_at_its_defaults_takes_the_most_shards_that_keep_held_out_accuracy(runtime, isolated_store, epochs,
                                                                                shards):
    """Digits' MLP: at the recipe's 15 epochs, five shards of 287 images lose under 2 points of test accuracy,
    so SISA keeps them; at 1 epoch a constituent takes 9 steps, and only the whole set (a retraining) keeps it."""
    digits = load_dataset("digits")
    recipe = digits.recipe.with_overrides({"epochs": epochs})
    model = train(digits, spec_for("mlp", digits), recipe, seed=0, runtime=runtime, store=isolated_store).load_model()
    result = unlearn(model, make_split("random:0.1", digits), "sisa", recipe=recipe, runtime=runtime,
                     store=isolated_store)
    choice = result.details["sisa"]["shard_choice"]
    assert choice["shards"] == shards == len(result.model.constituents) == result.details["sisa"]["shards"]
    assert [t["shards"] for t in choice["tried"]] == [s for s in (5, 2, 1) if s >= shards]
    assert choice["within"] and choice["model_heldout_acc"] - choice["tried"][-1]["heldout_acc"] <= 2
    assert all(choice["model_heldout_acc"] - t["heldout_acc"] > 2 for t in choice["tried"][:-1])
    given = unlearn(model, make_split("random:0.1", digits), "sisa", recipe=recipe, runtime=runtime,
                    store=isolated_store, shards=5)
    assert given.details["sisa"]["shard_choice"] is None and len(given.model.constituents) == 5


def test_sisa_bad_settings_are_rejected(tiny_data, runtime):
    model = spec_for("mlp", tiny_data, hidden=(16,)).build()
    split = split_of(tiny_data, [0, 1])
    with pytest.raises(ConfigError, match="aggregation: Input should be 'vote' or 'softmax' \\(given 'median'\\)"):
        unlearn(model, split, "sisa", runtime=runtime, aggregation="median")
    with pytest.raises(ConfigError, match="need at least 100 training samples, the dataset has 90"):
        unlearn(model, split, "sisa", runtime=runtime, shards=50, slices=2)
