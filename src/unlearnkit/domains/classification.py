"""The classification domain: image (or tabular) classifiers, the oracle retrained on the remain set, and every
method of `unlearning/methods.py`, evaluated by `evaluation/protocol.py` (FA, RA, TA, the membership attacks,
Avg.Gap, KL, verification error, RTE); its bench is `bench/`, its tuning `bench/tuning.py`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..registry import Registry
from ..runtime import Runtime
from . import register
from .base import Domain, took


def tuned_values(method: str, dataset: str | None, spec: str) -> dict:
    """The explicit tuned overlay (`--tuned`): what `unlearnkit tune` stored for this method, dataset and spec."""
    from ..unlearning.tuned import tuned

    return tuned(method, dataset, spec)


class Classification(Domain):
    name = "classification"
    title = "classifiers: random-subset and class-wise forgetting"

    @property
    def methods(self) -> Registry:
        from ..unlearning.methods import METHODS

        return METHODS

    def train(self, kind, settings, recipe, runtime, store, force) -> dict:
        from ..data import DATASETS, load_dataset, oracle_split
        from ..models import spec_for
        from ..pipeline import train

        dataset = load_dataset(settings["data"], settings.get("root"), **settings.get("data_options", {}))
        spec = DATASETS.get(settings["data"])
        model = spec_for(settings.get("model") or spec.default_model, dataset, **settings.get("model_options", {}))
        seed = int(settings.get("seed", 0))
        split = oracle_split(kind, settings.get("forget"), dataset, seed, "retrain")
        checkpoint = train(dataset, model, spec.recipe.with_overrides(recipe), seed, split, runtime, store, force)
        record = checkpoint.record
        return {"checkpoint": str(checkpoint.path), "kind": kind, "task": self.name,
                "train_acc": record["metrics"]["train_acc"], "test_acc": record["metrics"]["test_acc"],
                "wall_time_s": record["wall_time_s"], "reused": checkpoint.reused,
                **({"forget_acc": record["metrics"]["forget_acc"], "split": record["split"]} if split else {})}

    def describe_training(self, result: dict) -> str:
        return (f"{result['kind']} model: train acc {result['train_acc']:.2f}%, test acc {result['test_acc']:.2f}%, "
                f"{took(result, 'trained')} -> {result['checkpoint']}")

    def forget(self, checkpoint, method, forget, seed, hyperparameters, runtime, store, force) -> dict:
        from ..pipeline import unlearn_checkpoint

        result = unlearn_checkpoint(checkpoint, method, forget, seed, hyperparameters, runtime, store, force)
        record = result.record
        return {"checkpoint": str(result.path), "method": method, "task": self.name, "reused": result.reused,
                **record["metrics"], "rte_s": record["unlearning"]["wall_time_s"],
                "wall_time_s": record["unlearning"]["wall_time_s"], "steps": record["unlearning"]["steps"],
                "sample_passes": record["unlearning"]["sample_passes"], "split": record["split"],
                "hyperparameters": record["unlearning"]["hyperparameters"], "verdict": record.get("verdict"),
                "calibration": record["unlearning"].get("calibration"),
                **({"sisa": record["unlearning"]["sisa"]} if "sisa" in record["unlearning"] else {})}

    def describe_forget(self, out: dict) -> str:
        lines = [f"{out['method']}: forget acc {out['forget_acc']:.2f}%, remain acc {out['remain_acc']:.2f}%, "
                 f"test acc {out['test_acc']:.2f}%, {took(out, 'ran')} -> {out['checkpoint']}"]
        said = out.get("verdict")
        if said:
            b, a = said["before"], said["after"]
            lines += [f"verdict: {said['line']}",
                      f"  forget vs held-out loss gap  {b['loss_gap']:+.3f} -> {a['loss_gap']:+.3f} "
                      "(held-out - forget)",
                      f"  confidence gap               {b['confidence_gap']:+.3f} -> {a['confidence_gap']:+.3f}",
                      f"  membership AUC               {b['membership_auc']:.3f} -> {a['membership_auc']:.3f} "
                      f"(0.5 = looks unseen, ±{said['auc_tolerance']:.3f})",
                      f"  remain accuracy              {b['remain_acc']:.2f}% -> {a['remain_acc']:.2f}%",
                      f"  held-out accuracy            {b['heldout_acc']:.2f}% -> {a['heldout_acc']:.2f}%"]
            if said.get("unrolling"):
                lines.append(f"  unlearning-error proxy (Thudi et al.) of the original training: "
                             f"{said['unrolling']['proxy']:.4g}")
        if out.get("calibration"):
            lines.append(f"calibration: {out['calibration']['decision']}")
        choice = (out.get("sisa") or {}).get("shard_choice")
        if choice:
            tried = ", ".join(f"{t['shards']}: {t['heldout_acc']:.2f}%" for t in choice["tried"])
            why = ("the most whose sharded original keeps its held-out accuracy within" if choice["within"] else
                   "a retraining, since no sharded original kept its held-out accuracy within")
            lines.append(f"shards: {choice['shards']}, {why} {choice['max_heldout_drop']:g} points of the model's "
                         f"{choice['model_heldout_acc']:.2f}% ({tried})")
        return "\n".join(lines)

    def evaluate(self, model, oracle, original, options, runtime) -> dict:
        from ..evaluation.checkpoints import evaluate_checkpoints

        return evaluate_checkpoints(model, oracle, original, options.get("mia", "mia_entropy"), runtime,
                                    options.get("root"), options.get("seed") or 0)

    def describe_evaluation(self, result: dict) -> str:
        from ..evaluation import format_report

        return format_report(result)

    def bench(self, options: dict[str, Any], runtime: Runtime, store: Path | None) -> dict:
        from ..artifacts import finite_json
        from ..bench import bench as run
        from ..bench import load_bench_config, select_scenarios
        from ..executor import make_executor

        config = select_scenarios(load_bench_config(options.get("scenarios")), options.get("only"))
        if options.get("methods") is not None:
            config.methods = options["methods"]
        if options.get("seeds") is not None:
            config.seeds = options["seeds"]
        if options.get("quick"):
            config.seeds = config.seeds[:1]
        if options.get("tuned"):
            for scenario in config.scenarios:
                for name in config.methods or self.methods.names():
                    scenario.hyperparameters[name] = {**tuned_values(name, scenario.data, scenario.forget),
                                                      **scenario.hyperparameters.get(name, {})}
        with make_executor(**options["executor"], threads=runtime.threads) as jobs:
            result = run(config, runtime, options.get("out"), store, executor=jobs)
        tables = {scenario: [{k: row[k] for k in ("method", "forget_acc", "remain_acc", "test_acc", row["mia"],
                                                  "avg_gap", "kl_forget", "rte_s", "speedup")} for row in rows]
                  for scenario, rows in result["summary"].items()}
        paths = result["paths"]
        return {"report": str(paths["report"]), "markdown": str(paths["markdown"]), "csv": str(paths["csv"]),
                "json": str(paths["json"]), "tables": finite_json(tables),
                "text": paths["markdown"].read_text() + f"\nreport: {paths['report']}"}

    def tune(self, options: dict[str, Any], runtime: Runtime, store: Path | None) -> dict:
        from ..bench import load_bench_config, select_scenarios
        from ..bench.tuning import best_by_spec, write_bench_file
        from ..bench.tuning import tune as run
        from ..executor import make_executor

        config = select_scenarios(load_bench_config(options.get("scenarios")), options.get("only"))
        chosen = options.get("methods") or [n for n, m in self.methods.items() if m.search]
        for name in chosen:
            self.methods.get(name)
        out_dir = Path(options.get("out") or store / "tune")
        with make_executor(**options["executor"], threads=runtime.threads) as jobs:
            result = run(config, chosen, options["seeds"], runtime, out_dir, store, options["max_trials"],
                         options["max_cost"], executor=jobs, n_parallel=options.get("parallel"))
        header = ("# Written by `unlearnkit tune`: per dataset and forget spec, each method's hyperparameters that\n"
                  "# best matched the oracle on held-out tuning seeds (the runs and settings: docs/tuning.md).\n")
        if options.get("write"):
            write_bench_file(options["write"], config, result["best"], header)
        if options.get("defaults_file"):
            from ..unlearning.tuned import merge_into

            for dataset, by_spec in best_by_spec(config, result["best"]).items():
                merge_into(options["defaults_file"], dataset, by_spec, header)
        best = {s: {m: r["hp"] for m, r in methods.items()} for s, methods in result["best"].items()}
        return {"best": best, "summary": str(out_dir / "tuning.md"), "trials": str(out_dir / "trials.csv"),
                "text": (out_dir / "tuning.md").read_text()}


register(Classification())
