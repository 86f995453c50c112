"""`run_bench`: every scenario × seed × method, evaluated against the oracle, resumable cell by cell.

For each scenario and seed it trains (or finds in the store) the original model, the oracle (retrained on
the remain set with the same recipe) and a second oracle with another seed (the RT′ row: the noise floor,
the best any method can hope for). Each method starts from the original's weights.

The work is two rounds of independent jobs on an executor (in this process, or on Ray): first every distinct
model (one job per content key, so no two jobs ever train the same model), then every cell, the reference
rows and the methods' rows. Every finished cell is written at once, atomically, under `out/cells/`, keyed by
its content; a run started again skips the cells it finds.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from torch import nn

from ..artifacts import Checkpoint, atomic_write_text, content_key, finite_json, versions, warn_damaged, writable_store
from ..config import TrainRecipe, as_recipe
from ..data import DATASETS, load_dataset, make_split
from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import ConfigError, DivergenceError
from ..evaluation.protocol import evaluate
from ..executor import Executor, InProcess, Job
from ..models import ModelSpec, spec_for
from ..pipeline import describe_model, train
from ..runtime import Runtime
from ..unlearning.engine import unlearn
from ..unlearning.forgetting import fresh_copy
from ..unlearning.methods import METHODS
from .scenarios import BenchConfig, Scenario

ORACLE, NOISE_FLOOR, ORIGINAL = "RT (oracle)", "RT′ (2nd seed)", "Original"
REFERENCE_ROWS = (ORACLE, NOISE_FLOOR, ORIGINAL)
NOTHING_DONE = {"wall_time_s": 0.0, "sample_passes": 0}  # the Original row's cost: it does nothing


@dataclass
class Cell:
    scenario: str
    seed: int
    method: str
    metrics: dict[str, Any]


@dataclass(frozen=True)
class References:
    """One scenario and seed: its split, the original model, its oracle and (in the bench) the second oracle."""

    split: ForgetSplit
    original: Checkpoint
    oracle: Checkpoint
    second: Checkpoint | None = None


@dataclass(frozen=True)
class Setup:
    """What every cell of one scenario and seed is measured with; small, so it travels with each job (the
    dataset, large, is a job argument of its own, which Ray sends once for all jobs)."""

    scenario: str
    seed: int
    split: ForgetSplit
    original: Checkpoint
    oracle: Checkpoint
    runtime: Runtime
    mia: str
    attacks: tuple[str, ...] | None  # None: every registered attack


def load_scenario(scenario: Scenario) -> tuple[ImageDataset, ModelSpec, TrainRecipe]:
    """The scenario's dataset, model spec and training recipe (the dataset's, with the scenario's overrides)."""
    dataset = load_dataset(scenario.data, scenario.root, **scenario.data_options)
    spec = DATASETS.get(scenario.data)
    model = spec_for(scenario.model or spec.default_model, dataset, **scenario.model_options)
    return dataset, model, spec.recipe.with_overrides(scenario.recipe)


def original_and_oracle(scenario: Scenario, loaded, seed: int, runtime: Runtime, store: Path | None):
    """The split of `seed`, and the original model and its oracle, trained or found in the store (one after
    the other, in this process: for the callers that need one pair; the bench trains through an executor)."""
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


def check_threads(executor: Executor, runtime: Runtime) -> None:
    """Cells are keyed by the runtime's thread count on a CPU: jobs must really run with it."""
    threads = getattr(executor, "threads", None)
    if runtime.device.type == "cpu" and threads is not None and threads != runtime.threads:
        raise ConfigError(f"the executor runs jobs with {threads} torch thread(s) but the runtime has "
                          f"{runtime.threads}: results are keyed by thread count; make the executor with "
                          f"threads={runtime.threads}")


def run_bench(config: BenchConfig, out_dir: Path, runtime: Runtime, store: Path | None = None,
              provided: dict[str, tuple] | None = None, executor: Executor | None = None) -> list[Cell]:
    """Every cell of the bench, in the order scenario × seed × (reference rows, methods), computed as jobs on
    `executor` (default: in this process) or found in `out_dir`. The same config gives the same numbers on any
    executor."""
    methods = config.methods or default_methods()
    loaded = checked_scenarios(config, methods, provided)
    executor = executor or InProcess()
    check_threads(executor, runtime)
    store = writable_store(store)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "config.json", json.dumps({"config": config.model_dump(), "methods": methods,
                                                           "versions": versions(), "device": str(runtime.device),
                                                           "threads": runtime.threads}, indent=2))
    references = reference_models(config.scenarios, loaded, config.seeds, runtime, store, executor,
                                  config.noise_floor_offset)
    jobs = []
    for scenario in config.scenarios:
        for seed in config.seeds:
            jobs += _seed_jobs(config, scenario, loaded[scenario.name], references[scenario.name, seed], seed,
                               methods, out_dir, runtime, store)
    return executor.map(jobs, "bench cells")


