"""Every method at its defaults on users' problems no default was chosen on: the defaults' claim to hold at any
scale, tried where it is easiest to break.

Each problem is a user's own data and model through the Python API, as benchmarks/user_table.py runs its one table:
`uk.from_torch` on an 80/20 split, the user's own `nn.Module` and recipe, `uk.unlearn(model, split, name,
data=data)` with nothing else, `uk.evaluate` against the oracle and `uk.noise_floor`. The problems differ in what
the defaults are relative to: two classes (a class-wise request is half the data), twenty classes, a few hundred
rows, a large batch, classes of very unequal sizes, scikit-learn's 178-row wine table, and a CNN without BatchNorm
on the 8×8 digits under Adam. A method that raises is recorded, not fatal.

Prints one line per run, then per problem and forget spec the table of user_table.py, and last the runs that
break a default's promise: test accuracy more than 5 points under the oracle's (a collapse), a cost above one
retraining (SISA retrains its shards and is left out of that count), an error.

    UNLEARNKIT_STORE=<store> python benchmarks/stress_defaults.py [--seeds 0] [--methods sfron,ft]
        [--problems binary,wine] [--out DIR]
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from sklearn.datasets import load_digits, load_wine, make_classification
from sklearn.preprocessing import StandardScaler
from torch import nn
from user_table import METHODS, run, table, write_results

import unlearnkit as uk

COLLAPSE = 5.0  # points of test accuracy under the oracle's


@dataclass(frozen=True)
class Problem:
    name: str
    rows: Callable[[], tuple[np.ndarray, np.ndarray]]  # features (or images) and labels, before the split
    model: Callable[[int, int, int], nn.Module]  # (seed, inputs, classes) -> a fresh model
    recipe: dict
    forgets: tuple[str, ...]
    layout: str = "F"


def mlp(*widths: int) -> Callable[[int, int, int], nn.Module]:
    def build(seed: int, inputs: int, classes: int) -> nn.Module:
        torch.manual_seed(seed)
        sizes = (inputs, *widths)
        layers = [layer for a, b in zip(sizes, sizes[1:]) for layer in (nn.Linear(a, b), nn.ReLU())]
        return nn.Sequential(*layers, nn.Linear(sizes[-1], classes))
    return build


def small_cnn(seed: int, inputs: int, classes: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, classes))


def generated(n: int, classes: int, features: int, informative: int, flip: float = 0.02, weights=None):
    return lambda: make_classification(n_samples=n, n_features=features, n_informative=informative,
                                       n_redundant=0, n_classes=classes, n_clusters_per_class=1, flip_y=flip,
                                       weights=weights, random_state=0)


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    digits = load_digits()
    return digits.images[:, None].astype(np.float32) / 16.0, digits.target


SGD = {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4, "schedule": "cosine", "augment": False}
ADAM = {"optimizer": "adam", "weight_decay": 0.0, "schedule": "constant", "augment": False}
PROBLEMS = (
    Problem("binary", generated(3000, 2, 30, 8), mlp(128, 128),
            {**SGD, "epochs": 30, "batch_size": 64, "lr": 0.1}, ("random:0.1", "class:1")),
    Problem("twenty-classes", generated(8000, 20, 40, 15), mlp(256, 256),
            {**ADAM, "epochs": 30, "batch_size": 128, "lr": 1e-3}, ("random:0.1", "class:5")),
    Problem("few-rows", generated(400, 3, 10, 6), mlp(64),
            {**ADAM, "epochs": 100, "batch_size": 16, "lr": 3e-3}, ("random:0.1", "class:0")),
    Problem("large-batch", generated(12000, 10, 32, 12), mlp(256, 256),
            {**SGD, "epochs": 15, "batch_size": 1024, "lr": 0.2}, ("random:0.1", "class:3")),
    Problem("unequal-classes", generated(5000, 5, 20, 10, weights=[0.5, 0.2, 0.15, 0.1, 0.05]), mlp(128, 128),
            {**SGD, "epochs": 40, "batch_size": 128, "lr": 0.05}, ("random:0.1", "class:4")),
    Problem("wine", lambda: load_wine(return_X_y=True), mlp(64, 64),
            {**ADAM, "epochs": 200, "batch_size": 16, "lr": 1e-3}, ("random:0.1", "class:1")),
    Problem("digits-cnn-adam", digit_images, small_cnn,
            {**ADAM, "epochs": 30, "batch_size": 64, "lr": 1e-3}, ("random:0.1", "class:3"), layout="CHW"),
)


def dataset(problem: Problem):
    """The problem's rows, shuffled once (seed 0) and split 80/20; tables standardised on the train part."""
    x, y = problem.rows()
    order = np.random.default_rng(0).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order].astype(np.int64)
    cut = int(0.8 * len(y))
    if problem.layout == "F":
        x = StandardScaler().fit(x[:cut]).transform(x).astype(np.float32)
    parts = [torch.utils.data.TensorDataset(torch.from_numpy(x[s]), torch.from_numpy(y[s]))
             for s in (slice(0, cut), slice(cut, None))]
    return uk.from_torch(*parts, layout=problem.layout, recipe=problem.recipe, name=f"stress-{problem.name}")


def broken(found: dict) -> list[str]:
    """The runs that break a default's promise, one line each."""
    lines = []
    for problem, rows in found.items():
        for forget, by_method in rows.items():
            for method, cells in by_method.items():
                for seed, cell in enumerate(cells):
                    where = f"{problem} {forget} {method} (run {seed + 1})"
                    if "error" in cell:
                        lines.append(f"- {where}: {cell['error']}")
                        continue
                    if cell["ta_vs_oracle"] < -COLLAPSE:
                        lines.append(f"- {where}: test accuracy {cell['ta_vs_oracle']:+.2f} vs the oracle's")
                    if cell["cost"] > 1 and method != "sisa":
                        lines.append(f"- {where}: cost {cell['cost']:.2f} of a retraining")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--problems", default=",".join(p.name for p in PROBLEMS))
    parser.add_argument("--out", type=Path, help="folder for results.md and results.json")
    args = parser.parse_args()
    seeds, methods = [int(s) for s in args.seeds.split(",")], args.methods.split(",")
    chosen = [p for p in PROBLEMS if p.name in args.problems.split(",")]
    found = {}
    for problem in chosen:
        data = dataset(problem)
        inputs, classes = data.image_shape[0], data.num_classes
        found[problem.name] = run(methods, seeds, {}, data=data, forgets=problem.forgets,
                                  model=lambda seed, p=problem: p.model(seed, inputs, classes),
                                  label=f"{problem.name} ", keep_going=True)
    sections = [f"## {name}\n\n{table(rows)}" for name, rows in found.items()]
    promise = broken(found)
    text = "\n".join(sections) + "\n## Broken promises\n\n" + ("\n".join(promise) or "None.") + "\n"
    print(text)
    if args.out:
        write_results(args.out, text, {"seeds": seeds, "runs": found, "problems": {
            p.name: {"recipe": p.recipe, "forgets": p.forgets} for p in chosen}})


if __name__ == "__main__":
    main()
