"""`tune` on Optuna: one study per scenario and method in a journal that workers share, TPE where the grid is
larger than the trials, the whole grid where it fits, batches through the executor, resumption."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import synthetic_dataset

import unlearnkit.bench.tuning as tuning
from unlearnkit.bench.scenarios import BenchConfig
from unlearnkit.bench.tuning import JOURNAL, tune
from unlearnkit.config import TrainRecipe
from unlearnkit.errors import ConfigError
from unlearnkit.models import spec_for

optuna = pytest.importorskip("optuna", reason="optuna is not installed (pip install unlearnkit[tune])")

EIGHT = {"lr_scale": [0.1, 0.3, 1.0, 3.0], "budget": [0.05, 0.1]}  # more points than the trials below: TPE
SIXTEEN = {"lr_scale": [0.1, 0.3, 1.0, 3.0], "budget": [0.02, 0.05, 0.1, 0.2]}
FOUR = {"lr_scale": [0.1, 1.0], "budget": [0.05, 0.1]}  # fewer: enumerated


def config(search: dict | None = None, **scenario) -> BenchConfig:
    return BenchConfig(seeds=[0], scenarios=[{"name": "s", "forget": "class:1", "search": {"ft": search or FOUR},
                                              **scenario}])


@pytest.fixture
def users_own() -> dict:
    """A user's own dataset, model and recipe, passed to `tune` as objects (and so to its jobs)."""
    data = synthetic_dataset()
    return {"s": (data, spec_for("mlp", data, hidden=(16,)),
                  TrainRecipe(epochs=4, batch_size=32, lr=0.05, augment=False))}


@pytest.fixture
def unlearn_calls(monkeypatch) -> list[dict]:
    """The hyperparameters of every unlearning run a trial really made (a cached one makes none)."""
    calls, real = [], tuning.unlearn
    monkeypatch.setattr(tuning, "unlearn", lambda *a, **k: calls.append(
        {n: k[n] for n in ("lr_scale", "budget") if n in k}) or real(*a, **k))
    return calls


def study(out_dir):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out_dir / JOURNAL)))
    [name] = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def settings(result) -> list[tuple]:
    return [(t["trial"], json.dumps(t["hp"], sort_keys=True)) for t in result["trials"]]


def test_a_larger_grid_is_searched_by_tpe_for_max_trials_and_a_larger_budget_resumes_the_study(
        tmp_path, runtime, users_own, unlearn_calls):
    out = tmp_path / "out"
    first = tune(config(SIXTEEN), ["ft"], [7], runtime, out, max_trials=3, provided=users_own)
    assert [t for t, _ in settings(first)] == [0, 1, 2] and study(out).study_name.startswith("s/ft/")
    assert len(unlearn_calls) == len({hp for _, hp in settings(first)}) == 3  # TPE's start-up: distinct points
    # the same seed samples the same settings in a fresh folder
    assert settings(tune(config(SIXTEEN), ["ft"], [7], runtime, tmp_path / "again", max_trials=3,
                         provided=users_own)) == settings(first)
    del unlearn_calls[:]
    more = tune(config(SIXTEEN), ["ft"], [7], runtime, out, max_trials=12, provided=users_own)
    assert settings(more)[:3] == settings(first) and len(more["trials"]) == 12
    assert more["trials"][:3] == first["trials"]  # told once, read back from the journal
    assert len({hp for _, hp in settings(more)[:10]}) == 10  # the start-up continued without repeats; TPE after
    tried = {hp for _, hp in settings(more)}
    assert len(unlearn_calls) == len(tried) - 3  # a setting TPE asks again is read from its cell, not rerun
    del unlearn_calls[:]
    assert settings(tune(config(SIXTEEN), ["ft"], [7], runtime, out, max_trials=12, provided=users_own)) == \
        settings(more) and unlearn_calls == []  # spent: nothing more runs
    trials = study(out).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 12
    assert [t.value for t in trials] == [t["relative"] for t in more["trials"]]  # the objective Optuna minimised
    assert any(k.startswith("constraints") for k in trials[-1].system_attrs)  # the budget, told to TPE


