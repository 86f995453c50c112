"""Choosing defaults that transfer: a leave-one-dataset-out search of every gradient method's few relative settings.

Each method's declared grid (`Method.search`) is run at its defaults otherwise, calibration on, on every scenario
of a bench file (one tuning seed, never a reported one), against the oracle, the noise floor (RT′) and doing
nothing. A grid point's score on a set of scenarios is the mean, over the scenarios with something to forget, of
the smaller of its two closing fractions (Avg.Gap, KL; each capped at 1.2, past which it is noise); a point that
collapses anywhere (test accuracy more than 5 points under the oracle's) or costs more than one retraining is out.
For each dataset in turn, the point chosen on all the others is scored on the one left out; the default is the
point chosen on all of them. Runs are jobs of the executor (in-process or Ray) and resume from the store.

    python -m unlearnkit.bench.transfer scenarios/transfer.yaml --seed 100 --executor ray --out docs/defaults
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from ..artifacts import atomic_write_text, content_key, writable_store
from ..errors import DivergenceError
from ..evaluation.protocol import evaluate
from ..executor import Job, make_executor
from ..pipeline import train
from ..runtime import Runtime
from ..unlearning.engine import unlearn
from ..unlearning.methods import METHODS
from .runner import load_scenario, original_and_oracle
from .scenarios import Scenario, load_bench_config
from .verdict import closing_fraction, within_floor

COLLAPSE_POINTS = 5.0  # test accuracy this far under the oracle's is a collapsed model
CAP = 1.2
FLOOR_OFFSET = 1000


def _cached(store: Path, identity: dict, compute) -> dict:
    path = store / "transfer" / f"{content_key(identity)}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = {"identity": identity, **compute()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, default=str))
    return result


def _metrics(result: dict) -> dict:
    keep = ("forget_acc", "remain_acc", "test_acc", "mia_entropy", "avg_gap", "kl_forget", "cost_ratio", "rte_s")
    return {**{k: result.get(k) for k in keep}, "oracle_test_acc": result["oracle"]["test_acc"]}


def original_job(scenario: dict, seed: int, store: Path) -> str:
    loaded = load_scenario(Scenario(**scenario))
    return str(train(loaded[0], loaded[1], loaded[2], seed, runtime=Runtime.create("cpu"), store=store).path)


def reference_job(scenario: dict, seed: int, store: Path, mia: str) -> dict:
    """Doing nothing and the second oracle, each against the oracle."""
    def compute():
        s = Scenario(**scenario)
        loaded, runtime = load_scenario(s), Runtime.create("cpu")
        split, original, oracle = original_and_oracle(s, loaded, seed, runtime, store)
        second = train(loaded[0], loaded[1], loaded[2], seed + FLOOR_OFFSET, split, runtime=runtime, store=store)
        rows = {}
        for name, checkpoint, record in (("original", original, {"wall_time_s": 0.0, "sample_passes": 0}),
                                         ("floor", second, second.record)):
            result = evaluate(checkpoint.load_model(), oracle.load_model(), split, loaded[0], runtime, None, record,
                              oracle.record, mia, attacks=(mia,), seed=seed)
            rows[name] = _metrics(result)
        return rows

    return _cached(store, {"reference": scenario, "seed": seed, "mia": mia}, compute)


def method_job(scenario: dict, seed: int, method: str, hp: dict, store: Path, mia: str) -> dict:
    def compute():
        s = Scenario(**scenario)
        loaded, runtime = load_scenario(s), Runtime.create("cpu")
        split, original, oracle = original_and_oracle(s, loaded, seed, runtime, store)
        try:
            result = unlearn(original.load_model(), split, method, data=loaded[0], recipe=loaded[2], runtime=runtime,
                             seed=seed, store=store, **hp)
        except DivergenceError as exc:  # a diverging grid point loses; it does not end the search
            return {"diverged": str(exc)}
        metrics = evaluate(result.model, oracle.load_model(), split, loaded[0], runtime, None, result.record(),
                           oracle.record, mia, attacks=(mia,), seed=seed)
        calibration = result.details.get("calibration") or {}
        return {**_metrics(metrics), "decision": calibration.get("decision")}

    resolved = METHODS.get(method).resolve(hp, scenario["forget"])  # a changed default is a new run
    return _cached(store, {"method": method, "hp": resolved, "scenario": scenario, "seed": seed, "mia": mia}, compute)


def grid_points(method: str) -> list[dict]:
    import itertools

    space = METHODS.get(method).search
    keys = sorted(space)
    return [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))] or [{}]


def closings(runs: list[dict], reference: list[dict]) -> dict:
    """Mean over seeds, then closing fractions against the mean reference rows; also collapse and cost."""
    if any("diverged" in r for r in runs):
        return {"diverged": True, "collapsed": True, "cost_ratio": math.inf, "nothing_to_forget": False,
                "closing_avg_gap": -math.inf, "closing_kl_forget": -math.inf}
    mean = {k: statistics.fmean(r[k] for r in runs) for k in ("avg_gap", "kl_forget", "test_acc", "cost_ratio",
                                                               "oracle_test_acc")}
    nothing = {k: statistics.fmean(r["original"][k] for r in reference) for k in ("avg_gap", "kl_forget")}
    floor = {k: statistics.fmean(r["floor"][k] for r in reference) for k in ("avg_gap", "kl_forget")}
    empty = all(within_floor(nothing[k], floor[k]) for k in nothing)
    return {**mean, "nothing_to_forget": empty,
            "closing_avg_gap": math.nan if empty else closing_fraction(nothing["avg_gap"], floor["avg_gap"],
                                                                        mean["avg_gap"]),
            "closing_kl_forget": math.nan if empty else closing_fraction(nothing["kl_forget"], floor["kl_forget"],
                                                                          mean["kl_forget"]),
            "collapsed": mean["test_acc"] < mean["oracle_test_acc"] - COLLAPSE_POINTS}


def score(per_scenario: dict[str, dict], scenarios: list[str]) -> float:
    """Mean of min(closing Avg.Gap, closing KL) over the scenarios with something to forget; -inf when the point
    collapses or costs more than one retraining on any of them."""
    rows = [per_scenario[s] for s in scenarios]
    if any(r["collapsed"] or r["cost_ratio"] > 1.0 for r in rows):
        return -math.inf
    values = [min(min(r["closing_avg_gap"], CAP), min(r["closing_kl_forget"], CAP)) for r in rows
              if not r["nothing_to_forget"]]
    return statistics.fmean(values) if values else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", type=Path)
    parser.add_argument("--seeds", default="100", help="tuning seeds (never the reported ones)")
    parser.add_argument("--methods", default=None)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = load_bench_config(args.scenarios)
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",") if args.methods else [n for n, m in METHODS.items() if m.search]
    store = writable_store(args.store)
    scenarios = {s.name: s.model_dump() for s in config.scenarios}
    groups: dict[str, list[str]] = {}
    for s in config.scenarios:
        groups.setdefault(s.data + (f"-{s.data_options}" if s.data_options else ""), []).append(s.name)
    with make_executor(args.executor) as executor:
        originals = {content_key([v["data"], v["data_options"], v["model"], v["model_options"], v["recipe"], seed]):
                     Job(original_job, {"scenario": v, "seed": seed, "store": store}, f"original {n} {seed}")
                     for n, v in scenarios.items() for seed in seeds}
        executor.map(list(originals.values()), "originals")
        keys = [(n, seed) for n in scenarios for seed in seeds]
        references = executor.map([Job(reference_job, {"scenario": scenarios[n], "seed": seed, "store": store,
                                                       "mia": config.mia}, f"references {n} {seed}")
                                   for n, seed in keys], "oracles")
        reference = {n: [r for (name, _), r in zip(keys, references) if name == n] for n in scenarios}
        jobs = [(m, i, n, seed) for m in methods for i, _ in enumerate(grid_points(m)) for n in scenarios
                for seed in seeds]
        results = executor.map([Job(method_job, {"scenario": scenarios[n], "seed": seed, "method": m,
                                                 "hp": grid_points(m)[i], "store": store, "mia": config.mia},
                                    f"{m} {grid_points(m)[i]} {n} {seed}") for m, i, n, seed in jobs], "methods")
    runs: dict[tuple, list[dict]] = {}
    for (m, i, n, _), result in zip(jobs, results):
        runs.setdefault((m, i, n), []).append(result)
    kinds = {kind: [n for n, v in scenarios.items() if v["forget"].split(":", 1)[0] == kind]
             for kind in ("random", "class")}
    report = {"seeds": seeds, "groups": groups, "methods": {}}
    lines = [f"# Leave-one-dataset-out choice of defaults ({args.scenarios}, tuning seeds {args.seeds})", "",
             "Per kind of forgetting, for each dataset left out: the grid point chosen on the other datasets, its "
             "score there and its score on the one left out (score: mean over scenarios with something to forget "
             "of min(closing Avg.Gap, closing KL), each capped at 1.2; -inf: it collapses or costs more than one "
             "retraining somewhere).", "",
             "| method | kind | left out | chosen on the others | score there | score left out |",
             "|---|---|---|---|---|---|"]
    for m in methods:
        points = grid_points(m)
        per_point = [{n: closings(runs[(m, i, n)], reference[n]) for n in scenarios} for i in range(len(points))]
        entry = {"points": points, "per_point": per_point, "lodo": {}, "chosen": {}}
        for kind, members in kinds.items():
            if not members:
                continue
            for group, names in groups.items():
                held = [n for n in names if n in members]
                if not held:
                    continue
                others = [n for n in members if n not in held]
                best = max(range(len(points)), key=lambda i: score(per_point[i], others))
                entry["lodo"][f"{kind}/{group}"] = {"chosen": points[best],
                                                    "held_out_score": score(per_point[best], held),
                                                    "train_score": score(per_point[best], others)}
                lines.append(f"| {m} | {kind} | {group} | `{json.dumps(points[best], sort_keys=True)}` | "
                             f"{score(per_point[best], others):.2f} | {score(per_point[best], held):.2f} |")
            final = max(range(len(points)), key=lambda i: score(per_point[i], members))
            entry["chosen"][kind] = {"hp": points[final], "score": score(per_point[final], members)}
            lines.append(f"| **{m}** | {kind} | (none: the default) | `{json.dumps(points[final], sort_keys=True)}` | "
                         f"{score(per_point[final], members):.2f} | |")
        report["methods"][m] = entry
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "transfer.json", json.dumps(report, indent=1, default=str))
    atomic_write_text(args.out / "transfer.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
