"""`run_bench`: every scenario × seed × method, evaluated against the oracle, resumable cell by cell.

For each scenario and seed it trains (or finds in the store) the original model, the oracle (retrained on
the remain set with the same recipe) and a second oracle with another seed (the RT′ row: the noise floor,
the best any method can hope for). Each method starts from the original's weights. Every finished cell is
written at once, atomically, under `out/cells/`; a run started again skips the cells it finds.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..artifacts import atomic_write_text, content_key, finite_json, versions
from ..config import TrainRecipe
from ..data import DATASETS, load_dataset, make_split
from ..data.images import ImageDataset
from ..errors import ConfigError, DivergenceError
from ..evaluation.protocol import evaluate
from ..models import ModelSpec, spec_for
from ..pipeline import train
from ..progress import task
from ..runtime import Runtime
from ..unlearning.engine import unlearn
from ..unlearning.methods import METHODS
from .scenarios import BenchConfig, Scenario

ORACLE, NOISE_FLOOR, ORIGINAL = "RT (oracle)", "RT′ (2nd seed)", "Original"
REFERENCE_ROWS = (ORACLE, NOISE_FLOOR, ORIGINAL)


@dataclass
class Cell:
    scenario: str
    seed: int
    method: str
    metrics: dict[str, Any]


def load_scenario(scenario: Scenario) -> tuple[ImageDataset, ModelSpec, TrainRecipe]:
    """The scenario's dataset, model spec and training recipe (the dataset's, with the scenario's overrides)."""
    dataset = load_dataset(scenario.data, scenario.root, **scenario.data_options)
    spec = DATASETS.get(scenario.data)
    model = spec_for(scenario.model or spec.default_model, dataset, **scenario.model_options)
    return dataset, model, spec.recipe.with_overrides(scenario.recipe)


def original_and_oracle(scenario: Scenario, loaded, seed: int, runtime: Runtime, store: Path | None):
    """The split of `seed`, and the original model and its oracle, trained or found in the store."""
    dataset, model, recipe = loaded
    split = make_split(scenario.forget, dataset, seed)
    original = train(dataset, model, recipe, seed, runtime=runtime, store=store)
    oracle = train(dataset, model, recipe, seed, split, runtime=runtime, store=store)
    return split, original, oracle


def default_methods() -> list[str]:
    return [m for m in METHODS.names() if m != "retrain"]


def checked_scenarios(config: BenchConfig, methods: list[str], provided: dict[str, tuple] | None = None
                      ) -> dict[str, tuple]:
    """Every scenario's data, model and recipe (loaded, or `provided` by the caller as (dataset, model spec,
    recipe): a user's own data), with every method's hyperparameters resolved for it: all the ways a bench file
    can be wrong fail here, before anything is trained or written."""
    for name in methods:
        METHODS.get(name)
    loaded = {}
    for scenario in config.scenarios:
        unknown = set(scenario.hyperparameters) - set(METHODS.names())
        if unknown:
            raise ConfigError(f"scenario '{scenario.name}' sets hyperparameters of unknown method(s) {sorted(unknown)}")
        loaded[scenario.name] = (provided or {}).get(scenario.name) or load_scenario(scenario)
        for name in methods:
            METHODS.get(name).resolve(scenario.hyperparameters.get(name, {}), scenario.forget)
        make_split(scenario.forget, loaded[scenario.name][0], config.seeds[0])
    return loaded


def run_bench(config: BenchConfig, out_dir: Path, runtime: Runtime, store: Path | None = None,
              provided: dict[str, tuple] | None = None) -> list[Cell]:
    methods = config.methods or default_methods()
    loaded = checked_scenarios(config, methods, provided)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.json", json.dumps({"config": config.model_dump(), "methods": methods,
                                                           "versions": versions(), "device": str(runtime.device),
                                                           "threads": runtime.threads}, indent=2))
    cells: list[Cell] = []
    total = len(config.scenarios) * len(config.seeds) * (len(methods) + 1)
    with task("bench", total) as advance:
        for scenario in config.scenarios:
            for seed in config.seeds:
                cells += _seed_cells(config, scenario, loaded[scenario.name], seed, methods, out_dir, runtime, store,
                                     advance)
    return cells


def _seed_cells(config: BenchConfig, scenario: Scenario, loaded, seed: int, methods: list[str], out_dir: Path,
                runtime: Runtime, store: Path | None, advance) -> list[Cell]:
    """The reference rows and every method's row of one scenario and seed."""
    dataset, model, recipe = loaded
    advance(0, info=f"{scenario.name} seed {seed}: original and oracles")
    split, original, oracle = original_and_oracle(scenario, loaded, seed, runtime, store)
    second = train(dataset, model, recipe, seed + config.noise_floor_offset, split, runtime=runtime, store=store)
    oracle_net = oracle.load_model()
    base = {"scenario": scenario.name, "seed": seed, "original": original.record["key"],
            "oracle": oracle.record["key"], "mia": config.mia, "attacks": config.attacks,
            "compute": runtime.identity()}

    def against_oracle(model_net, record) -> dict:
        return evaluate(model_net, oracle_net, split, dataset, runtime, original.load_model(), record,
                        oracle.record, config.mia, tuple(config.attacks) if config.attacks else None, seed=seed)

    def evaluate_reference(checkpoint, record) -> dict:
        return against_oracle(checkpoint.load_model(), record)

    def run_method(name: str, hp: dict) -> dict:
        try:
            result = unlearn(original.load_model(), split, name, data=dataset, recipe=recipe, runtime=runtime,
                             seed=seed, store=store, **hp)
        except DivergenceError as exc:  # one diverging method is a result of the bench, not its end
            return {"error": str(exc)}
        return {**against_oracle(result.model, result.record()), "hyperparameters": result.hyperparameters,
                "steps": result.steps}

    references = {ORACLE: (oracle, oracle.record), NOISE_FLOOR: (second, second.record),
                  ORIGINAL: (original, {"wall_time_s": 0.0, "sample_passes": 0})}
    cells = [cached_cell(out_dir, scenario.name, seed, row, {**base, "row": row, "hp": {}},
                         partial(evaluate_reference, *args))
             for row, args in references.items()]
    advance()
    for name in methods:
        advance(0, info=f"{scenario.name} seed {seed}: {name}")
        hp = scenario.hyperparameters.get(name, {})
        resolved = METHODS.get(name).resolve(hp, split.spec)  # keyed on every hyperparameter
        cells.append(cached_cell(out_dir, scenario.name, seed, name, {**base, "row": name, "hp": resolved},
                                 partial(run_method, name, hp)))
        advance()
    return cells


def cached_cell(out_dir: Path, scenario: str, seed: int, name: str, identity: dict, compute) -> Cell:
    """The stored cell if its content key matches (same models, method, hyperparameters), else compute it."""
    key = content_key(identity)
    path = out_dir / "cells" / scenario / str(seed) / f"{_slug(name)}.json"
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return Cell(scenario, seed, name, stored["metrics"])
    metrics = finite_json(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "scenario": scenario, "seed": seed, "row": name,
                                        "metrics": metrics}, indent=1))
    return Cell(scenario, seed, name, metrics)


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
