"""The training penalty of "Unrolling SGD" (Thudi et al. 2022) against the unlearning-error proxy of the same paper
and the methods' distance to the oracle: prints one row per penalty strength (scenarios/unrolling.yaml).

    unlearnkit bench --scenarios scenarios/unrolling.yaml --methods one_step,sfron,ft,ga,neggrad_plus --out OUT
    python benchmarks/unrolling_penalty.py OUT
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from references import arguments

from unlearnkit.bench.runner import load_scenario
from unlearnkit.bench.scenarios import load_bench_config
from unlearnkit.evaluation.unrolling import unlearning_error_proxy
from unlearnkit.pipeline import train
from unlearnkit.runtime import Runtime, seed_everything

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios" / "unrolling.yaml"


def main(out: Path) -> None:
    results = json.loads((out / "results.json").read_text())
    runtime = Runtime.create("cpu", 1)
    config = load_bench_config(SCENARIOS)
    lines = ["| penalty λ | original TA | proxy (Thudi) | ‖w_T − w_0‖ | σ | one_step VerErr-rel | "
             + " | ".join(f"{m} closes Avg.Gap / KL" for m in ("sfron", "ft", "ga", "neggrad_plus")) + " |",
             "|---" * 10 + "|"]
    for scenario in config.scenarios:
        data, spec, recipe = load_scenario(scenario)
        proxies = []
        for seed in config.seeds:
            original = train(data, spec, recipe, seed, runtime=runtime)
            seed_everything(seed)
            initial = spec.build()
            proxies.append(unlearning_error_proxy(original.load_model(), initial, recipe, len(data.train_labels),
                                                  data.train(augment=False), runtime, seed))
        rows = {r["method"]: r for r in results["summary"][scenario.name]}
        mean = {k: statistics.fmean(p[k] for p in proxies) for k in ("proxy", "weight_distance", "sigma")}
        ta = rows["Original"]["test_acc"]
        closes = [f"{100 * rows[m]['closing_avg_gap']:.0f}% / {100 * rows[m]['closing_kl_forget']:.0f}%"
                  if m in rows else "—" for m in ("sfron", "ft", "ga", "neggrad_plus")]
        error = rows["one_step"]["verification_error_rel"]
        lines.append(f"| {recipe.logit_std_penalty:g} | {ta:.2f} | {mean['proxy']:.3g} | {mean['weight_distance']:.2f} "
                     f"| {mean['sigma']:.2f} | {error:.3f} | " + " | ".join(closes) + " |")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(arguments()[0]))
