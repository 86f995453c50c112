import json
import shutil

import pytest
import torch

from unlearnkit.artifacts import load_checkpoint, load_weights
from unlearnkit.config import TrainRecipe, as_recipe
from unlearnkit.data import make_split
from unlearnkit.errors import CheckpointError, ConfigError
from unlearnkit.models import ModelSpec, spec_for
from unlearnkit.pipeline import train
from unlearnkit.training import accuracy, fit

RECIPE = TrainRecipe(epochs=4, batch_size=16, lr=0.05, augment=False)


def test_original_and_oracle_are_trained_recorded_and_found_again_by_content(tiny_data, runtime, isolated_store):
    spec = spec_for("mlp", tiny_data, hidden=(16,))
    original = train(tiny_data, spec, RECIPE, seed=0, runtime=runtime)
    record = json.loads((original.path / "record.json").read_text())
    assert record["kind"] == "original" and record["metrics"]["test_acc"] > 90
    assert ({"torch", "numpy", "python"} <= set(record["versions"])
            and record["data"]["fingerprint"] == tiny_data.fingerprint)
    again = train(tiny_data, spec, RECIPE, seed=0, runtime=runtime)
    assert again.path == original.path and again.record["created"] == original.record["created"]
    assert train(tiny_data, spec, RECIPE, seed=1, runtime=runtime).path != original.path

    split = make_split("class:2", tiny_data)
    oracle = train(tiny_data, spec, RECIPE, seed=0, split=split, runtime=runtime)
    assert oracle.record["kind"] == "oracle" and oracle.split == split
    assert oracle.record["metrics"]["forget_acc"] < 10  # it never saw class 2
    assert oracle.record["split"]["n_forget"] == 30
    assert not list(isolated_store.rglob(".*tmp*"))  # nothing half-written left behind


