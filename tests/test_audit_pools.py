"""Model pools and the per-example audit: the plan's masks, reuse from the store, in-process = Ray, and the
sanity rows on a pool that must memorise."""
from __future__ import annotations

import html
import json
import os

import numpy as np
import pytest
import torch
from conftest import synthetic_dataset

from unlearnkit.artifacts import load_checkpoint
from unlearnkit.audit.audit import SUMMARY_KEYS, audit_command, run_audit
from unlearnkit.audit.pools import load_statistics, member_dataset, plan_pool
from unlearnkit.audit.report import exposed_figure, markdown_table, small_pool_note, summary, write_report
from unlearnkit.config import TrainRecipe
from unlearnkit.data.images import ImageDataset
from unlearnkit.data.splits import make_split
from unlearnkit.errors import ConfigError
from unlearnkit.executor import make_executor
from unlearnkit.models import ModelSpec
from unlearnkit.pipeline import train
from unlearnkit.runtime import Runtime

torch.set_num_threads(1)

K = 8
RECIPE = TrainRecipe(epochs=20, batch_size=16, lr=0.05, augment=False)
TINY_RECIPE = TrainRecipe(epochs=2, batch_size=16, lr=0.05, augment=False)


def noise_dataset(n_train: int = 256, n_test: int = 32, classes: int = 4, seed: int = 0) -> ImageDataset:
    """Uniform noise with uniformly random labels: nothing generalises, so a model is confident on an example
    only if it trained on it. A model that never saw a candidate (every oracle) cannot tell it from any other
    unseen one, and the original, which memorises its half, can: the sanity rows cannot pass by luck."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n_train, 1, 8, 8, generator=g), torch.randint(0, classes, (n_train,), generator=g)
    xt, yt = torch.rand(n_test, 1, 8, 8, generator=g), torch.randint(0, classes, (n_test,), generator=g)
    return ImageDataset("noise", x, y, xt, yt, [str(c) for c in range(classes)], (0.5,), (0.29,),
                        source={"name": "noise", "root": None, "options": {}})


def mlp(data: ImageDataset, hidden: int = 64) -> ModelSpec:
    return ModelSpec("mlp", 1, 8, data.num_classes, {"hidden": [hidden]})


@pytest.fixture(scope="module")
def memorising(tmp_path_factory):
    """One audit of a pool that memorises (random labels on noise), with "ft" as the method; its store."""
    store = tmp_path_factory.mktemp("memorising")
    data = noise_dataset()
    result = run_audit(data, mlp(data), RECIPE, "random:0.5", ["ft"], models=K, seed=0, executor="local",
                       store=store, runtime=Runtime.create("cpu", 1))
    return data, result, store


# ------------------------------------------------------------------------------------------------------- plan

@pytest.mark.parametrize("n_train", [90, 91])
def test_halves_come_in_complementary_pairs_and_every_candidate_has_k_over_4_models_per_group(n_train):
    data = synthetic_dataset(n_train=n_train)
    plan = plan_pool(data, "random:0.3", K, seed=5)
    usable = plan.halves.any(0)
    assert usable.sum() == n_train - n_train % 2  # with an odd set, one example sits out of every half
    assert (plan.halves.sum(1) == n_train // 2).all()
    for j in range(K // 2):
        assert not (plan.halves[2 * j] & plan.halves[2 * j + 1]).any()
        assert ((plan.halves[2 * j] | plan.halves[2 * j + 1]) == usable).all()
    assert (plan.halves[:, usable].sum(0) == K // 2).all()  # every example in exactly K/2 halves
    expected = np.zeros(n_train, dtype=bool)
    expected[make_split("random:0.3", data, 5).forget] = True  # F* drawn once over the whole training set
    assert (plan.candidates == (expected & usable)).all()
    np.testing.assert_array_equal(plan.forget_masks, plan.halves & plan.candidates)  # forget_k = F* ∩ half_k
    cols = plan.candidate_index
    assert (plan.forget_masks[plan.group_a][:, cols].sum(0) == K // 4).all()
    assert (plan.forget_masks[~plan.group_a][:, cols].sum(0) == K // 4).all()
    assert len(set(plan.seeds)) == K


def test_class_candidates_are_the_whole_class_and_member_splits_index_the_member_data():
    data = synthetic_dataset()
    plan = plan_pool(data, "class:1", K, seed=0)
    assert (plan.candidates == (data.train_labels.numpy() == 1)).all()
    for k in range(K):
        member = member_dataset(data, plan.rows(k))
        split = plan.split(k, member)
        assert torch.equal(member.train_images, data.train_images[plan.rows(k)])
        assert member.test_images is data.test_images
        np.testing.assert_array_equal(plan.rows(k)[split.forget], np.flatnonzero(plan.forget_masks[k]))
        assert split.forgotten_classes == (1,) and split.kind == "class"
        assert member.fingerprint != data.fingerprint


def test_the_plan_is_a_function_of_its_inputs():
    data = synthetic_dataset()
    a, b, c = (plan_pool(data, "random:0.2", K, seed=s) for s in (3, 3, 4))
    assert (a.halves == b.halves).all() and a.seeds == b.seeds
    assert not (a.halves == c.halves).all() and a.seeds != c.seeds


# ------------------------------------------------------------------------------------------------- sanity rows

def test_the_oracle_row_is_at_chance_and_the_original_row_far_above_on_a_memorising_pool(memorising):
    _, result, _ = memorising
    rows = {r["method"]: r for r in result["rows"]}
    assert [r["method"] for r in result["rows"]] == ["ft", "oracle", "original"]
    oracle, original = rows["oracle"], rows["original"]
    assert original["forget_acc"] == pytest.approx(100, abs=2)  # it memorised its half...
    assert oracle["forget_acc"] < 50  # ...which the oracles never saw (chance is 25%)
    # Over ten data and pool seeds the oracle row read AUC 0.50 +- 0.03 (online and offline), the original
    # 0.95-0.97 online and 0.83-0.87 offline: the margins below are four standard deviations.
    assert abs(oracle["auc"] - 0.5) < 0.12 and abs(oracle["offline_auc"] - 0.5) < 0.12
    assert original["auc"] > 0.9 and original["offline_auc"] > 0.75
    assert original["epsilon"] > oracle["epsilon"] + 5
    assert original["klom_mean"] > oracle["klom_mean"]
    assert oracle["pairs"] == original["pairs"] == 128 * K  # every candidate scored on every target
    assert set(summary(oracle)) == set(SUMMARY_KEYS)
    json.dumps(summary(oracle), allow_nan=False)  # the summary is plain JSON


def test_pool_statistics_cover_every_training_example(memorising):
    data, result, _ = memorising
    stats = load_statistics(result["jobs"]["original"][0]["statistics"])
    assert stats["phi"].shape == stats["margin"].shape == (len(data.train_labels),)
    np.testing.assert_allclose(stats["phi"], stats["margin"])  # KLOM's margin is LiRA's phi by definition


def test_the_report_files_hold_the_rows_and_the_plots(memorising, tmp_path):
    data, result, _ = memorising
    paths = write_report(result, data, tmp_path / "audit", "test")
    page = paths["report"].read_text()
    assert page.count("data:image/png;base64,") == 3  # ROC, epsilon histograms, exposed examples of ft
    stored = json.loads(paths["json"].read_text())
    assert [r["method"] for r in stored["rows"]] == ["ft", "oracle", "original"]
    note = small_pool_note(result["pool"])  # K = 8: 2 models per side, too few for ε and KLOM
    assert note and stored["note"] == note and html.escape(note) in page
    assert paths["markdown"].read_text() == markdown_table(result["rows"]) + f"\n{note}\n"


# ----------------------------------------------------------------------------------------------------- trainers

@pytest.mark.parametrize("vectors", [False, True])
def test_the_exposed_examples_are_drawn_in_their_own_range(vectors):
    """A table's row, or an image normalised by the user's own Dataset, is drawn scaled by the training range,
    not clipped to [0, 1] (which would paint every negative value black)."""
    g = torch.Generator().manual_seed(0)
    shape = (6, 5, 1, 1) if vectors else (6, 3, 4, 4)
    x = torch.randn(*shape, generator=g) * 3 - 1
    data = ImageDataset("units", x, torch.arange(6) % 2, x[:2], torch.arange(2), ["a", "b"], (0.0,) * shape[1],
                        (1.0,) * shape[1], vectors=vectors)
    arrays = {"examples": np.arange(6), "exposure": np.arange(6.0), "flagged": np.zeros(6), "epsilon": np.ones(6)}
    fig = exposed_figure({"method": "sfron", "arrays": arrays}, data, count=1)
    drawn = np.asarray(fig.axes[0].images[0].get_array())
    low, high = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
    expected = ((x[5] - low[:, None, None]) / (high - low)[:, None, None]).numpy()
    expected = expected[:, 0, 0][None, :] if vectors else expected.transpose(1, 2, 0)
    assert drawn.shape == expected.shape and np.allclose(drawn, expected, atol=1e-6)


def test_a_second_audit_finds_the_whole_pool_in_the_store_which_pipeline_train_shares(tmp_path):
    data = synthetic_dataset()
    spec, runtime = mlp(data, 8), Runtime.create("cpu", 1)
    kwargs = dict(models=K, seed=1, executor="local", store=tmp_path, runtime=runtime, vectorised=False)
    first = run_audit(data, spec, TINY_RECIPE, "random:0.3", ["ft"], **kwargs)
    assert first["pool"]["trainer"] == "per member"
    assert all(r["trained"] and r["computed"] for kind in first["jobs"].values() for r in kind)
    files = [r["statistics"] for kind in first["jobs"].values() for r in kind]
    stamps = {p: os.stat(p).st_mtime_ns for p in files}
    again = run_audit(data, spec, TINY_RECIPE, "random:0.3", ["ft"], **kwargs)
    flags = [(r["trained"], r["computed"]) for kind in again["jobs"].values() for r in kind]
    assert flags == [(False, False)] * (3 * K)
    assert {p: os.stat(p).st_mtime_ns for p in files} == stamps
    assert [summary(r) for r in again["rows"]] == [summary(r) for r in first["rows"]]
    plan = first["plan"]
    found = train(member_dataset(data, plan.rows(3)), spec, TINY_RECIPE, plan.seeds[3], runtime=runtime,
                  store=tmp_path)  # a bench on the member's data reuses the pool's model
    assert str(found.path) == first["jobs"]["original"][3]["checkpoint"]


@pytest.mark.parametrize("kind", ["original", "ft"])
def test_damaged_stored_statistics_are_computed_again_not_read(tmp_path, kind):
    data = synthetic_dataset()
    spec, runtime = mlp(data, 8), Runtime.create("cpu", 1)
    kwargs = dict(models=K, seed=1, executor="local", store=tmp_path, runtime=runtime, vectorised=False)
    first = run_audit(data, spec, TINY_RECIPE, "random:0.3", ["ft"], **kwargs)
    path = first["jobs"][kind][2]["statistics"]
    with open(path, "r+b") as f:  # a file cut short, as by a full disk or a hand edit
        f.truncate(50)
    with pytest.warns(UserWarning, match="statistics file .* is damaged .*: computing it again"):
        again = run_audit(data, spec, TINY_RECIPE, "random:0.3", ["ft"], **kwargs)
    assert again["jobs"][kind][2]["computed"]
    assert [summary(r) for r in again["rows"]] == [summary(r) for r in first["rows"]]


def test_a_vectorised_pool_is_keyed_apart_from_per_member_training(tmp_path):
    data = synthetic_dataset()
    spec, runtime = mlp(data, 8), Runtime.create("cpu", 1)
    result = run_audit(data, spec, TINY_RECIPE, "random:0.3", [], models=K, seed=1, executor="local",
                       store=tmp_path, runtime=runtime, vectorised=True)
    assert result["pool"]["trainer"] == "vectorised"
    assert [r["method"] for r in result["rows"]] == ["oracle", "original"]
    plan, cohort = result["plan"], result["jobs"]["original"][0]
    assert load_checkpoint(cohort["checkpoint"]).record["trainer"] == "vectorised"
    single = train(member_dataset(data, plan.rows(0)), spec, TINY_RECIPE, plan.seeds[0], runtime=runtime,
                   store=tmp_path)
    assert str(single.path) != cohort["checkpoint"]  # vmap rounds otherwise: not the model `fit` gives


def test_a_method_that_breaks_a_member_is_a_row_with_its_error_not_the_end_of_the_audit(tmp_path):
    data = synthetic_dataset()
    result = run_audit(data, mlp(data, 8), TINY_RECIPE, "random:0.3", ["ga"], models=K, seed=1, store=tmp_path,
                       runtime=Runtime.create("cpu", 1), hyperparameters={"ga": {"lr": 1e30, "calibrate": False}})
    broken, oracle, original = result["rows"]
    assert broken["method"] == "ga" and "NaN or infinite" in broken["error"] and broken["auc"] is None
    assert oracle["error"] is None and original["auc"] is not None
    assert "diverged: member" in markdown_table(result["rows"])


# ---------------------------------------------------------------------------------------------------------- Ray

def test_in_process_and_ray_give_identical_rows(tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install unlearnkit[ray])")
    data = noise_dataset(64, 16)
    spec, runtime = mlp(data, 16), Runtime.create("cpu", 1)
    rows = {}
    for name in ("local", "ray"):
        with make_executor(name, num_cpus=2) if name == "ray" else make_executor(name) as executor:
            result = run_audit(data, spec, TINY_RECIPE, "random:0.5", ["ft"], models=K, seed=2, executor=executor,
                               store=tmp_path / name, runtime=runtime, vectorised=False)
        assert all(r["trained"] for r in result["jobs"]["original"])  # each trained its own pool
        rows[name] = result["rows"]
    assert [summary(r) for r in rows["local"]] == [summary(r) for r in rows["ray"]]
    for local, ray in zip(rows["local"], rows["ray"]):
        for name, values in local["arrays"].items():
            np.testing.assert_array_equal(values, ray["arrays"][name])


# --------------------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("change, message", [
    ({"models": 6}, "models must be a multiple of 4 and at least 8"),
    ({"models": 4}, "models must be a multiple of 4 and at least 8"),
    ({"models": 10}, "models must be a multiple of 4 and at least 8"),
    ({"models": "8"}, "models must be a multiple of 4 and at least 8"),
    ({"models": True}, "models must be a multiple of 4 and at least 8"),
    ({"seed": -1}, "the pool seed must be >= 0"),
    ({"methods": ["nope"]}, "unknown method 'nope'"),
    ({"methods": ["ft", "ft"]}, "methods lists a method twice"),
    ({"methods": ["oracle"]}, "'oracle' is a sanity row"),
    ({"hyperparameters": {"ga": {}}}, "hyperparameters are given for method(s) ['ga']"),
    ({"hyperparameters": {"ft": {"budget": -1}}}, "method 'ft'"),
    ({"forget": "random:2"}, "random forget fraction must be in (0, 1)"),
    ({"forget": "everything"}, "forget spec 'everything' is malformed"),
    ({"forget": 0.1}, "a forget spec is a string"),
    ({"forget": "random:0.01"}, "nothing to forget"),
    ({"spec": torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))},
     "the audit trains its pool from a ModelSpec"),
])
def test_bad_inputs_are_one_line_config_errors_before_any_training(change, message, tmp_path):
    data = synthetic_dataset()
    kwargs = {"forget": "random:0.3", "methods": ["ft"], "models": K, "seed": 0, "spec": mlp(data, 8), **change}
    with pytest.raises(ConfigError) as caught:
        run_audit(data, kwargs.pop("spec"), TINY_RECIPE, kwargs.pop("forget"), kwargs.pop("methods"), store=tmp_path,
                  **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "models").exists()


def test_audit_command_writes_the_report_into_the_store(tmp_path):
    result = audit_command("digits", model="mlp", forget="class:3", methods="ft", models=K, seed=0, store=tmp_path,
                           device="cpu", threads=1, recipe={"epochs": 1})
    assert [r["method"] for r in result["rows"]] == ["ft", "oracle", "original"]
    for name in ("report", "markdown", "json"):
        assert os.path.isfile(result[name]) and os.path.dirname(result[name]).startswith(str(tmp_path / "audit"))
    stored = json.loads(open(result["json"]).read())  # the record says how to make it again
    assert stored["command"].startswith("unlearnkit audit --data digits --model mlp --epochs 1 --forget class:3")
    assert stored["config"]["model"]["name"] == "mlp" and stored["config"]["recipe"]["epochs"] == 1
    assert stored["config"]["hyperparameters"]["ft"]["lr_scale"] and stored["config"]["compute"]["threads"] == 1
    with pytest.raises(ConfigError, match="models must be a multiple of 4"):
        audit_command("digits", models=6, store=tmp_path)
