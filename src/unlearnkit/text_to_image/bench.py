"""The text-to-image bench: erasing a concept from a text-to-image model trained on the captioned digits, on the
common bench's cells, tables and HTML report.

It trains (or finds stored) the original, the oracle trained without the concept's samples, a second oracle with
another seed (RT′, the noise floor; not with --quick) and the concept classifiers. Every row is one cell of
`bench/runner.py`, stored by content as soon as it is done, so a run started again skips what it finished: the
reference rows and each method run from the original, scored on the same prompts and noise against the oracle;
then the multi-concept (two concepts at once) and sequential (one after the other) scenarios, which have no oracle
(no model was trained without both), scored beside doing nothing. Each row's sample grid is kept beside its cell
and shown in the report.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write_file, atomic_write_text, versions, writable_store
from ..bench.html import write_report
from ..bench.runner import NOISE_FLOOR, ORACLE, ORIGINAL, Cell, cached_cell, cell_path, reference_cost
from ..bench.tables import NOTE, summarise, verdicts, write_tables
from ..data.images import ImageDataset
from ..errors import ConfigError, DivergenceError
from ..executor import Executor, InProcess, Job
from ..generation import metrics
from ..runtime import Runtime
from .data import captioned_digits, concept_split
from .engine import sequential_erasure, unlearn_text_to_image
from .evaluation import PromptEvaluator, SampleBudget, Scores
from .methods import TEXT_TO_IMAGE_METHODS
from .metrics import ConceptClassifiers, train_concept_classifiers
from .prompts import Concept, concept_prompts, parse_concepts
from .report import sample_grid
from .training import TextToImageRecipe, load_text_to_image, stored_record, train_text_to_image

DEFAULT_METHODS = ["esd-x", "esd-u", "salun", "sfron", "uce", "fmn"]
SCENARIO_METHODS = ["sfron", "esd-x", "uce"]
# --quick: fewer evaluation samples and no second oracle; the model and the methods' budgets stay (the targets
# must hold).
QUICK_BUDGET = {"forget_per_prompt": 12, "retain_per_prompt": 6}
QUICK_RECIPE: dict[str, Any] = {}
QUICK_METHODS: dict[str, dict[str, Any]] = {}
NOISE_FLOOR_OFFSET = 1000  # RT′ is trained with seed + this, as in the other benches
MODES = ("erase", "multi", "sequential")
COLUMNS = {"fid": "FID* ↓", "alignment": "alignment", "neighbour_acc": "neighbours %"}
DOMAIN_NOTE = ("Text-to-image: FA is the % of images from the erased concept's prompts that the concept classifier "
               "still recognises as the concept; RA (retain_acc) the % of the other prompts' images recognised as "
               "their own concept (no test set, no attack: Avg.Gap is the mean of the FA and RA gaps). D_KL: "
               "KL(oracle ‖ model) of the erased kind's classifier on the erased prompts' images, image by image "
               "(every model is sampled from the same prompts and noise). FID*: Fréchet distance of the digit "
               "classifier's penultimate features, retained prompts vs their real images; NOT Inception FID, "
               "comparable only within this bench. alignment: mean p_digit × p_style of the prompted digit and style "
               "(a classifier probability, not CLIP). neighbours: retain accuracy of the two concepts the classifier "
               "most confuses with the erased one. RTE of the RT rows: their training time. The multi-concept and "
               "sequential scenarios have no oracle: their rows stand beside doing nothing (Original).")


@dataclass(frozen=True)
class Erasure:
    """What every cell of one erasure (one scenario of the bench) is measured with."""

    scenario: str
    mode: str                      # "erase" (the concept), "multi" (both at once), "sequential" (one, then the other)
    concepts: tuple[Concept, ...]
    seed: int
    dataset: ImageDataset
    original: Path
    oracle: Path | None            # only the single erasure has one
    evaluator: PromptEvaluator
    oracle_scores: Scores | None
    runtime: Runtime
    store: Path


def run_text_to_image_bench(out_dir: str | Path, runtime: Runtime | None = None, store: str | Path | None = None,
                            seed: int = 0, quick: bool = False, methods: list[str] | None = None,
                            concept: str = "seven", second: str = "three", scenarios: list[str] | None = None,
                            hyperparameters: dict[str, dict[str, Any]] | None = None,
                            executor: Executor | None = None) -> dict[str, Any]:
    """Run the bench and write the common results.{md,csv,json} and report.html into `out_dir`.

    `concept` is erased by every method in `methods` (default: ESD-x, ESD-u, SalUn, SFR-on, UCE, FMN); the
    multi-concept scenario erases `concept` and `second` at once, the sequential one `concept` then `second`,
    with each method of `scenarios` (default: SFR-on, ESD-x, UCE; [] skips them). `hyperparameters` maps a
    method to overrides of its defaults. Returns {"rows" (per scenario: the summary rows), "verdicts", "files",
    "grids", "timings", "settings"}.
    """
    methods = list(DEFAULT_METHODS if methods is None else methods)
    scenarios = list(SCENARIO_METHODS if scenarios is None else scenarios)
    for name in methods + scenarios:
        TEXT_TO_IMAGE_METHODS.get(name)  # fail before any training on an unknown name
    erased, pair = parse_concepts(concept), parse_concepts(f"{concept}+{second}")
    if len(pair) != 2:
        raise ConfigError(f"the scenarios need two different concepts, got '{concept}' and '{second}'")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runtime = runtime or Runtime.create()
    store = writable_store(store)
    executor = executor or InProcess()
    overrides = {name: {**(QUICK_METHODS.get(name, {}) if quick else {}), **(hyperparameters or {}).get(name, {})}
                 for name in set(methods + scenarios)}
    timings: dict[str, float] = {}
    started = time.perf_counter()

    dataset = captioned_digits()
    split = concept_split(dataset, erased, seed)
    recipe = TextToImageRecipe().with_overrides(QUICK_RECIPE if quick else {})
    budget = SampleBudget(**{**(QUICK_BUDGET if quick else {}), "seed": seed})
    wanted = [(seed, None), (seed, split)] + ([] if quick else [(seed + NOISE_FLOOR_OFFSET, split)])
    begin = time.perf_counter()
    original, oracle, *floor = train_models(dataset, recipe, wanted, runtime, store)
    timings["train_models_s"] = time.perf_counter() - begin
    timings.update({"train_original_s": stored_record(original)["wall_time_s"],
                    "train_oracle_s": stored_record(oracle)["wall_time_s"]})
    begin = time.perf_counter()
    classifiers = train_concept_classifiers(dataset, runtime, store, seed)
    timings["train_classifiers_s"] = time.perf_counter() - begin
    begin = time.perf_counter()
    single = _erasure("erase", erased, seed, dataset, original, oracle, classifiers, runtime, budget, store)
    both = [_erasure(mode, pair, seed, dataset, original, None, classifiers, runtime, budget, store)
            for mode in ("multi", "sequential")] if scenarios else []
    timings["score_oracle_s"] = time.perf_counter() - begin

    jobs = _jobs(single, out, [ORIGINAL, ORACLE, *([NOISE_FLOOR] if floor else [])], methods, overrides, floor)
    for erasure in both:
        jobs += _jobs(erasure, out, [ORIGINAL], scenarios, overrides, [])
    begin = time.perf_counter()
    cells: list[Cell] = executor.map(jobs, "text-to-image cells")
    timings["cells_s"] = time.perf_counter() - begin
    timings["total_s"] = time.perf_counter() - started

    summary = summarise(cells, None, ("fid", "fid_gap", "alignment", "neighbour_acc", "steps", "updates",
                                      *(f"forget_acc_{c.name}" for c in pair)))
    said = verdicts(summary)
    titles = {single.scenario: f"{single.scenario}: erasing '{concept}', seed {seed}"
                               f"{' (quick: fewer evaluation samples, no RT′)' if quick else ''}"}
    titles.update({e.scenario: f"{e.scenario}: erasing '{concept}' and '{second}' "
                               f"{'at once' if e.mode == 'multi' else 'one after the other'} (no oracle)"
                   for e in both})
    columns = {**COLUMNS, **({f"forget_acc_{c.name}": f"forget {c.name} %" for c in pair} if both else {})}
    note = f"{NOTE} {DOMAIN_NOTE} Samples: {_budget_words(budget.describe())}."
    settings = {"data": dataset.describe(), "concept": concept, "second": second, "forget": split.describe(),
                "seed": seed, "quick": quick, "recipe": recipe.model_dump(), "model": stored_record(original)["model"],
                "budget": single.evaluator.describe(), "original": str(original), "oracle": str(oracle),
                "second_oracle": str(floor[0]) if floor else None, "device": str(runtime.device),
                "threads": runtime.threads, "machine": platform.machine()}
    atomic_write_text(out / "config.json", json.dumps({"settings": settings, "methods": methods,
                                                       "scenario_methods": scenarios, "overrides": overrides,
                                                       "versions": versions()}, indent=2, default=str))
    paths = write_tables(cells, summary, out, titles, said, columns, note, {"settings": settings, "timings": timings})
    grids = {(c.scenario, c.method): cell_path(out, c.scenario, c.seed, c.method, ".samples.png") for c in cells}
    grids = {key: path for key, path in grids.items() if path.exists()}
    paths["report"] = write_report(summary, out, titles, {}, {}, " ".join(["unlearnkit", *sys.argv[1:]]), said,
                                   columns, {s: [p for (k, _), p in grids.items() if k == s] for s in summary},
                                   DOMAIN_NOTE)
    return {"rows": summary, "verdicts": said, "cells": cells, "files": {k: str(v) for k, v in paths.items()},
            "grids": {f"{s}/{m}": str(p) for (s, m), p in grids.items()}, "timings": timings, "settings": settings}


def _erasure(mode: str, concepts: tuple[Concept, ...], seed: int, dataset: ImageDataset, original: Path,
             oracle: Path | None, classifiers: ConceptClassifiers, runtime: Runtime, budget: SampleBudget,
             store: Path) -> Erasure:
    evaluator = PromptEvaluator(dataset, concepts, classifiers, runtime, budget)
    names = "+".join(c.name for c in concepts)
    scenario = f"text-to-image-{names}" + ("" if mode == "erase" else f"-{mode}")
    oracle_scores = evaluator.score(load_text_to_image(oracle, runtime)) if oracle else None
    return Erasure(scenario, mode, concepts, seed, dataset, original, oracle, evaluator, oracle_scores, runtime,
                   store)


def _jobs(erasure: Erasure, out: Path, references: list[str], methods: list[str], overrides: dict,
          floor: list[Path]) -> list[Job]:
    base = {"domain": "text-to-image", "mode": erasure.mode, "concepts": [c.name for c in erasure.concepts],
            "seed": erasure.seed, "original": stored_record(erasure.original)["key"],
            "oracle": stored_record(erasure.oracle)["key"] if erasure.oracle else None,
            "budget": erasure.evaluator.budget.describe(), "classifiers": metrics.CLASSIFIER_RECIPE.model_dump(),
            "compute": erasure.runtime.identity()}
    models = {ORIGINAL: erasure.original, ORACLE: erasure.oracle, NOISE_FLOOR: floor[0] if floor else None}
    label = f"{erasure.scenario} seed {erasure.seed}"
    jobs = [Job(reference_cell, {"out_dir": out, "row": row, "identity": {**base, "row": row}, "erasure": erasure,
                                 "folder": models[row]}, f"{label}: {row}") for row in references]
    for name in methods:
        resolved = TEXT_TO_IMAGE_METHODS.get(name).resolve(overrides.get(name, {}),
                                                          "concept:" + "+".join(c.name for c in erasure.concepts))
        jobs.append(Job(method_cell, {"out_dir": out, "row": name, "identity": {**base, "row": name, "hp": resolved},
                                      "erasure": erasure, "hp": overrides.get(name, {})}, f"{label}: {name}"))
    return jobs


def reference_cell(out_dir: Path, row: str, identity: dict, erasure: Erasure, folder: Path) -> Cell:
    """Job: doing nothing (the original), the oracle or the second oracle, scored against the oracle."""
    def run() -> dict:
        # The oracle was scored once already: every row is compared with it.
        scores = (erasure.oracle_scores if row == ORACLE
                  else erasure.evaluator.score(load_text_to_image(folder, erasure.runtime)))
        cost = reference_cost(None if row == ORIGINAL else stored_record(folder))
        return _scored(out_dir, erasure, row, scores, cost)

    return cached_cell(out_dir, erasure.scenario, erasure.seed, row, identity, run)


def method_cell(out_dir: Path, row: str, identity: dict, erasure: Erasure, hp: dict) -> Cell:
    """Job: method `row` with `hp` from the original's weights: the erasure of its concept(s), at once or one
    after the other."""
    def run() -> dict:
        model = load_text_to_image(erasure.original, erasure.runtime)
        common = {"data": erasure.dataset, "runtime": erasure.runtime, "seed": erasure.seed, **hp}
        begin = time.perf_counter()
        try:
            if erasure.mode == "sequential":
                results = sequential_erasure(model, [c.name for c in erasure.concepts], row, **common)
            else:
                results = [unlearn_text_to_image(model, erasure.concepts, row, store=erasure.store, **common)]
        except DivergenceError as exc:  # one diverging method is a result of the bench, not its end
            return {"error": str(exc)}
        passes = sum(r.sample_passes for r in results)
        cost = {"rte_s": time.perf_counter() - begin, "sample_passes": passes,
                "steps": sum(r.steps for r in results), "updates": sum(r.details["updates"] for r in results)}
        if erasure.oracle:
            cost["cost_ratio"] = passes / stored_record(erasure.oracle)["sample_passes"]
        declared = TEXT_TO_IMAGE_METHODS.get(row)
        return {**_scored(out_dir, erasure, row, erasure.evaluator.score(model), cost),
                "hyperparameters": results[-1].hyperparameters,
                "declared": {"title": declared.title, **declared.columns(), "notes": declared.notes}}

    return cached_cell(out_dir, erasure.scenario, erasure.seed, row, identity, run)


def _scored(out_dir: Path, erasure: Erasure, row: str, scores: Scores, cost: dict) -> dict:
    """A row's figures against the oracle; its sample grid is kept beside its cell."""
    path = cell_path(out_dir, erasure.scenario, erasure.seed, row, ".samples.png")
    path.parent.mkdir(parents=True, exist_ok=True)
    names = "+".join(c.name for c in erasure.concepts)
    atomic_write_file(path, lambda tmp: sample_grid(tmp, f"{row}: erasing {names}", scores.samples, scores.prompts,
                                                    concept_prompts(erasure.concepts)))
    retrain = {"retrain_s": stored_record(erasure.oracle)["wall_time_s"]} if erasure.oracle else {}
    return {**erasure.evaluator.against(scores, erasure.oracle_scores), **cost, **retrain,
            "eval_seconds": scores.sample_seconds}


