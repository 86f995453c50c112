"""The class-conditional diffusion domain: a DDPM (UNet or DiT denoiser) trained on a dataset's images, class-wise
forgetting with the methods of `generation/methods.py` on the shared engine, evaluated by sampling: forget and
remain accuracy of a classifier on the samples, FID* of its features, and against the oracle Avg.Gap and KL."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..artifacts import Checkpoint, content_key, load_checkpoint, save_checkpoint, writable_store
from ..errors import CheckpointError, ConfigError, DataError
from ..registry import Registry
from ..runtime import Runtime
from . import register
from .base import Domain, took

# The samples `forget` and `evaluate` draw (SampleBudget fields over its defaults: 100 images of each forgotten
# class, 50 of each other, DDIM 25 steps, guidance 2): the bench's full budget, so their figures compare.
EVALUATION_BUDGET: dict[str, Any] = {}


def generation_data(settings: dict[str, Any]):
    """The generation dataset named by the settings (data, root, data_options, image_size, layout)."""
    from ..data import load_dataset
    from ..generation.data import generation_dataset

    base = load_dataset(settings["data"], settings.get("root"), **settings.get("data_options", {}))
    return generation_dataset(base, int(settings.get("image_size", 16)), str(settings.get("layout", "pad")))


def dataset_of(checkpoint: Checkpoint, root: str | None = None):
    """The generation dataset a stored denoiser was trained on, read again and checked against its fingerprint."""
    data = checkpoint.record.get("data") or {}
    shape = data.get("generation") or {}
    settings = {"data": data.get("loader"), "root": root or data.get("root"), "data_options": data.get("options") or {},
                **shape}
    dataset = generation_data(settings)
    if dataset.fingerprint != data.get("fingerprint"):
        raise DataError(f"dataset '{settings['data']}' read from '{settings['root']}' has fingerprint "
                        f"{dataset.fingerprint}, but '{checkpoint.path}' was trained on {data.get('fingerprint')}: the "
                        "data changed, or pass --root to its original folder")
    return dataset


def whole_classes(split, spec: str) -> None:
    """Refuse a split that forgets no whole class: the samples are scored class by class, so an oracle or an
    unlearned model of such a split could never be evaluated."""
    if not split.forgotten_classes:
        raise ConfigError(f"generation forgets whole classes (class:C), got '{spec}'")


def _forget_class(options: dict) -> int:
    given = options.get("forget_class")
    return 0 if given is None else given


class Generation(Domain):
    name = "generation"
    title = "class-conditional diffusion (DDPM; UNet or DiT denoiser): class-wise forgetting"
    own_figures = ("fid", "fid_gap")

    @property
    def methods(self) -> Registry:
        from ..generation.methods import GENERATION_METHODS

        return GENERATION_METHODS

    def train(self, kind, settings, recipe, runtime, store, force) -> dict:
        from ..data import oracle_split
        from ..generation.training import DiffusionRecipe, train_denoiser
        from ..generation.unet import DENOISERS, DenoiserSpec

        dataset = generation_data(settings)
        name = settings.get("model") or "unet"
        DENOISERS.get(name)  # fail early, listing the denoisers
        channels, size, _ = dataset.image_shape
        spec = DenoiserSpec(name, channels, size, dataset.num_classes, dict(settings.get("model_options", {})))
        seed = int(settings.get("seed", 0))
        split = oracle_split(kind, settings.get("forget"), dataset, seed, "retrain --task generation")
        if split is not None:
            whole_classes(split, settings["forget"])
        checkpoint = train_denoiser(dataset, spec, DiffusionRecipe().with_overrides(recipe), seed, split, runtime,
                                    store, force)
        record = checkpoint.record
        return {"checkpoint": str(checkpoint.path), "kind": kind, "task": self.name,
                "train_loss": record["metrics"]["train_loss"], "wall_time_s": record["wall_time_s"],
                "reused": checkpoint.reused,
                **({"split": record["split"]} if split else {})}

    def describe_training(self, result: dict) -> str:
        return (f"{result['kind']} diffusion model: train loss {result['train_loss']:.3f}, "
                f"{took(result, 'trained')} -> {result['checkpoint']}")

    def _evaluator(self, dataset, split, runtime, store, seed: int, budget: dict | None):
        from ..generation.evaluation import GeneratorEvaluator, SampleBudget
        from ..generation.metrics import train_classifier

        classifier = train_classifier(dataset, runtime, store, seed).load_model().to(runtime.device)
        budget = SampleBudget(**{**EVALUATION_BUDGET, **(budget or {}), "seed": seed})
        return GeneratorEvaluator(dataset, split, classifier, runtime, budget)

    def forget(self, checkpoint, method, forget, seed, hyperparameters, runtime, store, force) -> dict:
        from ..data.splits import make_split
        from ..generation.engine import unlearn_generation
        from ..generation.training import load_denoiser
        from ..pipeline import reusable

        kind = checkpoint.record.get("kind")
        if kind != "original":
            raise CheckpointError(f"checkpoint '{checkpoint.path}' holds a model of kind '{kind}'; unlearning starts "
                                  "from an original model (unlearnkit train --task generation)")
        seed = int(checkpoint.record.get("seed", 0)) if seed is None else seed
        declared = self.methods.get(method)
        dataset = dataset_of(checkpoint)
        split = make_split(forget, dataset, seed)
        whole_classes(split, forget)  # before the work
        hp = declared.resolve(hyperparameters, split.spec)
        key = content_key({"original": checkpoint.record.get("key"), "method": method, "hp": hp,
                           "split": split.fingerprint, "seed": seed, "compute": runtime.identity()})
        folder = store / "unlearned" / f"diffusion-{method}-{dataset.name}-{key}"
        found = reusable(folder, force)  # a damaged or changed stored run is computed again, with a warning
        if found is not None:
            return self._forget_result(found)
        model, schedule = load_denoiser(checkpoint)
        result = unlearn_generation(model.to(runtime.device), split, method, data=dataset, schedule=schedule,
                                    runtime=runtime, seed=seed, store=store, **hyperparameters)
        scores = self._evaluator(dataset, split, runtime, store, seed, None).score(result.model, schedule)
        record = {**{k: checkpoint.record[k] for k in ("task", "data", "model", "recipe", "schedule")},
                  "kind": "unlearned", "key": key, "seed": seed,
                  "original": {"key": checkpoint.record.get("key"), "path": str(checkpoint.path)},
                  "split": split.describe(), "unlearning": result.record(),
                  "metrics": {"forget_acc": scores.forget_accuracy, "remain_acc": scores.remain_accuracy,
                              "fid": scores.fid},
                  "device": str(runtime.device), "threads": runtime.threads}
        return self._forget_result(save_checkpoint(folder, result.model, record, split))

    def _forget_result(self, stored: Checkpoint) -> dict:
        record = stored.record
        return {"checkpoint": str(stored.path), "method": record["unlearning"]["method"], "task": self.name,
                "reused": stored.reused, **record["metrics"], "rte_s": record["unlearning"]["wall_time_s"],
                "wall_time_s": record["unlearning"]["wall_time_s"], "steps": record["unlearning"]["steps"],
                "sample_passes": record["unlearning"]["sample_passes"], "split": record["split"],
                "hyperparameters": record["unlearning"]["hyperparameters"]}

    def describe_forget(self, out: dict) -> str:
        return (f"{out['method']}: forget acc {out['forget_acc']:.2f}%, remain acc {out['remain_acc']:.2f}%, "
                f"FID* {out['fid']:.2f} (of samples), {took(out, 'ran')} -> {out['checkpoint']}")

    def evaluate(self, model, oracle, original, options, runtime) -> dict:
        from ..evaluation.checkpoints import shared_split
        from ..generation.training import load_denoiser

        checkpoints = {"model": load_checkpoint(model), "oracle": load_checkpoint(oracle)}
        if original is not None:
            checkpoints["original"] = load_checkpoint(original)
        for role, ck in checkpoints.items():
            if not self.owns(ck):
                raise CheckpointError(f"the {role} '{ck.path}' is not a generation checkpoint")
        model_ck, oracle_ck = checkpoints["model"], checkpoints["oracle"]
        kind = oracle_ck.record.get("kind")
        if kind != "oracle":
            raise CheckpointError(f"--oracle '{oracle_ck.path}' holds a model of kind '{kind}', not an oracle "
                                  "(unlearnkit retrain --task generation)")
        fingerprints = {ck.record["data"].get("fingerprint") for ck in checkpoints.values()}
        if len(fingerprints) != 1:
            raise CheckpointError("the checkpoints were trained on different data")
        dataset = dataset_of(model_ck, options.get("root"))
        split, notes = shared_split(model_ck, oracle_ck, dataset)
        seed = options.get("seed") or 0
        store = writable_store(options.get("store"))  # the evaluation classifier is trained or found there
        evaluator = self._evaluator(dataset, split, runtime, store, seed, options.get("budget"))
        scored = {}
        for role, ck in checkpoints.items():
            net, schedule = load_denoiser(ck)
            scored[role] = evaluator.score(net.to(runtime.device), schedule)
        result = evaluator.against(scored["model"], scored["oracle"])
        unlearning = model_ck.record.get("unlearning") or {}
        if unlearning:
            result["rte_s"] = unlearning.get("wall_time_s")
            result["cost_ratio"] = unlearning.get("sample_passes", 0) / oracle_ck.record["sample_passes"]
        result["oracle"] = evaluator.against(scored["oracle"], scored["oracle"])
        if "original" in scored:
            result["original"] = evaluator.against(scored["original"], scored["oracle"])
        result.update({"notes": notes, "task": self.name, "method": unlearning.get("method"),
                       "budget": evaluator.budget.describe(),
                       "checkpoints": {role: str(ck.path) for role, ck in checkpoints.items()},
                       "split": split.describe(), "data": {"name": dataset.name, "fingerprint": dataset.fingerprint}})
        return result

    def bench(self, options: dict[str, Any], runtime: Runtime, store: Path | None) -> dict:
        from ..executor import make_executor
        from ..generation.bench import run_generation_bench

        self.refuse(options, "scenarios", "only", "tuned")
        seeds = options.get("seeds") or [0]
        denoiser, forget_class, quick = options.get("denoiser") or "unet", _forget_class(options), \
            options.get("quick", False)
        out = Path(options.get("out") or store / "bench"
                   / f"generation-{denoiser}-class{forget_class}-seeds{'_'.join(map(str, seeds))}"
                     f"{'-quick' if quick else ''}")
        with make_executor(**options["executor"], threads=runtime.threads) as jobs:
            result = run_generation_bench(out, runtime, store, seeds=seeds, forget_class=forget_class, quick=quick,
                                          methods=options.get("methods"), denoiser=denoiser, executor=jobs)
        files = result["files"]
        keys = ("method", "forget_acc", "remain_acc", "fid", "avg_gap", "kl_forget", "closing_avg_gap",
                "closing_kl_forget", "rte_s", "cost_ratio", "steps", "updates")
        return {"report": files["report"], "markdown": files["markdown"], "csv": files["csv"], "json": files["json"],
                "grid": files["grid"], "verdict": result["verdict"]["sentence"],
                "tables": {result["scenario"]: [{k: row.get(k) for k in keys} for row in result["rows"]]},
                "text": Path(files["markdown"]).read_text() + f"\nreport: {files['report']}"}

    def tune(self, options: dict[str, Any], runtime: Runtime, store: Path | None) -> dict:
        from ..generation.tuning import tune_generation

        self.refuse(options, "scenarios", "only", "write", "defaults_file")
        out = Path(options.get("out") or store / "tune" / "generation")
        result = tune_generation(out, runtime, store, options["seeds"][0], _forget_class(options),
                                 options.get("methods"), options["max_trials"], options["max_cost"],
                                 options.get("denoiser") or "unet", options.get("quick", True))
        return {**result, "text": Path(result["summary"]).read_text()}


register(Generation())