def test_a_grid_that_fits_is_enumerated_and_an_interrupted_batch_is_asked_again(
        tmp_path, runtime, users_own, monkeypatch):
    calls, real = [], tuning.unlearn

    def dies_on_third(*args, **kwargs):
        calls.append(kwargs["lr_scale"])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed mid-run
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning, "unlearn", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        tune(config(FOUR), ["ft"], [7], runtime, tmp_path, max_trials=60, provided=users_own)
    states = [t.state.name for t in study(tmp_path).trials]
    assert states == ["COMPLETE", "COMPLETE", "FAIL", "WAITING"]  # the interrupted trial failed, the rest queued
    del calls[:]
    result = tune(config(FOUR), ["ft"], [7], runtime, tmp_path, max_trials=60, provided=users_own)
    assert len(calls) == 2  # the interrupted point and the one never asked
    assert sorted(json.dumps(t["hp"], sort_keys=True) for t in result["trials"]) == sorted(
        json.dumps(p, sort_keys=True) for p in tuning.grid(FOUR))  # each grid point once, for 60 trials allowed


def test_trials_a_killed_worker_left_running_are_failed_and_a_live_workers_count(tmp_path, runtime, users_own):
    tune(config(EIGHT), ["ft"], [7], runtime, tmp_path, max_trials=2, provided=users_own)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    found = study(tmp_path)
    distributions = {k: optuna.distributions.CategoricalDistribution(v) for k, v in sorted(EIGHT.items())}
    for pid in (dead.pid, os.getppid()):  # a killed worker's trial, and one a live worker is running
        found.ask(distributions).set_user_attr("owner", f"{socket.gethostname()}:{pid}")
    result = tune(config(EIGHT), ["ft"], [7], runtime, tmp_path, max_trials=4, provided=users_own)
    assert [t.state.name for t in study(tmp_path).trials] == ["COMPLETE", "COMPLETE", "FAIL", "RUNNING", "COMPLETE"]
    assert [t["trial"] for t in result["trials"]] == [0, 1, 4]  # 2 told + 1 in flight elsewhere + 1 new = 4


def test_tuning_on_ray_tells_the_in_process_trials(tmp_path, runtime, users_own):
    pytest.importorskip("ray", reason="ray is not installed (pip install unlearnkit[ray])")
    from unlearnkit.executor import RayExecutor

    args = (config(SIXTEEN), ["ft"], [7, 8], runtime)  # 10 start-up trials, then 2 TPE asks at once
    local = tune(*args, tmp_path / "local", tmp_path / "local-store", max_trials=12, provided=users_own, n_parallel=2)
    with RayExecutor(num_cpus=2) as executor:  # two trials a batch, each on two seeds: four jobs at once
        remote = tune(*args, tmp_path / "ray", tmp_path / "ray-store", max_trials=12, executor=executor,
                      provided=users_own, n_parallel=2)

    def numbers(result):
        return [{k: v for k, v in t.items() if k != "rte_s"} for t in result["trials"]]

    assert numbers(remote) == numbers(local) and len(local["trials"]) == 12
    assert remote["best"]["s"]["ft"]["hp"] == local["best"]["s"]["ft"]["hp"]


def test_an_unmet_forget_accuracy_limit_is_flagged_and_the_closest_kept(tmp_path, runtime, users_own):
    # Barely any fine-tuning: the class stays recognised, so no setting meets the limit.
    search = {"lr_scale": [1e-3, 1e-2], "budget": [0.02], "calibrate": [False]}
    result = tune(config(search, max_forget_acc=50.0), ["ft"], [7], runtime, tmp_path, max_trials=2,
                  provided=users_own)
    chosen = result["best"]["s"]["ft"]
    assert chosen["unmet"] == [f"forget accuracy {chosen['forget_acc']:.1f}% > 50.0%"]
    assert chosen["forget_acc"] == min(t["forget_acc"] for t in result["trials"])
    assert "forget accuracy ≤ 50.0%" in (tmp_path / "tuning.md").read_text()


