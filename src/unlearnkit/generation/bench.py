"""The generation bench: class-wise forgetting in a class-conditional DDPM, on the common bench's cells, tables and
HTML report.

Per seed it trains (or finds stored) the original DDPM, the oracle retrained without the forgotten class, a second
oracle with another seed (RT′, the noise floor) and the evaluation classifier. Every row (Original, RT, RT′ and each
generation method, run from the original) is one cell of `bench/runner.py`, stored by content as soon as it is done,
so a run started again skips what it finished. Each model is scored with one sample budget from the same noise; its
samples for the grid are kept beside its cell (safetensors). The tables, verdict and report are the common ones,
with FID* beside the common keys and the sample grid in the report.
"""
from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..artifacts import Checkpoint, atomic_write_file, atomic_write_text, versions, writable_store
from ..bench.html import write_report
from ..bench.runner import NOISE_FLOOR, ORACLE, ORIGINAL, Cell, cached_cell, cell_path, reference_cost
from ..bench.tables import NOTE, summarise, verdicts, write_tables
from ..data import load_dataset, make_split
from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import DivergenceError
from ..executor import Executor, InProcess, Job
from ..runtime import Runtime
from . import metrics
from .data import generation_dataset
from .engine import unlearn_generation
from .evaluation import GeneratorEvaluator, GeneratorScores, SampleBudget
from .methods import GENERATION_METHODS
from .metrics import train_classifier
from .report import sample_grid
from .training import DiffusionRecipe, load_denoiser, train_denoiser
from .unet import DENOISERS, DenoiserSpec

IMAGE_SIZE, LAYOUT = 16, "pad"
# --quick: every stage in about half the time (shorter pretraining, fewer samples, half the baselines'
# budgets; SFR-on keeps its 150 iterations); its numbers are rougher than the bench's.
QUICK_RECIPE = {"steps": 600}
QUICK_BUDGET = {"forget_per_class": 20, "remain_per_class": 10}
QUICK_METHODS = {"salun": {"epochs": 7}, "rl": {"epochs": 7}, "sa": {"epochs": 7, "replay_per_class": 16},
                 "ga": {"epochs": 40}}
NOISE_FLOOR_OFFSET = 1000  # RT′ is trained with seed + this, as in the classification bench
COLUMNS = {"fid": "FID* ↓"}  # the domain's own figure, beside the common keys
GRID_PER_CLASS = 3
DOMAIN_NOTE = ("Generation: FA and RA are the % of samples of the forgotten / remaining classes that the evaluation "
               "classifier recognises as their class (no test set, no attack: Avg.Gap is the mean of the FA and RA "
               "gaps); D_KL is KL(oracle ‖ model) of the classifier's predictions on the forgotten class's samples, "
               "sample by sample (every model is sampled from the same noise). FID*: Fréchet distance between the "
               "classifier's penultimate features of remaining-class samples and of the real remaining-class "
               "training images; it is NOT the Inception FID of published tables and is comparable only within "
               "this bench. RTE of the RT rows: their training time. Timings are noisy on a shared CPU.")


@dataclass(frozen=True)
class GenerationSetup:
    """What every cell of one seed is measured with (the models by their checkpoints; the oracle's scores are
    computed once, since every row is compared with them)."""

    scenario: str
    seed: int
    dataset: ImageDataset
    split: ForgetSplit
    original: Checkpoint
    oracle: Checkpoint
    evaluator: GeneratorEvaluator
    oracle_scores: GeneratorScores
    runtime: Runtime
    store: Path


