"""Every command on the diffusion domain (`--task generation`): train, retrain, forget, evaluate, methods, bench and
tune, end to end through the CLI on a DDPM trained for a few steps, with the common result keys."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from unlearnkit.cli import app
from unlearnkit.config import TrainRecipe

pytest.importorskip("diffusers")

FAST = ["--set", "steps=4", "--set", "batch_size=16", "--task", "generation", "--json"]
TINY_SFRON = ["--set", "iters=2", "--set", "fisher_samples=64"]
COSTLY = ["--max-cost", "1000"]  # the toy oracle trains on 64 samples: every method costs more


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def quick(monkeypatch):
    """Every evaluation and bench stage at toy size: a one-epoch classifier, a few samples of each class."""
    from unlearnkit.domains import generation as domain
    from unlearnkit.generation import bench, metrics

    monkeypatch.setattr(metrics, "CLASSIFIER_RECIPE", TrainRecipe(epochs=1, batch_size=64, lr=0.05, augment=False))
    monkeypatch.setattr(domain, "EVALUATION_BUDGET", {"forget_per_class": 4, "remain_per_class": 2, "steps": 2})
    monkeypatch.setattr(bench, "QUICK_RECIPE", {"steps": 4, "batch_size": 16})
    monkeypatch.setattr(bench, "QUICK_BUDGET", {"forget_per_class": 4, "remain_per_class": 2, "steps": 2})
    monkeypatch.setattr(bench, "QUICK_METHODS", {"sfron": {"iters": 2, "fisher_samples": 64}, "ga": {"epochs": 1}})


def test_train_retrain_forget_and_evaluate_a_ddpm(quick):
    original = run("train", *FAST)
    oracle = run("retrain", "--forget", "class:3", *FAST)
    assert original["task"] == oracle["task"] == "generation"
    forgot = run("forget", "--model", original["checkpoint"], "--method", "sfron", "--forget", "class:3",
                 *TINY_SFRON, "--json")
    assert forgot["task"] == "generation" and forgot["method"] == "sfron" and forgot["steps"] == 2
    assert 0 <= forgot["forget_acc"] <= 100 and 0 <= forgot["remain_acc"] <= 100 and forgot["fid"] >= 0
    assert forgot["split"]["forgotten_classes"] == [3]
    again = run("forget", "--model", original["checkpoint"], "--method", "sfron", "--forget", "class:3",
                *TINY_SFRON, "--json")
    assert again["checkpoint"] == forgot["checkpoint"]  # found in the store by content
    assert again["reused"] and not forgot["reused"] and not original["reused"]
    (Path(forgot["checkpoint"]) / "split.npz").unlink()  # a damaged stored run is not returned as a success
    with pytest.warns(UserWarning, match="split.npz is missing"):
        redone = run("forget", "--model", original["checkpoint"], "--method", "sfron", "--forget", "class:3",
                     *TINY_SFRON, "--json")
    assert not redone["reused"] and (Path(redone["checkpoint"]) / "split.npz").is_file()
    scored = run("evaluate", forgot["checkpoint"], "--oracle", oracle["checkpoint"], "--original",
                 original["checkpoint"], "--json")
    for key in ("forget_acc", "remain_acc", "avg_gap", "kl_forget", "rte_s", "cost_ratio", "fid"):
        assert isinstance(scored[key], float), key
    assert scored["oracle"]["avg_gap"] == 0 and scored["oracle"]["kl_forget"] == pytest.approx(0, abs=1e-6)
    assert scored["avg_gap"] == pytest.approx((abs(scored["forget_acc"] - scored["oracle"]["forget_acc"])
                                               + abs(scored["remain_acc"] - scored["oracle"]["remain_acc"])) / 2)
    assert scored["method"] == "sfron" and scored["task"] == "generation"


def test_generation_commands_refuse_what_they_cannot_do(quick, tmp_path):
    original = run("train", *FAST)
    other = run("retrain", "--forget", "class:5", *FAST)
    result = CliRunner().invoke(app, ["forget", "--model", original["checkpoint"], "--method", "scrub",
                                      "--forget", "class:3"])
    assert result.exit_code == 2 and "unknown generation method 'scrub'" in result.output
    result = CliRunner().invoke(app, ["forget", "--model", original["checkpoint"], "--forget", "class:3",
                                      "--task", "classification"])
    assert result.exit_code == 2 and "is a generation model, not classification" in result.output
    result = CliRunner().invoke(app, ["forget", "--model", original["checkpoint"], "--forget", "random:0.1"])
    assert result.exit_code == 2 and "generation forgets whole classes (class:C), got 'random:0.1'" in result.output
    result = CliRunner().invoke(app, ["retrain", "--forget", "random:0.1", *FAST])  # an oracle nothing could use
    assert result.exit_code == 2 and "generation forgets whole classes (class:C), got 'random:0.1'" in result.output
    forgot = run("forget", "--model", original["checkpoint"], "--method", "sfron", "--forget", "class:3",
                 *TINY_SFRON, "--json")
    result = CliRunner().invoke(app, ["evaluate", forgot["checkpoint"], "--oracle", other["checkpoint"]])
    assert result.exit_code == 2 and "use the oracle of the same split" in result.output
    result = CliRunner().invoke(app, ["bench", "--task", "generation", "--scenarios", str(tmp_path / "x.yaml")])
    assert result.exit_code == 2 and "--scenarios: not read with --task generation" in result.output
    result = CliRunner().invoke(app, ["bench", "--task", "nosuch"])
    assert result.exit_code == 2 and "unknown task 'nosuch'" in result.output and "text-to-image" in result.output


def test_methods_lists_the_domains_methods():
    listed = run("methods", "--task", "generation", "--json")
    assert listed["task"] == "generation" and [m["name"] for m in listed["methods"]] == ["sfron", "salun", "rl",
                                                                                         "sa", "ga"]
    one = run("methods", "sfron", "--task", "generation", "--json")
    assert one["hyperparameters"]["iters"] == 150 and one["search"]["lr"]
    tasks = run("tasks", "--json")
    assert {t["task"] for t in tasks["tasks"]} == {"classification", "generation", "text-to-image"}


def test_bench_and_tune_on_the_diffusion_domain(quick, tmp_path):
    bench = run("bench", "--task", "generation", "--quick", "--methods", "sfron,ga", "--denoiser", "unet",
                "--out", str(tmp_path / "bench"), "--json")  # class 0 by default
    rows = {row["method"]: row for row in bench["tables"]["generation-unet-class0"]}
    assert list(rows) == ["RT (oracle)", "RT′ (2nd seed)", "Original", "sfron", "ga"]
    assert rows["RT (oracle)"]["avg_gap"] == 0 and all("kl_forget" in r for r in rows.values())
    assert {"csv", "markdown", "json", "grid", "report"} <= set(bench) and bench["verdict"]
    assert json.loads(Path(bench["json"]).read_text())["settings"]["forget"]["forgotten_classes"] == [0]
    tuned = run("tune", "--task", "generation", "--methods", "ga", "--max-trials", "2", "--seeds", "100", *COSTLY,
                "--forget-class", "3", "--out", str(tmp_path / "tune"), "--json")
    assert set(tuned["best"]) == {"ga"} and tuned["best"]["ga"]["lr"] in (3e-6, 1e-5, 3e-5)
    trials = (tmp_path / "tune" / "trials.csv").read_text().splitlines()
    assert len(trials) == 3  # a header and the two trials
    again = run("tune", "--task", "generation", "--methods", "ga", "--max-trials", "2", "--seeds", "100", *COSTLY,
                "--forget-class", "3", "--out", str(tmp_path / "tune"), "--json")
    assert again["best"] == tuned["best"]  # resumed from the journal: no new trial
    assert len((tmp_path / "tune" / "trials.csv").read_text().splitlines()) == 3