def test_same_seed_same_weights(tiny_data, runtime):
    spec = spec_for("cnn", tiny_data, width=4)
    a = train(tiny_data, spec, RECIPE, seed=3, runtime=runtime, force=True).load_model()
    b = train(tiny_data, spec, RECIPE, seed=3, runtime=runtime, force=True).load_model()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_interrupted_training_resumes_to_the_same_result(tiny_data, runtime, tmp_path):
    spec = spec_for("cnn", tiny_data, width=4)
    torch.manual_seed(0)
    full = spec.build()
    torch.manual_seed(0)
    resumed = spec.build()
    fit(full, tiny_data.train(), RECIPE, runtime, seed=5)
    state = tmp_path / "state.pt"
    short = RECIPE.with_overrides({"epochs": 4})
    # Simulate a kill after 2 epochs: train 2 epochs of the 4-epoch schedule saving state, then restart.
    import unlearnkit.training as training

    class Stop(Exception):
        pass

    calls = {"n": 0}
    original_save = training.save_state

    def save_then_stop(*args, **kwargs):
        original_save(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            raise Stop

    training.save_state = save_then_stop
    try:
        with pytest.raises(Stop):
            fit(resumed, tiny_data.train(), short, runtime, seed=5, resume_file=state, save_every_s=0)
    finally:
        training.save_state = original_save
    # the interrupted run's training seconds are kept, so that a resumed run's wall time (RTE) counts them
    assert torch.load(state, weights_only=True)["elapsed"] > 0
    assert training.resumed_seconds(state) == torch.load(state, weights_only=True)["elapsed"]
    torch.manual_seed(123)  # a restart does not share the first process's RNG
    restarted = spec.build()
    fit(restarted, tiny_data.train(), short, runtime, seed=5, resume_file=state)
    assert all(torch.allclose(x, y) for x, y in zip(full.state_dict().values(), restarted.state_dict().values()))


def test_checkpoint_that_does_not_match_the_model(tiny_data, runtime):
    ckpt = train(tiny_data, spec_for("mlp", tiny_data, hidden=(16,)), RECIPE, runtime=runtime)
    with pytest.raises(CheckpointError, match="does not match the Sequential model: .*shape mismatch"):
        load_weights(ModelSpec("mlp", 1, 8, 3, {"hidden": (32,)}).build(), ckpt.path / "model.safetensors")
    with pytest.raises(CheckpointError, match="does not match the SmallCNN model: missing"):
        ckpt.load_model(ModelSpec("cnn", 1, 8, 3).build())


def test_corrupt_and_missing_checkpoints(tiny_data, runtime, tmp_path):
    ckpt = train(tiny_data, spec_for("mlp", tiny_data, hidden=(16,)), RECIPE, runtime=runtime)
    (ckpt.path / "model.safetensors").write_bytes(b"\x00" * 40)
    with pytest.raises(CheckpointError, match="corrupt or not safetensors"):
        ckpt.load_model()
    (ckpt.path / "record.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="record.json is corrupt"):
        load_checkpoint(ckpt.path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="is not a checkpoint"):
        load_checkpoint(tmp_path)


def test_recipe_overrides_are_validated():
    with pytest.raises(ConfigError, match="unknown training recipe option.*'epoch'"):
        RECIPE.with_overrides({"epoch": 3})
    with pytest.raises(ConfigError, match="lr: Input should be greater than 0"):
        RECIPE.with_overrides({"lr": -1})


def test_accuracy_of_a_trained_model(tiny_data, runtime):
    ckpt = train(tiny_data, spec_for("mlp", tiny_data, hidden=(16,)), RECIPE, runtime=runtime)
    assert accuracy(ckpt.load_model(), tiny_data.test(), runtime) == pytest.approx(ckpt.record["metrics"]["test_acc"])


def test_no_empty_folder_is_left_in_the_store(tiny_data, runtime, isolated_store):
    train(tiny_data, spec_for("mlp", tiny_data, hidden=(8,)), RECIPE, seed=0, runtime=runtime)
    assert sorted(p.name for p in isolated_store.iterdir()) == ["models"]  # no empty partial/


def test_a_state_is_saved_when_a_training_beside_it_removed_the_resume_folder(tmp_path, monkeypatch):
    from unlearnkit import training

    path, real, removed = tmp_path / "partial" / "key.pt", training.atomic_write_file, []

    def racing(target, write):  # another worker's discard empties and removes the folder after it was made
        if not removed:
            removed.append(target.parent)
            target.parent.rmdir()
        real(target, write)

    monkeypatch.setattr(training, "atomic_write_file", racing)
    training.save_state(path, step=3)
    assert removed and torch.load(path, weights_only=False)["step"] == 3


def test_an_unreadable_resume_state_is_discarded_with_a_warning(tiny_data, runtime, isolated_store):
    spec = spec_for("mlp", tiny_data, hidden=(8,))
    clean = train(tiny_data, spec, RECIPE, seed=5, runtime=runtime)
    weights = {k: v.clone() for k, v in clean.load_model().state_dict().items()}
    shutil.rmtree(clean.path)  # as if the run had been killed, leaving only a damaged resume file
    partial = isolated_store / "partial" / f"{clean.record['key']}.pt"
    partial.parent.mkdir()
    partial.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="discarded the unreadable resume state"):
        again = train(tiny_data, spec, RECIPE, seed=5, runtime=runtime)
    assert not partial.parent.exists()
    assert all(torch.equal(weights[k], v) for k, v in again.load_model().state_dict().items())


def test_force_discards_partial_state(tiny_data, runtime, isolated_store, monkeypatch):
    spec = spec_for("mlp", tiny_data, hidden=(8,))
    clean = train(tiny_data, spec, RECIPE, seed=6, runtime=runtime)
    # A readable state from another run (a different seed) would be resumed from; --force must not resume it.
    other = isolated_store / "other.pt"
    fit(spec.build(), tiny_data.train(), RECIPE.with_overrides({"epochs": 2}), runtime, 9, resume_file=other)
    partial = isolated_store / "partial" / f"{clean.record['key']}.pt"
    partial.parent.mkdir()
    other.rename(partial)
    again = train(tiny_data, spec, RECIPE, seed=6, runtime=runtime, force=True)
    assert all(torch.equal(a, b) for a, b in zip(clean.load_model().state_dict().values(),
                                                 again.load_model().state_dict().values()))


def test_a_diverging_training_raises_names_the_recipe_value_and_stores_nothing(tiny_data, runtime, isolated_store):
    from unlearnkit.errors import DivergenceError

    with pytest.raises(DivergenceError, match=r"diverged .*nothing was stored: lower the recipe's lr \(given 1e\+07\)"):
        train(tiny_data, spec_for("mlp", tiny_data, hidden=(8,)), RECIPE.with_overrides({"lr": 1e7, "momentum": 0.0}),
              seed=0, runtime=runtime)
    assert not isolated_store.exists() or not list(isolated_store.rglob("*"))


def test_an_empty_training_set_is_an_error(tiny_data, runtime):
    with pytest.raises(ConfigError, match="the training set has no samples"):
        fit(spec_for("mlp", tiny_data).build(), tiny_data.train([]), RECIPE, runtime, 0)


def test_the_thread_count_is_part_of_the_content_key(tiny_data, isolated_store):
    from unlearnkit.runtime import Runtime

    spec = spec_for("mlp", tiny_data, hidden=(8,))
    one = train(tiny_data, spec, RECIPE, seed=0, runtime=Runtime.create("cpu", 1))
    two = train(tiny_data, spec, RECIPE, seed=0, runtime=Runtime.create("cpu", 2))
    torch.set_num_threads(1)
    assert one.path != two.path and one.record["threads"] == 1 and two.record["threads"] == 2


def test_the_unrolling_penalty_adds_lambda_times_the_mean_logit_std_and_rejects_a_negative_lambda():
    import math

    from unlearnkit.training import training_loss

    logits, labels = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]]), torch.tensor([2, 0])
    plain = torch.nn.functional.cross_entropy(logits, labels).item()
    # unbiased std over the classes: 1 for (1, 2, 3), sqrt(24 / 2) for (0, 0, 6); divided by N·K = 6
    expected = plain + 2.0 * (1.0 + math.sqrt(12.0)) / 6
    penalised = RECIPE.with_overrides({"logit_std_penalty": 2.0})
    assert training_loss(penalised)(logits, labels).item() == pytest.approx(expected)
    assert training_loss(RECIPE)(logits, labels).item() == pytest.approx(plain)
    with pytest.raises(ConfigError, match="logit_std_penalty"):
        RECIPE.with_overrides({"logit_std_penalty": -1.0})


def test_a_recipe_dict_overrides_only_the_fields_it_names():
    base = TrainRecipe(epochs=15, batch_size=32, lr=0.05, momentum=0.5, weight_decay=0.0, augment=False)
    assert as_recipe({"lr": 0.01}, base) == base.model_copy(update={"lr": 0.01})
    assert as_recipe(None, base) is base
    with pytest.raises(ConfigError, match="unknown training recipe option"):
        as_recipe({"lrr": 0.01}, base)
    with pytest.raises(ConfigError, match="lr: Input should be greater than 0"):
        as_recipe({"lr": 0}, base)

