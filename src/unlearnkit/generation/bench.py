"""The generation bench: class-wise forgetting in a class-conditional DDPM on 16x16 digits.

Trains (or finds stored) the original DDPM, the oracle retrained without the forgotten class and the
evaluation classifier, runs each generation method from the original, scores every model with one
sample budget from the same noise, and writes a Markdown table, CSV and JSON rows and a PNG sample grid.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write_text, default_store
from ..data import load_dataset, make_split
from ..errors import DivergenceError
from ..runtime import Runtime
from .data import generation_dataset
from .engine import unlearn_generation
from .evaluation import GeneratorEvaluator, SampleBudget
from .methods import GENERATION_METHODS
from .metrics import train_classifier
from .report import markdown_table, sample_grid, write_rows
from .training import DiffusionRecipe, load_denoiser, train_denoiser
from .unet import DENOISERS, DenoiserSpec

IMAGE_SIZE, LAYOUT = 16, "pad"
# --quick: every stage in about half the time (shorter pretraining, fewer samples, half the baselines'
# budgets; SFR-on keeps its 150 iterations); its numbers are rougher than the bench's.
QUICK_RECIPE = {"steps": 600}
QUICK_BUDGET = {"forget_per_class": 20, "remain_per_class": 10}
QUICK_METHODS = {"salun": {"epochs": 7}, "rl": {"epochs": 7}, "sa": {"epochs": 7, "replay_per_class": 16},
                 "ga": {"epochs": 40}}


def run_generation_bench(out_dir: str | Path, runtime: Runtime | None = None, store: str | Path | None = None,
                         seed: int = 0, forget_class: int = 0, methods: list[str] | None = None, quick: bool = False,
                         data: str = "digits", root: str | None = None, denoiser: str = "unet",
                         hyperparameters: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the bench and write `generation_bench.{md,csv,json}` and `generation_samples.png` into `out_dir`.

    `denoiser` is a registered denoiser: "unet" or "dit" (the methods do not change with it).
    `methods` defaults to every generation method; `hyperparameters` maps a method to overrides of its
    defaults. Returns {"rows", "files", "timings", "settings"}; each row has the model, FA (%), FID, RA (%),
    steps, optimiser updates, unlearning seconds and evaluation seconds.
    """
    DENOISERS.get(denoiser)  # fail before anything is written on an unknown name
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runtime = runtime or Runtime.create()
    store = Path(store or default_store())
    methods = list(methods or GENERATION_METHODS.names())
    for name in methods:
        GENERATION_METHODS.get(name)  # fail before any training on an unknown name
    overrides = {name: {**(QUICK_METHODS.get(name, {}) if quick else {}), **(hyperparameters or {}).get(name, {})}
                 for name in methods}
    started = time.perf_counter()
    timings: dict[str, float] = {}

    def timed(key: str, fn, *args, **kwargs):
        begin = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - begin
        return value

    dataset, split, recipe, spec, original, oracle, evaluator = bench_setup(
        data, root, forget_class, denoiser, seed, quick, runtime, store, timed)
    budget = evaluator.budget

    rows, names, samples, settings_of = [], [], [], {}
    references = {}
    for name, checkpoint in (("retrained", oracle), ("pretrained", original)):
        model, schedule = load_denoiser(checkpoint)
        references[name] = timed("evaluate_s", evaluator.score, model.to(runtime.device), schedule)
    oracle_scores = references["retrained"]

    def common(scores) -> dict:
        """The keys every domain reports (forget_acc, remain_acc, avg_gap, kl_forget) against the oracle."""
        return {k: v for k, v in evaluator.against(scores, oracle_scores).items() if k not in ("gaps", "fid")}

    for name, checkpoint in (("pretrained", original), ("retrained", oracle)):
        scores = references[name]
        is_oracle = name == "retrained"
        rows.append({"model": name, **scores.row(), **common(scores), "steps": recipe.steps if is_oracle else None,
                     "updates": None, "unlearn_seconds": checkpoint.record["wall_time_s"] if is_oracle else None,
                     "sample_passes": None})
        names.append(name)
        samples.append(scores.samples)
    for name in methods:
        model, schedule = load_denoiser(original)
        try:
            result = timed("methods_s", unlearn_generation, model, split, name, data=dataset, schedule=schedule,
                           runtime=runtime, seed=seed, store=store, **overrides[name])
        except DivergenceError as exc:  # one diverging method is a result of the bench, not its end
            rows.append({"model": name, "error": str(exc)})
            continue
        scores = timed("evaluate_s", evaluator.score, result.model, schedule)
        rows.append({"model": name, **scores.row(), **common(scores), "steps": result.steps,
                     "updates": result.details["updates"],
                     "unlearn_seconds": result.wall_time_s, "sample_passes": result.sample_passes,
                     "rte_s": result.wall_time_s, "cost_ratio": result.sample_passes / oracle.record["sample_passes"]})
        declared = GENERATION_METHODS.get(name)
        settings_of[name] = {"title": declared.title, **declared.columns(), "hyperparameters": result.hyperparameters,
                             **{k: v for k, v in result.details.items() if k != "updates"}}
        names.append(name)
        samples.append(scores.samples)
    timings["total_s"] = time.perf_counter() - started

    settings = {"data": dataset.describe(), "forget": split.describe(), "seed": seed, "quick": quick,
                "denoiser": spec.describe(), "recipe": recipe.model_dump(), "budget": budget.describe(),
                "original": str(original.path), "oracle": str(oracle.path), "device": str(runtime.device),
                "threads": runtime.threads, "machine": platform.machine(), "methods": settings_of}
    files = {"markdown": out / "generation_bench.md", "csv": out / "generation_bench.csv",
             "json": out / "generation_bench.json", "grid": out / "generation_samples.png"}
    sample_grid(files["grid"], names, samples, evaluator.labels, dataset.classes, evaluator.forgotten)
    write_rows(rows, files["csv"], files["json"], {"settings": settings, "timings": timings})
    atomic_write_text(files["markdown"], _markdown(rows, settings, timings, files["grid"].name))
    return {"rows": rows, "files": {k: str(v) for k, v in files.items()}, "timings": timings, "settings": settings}


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