@pytest.mark.parametrize("search, message", [
    ({"ft": {"colour": [1]}}, "colour"),
    ({"ft": {"lr_scale": [-1.0]}}, "lr_scale"),
    ({"ft": {"lr_scale": []}}, "scenario 's': the search of 'ft' lists no values for 'lr_scale'"),
    ({"ft": {"lr_scale": [[0.1]]}}, "scenario 's': the search of 'ft' for 'lr_scale' may list numbers, strings"),
])
def test_bad_search_spaces_fail_before_anything_runs(tmp_path, runtime, search, message, isolated_store):
    bad = BenchConfig(seeds=[0], scenarios=[{"name": "s", "forget": "class:1", "search": search}])
    with pytest.raises(ConfigError, match=message) as caught:
        tune(bad, ["ft"], [7], runtime, tmp_path / "out")
    assert "\n" not in str(caught.value) and not isolated_store.exists() and not (tmp_path / "out").exists()


def test_arguments_and_a_missing_optuna_are_one_line_errors(tmp_path, runtime, monkeypatch):
    with pytest.raises(ConfigError, match="method 'retrain' declares no search space"):
        tune(config(), ["retrain"], [7], runtime, tmp_path)
    with pytest.raises(ConfigError, match="max_trials must be at least 1, got 0"):
        tune(config(), ["ft"], [7], runtime, tmp_path, max_trials=0)
    with pytest.raises(ConfigError, match="n_parallel must be at least 1, got 0"):
        tune(config(), ["ft"], [7], runtime, tmp_path, n_parallel=0)
    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` fail
    with pytest.raises(ConfigError, match=r"tuning needs optuna>=4.0, which is not installed: .*unlearnkit\[tune\]"):
        tune(config(), ["ft"], [7], runtime, tmp_path)


def _row(hp: dict, unmet: list[str]) -> dict:
    return {"scenario": "s", "method": "ft", "trial": 0, "hp": hp, "relative": 1.0, "avg_gap": 1.0,
            "kl_forget": 0.1, "forget_acc": 90.0, "cost_ratio": 0.22, "rte_s": 0.1, "unmet": unmet}


def test_a_choice_that_misses_its_limits_is_never_written_and_the_existing_entry_is_kept(tmp_path):
    from unlearnkit.unlearning.tuned import merge_into

    cfg = config(max_cost=0.1)
    defaults = tmp_path / "tuned.yaml"
    defaults.write_text("digits:\n  class:\n    ft: {lr_scale: 1.0}\n")
    bench_file = tmp_path / "bench.yaml"
    missed = {"s": {"ft": _row({"lr_scale": 3.0}, ["cost 0.22 > 0.1"])}}
    before = defaults.read_text()
    for dataset, by_spec in tuning.best_by_spec(cfg, missed).items():  # what `unlearnkit tune` does
        merge_into(defaults, dataset, by_spec, "# header\n")
    assert defaults.read_text() == before
    assert tuning.best_by_spec(cfg, missed) == {}
    tuning.write_bench_file(bench_file, cfg, missed, "")
    assert "lr_scale: 3.0" not in bench_file.read_text()
    tuning._write([missed["s"]["ft"]], missed, tmp_path, [7], 0.1, {"s": "relative"})
    lines = (tmp_path / "tuning.md").read_text().splitlines()
    note = [line for line in lines if line.startswith("Not written")]
    assert note == ["Not written to --write or --defaults-file, since no trial met the limits (any entry already "
                    "there is kept): s/ft (cost 0.22 > 0.1)."]
    met = {"s": {"ft": _row({"lr_scale": 0.3}, [])}}
    assert tuning.best_by_spec(cfg, met) == {"digits": {"class:1": {"ft": {"lr_scale": 0.3}}}}
    tuning._write([met["s"]["ft"]], met, tmp_path, [7], 0.1, {"s": "relative"})
    assert "Not written" not in (tmp_path / "tuning.md").read_text()
