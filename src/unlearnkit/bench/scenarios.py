"""Bench configuration: scenarios (dataset, model, forget spec) × methods × seeds, read from YAML."""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..config import read_yaml, validated
from ..errors import ConfigError
from ..runtime import check_seeds


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    data: str = "digits"
    root: str | None = None
    data_options: dict[str, Any] = Field(default_factory=dict)
    model: str | None = None               # default: the dataset's default model
    model_options: dict[str, Any] = Field(default_factory=dict)
    forget: str
    recipe: dict[str, Any] = Field(default_factory=dict)          # overrides of the dataset's recipe
    hyperparameters: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per method, over its defaults
    # What `unlearnkit tune` minimises here: Avg.Gap, KL, or "relative": Avg.Gap / Avg.Gap of the original model
    # + KL / KL of the original model (the table's two summary numbers, each relative to doing nothing).
    objective: Literal["relative", "avg_gap", "kl_forget"] = "relative"
    search: dict[str, dict[str, list[Any]]] = Field(default_factory=dict)  # per method, over its declared grid
    max_cost: float | None = None   # `tune`'s budget here (share of retraining's sample passes), over --max-cost
    max_forget_acc: float | None = None  # `tune` keeps only settings whose forget accuracy (%) stays at or below this


class BenchConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenarios: list[Scenario]
    methods: list[str] | None = None        # default: every registered method but `retrain` (the RT′ row)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    mia: str = "mia_entropy"                # the attack Avg.Gap uses
    # Optional per-example audits (U-LiRA, the challenge's ε, KLOM) on a pool of this many models per scenario,
    # added to the tables as columns; the pool is trained once and shared by every bench that asks for it.
    audit: int | None = Field(default=None, ge=8)
    attacks: list[str] | None = None        # the attacks reported (default: all; SalUn's SVC is slow on large sets)
    noise_floor_offset: int = 1000          # the second oracle is trained with seed + this offset

    @field_validator("seeds", "scenarios", "methods")
    @classmethod
    def _not_empty(cls, values: list, info: ValidationInfo) -> list:
        if values is not None and not values:  # a bench of none would write an empty report (methods None: all)
            raise ValueError(f"at least one {info.field_name.removesuffix('s')} is needed")
        return values

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        try:
            return check_seeds(seeds, "the bench's seeds")
        except ConfigError as exc:  # pydantic reports a ValueError as the field's own error line
            raise ValueError(str(exc)) from None


def load_bench_config(path: str | Path | None = None) -> BenchConfig:
    """Read a bench YAML file (the embedded digits bench when `path` is None). A relative `root` is read
    relative to the file's folder."""
    if path is None:
        text = resources.files("unlearnkit.bench").joinpath("digits.yaml").read_text()
        import yaml

        raw, base = yaml.safe_load(text), Path.cwd()
    else:
        raw, base = read_yaml(path), Path(path).resolve().parent
    config = validated(BenchConfig, raw, f"bench file '{path or 'digits.yaml'}'")
    names = [s.name for s in config.scenarios]
    if len(set(names)) != len(names):
        raise ConfigError(f"bench file '{path}': scenario names must be unique, got {names}")
    for scenario in config.scenarios:
        if scenario.root and not Path(scenario.root).expanduser().is_absolute():
            scenario.root = str((base / scenario.root).resolve())
    return config


def select_scenarios(config: BenchConfig, only: str | None) -> BenchConfig:
    """The config restricted to the comma-separated scenario names in `only` (all when None)."""
    if not only:
        return config
    wanted = [n.strip() for n in only.split(",") if n.strip()]
    names = [s.name for s in config.scenarios]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise ConfigError(f"unknown scenario(s) {unknown}; this file has: {', '.join(names)}")
    return config.model_copy(update={"scenarios": [s for s in config.scenarios if s.name in wanted]})


def on_objects(data, model, forget, methods, seeds, recipe, mia: str = "mia_entropy"):
    """A bench config of one scenario per forget spec on a dataset object, and the objects it is `provided`.
    `model` is a registered model's name, its spec, or a user's own nn.Module (a template: see reference_models)."""
    from torch import nn

    from ..config import as_recipe
    from ..models import ModelSpec, spec_for
    from ..pipeline import describe_model

    if not hasattr(data, "train_labels"):
        raise ConfigError(f"the bench takes an ImageDataset (uk.load_dataset, uk.from_torch), got "
                          f"{type(data).__name__}; for a registered dataset by name, use `unlearnkit bench`")
    forget, methods = ([v] if isinstance(v, str) else v for v in (forget, methods))  # one spec, one method
    spec = model if isinstance(model, (ModelSpec, nn.Module)) else spec_for(model, data)
    recipe = as_recipe(recipe, data.recipe)
    if not isinstance(forget, (list, tuple)) or any(not isinstance(f, str) for f in forget):
        raise ConfigError(f"the bench's forget specs are strings such as random:0.1 or class:3, got {forget!r}")
    names = [f"{data.name}-{spec_text.replace(':', '').replace(',', '_')}" for spec_text in forget]
    if len(set(names)) != len(names):
        raise ConfigError(f"forget specs must differ, got {list(forget)}")
    scenarios = [{"name": n, "data": data.name, "model": describe_model(spec)["name"], "forget": f}
                 for n, f in zip(names, forget)]
    seeds = list(seeds) if isinstance(seeds, (tuple, range)) else seeds
    config = validated(BenchConfig, {"scenarios": scenarios, "methods": methods, "seeds": seeds, "mia": mia}, "bench")
    return config, {n: (data, spec, recipe) for n in names}
