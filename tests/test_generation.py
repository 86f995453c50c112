"""Class-wise forgetting in a class-conditional DDPM: schedule, guidance, Fisher mask, sampler, methods."""
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from unlearnkit.config import TrainRecipe
from unlearnkit.data import load_dataset, make_split
from unlearnkit.data.images import ImageDataset
from unlearnkit.errors import ConfigError
from unlearnkit.generation.data import generation_dataset
from unlearnkit.generation.engine import unlearn_generation
from unlearnkit.generation.methods import GENERATION_METHODS
from unlearnkit.generation.metrics import (
    classify,
    frechet_distance,
    recognition_rate,
    train_classifier,
)
from unlearnkit.generation.sampling import ddim_sample, guided_eps
from unlearnkit.generation.schedule import NoiseSchedule, guided
from unlearnkit.generation.task import Diffusion
from unlearnkit.generation.training import (
    DiffusionRecipe,
    load_denoiser,
    train_denoiser,
)
from unlearnkit.generation.unet import DenoiserSpec
from unlearnkit.unlearning.context import Context
from unlearnkit.unlearning.masks import FisherRatioMask


def bands(n: int, classes: int = 3, size: int = 8, seed: int = 0):
    """Class c lights up its own pair of rows: easy for a tiny DDPM to learn in a few seconds."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = 0.1 * torch.rand(n, 1, size, size, generator=g)
    for c in range(classes):
        images[labels == c, :, 2 * c:2 * c + 2, :] += 0.8
    return images.clamp(0, 1), labels


@pytest.fixture(scope="module")
def band_data() -> ImageDataset:
    train_x, train_y = bands(150)
    test_x, test_y = bands(30, seed=1)
    base = ImageDataset("bands", train_x, train_y, test_x, test_y, ["0", "1", "2"], (0.3,), (0.4,),
                        source={"name": "bands", "root": None, "options": {}})
    return generation_dataset(base, image_size=8)


# --- noise schedule and guidance ---------------------------------------------------------------------------

def test_linear_schedule_matches_its_closed_form():
    schedule = NoiseSchedule.linear(1000, 1e-4, 0.02)
    betas = [1e-4 + (0.02 - 1e-4) * i / 999 for i in range(1000)]
    for t in (0, 1, 10, 499, 999):
        expected = math.prod(1 - b for b in betas[: t + 1])
        assert schedule.alpha_bar(torch.tensor([t])).item() == pytest.approx(expected, rel=1e-5)
    assert schedule.alpha_bar(torch.tensor([-1])).item() == 1.0  # where the sampler lands
    assert schedule.alphas_cumprod[-1] < 1e-4  # x_T is (almost) pure noise
    with pytest.raises(ConfigError):
        NoiseSchedule.linear(1000, 0.02, 1e-4)


def test_q_sample_has_the_mean_and_variance_of_q_xt_given_x0():
    schedule = NoiseSchedule.linear()
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    for step in (50, 400):
        t = torch.full((len(x0),), step)
        a = schedule.alpha_bar(t[:1]).item()
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(step))
        x_t = schedule.q_sample(x0, t, noise)
        assert torch.allclose(x_t, math.sqrt(a) * x0 + math.sqrt(1 - a) * noise)
        assert x_t.mean().item() == pytest.approx(math.sqrt(a) * 0.7, abs=0.02)
        assert x_t.var().item() == pytest.approx(1 - a, rel=0.05)


class ClassConstant(nn.Module):
    """eps(x, t, c) = c everywhere: makes the guidance arithmetic visible."""

    num_classes = 3

    def forward(self, x, t, c):
        return c.float().view(-1, 1, 1, 1).expand_as(x)


def test_classifier_free_guidance_mixes_as_the_official_code():
    cond, null = torch.tensor([2.0]), torch.tensor([0.5])
    assert guided(cond, null, 2.0).item() == pytest.approx(3 * 2.0 - 2 * 0.5)
    assert guided(cond, null, 0.0).item() == 2.0
    x = torch.zeros(2, 1, 2, 2)
    mixed = guided_eps(ClassConstant(), x, torch.zeros(2, dtype=torch.long), torch.tensor([0, 1]), 2.0)
    assert torch.allclose(mixed[:, 0, 0, 0], torch.tensor([3 * 0 - 2 * 3, 3 * 1 - 2 * 3.0]))  # null class = 3


# --- the Fisher mask on the diffusion loss -------------------------------------------------------------------

class ClassGains(nn.Module):
    """eps = w[c] * x_t: each class (and the null class) owns one weight, so which Fisher sees which weight is known."""

    num_classes = 3

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.3, -0.2, 0.5, 0.1]))

    def forward(self, x, t, c):
        return self.w[c].view(-1, 1, 1, 1) * x


def test_fisher_ratio_mask_on_the_guided_diffusion_loss_selects_the_forgotten_class(band_data, runtime):
    split = make_split("class:1", band_data)
    model = ClassGains()
    hp = {"gamma": 1.0, "fisher_batch_size": 16, "fisher_samples": 0, "fisher_clip": 0.0}
    ctx = Context(model, band_data, band_data.train(split.forget), band_data.train(split.remain), hp, runtime,
                  torch.Generator().manual_seed(0), task=Diffusion(NoiseSchedule.linear(), guidance=2.0))
    mask = FisherRatioMask().compute(ctx)["w"]
    # Class 1 is only in D_f, classes 0 and 2 only in D_r; the null weight is in both guided losses.
    assert mask[1] == 1 and mask[0] == 0 and mask[2] == 0

    from unlearnkit.unlearning.fisher import diagonal_fisher

    clipped = diagonal_fisher(ctx, ctx.remain, 16, clip=0.1)
    assert clipped["w"].sum().item() <= 0.1**2 + 1e-9  # each batch gradient clipped to norm 0.1 before squaring
    assert clipped["w"].sum() < diagonal_fisher(ctx, ctx.remain, 16)["w"].sum()


def test_diffusion_forward_draws_antithetic_timesteps_drops_conditions_and_slices(band_data, runtime):
    split = make_split("class:1", band_data)
    model = ClassGains()
    task = Diffusion(NoiseSchedule.linear(), cond_drop_prob=0.5)
    ctx = Context(model, band_data, band_data.train(split.forget), band_data.train(split.remain), {}, runtime,
                  torch.Generator().manual_seed(0), task=task)
    batch = ctx.batch(ctx.remain, torch.arange(100))
    outputs = task.forward(ctx, batch, train=True)
    assert torch.equal(outputs.t[:49] + outputs.t[51:], torch.full((49,), 999))  # n//2+1 draws t, then T-1-t
    dropped = (outputs.condition == model.num_classes).float().mean().item()
    assert 0.35 < dropped < 0.65 and torch.equal(outputs.condition[outputs.condition != 3],
                                                 batch.y[outputs.condition != 3])
    losses = task.losses(outputs, batch)
    assert losses.shape == (100,) and torch.allclose(losses, (outputs.noise - outputs.eps).square().sum((1, 2, 3)))
    part = outputs[10:20]
    assert len(part) == 10 and torch.equal(task.losses(part, batch), losses[10:20])


# --- model, sampler, training --------------------------------------------------------------------------------

TINY = DenoiserSpec("unet", 1, 8, 3, {"channels": [16, 32], "groups": 4})


def test_ddim_sampler_is_deterministic_given_a_seed(band_data):
    torch.manual_seed(0)
    model = TINY.build()
    nn.init.normal_(model.out[-1].weight, std=0.01)  # a non-zero prediction, so the noise matters
    schedule = NoiseSchedule.linear()
    labels = torch.tensor([0, 1, 2, 0, 1])
    first = ddim_sample(model, schedule, labels, (1, 8, 8), steps=5, seed=3)
    assert torch.equal(first, ddim_sample(model, schedule, labels, (1, 8, 8), steps=5, seed=3))
    # Batching changes only the convolutions' summation order.
    assert torch.allclose(first, ddim_sample(model, schedule, labels, (1, 8, 8), steps=5, seed=3, batch_size=2),
                          atol=1e-4)
    assert not torch.equal(first, ddim_sample(model, schedule, labels, (1, 8, 8), steps=5, seed=4))
    stochastic = ddim_sample(model, schedule, labels, (1, 8, 8), steps=5, eta=1.0, seed=3)
    assert torch.equal(stochastic, ddim_sample(model, schedule, labels, (1, 8, 8), steps=5, eta=1.0, seed=3))
    assert torch.allclose(stochastic, ddim_sample(model, schedule, labels, (1, 8, 8), steps=5, eta=1.0, seed=3,
                                                  batch_size=2), atol=1e-4)
    assert first.shape == (5, 1, 8, 8) and first.abs().max() <= 1
    with pytest.raises(ConfigError):
        ddim_sample(model, schedule, labels, (1, 8, 8), steps=0)


def test_generation_dataset_pads_or_resizes_to_minus_one_one(band_data):
    assert band_data.image_shape == (1, 8, 8)
    x, _ = band_data.train().batch(torch.arange(10))
    assert x.min() >= -1 and x.max() <= 1
    digits_like = ImageDataset("d", torch.rand(4, 1, 8, 8), torch.arange(4) % 2, torch.rand(2, 1, 8, 8),
                               torch.arange(2), ["a", "b"], (0.2,), (0.3,))
    padded = generation_dataset(digits_like, 16, "pad")
    assert padded.image_shape == (1, 16, 16) and padded.train_images[:, :, :4].abs().sum() == 0
    assert torch.equal(padded.train_images[:, :, 4:12, 4:12], digits_like.train_images)
    assert generation_dataset(digits_like, 16, "resize").image_shape == (1, 16, 16)
    with pytest.raises(ConfigError):
        generation_dataset(digits_like, 4, "pad")
    table = ImageDataset("t", torch.rand(4, 13, 1, 1), torch.arange(4) % 2, torch.rand(2, 13, 1, 1),
                         torch.arange(2), ["a", "b"], (0.0,) * 13, (1.0,) * 13, vectors=True)
    with pytest.raises(ConfigError, match="generation needs images; dataset 't' holds feature vectors"):
        generation_dataset(table, 16, "pad")  # not 13-channel images of one lit pixel
    with pytest.raises(ConfigError, match="dataset 'wine' holds feature vectors"):
        generation_dataset(load_dataset("wine"), 16, "pad")  # a registered table, held without `vectors`


def test_frechet_distance_closed_form():
    a = torch.randn(500, 4, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.tensor([1.0, -2.0, 0.0, 0.5])
    assert frechet_distance(a, a + shift) == pytest.approx(float((shift**2).sum()), rel=1e-6)
    # Non-commuting covariances: the textbook formula with a general matrix square root.
    from scipy import linalg

    b = a @ torch.randn(4, 4, generator=torch.Generator().manual_seed(1)).double().float() + 0.3
    ca, cb = (torch.cov(x.T).double().numpy() for x in (a, b))
    expected = float(((a.mean(0) - b.mean(0)) ** 2).sum()) + float(
        (ca + cb - 2 * linalg.sqrtm(ca @ cb).real).trace())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    assert recognition_rate(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0])) == 50.0


@pytest.fixture(scope="module")
def trained(band_data, tmp_path_factory):
    """A tiny DDPM and classifier on the band images (about 10 s on one core)."""
    from unlearnkit.runtime import Runtime

    runtime = Runtime.create("cpu", 1)
    store = tmp_path_factory.mktemp("store")
    recipe = DiffusionRecipe(steps=200, batch_size=32, lr=3e-3, ema_decay=0.9)
    checkpoint = train_denoiser(band_data, TINY, recipe, seed=0, runtime=runtime, store=store)
    classifier = train_classifier(band_data, runtime, store, options={"width": 4},
                                  recipe=TrainRecipe(epochs=3, batch_size=16, lr=0.05, augment=False)).load_model()
    return checkpoint, classifier, store


def forget_rate(model, schedule, classifier, runtime, cls=0, n=30):
    samples = ddim_sample(model, schedule, torch.full((n,), cls), (1, 8, 8), steps=10, eta=1.0, seed=0)
    return recognition_rate(classify(classifier, samples, runtime)[0], torch.full((n,), cls))


def test_training_is_recorded_and_found_again_by_content(trained, band_data, runtime):
    checkpoint, _, store = trained
    record = checkpoint.record
    assert record["task"] == "generation" and record["kind"] == "original"
    assert record["schedule"]["timesteps"] == 1000 and record["metrics"]["train_loss"] > 0
    assert DenoiserSpec("unet", 1, 8, 3).describe()["options"] == {"channels": [16, 32, 32], "groups": 8}
    assert record["model"]["options"] == {"channels": [16, 32], "groups": 4}  # the whole architecture, defaults too
    again = train_denoiser(band_data, TINY, DiffusionRecipe(**record["recipe"]), seed=0, runtime=runtime, store=store)
    assert again.path == checkpoint.path and again.record["created"] == record["created"]
    with pytest.raises(ConfigError):
        DiffusionRecipe().with_overrides({"epochs": 3})


def test_a_killed_ddpm_training_resumes_to_the_weights_of_an_uninterrupted_one(band_data, runtime, tmp_path,
                                                                               monkeypatch):
    from unlearnkit.generation import training

    spec, recipe = TINY, DiffusionRecipe(steps=30, batch_size=32, lr=1e-3)
    whole = train_denoiser(band_data, spec, recipe, seed=0, runtime=runtime, store=tmp_path / "whole")

    class Killed(Exception):
        pass

    saves, save = [], training.save_state

    def save_then_die(path, **state):
        save(path, **state)
        saves.append(state["step"])
        if len(saves) == 2:
            raise Killed

    monkeypatch.setattr(training, "save_state", save_then_die)
    monkeypatch.setattr(training, "SAVE_EVERY_S", 0.0)  # save at the end of every pass
    with pytest.raises(Killed):
        train_denoiser(band_data, spec, recipe, seed=0, runtime=runtime, store=tmp_path / "killed")
    assert saves == [5, 10]  # 150 images in batches of 32: a pass is 5 steps
    assert list((tmp_path / "killed" / "partial").glob("*.pt")) and not (tmp_path / "killed" / "models").exists()
    monkeypatch.undo()
    passes, noise_pass = [], training.noise_pass
    monkeypatch.setattr(training, "noise_pass", lambda *args: passes.append(1) or noise_pass(*args))
    torch.manual_seed(123)  # a restart does not share the first process's RNG
    resumed = train_denoiser(band_data, spec, recipe, seed=0, runtime=runtime, store=tmp_path / "killed")
    assert len(passes) == 20  # it went on from step 10, where it was killed
    assert resumed.record["key"] == whole.record["key"]
    assert resumed.record["metrics"]["train_loss"] == whole.record["metrics"]["train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(load_denoiser(whole)[0].state_dict().values(),
                                                 load_denoiser(resumed)[0].state_dict().values()))
    assert not (tmp_path / "killed" / "partial").exists()  # the resume file is gone once the model is stored


def test_sfron_lowers_the_forgetting_accuracy(trained, band_data, runtime):
    checkpoint, classifier, _ = trained
    model, schedule = load_denoiser(checkpoint)
    before = forget_rate(model, schedule, classifier, runtime)
    assert before >= 80  # the pretrained model draws class 0
    split = make_split("class:0", band_data)
    result = unlearn_generation(model, split, "sfron", data=band_data, schedule=schedule, runtime=runtime, seed=0,
                                iters=20, lr=1e-3, batch_size=32)
    assert result.steps == 20 and result.details["updates"] == 40 and 0 < result.details["mask_density"] < 1
    assert forget_rate(result.model, schedule, classifier, runtime) <= before - 50
    assert forget_rate(result.model, schedule, classifier, runtime, cls=1) >= 70  # other classes survive


@pytest.mark.parametrize("method", ["salun", "rl", "sa", "ga"])
def test_every_generation_method_runs_on_the_engine(method, trained, band_data, runtime):
    checkpoint, _, _ = trained
    model, schedule = load_denoiser(checkpoint)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = {"epochs": 1, "batch_size": 32}
    if method == "sa":
        small.update(replay_per_class=4, fim_per_class=2, fim_timesteps=5, sample_steps=3)
    result = unlearn_generation(model, make_split("class:0", band_data), method, data=band_data, schedule=schedule,
                                runtime=runtime, seed=0, **small)
    assert result.details["updates"] == result.steps > 0 and result.sample_passes > 0
    assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items())


def test_generation_methods_are_their_own_table_and_reject_bad_input(band_data, runtime):
    assert set(GENERATION_METHODS.names()) == {"sfron", "salun", "rl", "sa", "ga"}
    from unlearnkit.unlearning.methods import METHODS

    assert METHODS.get("sfron") is not GENERATION_METHODS.get("sfron")
    assert GENERATION_METHODS.get("sa").parameters()["cond_drop_prob"] == 0.0
    assert GENERATION_METHODS.get("sfron").parameters()["fisher_clip"] == 1.0
    split = make_split("class:0", band_data)
    model = TINY.build()
    with pytest.raises(ConfigError, match="unknown generation method"):
        unlearn_generation(model, split, "scrub", data=band_data, schedule=NoiseSchedule.linear(), runtime=runtime)
    with pytest.raises(ConfigError, match="no hyperparameter"):
        unlearn_generation(model, split, "sfron", data=band_data, schedule=NoiseSchedule.linear(), runtime=runtime,
                           epochs=3)


def test_cli_trains_the_original_and_the_oracle_ddpm(tmp_path):
    from typer.testing import CliRunner

    from unlearnkit.cli import app

    fast = ["--set", "steps=3", "--set", "batch_size=16", "--task", "generation", "--json"]
    result = CliRunner().invoke(app, ["train", *fast])
    assert result.exit_code == 0, result.output
    import json

    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["kind"] == "original" and out["task"] == "generation" and out["train_loss"] > 0
    assert "diffusion-original-digits-pad16-unet" in out["checkpoint"]
    result = CliRunner().invoke(app, ["retrain", "--forget", "class:3", *fast])
    assert result.exit_code == 0, result.output
    oracle = json.loads(result.stdout.strip().splitlines()[-1])
    assert oracle["kind"] == "oracle" and oracle["split"]["forgotten_classes"] == [3]
    result = CliRunner().invoke(app, ["train", "--task", "generation", "--epochs", "3"])
    assert result.exit_code == 2 and "unknown diffusion recipe option(s) ['epochs']" in result.output


def test_bench_writes_the_common_tables_report_and_sample_grid_and_resumes_cell_by_cell(tmp_path, monkeypatch,
                                                                                         runtime):
    import json

    from unlearnkit.bench.runner import NOISE_FLOOR, ORACLE, ORIGINAL
    from unlearnkit.generation import bench, metrics

    monkeypatch.setattr(bench, "QUICK_RECIPE", {"steps": 5, "batch_size": 32})
    monkeypatch.setattr(bench, "QUICK_BUDGET", {"forget_per_class": 4, "remain_per_class": 2, "steps": 2})
    monkeypatch.setattr(bench, "QUICK_METHODS", {})
    monkeypatch.setattr(metrics, "CLASSIFIER_RECIPE", TrainRecipe(epochs=1, batch_size=64, lr=0.05, augment=False))
    tiny = {"sfron": {"iters": 2, "fisher_samples": 64}, "ga": {"epochs": 1}}  # the other methods: tests above
    with pytest.raises(ConfigError, match="unknown generation method"):
        bench.run_generation_bench(tmp_path, runtime, tmp_path / "store", methods=["sfron", "scrub"])
    result = bench.run_generation_bench(tmp_path / "out", runtime, tmp_path / "store", forget_class=3,
                                        methods=["sfron", "ga"], quick=True, hyperparameters=tiny)
    rows = {row["method"]: row for row in result["rows"]}
    assert list(rows) == [ORACLE, NOISE_FLOOR, ORIGINAL, "sfron", "ga"]
    assert rows["sfron"]["steps"] == 2 and rows["sfron"]["updates"] == 4 and rows[ORACLE]["steps"] == 5
    assert rows[ORACLE]["avg_gap"] == 0 and rows[ORACLE]["kl_forget"] == pytest.approx(0, abs=1e-6)
    assert all(0 <= row["forget_acc"] <= 100 and row["fid"] >= 0 for row in rows.values())
    assert rows[ORIGINAL]["cost_ratio"] == 0 and rows[ORACLE]["cost_ratio"] == 1 and rows["sfron"]["cost_ratio"] > 0
    assert "closing_avg_gap" in rows["sfron"] and result["verdict"]["sentence"]
    files = {k: Path(v) for k, v in result["files"].items()}
    assert all(f.stat().st_size > 0 for f in files.values())
    table = files["markdown"].read_text()
    assert "| method | FA | RA | FID* ↓ | Avg.Gap ↓ |" in table and "NOT the Inception FID" in table
    assert "| sfron |" in table and "TA" not in table.split("\n")[4]  # no test set: no TA column
    saved = json.loads(files["json"].read_text())
    assert saved["settings"]["forget"]["forgotten_classes"] == [3] and saved["timings"]["total_s"] > 0
    assert {c["method"]: c for c in saved["cells"]}["sfron"]["metrics"]["hyperparameters"]["iters"] == 2
    assert files["grid"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = files["report"].read_text()
    assert report.count("data:image/png;base64,") == 3 and "FID* ↓" in report  # gaps, trade-off, samples

    # Started again: every cell is found; a cell removed (killed before it was written) is the only one computed.
    (tmp_path / "out" / "cells" / "generation-unet-class3" / "0" / "ga.json").unlink()
    monkeypatch.setattr(bench, "unlearn_generation", _counting(bench.unlearn_generation, calls := []))
    again = bench.run_generation_bench(tmp_path / "out", runtime, tmp_path / "store", forget_class=3,
                                       methods=["sfron", "ga"], quick=True, hyperparameters=tiny)
    assert calls == ["ga"]
    assert {r["method"]: r["fid"] for r in again["rows"]} == {r["method"]: r["fid"] for r in result["rows"]}


def _counting(fn, calls: list):
    def counted(model, split, method, **kwargs):
        calls.append(method)
        return fn(model, split, method, **kwargs)

    return counted


def test_a_diffusion_transformer_runs_every_generation_method_unchanged(band_data, runtime, tmp_path):
    dit = DenoiserSpec("dit", 1, 8, 3, {"layers": 1, "heads": 2, "head_dim": 8})
    checkpoint = train_denoiser(band_data, dit, DiffusionRecipe(steps=20, batch_size=16, lr=1e-3), seed=0,
                                runtime=runtime, store=tmp_path)
    model, schedule = load_denoiser(checkpoint)
    assert type(model).__name__ == "DiTDenoiser" and checkpoint.record["model"]["name"] == "dit"
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 900])
    assert model(x, t, torch.tensor([0, 3])).shape == x.shape  # class 3 is the null class of 3 classes
    for method in ("sfron", "salun", "ga"):
        net, _ = load_denoiser(checkpoint)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        settings = {"iters": 2} if method == "sfron" else {"epochs": 1}
        result = unlearn_generation(net, make_split("class:0", band_data), method, data=band_data, schedule=schedule,
                                    runtime=runtime, seed=0, batch_size=16, **settings)
        assert any(not torch.equal(before[k], v) for k, v in result.model.state_dict().items()), method
