"""Per-seed closing fractions from a bench's results.csv: for each scenario and method, (doing nothing − method) /
(doing nothing − the second oracle) per seed, for Avg.Gap and KL, then their mean over the seeds that have one (a
seed where doing nothing is already within the floor has none), which the bench's tables give in brackets and
docs/defaults.md's targets are stated in. Also each method's largest cost and its worst seed's test accuracy
against that seed's oracle.

    python benchmarks/per_seed_closing.py <bench out>/results.csv [method,method ...]   # default: sfron
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from references import arguments

from unlearnkit.bench.runner import NOISE_FLOOR, ORACLE, ORIGINAL
from unlearnkit.bench.verdict import CLOSED, per_seed_closing, seed_fractions


def read(path: Path) -> dict[tuple[str, int, str], dict[str, float]]:
    cells = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            cells[row["scenario"], int(row["seed"]), row["method"]] = {
                k: float(row[k]) if row[k] else math.nan for k in (*CLOSED, "cost_ratio", "test_acc")}
    return cells


def table(cells: dict, methods: list[str]) -> list[str]:
    lines = ["| scenario | method | per seed, Avg.Gap / KL | mean | largest cost | worst TA − oracle's |",
             "|---|---|---|---|---|---|"]
    for scenario in sorted({s for s, _, _ in cells}):
        seeds = sorted({seed for s, seed, _ in cells if s == scenario})
        for method in methods:
            if (scenario, seeds[0], method) not in cells:
                continue
            runs = {name: {seed: cells[scenario, seed, name] for seed in seeds}
                    for name in (ORIGINAL, NOISE_FLOOR, method)}
            references = runs[method], runs[ORIGINAL], runs[NOISE_FLOOR]
            per_seed = [list(fractions.values()) for fractions in seed_fractions(*references).values()]
            mean = list(per_seed_closing(*references).values())
            cost = max(cells[scenario, seed, method]["cost_ratio"] for seed in seeds)
            drop = min(cells[scenario, seed, method]["test_acc"] - cells[scenario, seed, ORACLE]["test_acc"]
                       for seed in seeds)
            shown = "; ".join(" / ".join(f"{v:.2f}" for v in fractions) for fractions in per_seed)
            lines.append(f"| {scenario} | {method} | {shown} | {mean[0]:.2f} / {mean[1]:.2f} | {cost:.3f} | "
                         f"{drop:+.2f} |")
    return lines


if __name__ == "__main__":
    args = arguments()
    print("\n".join(table(read(Path(args[0])), (args[1] if len(args) > 1 else "sfron").split(","))))