def reference_models(scenarios: list[Scenario], loaded: dict[str, tuple], seeds: list[int], runtime: Runtime,
                     store: Path, executor: Executor, second_offset: int | None = None
                     ) -> dict[tuple[str, int], References]:
    """Per (scenario, seed): the split, and the original and its oracle trained or found in the store (and a
    second oracle with seed + `second_offset`, when given), every distinct model by one job. A user's own module
    is a template: each model trains a copy of it re-initialised under its seed, so the oracle starts where its
    original did and the second oracle elsewhere, as a registered model's would."""
    splits = {(s.name, seed): _without_data(make_split(s.forget, loaded[s.name][0], seed))
              for s in scenarios for seed in seeds}
    wanted: dict[tuple, dict] = {}
    for s in scenarios:
        dataset, model, recipe = loaded[s.name]
        for seed in seeds:
            split = splits[s.name, seed]
            base = {"dataset": dataset, "recipe": recipe, "runtime": runtime, "store": store}
            wanted[s.name, seed, "original"] = {**base, "model": _initial(model, seed), "seed": seed, "split": None}
            wanted[s.name, seed, "oracle"] = {**base, "model": _initial(model, seed), "seed": seed, "split": split}
            if second_offset is not None:
                wanted[s.name, seed, "second"] = {**base, "model": _initial(model, seed + second_offset),
                                                  "seed": seed + second_offset, "split": split}
    trained = train_distinct(wanted, executor)
    return {(s.name, seed): References(splits[s.name, seed], trained[s.name, seed, "original"],
                                       trained[s.name, seed, "oracle"], trained.get((s.name, seed, "second")))
            for s in scenarios for seed in seeds}


def _initial(model: ModelSpec | nn.Module, seed: int) -> ModelSpec | nn.Module:
    """What `pipeline.train` starts from for `seed`: a spec builds its own seeded weights; a module is copied and
    re-initialised under the seed (`train` trains a module in place)."""
    return fresh_copy(model, seed) if isinstance(model, nn.Module) else model


def train_distinct(wanted: dict[Any, dict], executor: Executor) -> dict[Any, Checkpoint]:
    """Train or find every model in `wanted` ({name: `pipeline.train`'s arguments}). Names that describe the same
    model (scenarios that share an original, say) share one job: two jobs training one model at once would
    race for its folder and its resume file."""
    jobs: dict[str, Job] = {}
    keys = {}
    for name, kwargs in wanted.items():
        key = model_key(kwargs)
        keys[name] = key
        if key not in jobs:
            kind = "original" if kwargs["split"] is None else "oracle"
            jobs[key] = Job(train, kwargs, f"{kind} {describe_model(kwargs['model'])['name']} seed {kwargs['seed']}")
    done = dict(zip(jobs, executor.map(list(jobs.values()), "bench models")))
    return {name: done[key] for name, key in keys.items()}


def model_key(kwargs: dict) -> str:
    """What makes `pipeline.train` train another model (the runtime and store are the same for every job)."""
    dataset, split = kwargs["dataset"], kwargs["split"]
    return content_key({"data": dataset.fingerprint, "model": describe_model(kwargs["model"]),
                        "recipe": as_recipe(kwargs["recipe"], dataset.recipe).model_dump(), "seed": kwargs["seed"],
                        "split": split.fingerprint if split is not None else None})


def _without_data(split: ForgetSplit) -> ForgetSplit:
    # Jobs get the dataset as an argument of its own; a split carrying it would send it again with every split.
    return dataclasses.replace(split, dataset=None)