def run_generation_bench(out_dir: str | Path, runtime: Runtime | None = None, store: str | Path | None = None,
                         seeds: list[int] | tuple[int, ...] = (0,), forget_class: int = 0,
                         methods: list[str] | None = None, quick: bool = False, data: str = "digits",
                         root: str | None = None, denoiser: str = "unet",
                         hyperparameters: dict[str, dict[str, Any]] | None = None,
                         executor: Executor | None = None) -> dict[str, Any]:
    """Run the bench and write the common results.{md,csv,json} and report.html into `out_dir`, with
    `generation_samples.png` (the first seed's samples, one row per model).

    `denoiser` is a registered denoiser: "unet" or "dit" (the methods do not change with it). `methods` defaults to
    every generation method; `hyperparameters` maps a method to overrides of its defaults. Returns {"rows" (the
    summary rows: the common keys, FID* and their stds), "verdict", "files", "timings", "settings"}.
    """
    DENOISERS.get(denoiser)  # fail before anything is written on an unknown name
    methods = list(methods or GENERATION_METHODS.names())
    for name in methods:
        GENERATION_METHODS.get(name)  # fail before any training on an unknown name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runtime = runtime or Runtime.create()
    store = writable_store(store)
    executor = executor or InProcess()
    overrides = {name: {**(QUICK_METHODS.get(name, {}) if quick else {}), **(hyperparameters or {}).get(name, {})}
                 for name in methods}
    scenario = f"generation-{denoiser}-class{forget_class}"
    started, timings = time.perf_counter(), {}
    setups, settings = [], {}
    for seed in seeds:
        setup, settings = _setup(scenario, data, root, forget_class, denoiser, seed, quick, runtime, store, timings)
        setups.append(setup)
    atomic_write_text(out / "config.json", json.dumps({"settings": settings, "seeds": list(seeds), "methods": methods,
                                                       "overrides": overrides, "versions": versions()}, indent=2))
    jobs = [job for setup in setups for job in _seed_jobs(setup, methods, overrides, out)]
    begin = time.perf_counter()
    cells: list[Cell] = executor.map(jobs, "generation cells")
    timings["cells_s"] = time.perf_counter() - begin
    timings["total_s"] = time.perf_counter() - started

    summary = summarise(cells, None, ("fid", "fid_gap", "steps", "updates"))
    said = verdicts(summary)
    title = (f"{scenario}: {settings['data']['name']}, {settings['denoiser']['name']} denoiser, forget class "
             f"{forget_class}, seeds {', '.join(map(str, seeds))}{' (quick: rougher numbers)' if quick else ''}")
    note = f"{NOTE} {DOMAIN_NOTE} Samples: {_budget_words(settings['budget'])}."
    extra = {"settings": settings, "timings": timings}
    paths = write_tables(cells, summary, out, {scenario: title}, said, COLUMNS, note, extra)
    paths["grid"] = out / "generation_samples.png"
    _grid(paths["grid"], setups[0], [c.method for c in cells if c.seed == seeds[0]], out)
    paths["report"] = write_report(summary, out, {scenario: title}, {}, {}, " ".join(["unlearnkit", *sys.argv[1:]]),
                                   said, COLUMNS, {scenario: [paths["grid"]]}, DOMAIN_NOTE)
    return {"scenario": scenario, "rows": summary[scenario], "verdict": said[scenario], "cells": cells,
            "files": {k: str(v) for k, v in paths.items()}, "timings": timings, "settings": settings}


def _setup(scenario: str, data: str, root: str | None, forget_class: int, denoiser: str, seed: int, quick: bool,
           runtime: Runtime, store: Path, timings: dict) -> tuple[GenerationSetup, dict]:
    def timed(key: str, fn, *args, **kwargs):
        begin = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - begin
        return value

    dataset, split, recipe, spec, original, oracle, evaluator = bench_setup(
        data, root, forget_class, denoiser, seed, quick, runtime, store, timed)
    model, schedule = load_denoiser(oracle)
    oracle_scores = timed("evaluate_s", evaluator.score, model.to(runtime.device), schedule)
    setup = GenerationSetup(scenario, seed, dataset, split, original, oracle, evaluator, oracle_scores, runtime, store)
    settings = {"data": dataset.describe(), "forget": split.describe(), "quick": quick, "denoiser": spec.describe(),
                "recipe": recipe.model_dump(), "budget": evaluator.budget.describe(), "device": str(runtime.device),
                "threads": runtime.threads, "machine": platform.machine()}
    return setup, settings


def bench_setup(data: str, root: str | None, forget_class: int, denoiser: str, seed: int, quick: bool,
                runtime: Runtime, store: Path, timed=lambda key, fn, *a, **k: fn(*a, **k)):
    """The bench's dataset, split, recipe, denoiser spec, original, oracle and evaluator (trained or found in
    the store): shared with `tune --task generation`."""
    dataset = generation_dataset(load_dataset(data, root), IMAGE_SIZE, LAYOUT)
    split = make_split(f"class:{forget_class}", dataset, seed)
    recipe = DiffusionRecipe().with_overrides(QUICK_RECIPE if quick else {})
    budget = SampleBudget(**{**(QUICK_BUDGET if quick else {}), "seed": seed})
    channels, size, _ = dataset.image_shape
    spec = DenoiserSpec(denoiser, channels, size, dataset.num_classes)
    original = timed("train_original_s", train_denoiser, dataset, spec, recipe, seed, None, runtime, store)
    oracle = timed("train_oracle_s", train_denoiser, dataset, spec, recipe, seed, split, runtime, store)
    classifier = (timed("train_classifier_s", train_classifier, dataset, runtime, store, seed)
                  .load_model().to(runtime.device))
    evaluator = timed("evaluate_s", GeneratorEvaluator, dataset, split, classifier, runtime, budget)
    return dataset, split, recipe, spec, original, oracle, evaluator


def second_oracle(setup: GenerationSetup) -> Checkpoint:
    """RT′: the oracle's recipe and split with seed + NOISE_FLOOR_OFFSET (trained or found in the store)."""
    record = setup.oracle.record
    recipe, spec = DiffusionRecipe(**record["recipe"]), DenoiserSpec(**record["model"])
    return train_denoiser(setup.dataset, spec, recipe, setup.seed + NOISE_FLOOR_OFFSET, setup.split, setup.runtime,
                          setup.store)


