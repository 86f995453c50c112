"""The text-to-image bench: erasing a concept from a text-to-image model trained on the captioned digits.

Trains (or finds stored) the original, the oracle trained without the concept's samples and the concept
classifiers; runs each method from the original; scores every model on the same prompts and noise; then the
multi-concept (two concepts at once) and sequential (one after the other) scenarios. Writes
`text_to_image_bench.{md,csv,json}`, `text_to_image_scenarios.csv` and a PNG sample grid per model.
"""
from __future__ import annotations

import copy
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write_rows, atomic_write_text, default_store, finite_json
from ..errors import ConfigError, DivergenceError
from ..runtime import Runtime
from .data import captioned_digits, concept_split
from .engine import sequential_erasure, unlearn_text_to_image
from .evaluation import PromptEvaluator, SampleBudget
from .methods import TEXT_TO_IMAGE_METHODS
from .metrics import train_concept_classifiers
from .prompts import concept_prompts, parse_concepts
from .report import markdown_table, sample_grid
from .training import TextToImageRecipe, load_text_to_image, stored_record, train_text_to_image

DEFAULT_METHODS = ["esd-x", "esd-u", "salun", "sfron", "uce", "fmn"]
SCENARIO_METHODS = ["sfron", "esd-x", "uce"]
# --quick: fewer evaluation samples; the model and the methods' budgets stay (the targets must hold).
QUICK_BUDGET = {"forget_per_prompt": 12, "retain_per_prompt": 6}
QUICK_RECIPE: dict[str, Any] = {}
QUICK_METHODS: dict[str, dict[str, Any]] = {}


