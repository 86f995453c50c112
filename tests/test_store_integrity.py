"""Nothing broken is returned from the store as a success: a stored model whose weights file is damaged or
changed, or whose split is missing, is computed again; a damaged original is refused as the start of unlearning."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from unlearnkit.artifacts import load_checkpoint
from unlearnkit.config import TrainRecipe
from unlearnkit.data import load_dataset, make_split
from unlearnkit.errors import CheckpointError, SplitError
from unlearnkit.models import spec_for
from unlearnkit.pipeline import train, unlearn_checkpoint

RECIPE = TrainRecipe(epochs=2, batch_size=16, lr=0.05, augment=False)


def zero_weights(folder):
    weights = folder / "model.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in load_file(str(weights)).items()}, str(weights))


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_stored_model_is_trained_again_not_returned(tiny_data, runtime, damage):
    spec = spec_for("mlp", tiny_data, hidden=(16,))
    original = train(tiny_data, spec, RECIPE, seed=0, runtime=runtime)
    weights = original.load_model().state_dict()
    if damage == "truncated":
        path = original.path / "model.safetensors"
        path.write_bytes(path.read_bytes()[:100])
    else:
        zero_weights(original.path)
    with pytest.warns(UserWarning, match="is damaged .*: computing it again"):
        again = train(tiny_data, spec, RECIPE, seed=0, runtime=runtime)
    assert again.path == original.path and again.damage() is None
    assert all(torch.equal(v, weights[k]) for k, v in again.load_model().state_dict().items())


def test_an_oracle_whose_split_is_missing_is_trained_again(tiny_data, runtime):
    spec = spec_for("mlp", tiny_data, hidden=(16,))
    split = make_split("class:2", tiny_data)
    oracle = train(tiny_data, spec, RECIPE, seed=0, split=split, runtime=runtime)
    (oracle.path / "split.npz").unlink()
    with pytest.warns(UserWarning, match="its split.npz is missing"):
        again = train(tiny_data, spec, RECIPE, seed=0, split=split, runtime=runtime)
    assert again.split == split


def test_a_changed_copy_of_an_original_is_refused_and_never_answered_from_the_store(runtime, tmp_path):
    """A copy whose weights were replaced keeps the original's record, so it would find the original's stored
    unlearning result: it is refused before that lookup, and loading it says what is wrong."""
    digits = load_dataset("digits")
    original = train(digits, spec_for("mlp", digits, hidden=(16,)), RECIPE, seed=0, runtime=runtime)
    unlearn_checkpoint(original, "ga", "class:2", runtime=runtime)
    copy = tmp_path / "copy"
    shutil.copytree(original.path, copy)
    zero_weights(copy)
    changed = load_checkpoint(copy)
    with pytest.raises(CheckpointError, match="its weights are not those its record.json was written for"):
        unlearn_checkpoint(changed, "ga", "class:2", runtime=runtime)
    with pytest.raises(CheckpointError, match="its weights are not those its record.json was written for "
                                              "\\(changed or damaged since it was saved\\)"):
        changed.load_model()


def test_an_oracle_of_another_recipe_or_model_is_noted_in_the_evaluation(runtime):
    from unlearnkit.evaluation.checkpoints import evaluate_checkpoints

    digits = load_dataset("digits")
    spec = spec_for("mlp", digits, hidden=(16,))
    original = train(digits, spec, RECIPE, seed=0, runtime=runtime)
    unlearned = unlearn_checkpoint(original, "ga", "class:2", runtime=runtime)
    split = unlearned.split
    right = train(digits, spec, RECIPE, seed=0, split=split, runtime=runtime)
    shorter = train(digits, spec, RECIPE.with_overrides({"epochs": 1}), seed=0, split=split, runtime=runtime)
    other = train(digits, spec_for("mlp", digits, hidden=(8,)), RECIPE, seed=0, split=split, runtime=runtime)
    notes = {name: evaluate_checkpoints(unlearned.path, oracle.path, runtime=runtime, attacks=("mia_loss",),
                                        mia="mia_loss")["notes"]
             for name, oracle in (("right", right), ("shorter", shorter), ("other", other))}
    assert not any("the oracle" in note for note in notes["right"])
    assert any("another recipe than the original (epochs differ)" in note for note in notes["shorter"])
    assert any("the oracle is another model" in note for note in notes["other"])


def test_an_oracle_whose_split_is_damaged_is_trained_again_and_loading_it_says_so(tiny_data, runtime):
    spec = spec_for("mlp", tiny_data, hidden=(16,))
    split = make_split("class:2", tiny_data)
    oracle = train(tiny_data, spec, RECIPE, seed=0, split=split, runtime=runtime)
    path = oracle.path / "split.npz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SplitError, match="split file .*split.npz' is damaged"):
        load_checkpoint(oracle.path).split
    with pytest.warns(UserWarning, match="split.npz' is damaged .*: computing it again"):
        again = train(tiny_data, spec, RECIPE, seed=0, split=split, runtime=runtime)
    assert again.split == split


@pytest.mark.parametrize("edit, message", [
    (lambda record: [record], "record.json is corrupt \\(a JSON list, not an object\\)"),
    (lambda record: {**record, "model": "mlp"}, "'model' is str, not a mapping"),
])
def test_a_hand_edited_record_is_one_clear_error_and_never_reused(tiny_data, runtime, edit, message):
    spec = spec_for("mlp", tiny_data, hidden=(16,))
    original = train(tiny_data, spec, RECIPE, seed=0, runtime=runtime)
    record = original.path / "record.json"
    record.write_text(json.dumps(edit(json.loads(record.read_text()))))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(original.path).load_model()
    with pytest.warns(UserWarning, match="is damaged .*: computing it again"):
        again = train(tiny_data, spec, RECIPE, seed=0, runtime=runtime)
    assert not again.reused and again.damage() is None


def test_a_store_hit_reads_its_weights_and_split_once_and_ships_neither(tiny_data, runtime, monkeypatch):
    """The integrity check reads the files a stored oracle is reused from; loading it then uses what was read,
    and a checkpoint sent to a worker (pickled) carries its path, not those tensors."""
    import pickle

    import unlearnkit.artifacts as artifacts
    from unlearnkit.data.splits import ForgetSplit

    spec = spec_for("mlp", tiny_data, hidden=(16,))
    split = make_split("class:2", tiny_data)
    stored = train(tiny_data, spec, RECIPE, seed=0, split=split, runtime=runtime).load_model().state_dict()
    reads = {"weights": 0, "split": 0}
    real_load_file, real_split_load = artifacts.load_file, ForgetSplit.load.__func__

    def counted_file(path):
        reads["weights"] += 1
        return real_load_file(path)

    def counted_split(cls, path):
        reads["split"] += 1
        return real_split_load(cls, path)

    monkeypatch.setattr(artifacts, "load_file", counted_file)
    monkeypatch.setattr(ForgetSplit, "load", classmethod(counted_split))
    found = train(tiny_data, spec, RECIPE, seed=0, split=split, runtime=runtime)
    assert found.reused and found.split == split
    assert pickle.loads(pickle.dumps(found)).checked == {}
    loaded = found.load_model().state_dict()
    assert reads == {"weights": 1, "split": 1}
    assert all(torch.equal(v, stored[k]) for k, v in loaded.items())
