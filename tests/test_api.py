"""A user's own data through the whole toolkit, through the Python API: from_torch, train, unlearn, the verdict,
evaluate against an oracle with the noise floor, and the bench on a dataset object."""
import json

import numpy as np
import pytest
import torch

import unlearnkit as uk
from unlearnkit.errors import ConfigError, DataError
from unlearnkit.training import predict

FAST = {"epochs": 15, "batch_size": 32, "lr": 0.05, "augment": False}  # the digits recipe


class Pairs(torch.utils.data.Dataset):
    """A map-style torch Dataset yielding (image, label) from arrays, as a user's would."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


@pytest.fixture(scope="module")
def digits_as_user_data():
    digits = uk.load_dataset("digits")
    to_uint8 = (digits.train_images * 255).round().to(torch.uint8)
    test_uint8 = (digits.test_images * 255).round().to(torch.uint8)
    # HWC uint8 arrays, as PIL and numpy hand them out
    train = Pairs(to_uint8.permute(0, 2, 3, 1).numpy(), digits.train_labels.numpy())
    test = Pairs(test_uint8.permute(0, 2, 3, 1).numpy(), digits.test_labels.numpy())
    return train, test


def test_from_torch_reads_uint8_hwc_images_and_learns_normalisation(digits_as_user_data):
    train, test = digits_as_user_data
    with pytest.raises(DataError, match="looks like \\(H, W, C\\): pass layout='HWC'"):
        uk.from_torch(train, test)
    data = uk.from_torch(train, test, layout="HWC", normalize=True, name="mnist")
    assert data.image_shape == (1, 8, 8) and float(data.train_images.max()) == pytest.approx(1.0)
    reference = uk.load_dataset("digits")
    assert data.mean[0] == pytest.approx(reference.mean[0], abs=1e-3)
    # the name labels the data; it never selects the registered MNIST recipe
    assert data.recipe == uk.from_torch(train, test, layout="HWC", name="anything").recipe
    assert data.recipe.epochs == 20 and data.recipe.epochs != uk.load_dataset("digits").recipe.epochs


def test_a_users_data_runs_through_unlearn_verdict_and_evaluate(digits_as_user_data, runtime):
    train, test = digits_as_user_data
    data = uk.from_torch(train, test, layout="HWC", normalize=True, recipe=FAST)
    spec = uk.spec_for("mlp", data, hidden=(64,))
    original = uk.train(data, spec, seed=0, runtime=runtime)
    split = uk.make_split("class:3", data, seed=0)
    oracle = uk.train(data, spec, seed=0, split=split, runtime=runtime)
    floor = uk.noise_floor(data, spec, split, seed=0, runtime=runtime)
    model = original.load_model()
    result = uk.unlearn(model, split, "sfron", data=data, runtime=runtime)
    assert result.model is model  # changed in place
    said = uk.verdict(original, result, split, data, runtime=runtime)
    assert said["verdict"] == "forgotten" and said["after"]["forget_acc"] <= 1.0
    report = uk.evaluate(result, oracle, split, data, original=original, floor=floor, runtime=runtime)
    assert report["forget_acc"] <= 1.0 and report["rte_s"] > 0 and report["cost_ratio"] < 0.5
    assert report["nothing"]["avg_gap"] > report["avg_gap"]
    assert report["closing"]["avg_gap"] > 0.5 and report["closing"]["kl_forget"] > 0.5
    with pytest.raises(ConfigError, match="must be an nn.Module"):
        uk.evaluate("model.pt", oracle, split, data)
    # an oracle of another split, or an original passed as the oracle, would score against the wrong answer
    other = uk.make_split("class:4", data, seed=0)
    with pytest.raises(ConfigError, match=f"made for forget split class:3 seed 0 \\({split.fingerprint}\\), not "
                                          f"the split given, class:4"):
        uk.evaluate(result.model, oracle, other, data)  # a bare module carries no split of its own
    with pytest.raises(ConfigError, match="the floor .* made for forget split class:3"):
        uk.evaluate(result.model, uk.train(data, spec, seed=0, split=other, runtime=runtime), other, data,
                    original=original, floor=floor)
    with pytest.raises(ConfigError, match="has no forget split beside its weights: it was trained on every sample"):
        uk.evaluate(result, original, split, data)
    with pytest.raises(ConfigError, match="evaluate\\(\\) takes a ForgetSplit .* got str"):
        uk.evaluate(result, oracle, "class:3", data)
    # printed, each says what it holds in one line, not every pixel, index and weight
    assert repr(data) == ("ImageDataset('custom': 1437 train / 360 test, 10 classes, images (1, 8, 8) float32, "
                          "recipe 15 epochs of batch 32 at lr 0.05)")
    sizes = f"{len(split.forget)} forget / {len(split.remain)} remain"
    assert repr(split) == f"ForgetSplit('class:3', seed 0: {sizes}, classes [3])"
    kept = result.details["calibration"]["stopped_at_step"]
    assert repr(result).startswith(f"UnlearnResult('sfron': kept step {kept} of {result.steps} planned, ")
    assert "\n" not in repr(result) and 0 < kept <= result.steps
    assert result.details["calibration"]["decision"] in repr(result)


def test_a_model_name_trains_as_its_spec_sized_for_the_data(digits_as_user_data, runtime):
    train, test = digits_as_user_data
    data = uk.from_torch(train, test, layout="HWC", normalize=True, recipe=FAST)
    by_name = uk.train(data, "mlp", seed=0, runtime=runtime)
    assert by_name.record["model"] == uk.spec_for("mlp", data).describe()
    assert uk.train(data, uk.spec_for("mlp", data), seed=0, runtime=runtime).path == by_name.path  # the same model
    split = uk.make_split("class:3", data, seed=0)
    floor = uk.noise_floor(data, "mlp", split, seed=0, runtime=runtime)
    assert floor.record["model"] == by_name.record["model"] and floor.record["seed"] == 1000


def test_the_bench_runs_on_a_dataset_object(digits_as_user_data, runtime, tmp_path):
    train, test = digits_as_user_data
    data = uk.from_torch(train, test, layout="HWC", normalize=True, recipe=FAST, name="mydigits")
    result = uk.bench(data, "mlp", forget=["class:3"], methods=["sfron", "ft"], seeds=[0], runtime=runtime,
                      out=tmp_path / "bench")
    rows = {r["method"]: r for r in result["summary"]["mydigits-class3"]}
    assert {"RT (oracle)", "RT′ (2nd seed)", "Original", "sfron", "ft"} <= set(rows)
    assert "closing_avg_gap" in rows["sfron"] and result["verdicts"]["mydigits-class3"]["closest"] in ("sfron", "ft")
    assert "mydigits" in (tmp_path / "bench" / "results.md").read_text()
    cells = json.loads((tmp_path / "bench" / "results.json").read_text())["cells"]
    assert cells and all(c["scenario"] == "mydigits-class3" for c in cells)
    assert np.isfinite(rows["sfron"]["avg_gap"])


def test_a_table_runs_through_the_toolkit_with_the_users_own_model(runtime):
    digits = uk.load_dataset("digits")
    rows = Pairs(digits.train_images.flatten(1).numpy(), digits.train_labels.numpy())  # feature vectors, (64,)
    test = Pairs(digits.test_images.flatten(1).numpy(), digits.test_labels.numpy())
    with pytest.raises(DataError, match="not CHW \\(3 dimensions\\); for feature vectors pass layout='F'"):
        uk.from_torch(rows, test)
    with pytest.raises(ConfigError, match="feature vectors \\(layout='F'\\) take no augmentation"):
        uk.from_torch(rows, test, layout="F", augment=uk.Augment(crop_padding=2))
    data = uk.from_torch(rows, test, layout="F", normalize=True, recipe=FAST)
    assert repr(data).startswith("ImageDataset('custom': 1437 train / 360 test, 10 classes, features (64,) float32")
    assert data.train().batch(torch.arange(5))[0].shape == (5, 64)  # rows, as the user's model takes them

    def users_model(seed):  # a plain MLP on (N, 64): it could not take (N, 64, 1, 1)
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

    original = uk.train(data, users_model(0), seed=0, runtime=runtime)
    split = uk.make_split("class:3", data, seed=0)
    oracle = uk.train(data, users_model(0), seed=0, split=split, runtime=runtime)
    floor = uk.noise_floor(data, users_model(0), split, seed=0, runtime=runtime)
    again = users_model(0)
    assert uk.train(data, again, seed=0, runtime=runtime).path == original.path  # found in the store ...
    weights = original.load_model().state_dict()  # ... and loaded into the module, as if trained in place
    assert all(torch.equal(weights[k], v) for k, v in again.state_dict().items())
    result = uk.unlearn(original.load_model(), split, "sfron", data=data, runtime=runtime)
    # the checkpoints of a user's own module evaluate as a registered model's do: with the oracle's record
    report = uk.evaluate(result, oracle, split, data, original=original, floor=floor, runtime=runtime)
    assert 0 < report["cost_ratio"] < 0.5 and report["retrain_s"] > 0  # not NaN: the oracle's record came along
    assert report["forget_acc"] < 5 and min(report["closing"].values()) > 0.5
    assert uk.verdict(original, result, split, data, runtime=runtime)["after"]["forget_acc"] == report["forget_acc"]


def test_a_users_module_is_keyed_by_its_starting_weights_and_a_trained_one_is_refused(runtime, tmp_path):
    """uk.train trains a module in place: the same module passed again for the oracle would start from the
    original's weights, and a zero-initialised module of the same class is not the seeded one."""
    digits = uk.load_dataset("digits")
    rows = Pairs(digits.train_images.flatten(1).numpy(), digits.train_labels.numpy())
    test = Pairs(digits.test_images.flatten(1).numpy(), digits.test_labels.numpy())
    data = uk.from_torch(rows, test, layout="F", recipe=FAST)
    store = tmp_path / "store"

    def users_model(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))

    module = users_model(0)
    original = uk.train(data, module, seed=0, runtime=runtime, store=store)
    split = uk.make_split("class:3", data, seed=0)
    with pytest.raises(ConfigError, match="this module holds the trained weights of .*: pass a fresh instance"):
        uk.train(data, module, seed=0, split=split, runtime=runtime, store=store)
    with pytest.raises(ConfigError, match="this module holds the trained weights"):
        uk.train(data, original.load_model(), seed=0, split=split, runtime=runtime, store=store)
    zeroed = users_model(0)
    torch.nn.init.zeros_(zeroed[0].weight)
    assert uk.train(data, zeroed, seed=0, runtime=runtime, store=store).path != original.path
    oracle = uk.train(data, users_model(0), seed=0, split=split, runtime=runtime, store=store)
    assert oracle.record["metrics"]["forget_acc"] == 0.0  # trained from scratch without class 3