def _seed_jobs(setup: GenerationSetup, methods: list[str], overrides: dict, out: Path) -> list[Job]:
    base = {"domain": "generation", "seed": setup.seed, "original": setup.original.record["key"],
            "oracle": setup.oracle.record["key"], "budget": setup.evaluator.budget.describe(),
            "classifier": metrics.CLASSIFIER_RECIPE.model_dump(), "compute": setup.runtime.identity()}
    label = f"{setup.scenario} seed {setup.seed}"
    jobs = [Job(reference_cell, {"out_dir": out, "row": row, "identity": {**base, "row": row}, "setup": setup},
                f"{label}: {row}") for row in (ORIGINAL, ORACLE, NOISE_FLOOR)]
    for name in methods:
        resolved = GENERATION_METHODS.get(name).resolve(overrides[name], setup.split.spec)
        jobs.append(Job(method_cell, {"out_dir": out, "row": name, "identity": {**base, "row": name, "hp": resolved},
                                      "setup": setup, "hp": overrides[name]}, f"{label}: {name}"))
    return jobs


def reference_cell(out_dir: Path, row: str, identity: dict, setup: GenerationSetup) -> Cell:
    """Job: the original (doing nothing), the oracle or the second oracle, scored against the oracle."""
    def run() -> dict:
        checkpoint = {ORIGINAL: setup.original, ORACLE: setup.oracle}.get(row) or second_oracle(setup)
        if row == ORACLE:  # scored once already: every row is compared with it
            scores = setup.oracle_scores
        else:
            model, schedule = load_denoiser(checkpoint)
            scores = setup.evaluator.score(model.to(setup.runtime.device), schedule)
        return _scored(out_dir, setup, row, scores, reference_cost(None if row == ORIGINAL else checkpoint.record))

    return cached_cell(out_dir, setup.scenario, setup.seed, row, identity, run)


def method_cell(out_dir: Path, row: str, identity: dict, setup: GenerationSetup, hp: dict) -> Cell:
    """Job: generation method `row` with `hp`, from the original's weights, scored against the oracle."""
    def run() -> dict:
        model, schedule = load_denoiser(setup.original)
        try:
            result = unlearn_generation(model.to(setup.runtime.device), setup.split, row, data=setup.dataset,
                                        schedule=schedule, runtime=setup.runtime, seed=setup.seed, store=setup.store,
                                        **hp)
        except DivergenceError as exc:  # one diverging method is a result of the bench, not its end
            return {"error": str(exc)}
        scores = setup.evaluator.score(result.model, schedule)
        declared = GENERATION_METHODS.get(row)
        return {**_scored(out_dir, setup, row, scores, {
            "rte_s": result.wall_time_s, "sample_passes": result.sample_passes,
            "cost_ratio": result.sample_passes / setup.oracle.record["sample_passes"], "steps": result.steps,
            "updates": result.details["updates"]}),
            "hyperparameters": result.hyperparameters,
            "declared": {"title": declared.title, **declared.columns(),
                       **{k: v for k, v in result.details.items() if k != "updates"}}}

    return cached_cell(out_dir, setup.scenario, setup.seed, row, identity, run)


def _scored(out_dir: Path, setup: GenerationSetup, row: str, scores: GeneratorScores, cost: dict) -> dict:
    """A row's figures against the oracle; its first samples of each class are kept beside its cell for the grid."""
    chosen = torch.cat([torch.nonzero(scores.labels == c).flatten()[:GRID_PER_CLASS]
                        for c in range(setup.dataset.num_classes)])
    path = cell_path(out_dir, setup.scenario, setup.seed, row, ".samples.safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = {"samples": scores.samples[chosen].contiguous(), "labels": scores.labels[chosen].contiguous()}
    atomic_write_file(path, lambda tmp: save_file(grid, str(tmp)))
    return {**setup.evaluator.against(scores, setup.oracle_scores), **cost,
            "retrain_s": setup.oracle.record["wall_time_s"], "eval_seconds": scores.sample_seconds}


def _grid(path: Path, setup: GenerationSetup, rows: list[str], out: Path) -> None:
    """The samples of every row that has them (the same noise for all), one row per model."""
    names, samples, labels = [], [], None
    for row in rows:
        stored = cell_path(out, setup.scenario, setup.seed, row, ".samples.safetensors")
        if stored.exists():
            tensors = load_file(str(stored))
            names.append(row)
            samples.append(tensors["samples"])
            labels = tensors["labels"]
    if names:
        sample_grid(path, names, samples, labels, setup.dataset.classes, setup.evaluator.forgotten, GRID_PER_CLASS)


def _budget_words(b: dict) -> str:
    return (f"{b['forget_per_class']} images of the forgotten class (FA) and {b['remain_per_class']} of each "
            f"remaining class (FID*, RA), DDIM {b['steps']} steps, eta {b['eta']}, guidance {b['guidance']}")
