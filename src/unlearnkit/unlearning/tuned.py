"""Hyperparameters chosen by `unlearnkit tune` for the embedded scenarios, read from tuned.yaml: an explicit
overlay (`--tuned`), never part of a method's defaults.

Layout: {dataset: {scenario: {method: {hyperparameter: value}}}} where a scenario is a forget spec
("random:0.1", "random:0.5") or a whole kind ("class"). A split finds its entry by exact spec, else by its
kind, else by the random fraction nearest to its own.
"""
from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..artifacts import atomic_write_text

FILE = "tuned.yaml"
_ignored = False


@contextmanager
def ignored():
    """Within this block methods resolve without tuned values, so a new search never starts from an old one."""
    global _ignored
    previous, _ignored = _ignored, True
    try:
        yield
    finally:
        _ignored = previous


@lru_cache(maxsize=1)
def _table() -> dict:
    return yaml.safe_load(resources.files("unlearnkit.unlearning").joinpath(FILE).read_text()) or {}


def scenario_key(spec: str) -> str:
    """The key a forget spec is tuned under: class specs share one entry, random ones keep their fraction."""
    kind = spec.split(":", 1)[0]
    return spec if kind == "random" else kind


def tuned(method: str, dataset: str | None, spec: str | None) -> dict[str, Any]:
    entries = {} if _ignored else _table().get(dataset or "", {})
    if not spec or not entries:
        return {}
    key = scenario_key(spec)
    if key not in entries and key.startswith("random:"):
        fractions = {float(k.split(":")[1]): k for k in entries if k.startswith("random:")}
        if fractions:
            key = fractions[min(fractions, key=lambda f: abs(f - float(key.split(":")[1])))]
    return dict(entries.get(key, {}).get(method, {}))


def merge_into(path: Path, dataset: str, best: dict[str, dict[str, dict]], header: str) -> None:
    """Merge {spec: {method: hp}} for `dataset` into a tuned-defaults file (created if absent)."""
    table = yaml.safe_load(path.read_text()) if path.exists() else {}
    table = table or {}
    for spec, methods in best.items():
        table.setdefault(dataset, {}).setdefault(scenario_key(spec), {}).update(methods)
    atomic_write_text(path, header + yaml.safe_dump(table, sort_keys=True))
    _table.cache_clear()
