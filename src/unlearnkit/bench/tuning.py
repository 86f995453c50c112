"""`tune`: choose each method's hyperparameters per scenario by a small grid search against the oracle.

The search runs on seeds the reported bench does not use, and averages over them. Objective: the
scenario's `objective`: by default "relative", Avg.Gap and KL(oracle ‖ model) on the forget set each divided
by the original model's (what doing nothing scores) and summed; or Avg.Gap alone, or KL alone where Avg.Gap
cannot rank. Only trials whose compute stays within `max_cost` of retraining's (sample passes) compete, so
that no method buys its score with a retraining's budget. Every trial is stored like a bench cell, so an
interrupted search resumes.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import random
from functools import partial
from pathlib import Path

import yaml

from ..artifacts import atomic_write_text
from ..errors import ConfigError, DivergenceError
from ..evaluation.protocol import evaluate
from ..progress import task
from ..runtime import Runtime
from ..unlearning.engine import unlearn
from ..unlearning.methods import METHODS
from ..unlearning.tuned import ignored
from .runner import cached_cell, load_scenario, original_and_oracle
from .scenarios import BenchConfig

# What a trial reports, averaged over the tuning seeds (None where it diverged); "relative" is derived from them.
TRIAL_METRICS = ("avg_gap", "kl_forget", "forget_acc", "cost_ratio", "rte_s")


def grid(space: dict[str, list], max_trials: int, seed: int) -> list[dict]:
    """Every combination of the candidate values, or a seeded sample of `max_trials` of them."""
    keys = sorted(space)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    if len(combos) > max_trials:
        combos = random.Random(seed).sample(combos, max_trials)
    return combos


def tune(config: BenchConfig, methods: list[str], seeds: list[int], runtime: Runtime, out_dir: Path,
         store: Path | None = None, max_trials: int = 60, max_cost: float = 0.5) -> dict:
    """Score every grid point of every method on each scenario, averaged over the tuning `seeds`, and keep
    the best one per scenario and method among those within the scenario's budget (and its forget-accuracy
    limit, if any). When none qualifies, the one closest to qualifying is kept and flagged with what it
    misses, rather than dropped (a method whose cost no setting changes, such as Fisher forgetting)."""
    reported = sorted(set(seeds) & set(config.seeds))
    if reported:
        raise ConfigError(f"tuning seed(s) {reported} are among the bench's reported seeds {config.seeds}: use others")

    def space(scenario, name: str) -> dict[str, list]:
        return {**METHODS.get(name).search, **scenario.search.get(name, {})}

    for name in methods:
        if not all(space(s, name) for s in config.scenarios):
            raise ConfigError(f"method '{name}' declares no search space")
    with ignored():
        return _search(config, methods, seeds, runtime, out_dir, store, max_trials, max_cost, space)


def _search(config, methods, seeds, runtime, out_dir, store, max_trials, max_cost, space) -> dict:
    trials, best = [], {}
    total = len(seeds) * sum(len(grid(space(s, m), max_trials, seeds[0])) for m in methods for s in config.scenarios)
    with task("tune", total) as advance:
        for scenario in config.scenarios:
            loaded = load_scenario(scenario)
            references = {seed: original_and_oracle(scenario, loaded, seed, runtime, store) for seed in seeds}
            nothing = {seed: _doing_nothing(config, scenario, loaded, seed, *refs, runtime, out_dir)
                       for seed, refs in references.items()}
            for name in methods:
                rows = []
                for hp in grid(space(scenario, name), max_trials, seeds[0]):
                    advance(0, info=f"{scenario.name}: {name} {hp}")
                    runs = []
                    for seed, (split, original, oracle) in references.items():
                        metrics = _trial(config, scenario, loaded, name, hp, seed, split, original, oracle,
                                         runtime, store, out_dir)
                        runs.append({**metrics, "relative": _relative(metrics, nothing[seed])})
                        advance()
                    rows.append({"scenario": scenario.name, "method": name, "hp": hp, **{
                        k: _mean([r.get(k) for r in runs]) for k in ("relative", *TRIAL_METRICS)}})
                trials += rows
                scored = [r for r in rows if r["relative"] is not None]
                cap = max_cost if scenario.max_cost is None else scenario.max_cost
                excess = partial(_excess, cap, scenario.max_forget_acc)
                if scored:
                    chosen = min(scored, key=lambda r: (excess(r), r[scenario.objective], r["relative"]))
                    best.setdefault(scenario.name, {})[name] = {**chosen,
                                                                "unmet": _unmet(cap, scenario.max_forget_acc, chosen)}
    _write(trials, best, out_dir, seeds, max_cost, {
        s.name: s.objective + (f", cost ≤ {s.max_cost}" if s.max_cost else "")
        + (f", forget accuracy ≤ {s.max_forget_acc}%" if s.max_forget_acc is not None else "")
        for s in config.scenarios})
    return {"best": best, "trials": trials, "out_dir": out_dir}


def _excess(cap: float, limit: float | None, row: dict) -> float:
    """How far a trial is outside the budget and the forget-accuracy limit (0: inside both)."""
    over = max(0.0, row["cost_ratio"] - cap) / max(cap, 1e-9)
    return over + (max(0.0, row["forget_acc"] - limit) / 100 if limit is not None else 0.0)


def _unmet(cap: float, limit: float | None, row: dict) -> list[str]:
    return ([f"cost {row['cost_ratio']:.2f} > {cap}"] if row["cost_ratio"] > cap else []) + (
        [f"forget accuracy {row['forget_acc']:.1f}% > {limit}%"] if limit is not None and row["forget_acc"] > limit
        else [])


def _trial(config, scenario, loaded, name, hp, seed, split, original, oracle, runtime, store, out_dir) -> dict:
    """One grid point on one tuning seed, stored like a bench cell (so an interrupted search resumes)."""
    dataset = loaded[0]

    def run():
        try:
            result = unlearn(original.load_model(), split, name, data=dataset, recipe=loaded[2], runtime=runtime,
                             seed=seed, store=store, **hp)
        except DivergenceError as exc:  # a diverging grid point loses; it does not end the search
            return {"error": str(exc), **dict.fromkeys(TRIAL_METRICS)}
        return evaluate(result.model, oracle.load_model(), split, dataset, runtime, None, result.record(),
                        oracle.record, config.mia, attacks=(config.mia,), seed=seed)

    resolved = METHODS.get(name).resolve(hp, split.spec)
    identity = {"tune": True, "original": original.record["key"], "oracle": oracle.record["key"],
                "method": name, "hp": resolved, "mia": config.mia, "compute": runtime.identity()}
    return cached_cell(out_dir, scenario.name, seed, f"{name}-{_key(hp)}", identity, run).metrics


def _doing_nothing(config, scenario, loaded, seed, split, original, oracle, runtime, out_dir) -> dict:
    """The original model against the oracle: the scale of the relative objective."""
    def run():
        return evaluate(original.load_model(), oracle.load_model(), split, loaded[0], runtime, None,
                        {"wall_time_s": 0.0, "sample_passes": 0}, oracle.record, config.mia, attacks=(config.mia,),
                        seed=seed)

    identity = {"tune": True, "original": original.record["key"], "oracle": oracle.record["key"], "mia": config.mia}
    return cached_cell(out_dir, scenario.name, seed, "original", identity, run).metrics


def _relative(metrics: dict, nothing: dict) -> float | None:
    """Avg.Gap and KL each as a share of the original model's: 2 = as far from the oracle as doing nothing."""
    if metrics["avg_gap"] is None or metrics["kl_forget"] is None:
        return None
    return metrics["avg_gap"] / max(nothing["avg_gap"], 1e-9) + metrics["kl_forget"] / max(nothing["kl_forget"], 1e-9)


