"""A user's own model on a user's own table, through the Python API with nothing tuned: a dataset, a model and a
recipe that no default was chosen on.

The table is scikit-learn's `make_classification` (6,000 rows of 20 features, 10 informative, 4 classes of two
clusters each, 5% of labels flipped at random, `random_state` 0), standardised with `StandardScaler` on its first
5,000 rows (train) and handed over as plain float rows: `uk.from_torch(train, test, layout="F")`. The model is
the user's own `nn.Sequential` MLP (20-256-256-4) on (N, 20) batches, trained by `uk.train` with the user's
recipe (Adam at 1e-3, batch 64, 60 epochs, no weight decay): it memorises the flipped labels (train 100%, test
about 85%). Then every approximate method is called as `uk.unlearn(model, split, name, data=data)` and
`uk.evaluate`d against the oracle and a second oracle (`uk.noise_floor`), for random 10% and class 2.
One-step unlearning is left out: it unrolls SGD and says so for an Adam recipe (pass its `train_lr`).

Prints one line per run, then the table (mean over seeds): FA, TA minus the oracle's (the worst seed), the
closing fractions in Avg.Gap and KL, and the cost as a share of one retraining's sample passes.

    UNLEARNKIT_STORE=<store> python benchmarks/user_table.py [--seeds 0,1,2] [--methods sfron,ft]
        [--set KEY=VALUE ...] [--out DIR]

`--set` gives every method a hyperparameter (a number), e.g. `--set damage_z=0` for the calibration's held-out
guard decided by its probe alone, never by the whole held-out set.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import numpy as np
import torch
from references import nanmean
from sklearn.datasets import make_classification
from sklearn.preprocessing import StandardScaler

import unlearnkit as uk
from unlearnkit.artifacts import atomic_write_text, versions
from unlearnkit.data import ImageDataset

RECIPE = {"epochs": 60, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
          "schedule": "constant", "augment": False}
METHODS = ("sfron", "ft", "ga", "neggrad_plus", "rl", "salun", "l1_sparse", "bad_teacher", "scrub",
           "boundary_shrink", "boundary_expand", "iu", "fisher", "ssd", "sisa")
FORGET = ("random:0.1", "class:2")


def user_table() -> ImageDataset:
    x, y = make_classification(n_samples=6000, n_features=20, n_informative=10, n_classes=4,
                               n_clusters_per_class=2, flip_y=0.05, random_state=0)
    x = StandardScaler().fit(x[:5000]).transform(x).astype(np.float32)
    rows = [torch.utils.data.TensorDataset(torch.from_numpy(x[part]), torch.from_numpy(y[part]))
            for part in (slice(0, 5000), slice(5000, None))]
    return uk.from_torch(*rows, layout="F", recipe=RECIPE, name="user-table")


def users_model(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                               torch.nn.ReLU(), torch.nn.Linear(256, 4))


def run(methods, seeds, settings: dict, data=None, model=users_model, forgets=FORGET, label: str = "",
        keep_going: bool = False) -> dict:
    """Every method on `data` (the table above by default) with a fresh `model(seed)` per training; rows per
    forget spec and method, one cell per seed. `keep_going`: a method that raises gets a cell {"error": ...}."""
    data, runtime = data if data is not None else user_table(), uk.Runtime.create("cpu", 1)
    rows = {}
    for forget in forgets:
        for seed in seeds:
            original = uk.train(data, model(seed), seed=seed, runtime=runtime)
            split = uk.make_split(forget, data, seed)
            oracle = uk.train(data, model(seed), seed=seed, split=split, runtime=runtime)
            floor = uk.noise_floor(data, model(seed), split, seed=seed, runtime=runtime)
            for method in methods:
                try:
                    result = uk.unlearn(original.load_model(), split, method, data=data, runtime=runtime,
                                        seed=seed, **settings)
                except Exception as error:
                    if not keep_going:
                        raise
                    rows.setdefault(forget, {}).setdefault(method, []).append(
                        {"error": f"{type(error).__name__}: {error}"})
                    print(f"{label}{forget} seed {seed} {method}: {type(error).__name__}: {error}", flush=True)
                    continue
                r = uk.evaluate(result, oracle, split, data, original=original, floor=floor, runtime=runtime)
                cell = {"forget_acc": r["forget_acc"], "ta_vs_oracle": r["test_acc"] - r["oracle"]["test_acc"],
                        "avg_gap": r["avg_gap"], "kl_forget": r["kl_forget"], "cost": r["cost_ratio"],
                        "closes_avg_gap": r["closing"]["avg_gap"], "closes_kl": r["closing"]["kl_forget"],
                        "nothing": {k: r["nothing"][k] for k in ("avg_gap", "kl_forget")},
                        "floor": {k: r["floor"][k] for k in ("avg_gap", "kl_forget")},
                        "decision": (result.details.get("calibration") or {}).get("decision", "")}
                rows.setdefault(forget, {}).setdefault(method, []).append(cell)
                print(f"{label}{forget} seed {seed} {method}: FA {cell['forget_acc']:.1f}, TA "
                      f"{cell['ta_vs_oracle']:+.2f} vs the oracle, closes {cell['closes_avg_gap']:.2f} / "
                      f"{cell['closes_kl']:.2f}, cost {cell['cost']:.3f}; {cell['decision']}", flush=True)
    return rows


def table(rows: dict) -> str:
    lines = []
    for forget, by_method in rows.items():
        scored = {method: [c for c in cells if "error" not in c] for method, cells in by_method.items()}
        first = next((cells for cells in scored.values() if cells), [{"nothing": {"avg_gap": math.nan},
                                                                       "floor": {"avg_gap": math.nan}}])
        nothing = statistics.fmean(c["nothing"]["avg_gap"] for c in first)
        floor = statistics.fmean(c["floor"]["avg_gap"] for c in first)
        lines += [f"### {forget} (doing nothing: Avg.Gap {nothing:.2f}; the floor: {floor:.2f})", "",
                  "| method | FA | TA − oracle (worst) | closes Avg.Gap | closes KL | cost |",
                  "|---|---|---|---|---|---|"]
        for method, cells in scored.items():
            if not cells:
                lines.append(f"| {method} | raised | | | | |")
                continue
            # A seed where doing nothing is already within the floor has no closing fraction (NaN): left out.
            mean = {k: nanmean(c[k] for c in cells) for k in cells[0] if k not in ("nothing", "floor", "decision")}
            worst = min(c["ta_vs_oracle"] for c in cells)
            lines.append(f"| {method} | {mean['forget_acc']:.1f} | {mean['ta_vs_oracle']:+.2f} ({worst:+.2f}) | "
                         f"{mean['closes_avg_gap']:.2f} | {mean['closes_kl']:.2f} | {mean['cost']:.3f} |")
        lines.append("")
    return "\n".join(lines)


def write_results(out: Path, text: str, record: dict) -> None:
    """results.md (the tables) and results.json (`record` with the library versions), each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", text)
    atomic_write_text(out / "results.json", json.dumps({**record, "versions": versions()}, indent=1, default=str))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyperparameter for every method (repeatable)")
    parser.add_argument("--out", type=Path, help="folder for results.md and results.json")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {key: float(value) for key, value in (item.split("=", 1) for item in args.set)}
    found = run(args.methods.split(","), seeds, settings)
    text = table(found)
    print(text)
    if args.out:
        write_results(args.out, text, {"seeds": seeds, "recipe": RECIPE, "settings": settings, "runs": found})

