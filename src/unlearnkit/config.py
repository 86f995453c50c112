"""Typed configuration: training recipes, and loading overrides from YAML files and key=value pairs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

Optimizer = Literal["sgd", "adam", "adamw"]
Schedule = Literal["cosine", "constant", "step"]


class TrainRecipe(BaseModel):
    """How a model is trained from scratch; the original and the oracle share one recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    epochs: int = Field(gt=0)
    batch_size: int = Field(gt=0)
    optimizer: Optimizer = "sgd"
    lr: float = Field(gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    schedule: Schedule = "cosine"
    augment: bool = True
    # "Unrolling SGD" (Thudi et al. 2022)'s training penalty: + λ · mean over samples of the standard deviation
    # of the logits, which keeps the weights near their start and approximate unlearning nearer to retraining.
    logit_std_penalty: float = Field(default=0.0, ge=0)

    def with_overrides(self, overrides: dict[str, Any]) -> "TrainRecipe":
        return validated(TrainRecipe, {**self.model_dump(), **overrides}, "training recipe")


# The recipe of a dataset that brings none (from_torch, unless it is given one).
GENERIC_RECIPE = TrainRecipe(epochs=20, batch_size=128, lr=0.05, augment=False)


def as_recipe(recipe: "TrainRecipe | dict | None", default: TrainRecipe) -> TrainRecipe:
    """A TrainRecipe from a recipe, a dict of fields that override the default's (validated, as a scenario's
    `recipe:` and the command line's --epochs do), or None (the default)."""
    if recipe is None:
        return default
    if isinstance(recipe, TrainRecipe):
        return recipe
    if isinstance(recipe, dict):
        return default.with_overrides(recipe)
    raise ConfigError(f"a training recipe must be a TrainRecipe or a dict of its fields, got {type(recipe).__name__}")


def validated(model: type[BaseModel], values: dict[str, Any], what: str):
    """Build a pydantic model, turning its errors into one readable line."""
    unknown = set(values) - set(model.model_fields)
    if unknown:
        raise ConfigError(
            f"unknown {what} option(s) {sorted(unknown)}; expected some of: {', '.join(model.model_fields)}"
        )
    try:
        return model(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (given {e.get('input')!r})" for e in exc.errors()
        )
        raise ConfigError(f"invalid {what}: {problems}") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a folder, not a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        content = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file '{path}' is not valid YAML: {yaml_problem(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping, got {type(content).__name__}")
    return content


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own message runs to several lines)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def parse_assignments(pairs: list[str] | None) -> dict[str, Any]:
    """Turn ['lr=0.1', 'mask=false'] into {'lr': 0.1, 'mask': False}, values read as YAML scalars."""
    result: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got '{pair}'")
        try:
            result[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            result[key.strip()] = raw
    return result


# What a `--config` file's top-level value may be: a test, and what the error line says is expected.
CONFIG_KINDS: dict[str, tuple[Any, str]] = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "mapping": (lambda v: isinstance(v, dict), "a mapping (key: value lines indented under it)"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "a whole number >= 0"),
    "count": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a whole number > 0"),
}


def check_config(content: dict[str, Any], path: str | Path, keys: dict[str, str], hint=None) -> dict[str, Any]:
    """A `--config` file's settings checked against `keys` (name -> a CONFIG_KINDS kind): an unknown key, or a
    value of the wrong type, is one ConfigError line naming the key, what it expects and the valid keys.
    `hint(key)` may say where an unknown key belongs instead (e.g. under recipe:)."""
    unknown = [str(k) for k in content if k not in keys]
    if unknown:
        advice = [h for h in (hint(k) if hint else None for k in unknown) if h]
        raise ConfigError(f"config file '{path}': unknown key(s) {unknown}"
                          f"{' (' + '; '.join(advice) + ')' if advice else ''}; valid keys: {', '.join(keys)}")
    for key, value in content.items():
        test, expected = CONFIG_KINDS[keys[key]]
        if not test(value):
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise ConfigError(f"config file '{path}': '{key}' must be {expected}, got {shown}")
    return content