def _mean(values: list) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def _key(hp: dict) -> str:
    return "_".join(f"{k}={v}" for k, v in sorted(hp.items()))


def _write(trials: list[dict], best: dict, out_dir: Path, seeds: list[int], max_cost: float, objectives: dict) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["scenario", "method", "hp", "relative", *TRIAL_METRICS])
    writer.writeheader()
    for t in trials:
        writer.writerow({**t, "hp": json.dumps(t["hp"], sort_keys=True)})
    atomic_write_text(out_dir / "trials.csv", buffer.getvalue())
    lines = [f"Tuning seeds {', '.join(map(str, seeds))} (mean over them); cost ≤ {max_cost} of retraining's sample "
             "passes; objective per scenario: " + ", ".join(f"{s}: lowest {o}" for s, o in objectives.items()) + ".",
             "", "| scenario | method | chosen | relative | Avg.Gap | D_KL | cost | trials |",
             "|---|---|---|---|---|---|---|---|"]
    for scenario, methods in best.items():
        for name, r in methods.items():
            count = sum(1 for t in trials if t["scenario"] == scenario and t["method"] == name)
            flag = f" ({'; '.join(r['unmet'])})" if r["unmet"] else ""
            lines.append(f"| {scenario} | {name} | `{json.dumps(r['hp'], sort_keys=True)}`{flag} | "
                         f"{r['relative']:.3f} | {r['avg_gap']:.2f} | {r['kl_forget']:.3f} | {r['cost_ratio']:.3f} | "
                         f"{count} |")
    atomic_write_text(out_dir / "tuning.md", "\n".join(lines) + "\n")


def best_by_spec(config: BenchConfig, best: dict) -> dict[str, dict[str, dict]]:
    """{dataset: {forget spec: {method: hp}}} from the per-scenario winners, for tuned.yaml."""
    found: dict[str, dict[str, dict]] = {}
    for scenario in config.scenarios:
        for name, r in best.get(scenario.name, {}).items():
            found.setdefault(scenario.data, {}).setdefault(scenario.forget, {})[name] = r["hp"]
    return found


def write_bench_file(path: Path, config: BenchConfig, best: dict, header: str) -> None:
    """Store the chosen hyperparameters in a bench YAML file, each scenario's under `hyperparameters`."""
    raw = config.model_dump(exclude_defaults=True)
    for scenario in raw["scenarios"]:
        chosen = {m: r["hp"] for m, r in best.get(scenario["name"], {}).items()}
        scenario["hyperparameters"] = {**scenario.get("hyperparameters", {}), **chosen}
    atomic_write_text(path, header + yaml.safe_dump(raw, sort_keys=False))