def test_from_torch_data_is_keyed_by_its_normalisation_and_augmentation(runtime, tmp_path):
    digits = uk.load_dataset("digits")
    train = Pairs(digits.train_images.numpy(), digits.train_labels.numpy())
    test = Pairs(digits.test_images.numpy(), digits.test_labels.numpy())
    recipe = {**FAST, "epochs": 1, "augment": True}
    paths = {uk.train(uk.from_torch(train, test, recipe=recipe, **options), "mlp", runtime=runtime,
                      store=tmp_path).path
             for options in ({}, {"normalize": True}, {"augment": uk.Augment(crop_padding=1)},
                             {"augment": uk.Augment(crop_padding=2)})}
    assert len(paths) == 4


def test_an_unlearning_result_is_judged_only_on_the_split_it_forgot(digits_as_user_data, runtime):
    train, test = digits_as_user_data
    data = uk.from_torch(train, test, layout="HWC", normalize=True, recipe=FAST)
    original = uk.train(data, "mlp", seed=0, runtime=runtime)
    forgot, other = uk.make_split("class:3", data), uk.make_split("class:5", data)
    result = uk.unlearn(original.load_model(), forgot, "ga", data=data, runtime=runtime)
    assert result.record()["split"]["fingerprint"] == forgot.fingerprint
    message = f"forgot split class:3 seed 0 \\({forgot.fingerprint}\\), not the split given, class:5"
    with pytest.raises(ConfigError, match=message):
        uk.verdict(original, result, other, data, runtime=runtime)
    oracle = uk.train(data, "mlp", seed=0, split=other, runtime=runtime)
    with pytest.raises(ConfigError, match=message):
        uk.evaluate(result, oracle, other, data, runtime=runtime)