def _train(threads: int, dataset, recipe, seed, split, runtime, store) -> Path:
    """One training, in a worker process: torch's thread count is per process."""
    import torch

    torch.set_num_threads(threads)
    return train_text_to_image(dataset, None, recipe, seed, split, runtime, store)


def train_models(dataset, recipe: TextToImageRecipe, wanted: list[tuple[int, Any]], runtime: Runtime,
                 store: Path) -> list[Path]:
    """The models of `wanted` ((seed, split or None) each; trained or found in the store), in that order. They do
    not depend on each other, so on a CPU with cores to spare the others train in worker processes beside the
    first; the weights are the same as in one process (the same seed and thread count: the content key says so)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = min(len(wanted) - 1, cores // runtime.threads - 1)
    if runtime.device.type != "cpu" or workers < 1:
        return [train_text_to_image(dataset, None, recipe, seed, split, runtime, store) for seed, split in wanted]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        others = [pool.submit(_train, runtime.threads, dataset, recipe, seed, split, runtime, store)
                  for seed, split in wanted[1:]]
        first = train_text_to_image(dataset, None, recipe, *wanted[0], runtime, store)
        return [first, *(future.result() for future in others)]


def _budget_words(b: dict) -> str:
    return (f"{b['forget_per_prompt']} images per erased prompt, {b['retain_per_prompt']} per other prompt, DDIM "
            f"{b['steps']} steps, eta {b['eta']}, guidance {b['guidance']} (SD convention)")