def _seed_jobs(config: BenchConfig, scenario: Scenario, loaded, refs: References, seed: int, methods: list[str],
               out_dir: Path, runtime: Runtime, store: Path) -> list[Job]:
    """The jobs of the reference rows and every method's row of one scenario and seed."""
    dataset, _, recipe = loaded
    setup = Setup(scenario.name, seed, refs.split, refs.original, refs.oracle, runtime, config.mia,
                  tuple(config.attacks) if config.attacks else None)
    base = {"scenario": scenario.name, "seed": seed, "original": refs.original.record["key"],
            "oracle": refs.oracle.record["key"], "mia": config.mia, "attacks": config.attacks,
            "compute": runtime.identity()}
    label = f"{scenario.name} seed {seed}"
    rows = {ORACLE: (refs.oracle, refs.oracle.record), NOISE_FLOOR: (refs.second, refs.second.record),
            ORIGINAL: (refs.original, NOTHING_DONE)}
    jobs = [Job(reference_cell, {"out_dir": out_dir, "row": row, "identity": {**base, "row": row, "hp": {}},
                                 "setup": setup, "data": dataset, "checkpoint": checkpoint, "record": record},
                f"{label}: {row}") for row, (checkpoint, record) in rows.items()]
    for name in methods:
        hp = scenario.hyperparameters.get(name, {})
        resolved = METHODS.get(name).resolve(hp, refs.split.spec)  # keyed on every hyperparameter
        jobs.append(Job(method_cell, {"out_dir": out_dir, "row": name,
                                      "identity": {**base, "row": name, "hp": resolved}, "setup": setup,
                                      "data": dataset, "recipe": recipe, "hp": hp, "store": store},
                        f"{label}: {name}"))
    return jobs


def reference_cell(out_dir: Path, row: str, identity: dict, setup: Setup, data: ImageDataset,
                   checkpoint: Checkpoint, record: dict) -> Cell:
    """Job: a reference row (the oracle, the second oracle or the original) against the oracle."""
    return cached_cell(out_dir, setup.scenario, setup.seed, row, identity,
                       lambda: _against_oracle(setup, data, checkpoint.load_model(), record))


def method_cell(out_dir: Path, row: str, identity: dict, setup: Setup, data: ImageDataset, recipe: TrainRecipe,
                hp: dict, store: Path) -> Cell:
    """Job: method `row` with the scenario's `hp`, from the original's weights, against the oracle."""
    def run() -> dict:
        try:
            result = unlearn(setup.original.load_model(), setup.split, row, data=data, recipe=recipe,
                             runtime=setup.runtime, seed=setup.seed, store=store, **hp)
        except DivergenceError as exc:  # one diverging method is a result of the bench, not its end
            return {"error": str(exc)}
        return {**_against_oracle(setup, data, result.model, result.record()),
                "hyperparameters": result.hyperparameters, "steps": result.steps}

    return cached_cell(out_dir, setup.scenario, setup.seed, row, identity, run)


def _against_oracle(setup: Setup, data: ImageDataset, model, record: dict) -> dict:
    return evaluate(model, setup.oracle.load_model(), setup.split, data, setup.runtime, setup.original.load_model(),
                    record, setup.oracle.record, setup.mia, setup.attacks, seed=setup.seed)


def cached_cell(out_dir: Path, scenario: str, seed: int, name: str, identity: dict,
                compute: Callable[[], dict]) -> Cell:
    """The stored cell if its content key matches (same models, method, hyperparameters), else compute it."""
    key = content_key(identity)
    path = cell_path(out_dir, scenario, seed, name)
    if path.exists():
        stored = _stored_cell(path)
        if stored is not None and stored.get("key") == key:
            return Cell(scenario, seed, name, stored["metrics"])
    metrics = finite_json(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"key": key, "scenario": scenario, "seed": seed, "row": name,
                                        "metrics": metrics}, indent=1))
    return Cell(scenario, seed, name, metrics)


def _stored_cell(path: Path) -> dict | None:
    """A stored cell as written, or None (with a warning) when it cannot be: a truncated or hand-edited file is
    computed again rather than ending the bench or entering its tables."""
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem = f"unreadable: {exc}"
    else:
        if isinstance(stored, dict) and isinstance(stored.get("metrics"), dict):
            return stored
        problem = "not a cell with its metrics"
    warn_damaged(path, problem, "cell")
    return None


def reference_cost(record: dict | None) -> dict:
    """The cost columns of a reference row of a domain's bench: a retraining's own (`record`, an RT row's training
    record: cost 1 by definition) or none (None: the Original row, which does nothing)."""
    if record is None:
        return {"rte_s": 0.0, "sample_passes": 0, "cost_ratio": 0.0, "steps": 0}
    return {"rte_s": record["wall_time_s"], "sample_passes": record["sample_passes"], "cost_ratio": 1.0,
            "steps": record["recipe"]["steps"]}


def cell_path(out_dir: Path, scenario: str, seed: int, name: str, suffix: str = ".json") -> Path:
    """Where the cell of `name` (a row) in `scenario` and `seed` is stored; other `suffix`es are files it keeps
    beside it (a domain's samples)."""
    return out_dir / "cells" / scenario / str(seed) / f"{_slug(name)}{suffix}"


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