def test_the_bench_takes_the_users_own_module_as_a_template(runtime, tmp_path):
    digits = uk.load_dataset("digits")
    rows = Pairs(digits.train_images.flatten(1).numpy(), digits.train_labels.numpy())
    test = Pairs(digits.test_images.flatten(1).numpy(), digits.test_labels.numpy())
    data = uk.from_torch(rows, test, layout="F", normalize=True, recipe=FAST, name="rows")
    torch.manual_seed(0)
    template = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    untouched = {k: v.clone() for k, v in template.state_dict().items()}
    result = uk.bench(data, template, forget=["class:3"], methods=["ga"], seeds=[0], runtime=runtime,
                      out=tmp_path / "bench", store=tmp_path / "store")
    assert all(torch.equal(untouched[k], v) for k, v in template.state_dict().items())  # copies trained, not it
    rows = {r["method"]: r for r in result["summary"]["rows-class3"]}
    assert rows["ga"]["forget_acc"] < 5 and rows["Original"]["forget_acc"] > 90
    assert "custom:Sequential" in (tmp_path / "bench" / "results.md").read_text()
    originals = sorted(p.name for p in (tmp_path / "store" / "models").iterdir())
    assert len(originals) == 3 and all("custom-Sequential" in name for name in originals)  # original, RT, RT′


def test_the_verdict_on_a_single_forget_sample_compares_its_loss_without_a_nan_band(tiny_data, runtime):
    spec = uk.spec_for("mlp", tiny_data)
    original = uk.train(tiny_data, spec, recipe={"epochs": 2, "batch_size": 16}, seed=0, runtime=runtime)
    model = original.load_model()
    logits, labels = predict(model, tiny_data.train(augment=False), runtime)
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    split = uk.make_split([int(losses.argmax())], tiny_data)  # the sample it fits worst: above the held-out mean
    said = uk.verdict(original, model, split, tiny_data, runtime=runtime)
    assert said["after"]["forget_loss"] > said["after"]["heldout_loss"]
    assert said["verdict"] == "forgotten" and "nan" not in said["line"]