def run_text_to_image_bench(out_dir: str | Path, runtime: Runtime | None = None, store: str | Path | None = None,
                            seed: int = 0, quick: bool = False, methods: list[str] | None = None,
                            concept: str = "seven", second: str = "three", scenarios: list[str] | None = None,
                            hyperparameters: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run the bench; returns {"rows", "scenario_rows", "files", "timings", "settings"}.

    `concept` is erased by every method in `methods` (default: ESD-x, ESD-u, SalUn, SFR-on, UCE, FMN); the
    multi-concept scenario erases `concept` and `second` at once, the sequential one `concept` then `second`,
    with each method of `scenarios` (default: SFR-on, ESD-x, UCE; [] skips them). `hyperparameters` maps a
    method to overrides of its defaults. Rows: method, forget_acc, retain_acc (%), fid (FID*), alignment,
    neighbour_acc, per-concept accuracies, updates and seconds.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runtime = runtime or Runtime.create()
    store = Path(store or default_store())
    methods = list(DEFAULT_METHODS if methods is None else methods)
    scenarios = list(SCENARIO_METHODS if scenarios is None else scenarios)
    for name in methods + scenarios:
        TEXT_TO_IMAGE_METHODS.get(name)  # fail before any training on an unknown name
    erased, pair = parse_concepts(concept), parse_concepts(f"{concept}+{second}")
    if len(pair) != 2:
        raise ConfigError(f"the scenarios need two different concepts, got '{concept}' and '{second}'")
    overrides = {name: {**(QUICK_METHODS.get(name, {}) if quick else {}), **(hyperparameters or {}).get(name, {})}
                 for name in set(methods + scenarios)}
    timings: dict[str, float] = {}
    started = time.perf_counter()

    def timed(key: str, fn, *args, **kwargs):
        begin = time.perf_counter()
        value = fn(*args, **kwargs)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - begin
        return value

    dataset = captioned_digits()
    split = concept_split(dataset, erased, seed)
    recipe = TextToImageRecipe().with_overrides(QUICK_RECIPE if quick else {})
    budget = SampleBudget(**{**(QUICK_BUDGET if quick else {}), "seed": seed})
    original, oracle = timed("train_models_s", train_both, dataset, recipe, seed, split, runtime, store)
    timings.update({"train_original_s": stored_record(original)["wall_time_s"],
                    "train_oracle_s": stored_record(oracle)["wall_time_s"]})
    classifiers = timed("train_classifiers_s", train_concept_classifiers, dataset, runtime, store, seed)
    evaluator = timed("evaluate_s", PromptEvaluator, dataset, erased, classifiers, runtime, budget)
    base = load_text_to_image(original, runtime)

    rows, grids = [], {}
    files = {"markdown": out / "text_to_image_bench.md", "csv": out / "text_to_image_bench.csv",
             "json": out / "text_to_image_bench.json", "scenarios_csv": out / "text_to_image_scenarios.csv"}

    def scored(name: str, model, extra: dict) -> dict:
        scores = timed("evaluate_s", evaluator.score, model)
        path = out / f"text_to_image_samples_{name}.png"
        sample_grid(path, f"{name}: erasing {concept}", scores.samples, scores.prompts, evaluator.erased_prompts)
        grids[name] = str(path)
        return {"method": name, **scores.row(), **extra}

    rows.append(scored("original", base, {"updates": None, "unlearn_seconds": None}))
    oracle_model = load_text_to_image(oracle, runtime)
    rows.append(scored("oracle", oracle_model, {"updates": recipe.steps,
                                                "unlearn_seconds": stored_record(oracle)["wall_time_s"]}))
    del oracle_model
    settings_of = {}
    for name in methods:
        model = copy.deepcopy(base)
        try:
            result = timed("methods_s", unlearn_text_to_image, model, erased, name, data=dataset, runtime=runtime,
                           seed=seed, store=store, **overrides.get(name, {}))
        except DivergenceError as exc:  # one diverging method is a result of the bench, not its end
            rows.append({"method": name, "error": str(exc)})
            continue
        rows.append(scored(name, result.model, {"updates": result.details["updates"],
                                                 "unlearn_seconds": result.wall_time_s}))
        declared = TEXT_TO_IMAGE_METHODS.get(name)
        settings_of[name] = {"title": declared.title, **declared.columns(), "hyperparameters": result.hyperparameters,
                             "notes": declared.notes}

    scenario_rows = timed("scenarios_s", _scenarios, base, dataset, pair, scenarios, classifiers, runtime, budget,
                          seed, store, overrides, out, grids)
    timings["total_s"] = time.perf_counter() - started
    settings = {"data": dataset.describe(), "concept": concept, "second": second, "forget": split.describe(),
                "seed": seed, "quick": quick, "recipe": recipe.model_dump(), "model": stored_record(original)["model"],
                "budget": evaluator.describe(), "original": str(original), "oracle": str(oracle),
                "device": str(runtime.device), "threads": runtime.threads, "machine": platform.machine(),
                "methods": settings_of}
    atomic_write_rows(files["csv"], rows)
    atomic_write_rows(files["scenarios_csv"], scenario_rows)
    atomic_write_text(files["json"], json.dumps(finite_json({"settings": settings, "timings": timings, "rows": rows,
                                                             "scenario_rows": scenario_rows}), indent=2, default=str))
    atomic_write_text(files["markdown"], _markdown(rows, scenario_rows, settings, timings))
    return {"rows": rows, "scenario_rows": scenario_rows, "files": {**{k: str(v) for k, v in files.items()},
                                                                    "grids": grids},
            "timings": timings, "settings": settings}


def _train(threads: int, dataset, recipe, seed, split, runtime, store) -> Path:
    """One training, in a worker process: torch's thread count is per process."""
    import torch

    torch.set_num_threads(threads)
    return train_text_to_image(dataset, None, recipe, seed, split, runtime, store)


def train_both(dataset, recipe: TextToImageRecipe, seed: int, split, runtime: Runtime,
               store: Path) -> tuple[Path, Path]:
    """The original and the oracle (trained or found in the store). They do not depend on each other, so on a CPU
    with a core to spare the oracle trains in a second process beside the original; the weights are the same as in
    one process (the same seed and thread count: the content key says so)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if runtime.device.type != "cpu" or cores < 2 * runtime.threads:
        return (train_text_to_image(dataset, None, recipe, seed, None, runtime, store),
                train_text_to_image(dataset, None, recipe, seed, split, runtime, store))
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        oracle = pool.submit(_train, runtime.threads, dataset, recipe, seed, split, runtime, store)
        original = train_text_to_image(dataset, None, recipe, seed, None, runtime, store)
        return original, oracle.result()


def _scenarios(base, dataset, pair, methods, classifiers, runtime, budget, seed, store, overrides, out, grids):
    """Multi-concept (both at once) and sequential (first, then second) erasure, scored on both concepts."""
    if not methods:
        return []
    evaluator = PromptEvaluator(dataset, pair, classifiers, runtime, budget)
    names = "+".join(c.name for c in pair)
    rows = []
    for name in methods:
        for scenario in ("multi", "sequential"):
            model = copy.deepcopy(base)
            hp = overrides.get(name, {})
            begin = time.perf_counter()
            try:
                if scenario == "multi":
                    results = [unlearn_text_to_image(model, pair, name, data=dataset, runtime=runtime, seed=seed,
                                                     store=store, **hp)]
                else:
                    results = sequential_erasure(model, [c.name for c in pair], name, data=dataset, runtime=runtime,
                                                 seed=seed, **hp)
            except DivergenceError as exc:
                rows.append({"scenario": scenario, "method": name, "concepts": names, "error": str(exc)})
                continue
            scores = evaluator.score(model)
            label = f"{scenario}-{name}"
            path = out / f"text_to_image_samples_{label}.png"
            sample_grid(path, f"{label}: erasing {names}", scores.samples, scores.prompts,
                        concept_prompts(pair))
            grids[label] = str(path)
            rows.append({"scenario": scenario, "method": name, "concepts": names, **scores.row(),
                         "updates": sum(r.details["updates"] for r in results),
                         "unlearn_seconds": time.perf_counter() - begin})
    return rows


def _markdown(rows: list[dict], scenario_rows: list[dict], settings: dict, timings: dict) -> str:
    b = settings["budget"]
    caption = (f"# Text-to-image bench: erasing '{settings['concept']}' from a text-to-image model\n\n"
               f"Captioned digits ({settings['data']['n_train']} training images, 30 captions), seed {settings['seed']}"
               f"{' (quick: fewer evaluation samples)' if settings['quick'] else ''}; {settings['threads']} thread(s) "
               f"on {settings['device']}. Every model is sampled from the same noise: {b['forget_per_prompt']} images "
               f"per erased prompt, {b['retain_per_prompt']} per other prompt, DDIM {b['steps']} steps, eta "
               f"{b['eta']}, guidance {b['guidance']} (SD convention).\n")
    notes = ("\nforget_acc: % of images from the erased concept's prompts that the concept classifier still "
             "recognises as the concept (lower is better). retain_acc: % of the other prompts' images recognised as "
             "their own concept. FID*: Fréchet distance of the digit classifier's penultimate features, retained "
             "prompts vs their real images; NOT Inception FID, comparable only within this bench. alignment: mean "
             "p_digit x p_style of the prompted digit and style (a classifier probability, not CLIP). neighbours: "
             "retain accuracy of the two concepts the classifier most confuses with the erased one "
             f"({b['neighbours']}).\n\n")
    extra = [("method", "method"), ("concepts", "concepts"), ("forget_acc", "forget_acc % ↓"),
             ("retain_acc", "retain_acc %"), ("fid", "FID* ↓"), ("updates", "updates"), ("unlearn_seconds", "time (s)")]
    scen = ""
    if scenario_rows:
        first, second = settings["concept"], settings["second"]
        cols = extra[:3] + [(f"forget_acc_{c}", f"forget {c} %") for c in (first, second)]
        cols += extra[3:]
        scen = ("\n## Scenarios: multi-concept (both at once) and sequential (one after the other)\n\n"
                + "\n".join(f"### {s}\n\n" + markdown_table([r for r in scenario_rows if r["scenario"] == s], cols)
                            for s in ("multi", "sequential")))
    timing = "\nTimings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + "\n"
    return caption + "\n" + markdown_table(rows) + notes + scen + timing
