"""The vectorised pool trainer reproduces `training.fit` member by member, and keeps members apart."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from unlearnkit.audit.vectorised import parameter_count, pool_is_vectorisable, train_pool
from unlearnkit.config import TrainRecipe
from unlearnkit.data.images import Augment
from unlearnkit.errors import ConfigError, DivergenceError
from unlearnkit.models import ModelSpec, spec_for
from unlearnkit.runtime import seed_everything
from unlearnkit.training import fit

torch.set_num_threads(1)

# 45 rows per member in batches of 16: two full batches and a partial one of 13 each epoch.
SGD = TrainRecipe(epochs=4, batch_size=16, lr=0.05, augment=True)
ADAM = TrainRecipe(epochs=4, batch_size=16, optimizer="adam", lr=0.003, schedule="step", augment=True)
SEEDS = [1, 2, 3]
# vmap runs each member's matmuls and convolutions as one batched or grouped kernel, which sums in another
# order than the member's own kernel: measured differences after 4 epochs are <= 2.4e-7 (0 for the MLP, whose
# batched matmul happens to sum alike). Exact ties (max-pooling over a constant background, as in digits) would
# let such rounding reroute a gradient; the synthetic images' noise has none. channels_last convolutions
# differ more (measured up to 1.4e-6 with Adam).
ATOL = 1e-6
ATOL_CHANNELS_LAST = 1e-5


def halves(n_train: int, members: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randperm(n_train, generator=g)[: n_train // 2] for _ in range(members)]


def fitted(data, spec, recipe, seed, rows, runtime) -> dict[str, torch.Tensor]:
    seed_everything(seed)
    model = spec.build()
    fit(model, data.train(rows), recipe, runtime, seed)
    return model.state_dict()


def assert_same_members(pool, reference, atol=ATOL):
    for member, expected in zip(pool, reference, strict=True):
        assert list(member) == list(expected)
        for key, value in expected.items():
            if value.dtype.is_floating_point:
                assert torch.allclose(member[key], value, rtol=0, atol=atol), (key, (member[key] - value).abs().max())
            else:  # num_batches_tracked: every member counted its own steps
                assert torch.equal(member[key], value), key


@pytest.mark.parametrize("name, options, recipe, augmented", [
    ("mlp", {"hidden": (16,)}, SGD, False),
    ("cnn", {"width": 4}, SGD, False),
    ("cnn", {"width": 4}, SGD, True),
    ("cnn", {"width": 4}, ADAM, True),
])
def test_vectorised_pool_reproduces_fit_member_by_member(name, options, recipe, augmented, tiny_data, runtime):
    data = tiny_data
    if augmented:  # crop and flip draws come from each member's own generator, after its shuffle
        data = replace(data, augment=Augment(crop_padding=1, hflip=True))
    spec = spec_for(name, data, **options)
    subsets = halves(len(data.train_labels), len(SEEDS))
    pool = train_pool(data, spec, recipe, SEEDS, subsets, runtime, vectorised=True)
    assert_same_members(pool, [fitted(data, spec, recipe, s, rows, runtime) for s, rows in zip(SEEDS, subsets)])
    if name == "cnn":
        assert int(pool[0]["features.1.num_batches_tracked"]) == recipe.epochs * 3


def test_members_with_different_seeds_or_subsets_differ_and_twins_agree(tiny_data, runtime):
    data = tiny_data
    spec = spec_for("cnn", data, width=4)
    a, b = halves(len(data.train_labels), 2)
    pool = train_pool(data, spec, SGD, [0, 0, 1, 0], [a, b, a, a], runtime, vectorised=True)

    def gap(i, j):
        return max((pool[i][k].float() - pool[j][k].float()).abs().max().item() for k in pool[i])

    assert gap(0, 1) > 1e-2 and gap(0, 2) > 1e-2  # another subset, another seed
    assert gap(0, 3) <= ATOL  # the same seed and subset: members do not leak into one another


def test_chunks_and_the_member_loop_give_the_same_pool(tiny_data, runtime):
    data = tiny_data
    spec = spec_for("cnn", data, width=4)
    subsets = halves(len(data.train_labels), len(SEEDS))
    whole = train_pool(data, spec, SGD, SEEDS, subsets, runtime, vectorised=True)
    assert_same_members(train_pool(data, spec, SGD, SEEDS, subsets, runtime, vectorised=True, chunk_size=2), whole)
    exact = train_pool(data, spec, SGD, SEEDS, subsets, runtime, vectorised=False, channels_last=False)
    assert_same_members(exact, [fitted(data, spec, SGD, s, rows, runtime) for s, rows in zip(SEEDS, subsets)],
                        atol=0)
    # channels_last convolutions sum in another order too; the weights come back in the usual layout
    fast = train_pool(data, spec, SGD, SEEDS, subsets, runtime, vectorised=False, channels_last=True)
    assert_same_members(fast, exact, atol=ATOL_CHANNELS_LAST)
    assert all(v.is_contiguous() for v in fast[0].values())


def test_pools_that_cannot_be_trained_together_fail_in_one_line(tiny_data, runtime):
    data = tiny_data
    spec = spec_for("mlp", data, hidden=(8,))
    with pytest.raises(ConfigError, match="equal size"):
        train_pool(data, spec, SGD, [0, 1], [range(45), range(44)], runtime)
    with pytest.raises(ConfigError, match="one subset per seed"):
        train_pool(data, spec, SGD, [0, 1], [range(45)], runtime)
    with pytest.raises(ConfigError, match="training set"):
        train_pool(data, spec, SGD, [0], [range(80, 100)], runtime)
    with pytest.raises(ConfigError, match="at least one member"):
        train_pool(data, spec, SGD, [], [], runtime)
    with pytest.raises(ConfigError, match="ensemble"):
        train_pool(data, replace(spec, ensemble={"size": 2, "aggregation": "vote"}), SGD, [0], [range(45)], runtime,
                   vectorised=True)


def test_only_small_single_models_are_vectorised_on_cpu(runtime):
    resnet = ModelSpec("resnet18", 3, 32, 10)
    assert parameter_count(resnet) > 10_000_000
    assert not pool_is_vectorisable(resnet, runtime)
    assert not pool_is_vectorisable(ModelSpec("cnn", 1, 8, 10), runtime)  # 94k parameters: slower under vmap
    tiny = ModelSpec("cnn", 1, 8, 10, {"width": 8})
    assert pool_is_vectorisable(tiny, runtime)
    assert not pool_is_vectorisable(replace(tiny, ensemble={"size": 2, "aggregation": "vote"}), runtime)


def test_a_diverging_member_is_named(tiny_data, runtime):
    spec = spec_for("mlp", tiny_data, hidden=(8,))
    with pytest.raises(DivergenceError, match=r"seed \[0, 1\]"):
        train_pool(tiny_data, spec, SGD.with_overrides({"lr": 1e30}), [0, 1], halves(90, 2), runtime,
                   vectorised=True)