def _markdown(rows: list[dict], settings: dict, timings: dict, grid: str) -> str:
    b = settings["budget"]
    forgotten = ", ".join(str(c) for c in settings["forget"]["forgotten_classes"])
    caption = (f"# Generation bench: forgetting class {forgotten} of a class-conditional DDPM "
               f"({settings['denoiser']['name']} denoiser)\n\n"
               f"{settings['data']['name']} ({settings['data']['n_train']} training images), seed {settings['seed']}"
               f"{' (quick run: shorter pretraining and budgets, rougher numbers)' if settings['quick'] else ''}; "
               f"{settings['threads']} thread(s) on {settings['device']}. Every model is sampled from the same noise: "
               f"{b['forget_per_class']} images of the forgotten class (FA) and {b['remain_per_class']} of each "
               f"remaining class (FID*, RA), DDIM {b['steps']} steps, eta {b['eta']}, guidance {b['guidance']}.")
    notes = ("\nFA: % of forgotten-class samples the classifier recognises as that class (lower is better). "
             "RA: the same for the remaining classes. FID*: Fréchet distance between the classifier's penultimate "
             "features of remaining-class samples and of the real remaining-class training images; it is NOT the "
             "Inception FID of published tables and is comparable only within this bench. steps: iterations of each "
             "method's schedule (the retrained row: its training steps); updates: optimiser steps; time: wall "
             "seconds of unlearning (the retrained row: its training), timings are noisy on a shared CPU.\n\n"
             "Methods: " + "; ".join(f"`{name}` {m['title']}" for name, m in settings["methods"].items()) + ". "
             "Their hyperparameters are in the JSON file.\n\n"
             "Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + "\n\n"
             f"![samples]({grid})\n")
    return markdown_table(rows, caption) + notes
