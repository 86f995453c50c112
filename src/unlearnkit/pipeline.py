"""Original and oracle models, trained once and found again by content."""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from torch import nn

from .artifacts import (
    RECORD,
    Checkpoint,
    content_key,
    load_checkpoint,
    save_checkpoint,
    warn_damaged,
    weights_key,
    writable_store,
)
from .config import TrainRecipe, as_recipe
from .data.datasets import DATASETS, load_dataset
from .data.images import ImageDataset
from .data.splits import ForgetSplit, check_split
from .errors import CheckpointError, ConfigError, DataError, DivergenceError
from .models import Ensemble, ModelSpec, spec_for, trainable
from .runtime import Runtime, check_seed, seed_everything, warm_up
from .training import accuracy, fit, resumed_seconds


def describe_model(model: ModelSpec | nn.Module) -> dict:
    """A registered model is described by its spec; a custom module by its class, architecture and starting
    weights (two modules of one class initialised differently train different models)."""
    if isinstance(model, ModelSpec):
        return model.describe()
    return {"name": f"custom:{type(model).__name__}", "architecture": content_key(repr(model)),
            "initial_weights": weights_key(model)}


def refuse_trained(model: nn.Module, store: Path) -> None:
    """A module that already holds the weights a training in `store` ended with (uk.train trains a module in
    place; load_model() gives those weights back) would train its oracle from the original, not from scratch."""
    start = weights_key(model)
    for record in (store / "models").glob(f"*/{RECORD}"):
        try:
            ended = json.loads(record.read_text()).get("weights")
        except (OSError, ValueError):
            continue  # a folder being written, or not a checkpoint
        if ended == start:
            raise ConfigError(f"this module holds the trained weights of '{record.parent}' (uk.train trains a module "
                              "in place): pass a fresh instance, initialised as the original was")


def as_model(model, dataset: ImageDataset, who: str) -> ModelSpec | nn.Module:
    """A registered model's name becomes its spec sized for `dataset`; a spec or a module stays as it is."""
    if not isinstance(dataset, ImageDataset):
        raise ConfigError(f"{who} takes an ImageDataset (uk.load_dataset, uk.from_torch), got "
                          f"{type(dataset).__name__}")
    if isinstance(model, str):
        return spec_for(model, dataset)
    if not isinstance(model, (ModelSpec, nn.Module)):
        raise ConfigError(f"{who} takes a model name (see `unlearnkit models`), a ModelSpec (uk.spec_for) or an "
                          f"nn.Module, got {type(model).__name__}")
    if isinstance(model, nn.Module) and not trainable(model):
        raise ConfigError(f"{who}: the module has no trainable parameters (none requires grad)")
    return model


def train(dataset: ImageDataset, model: str | ModelSpec | nn.Module, recipe: TrainRecipe | dict | None = None,
          seed: int = 0, split: ForgetSplit | None = None, runtime: Runtime | None = None, store: Path | None = None,
          force: bool = False) -> Checkpoint:
    """Train the original model (no split) or the oracle (retrained on `split.remain`), or reuse a stored one.

    `model` is a registered model's name (sized for `dataset`, as `uk.spec_for` does) or spec, or any nn.Module
    (trained in place; a fresh copy per call is yours to make; the checkpoint's `load_model()` then rebuilds a
    copy of it). The oracle must be trained from the
    same initial state as a fresh original would be.
    """
    model = as_model(model, dataset, "train()")
    if split is not None:
        check_split(split, dataset, "train()")
    seed = check_seed(seed, "train()'s seed")
    runtime = Runtime.given(runtime, "train()")
    recipe = as_recipe(recipe, dataset.recipe)
    store = writable_store(store)
    kind = "original" if split is None else "oracle"
    if isinstance(model, nn.Module):
        refuse_trained(model, store)
    described = describe_model(model)
    identity = {"kind": kind, "data": dataset.fingerprint, "model": described, "recipe": recipe.model_dump(),
                "seed": seed, "split": split.fingerprint if split else None, "compute": runtime.identity()}
    if dataset.source.get("name") not in DATASETS:
        # A registered loader fixes its normalisation and augmentation; from_torch's are the user's to choose.
        identity["transform"] = {"mean": list(dataset.mean), "std": list(dataset.std),
                                 "augment": asdict(dataset.augment)}
    key = content_key(identity)

    def run(resume: Path) -> tuple[nn.Module, dict, ForgetSplit | None]:
        if isinstance(model, ModelSpec):
            seed_everything(seed)  # initial weights depend on the seed alone
            network = model.build()
        else:
            network = model
        view = dataset.train(split.remain if split else None)
        warm_up()
        earlier = resumed_seconds(resume)  # an interrupted run's training time, which this one continues
        started = time.perf_counter()
        passes = fit(network, view, recipe, runtime, seed, label=f"{kind} {described['name']} seed {seed}",
                     resume_file=resume)
        wall = time.perf_counter() - started + earlier
        metrics = {"train_acc": accuracy(network, view, runtime),
                   "test_acc": accuracy(network, dataset.test(), runtime)}
        if split is not None:
            metrics["forget_acc"] = accuracy(network, dataset.train(split.forget), runtime)
        record = {"kind": kind, "key": key, "seed": seed, "data": dataset.describe(), "model": described,
                  "recipe": recipe.model_dump(), "split": split.describe() if split else None, "metrics": metrics,
                  "wall_time_s": wall, "sample_passes": passes, "device": str(runtime.device),
                  "threads": runtime.threads}
        return network, record, split

    checkpoint = stored_training(store, f"{kind}-{dataset.name}-{described['name'].replace(':', '-')}-{key}", key,
                                 force, run)
    if isinstance(model, nn.Module):  # found in the store, it holds the stored weights too, as if trained in place
        checkpoint.architecture = checkpoint.load_model(model)
    return checkpoint


def stored_training(store: Path, name: str, key: str, force: bool,
                    run: Callable[[Path], tuple[nn.Module, dict, ForgetSplit | None]]) -> Checkpoint:
    """The model stored as `store/models/<name>` (found by content: `key` is in its name), or trained by
    `run(resume_file)` and stored atomically. The classifiers' and the DDPMs' training go through here: `run` is the
    domain's part (its loop saves its state in `resume_file` now and then and continues from it, so a killed
    training resumes); it returns the model, its record and its split. The resume file is removed once the model
    is stored, and when the training diverges (resuming it would only diverge again)."""
    folder = store / "models" / name
    found = reusable(folder, force)
    if found is not None:
        return found
    resume = store / "partial" / f"{key}.pt"
    if force:
        discard(resume)
    try:
        network, record, split = run(resume)
    except DivergenceError:
        discard(resume)
        raise
    checkpoint = save_checkpoint(folder, network, record, split)
    discard(resume)
    return checkpoint


def reusable(folder: Path, force: bool) -> Checkpoint | None:
    """The checkpoint stored in `folder`, unless there is none, `force` asks for a new one, or it is damaged (then
    it is computed again and replaced, with a warning): nothing broken is returned as a stored success."""
    if force or not folder.exists():
        return None
    try:
        found = load_checkpoint(folder)
        problem = found.damage()
    except CheckpointError as exc:
        problem = str(exc)
    if problem is None:
        found.reused = True
        return found
    warn_damaged(folder, problem)
    return None


def discard(resume: Path) -> None:
    """Remove a resume file, and its folder once empty (no empty folder is left in the store)."""
    resume.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        resume.parent.rmdir()


def _fingerprint(checkpoint: Checkpoint) -> str:
    found = (checkpoint.record.get("data") or {}).get("fingerprint")
    if not found:
        raise CheckpointError(f"checkpoint '{checkpoint.path}' records no data fingerprint: "
                              "cannot tell which data it was trained on")
    return found


def dataset_of(checkpoint: Checkpoint, others: tuple[Checkpoint, ...] = (),
               root: str | Path | None = None) -> ImageDataset:
    """Reload the dataset `checkpoint` records, after checking `others` were trained on the same data, and
    check the loaded data is byte-for-byte that data (its fingerprint). `root` overrides a moved folder."""
    expected = _fingerprint(checkpoint)
    for other in others:
        if _fingerprint(other) != expected:
            raise CheckpointError(f"'{other.path}' was trained on different data (fingerprint {_fingerprint(other)}, "
                                  f"{other.record['data'].get('name')}) than '{checkpoint.path}' ({expected}, "
                                  f"{checkpoint.record['data'].get('name')})")
    data = checkpoint.record["data"]
    name = data.get("loader") or data.get("name")
    if name not in DATASETS:
        raise CheckpointError(f"checkpoint '{checkpoint.path}' was trained on dataset '{name}', which is not "
                              f"registered ({', '.join(DATASETS.names())}): use the Python API with that dataset")
    folder = root if root is not None else data.get("root")
    dataset = load_dataset(name, folder, **(data.get("options") or {}))
    if dataset.fingerprint != expected:
        raise DataError(f"dataset '{name}' loaded from '{folder}' has fingerprint {dataset.fingerprint}, but "
                        f"'{checkpoint.path}' was trained on {expected}: the data changed, or pass --root to its "
                        "original folder")
    return dataset


def recorded_recipe(checkpoint: Checkpoint) -> TrainRecipe:
    """The training recipe a checkpoint's record holds (the scale of the unlearning methods' settings)."""
    try:
        return TrainRecipe(**checkpoint.record["recipe"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint '{checkpoint.path}' records no usable training recipe: "
                              f"{str(exc).splitlines()[0]}") from None


def unlearn_checkpoint(checkpoint: Checkpoint, method: str, forget: str, seed: int | None = None,
                       hyperparameters: dict | None = None, runtime: Runtime | None = None,
                       store: Path | None = None, force: bool = False) -> Checkpoint:
    """Unlearn `forget` from a stored original model with `method`, evaluate it (test-time transforms), and
    store the result beside a record of the method, every hyperparameter, steps and wall time. `seed` (the
    split's and the method's) defaults to the seed the original was trained with."""
    from .data.splits import make_split
    from .evaluation.oracle_free import verdict
    from .unlearning.engine import unlearn
    from .unlearning.methods import METHODS

    kind = checkpoint.record.get("kind")
    if kind != "original":
        raise CheckpointError(f"checkpoint '{checkpoint.path}' holds a model of kind '{kind}'; unlearning starts "
                              "from an original model (unlearnkit train)")
    problem = checkpoint.damage()
    if problem is not None:  # the stored result of the intact original must not answer for a damaged copy
        raise CheckpointError(f"checkpoint '{checkpoint.path}' is damaged: {problem}")
    runtime = runtime or Runtime.create()
    store = writable_store(store)
    seed = int(checkpoint.record.get("seed", 0)) if seed is None else seed
    declared = METHODS.get(method)
    dataset = dataset_of(checkpoint)
    split = make_split(forget, dataset, seed)
    hp = declared.resolve(hyperparameters or {}, split.spec)
    recipe = recorded_recipe(checkpoint)
    key = content_key({"original": checkpoint.record.get("key"), "method": method, "hp": hp,
                       "split": split.fingerprint, "seed": seed, "compute": runtime.identity()})
    folder = store / "unlearned" / f"{method}-{dataset.name}-{key}"
    found = reusable(folder, force)
    if found is not None:
        return found
    result = unlearn(checkpoint.load_model(), split, method, data=dataset, recipe=recipe, runtime=runtime, seed=seed,
                     store=store, **(hyperparameters or {}))
    metrics = {"forget_acc": accuracy(result.model, dataset.train(split.forget), runtime),
               "remain_acc": accuracy(result.model, dataset.train(split.remain), runtime),
               "test_acc": accuracy(result.model, dataset.test(), runtime)}
    said = verdict(checkpoint.load_model().to(runtime.device), result.model, split, dataset, runtime, seed,
                   unrolling_proxy(checkpoint, recipe, dataset, split, runtime))
    model = dict(checkpoint.record["model"])
    if isinstance(result.model, Ensemble):  # SISA returns its constituents as one model
        model["ensemble"] = {"size": len(result.model.constituents), "aggregation": result.model.aggregation}
    record = {"kind": "unlearned", "key": key, "seed": seed, "data": dataset.describe(),
              "model": model, "original": {"key": checkpoint.record.get("key"),
                                                                "path": str(checkpoint.path)},
              "split": split.describe(), "unlearning": result.record(), "metrics": metrics, "verdict": said,
              "device": str(runtime.device), "threads": runtime.threads}
    return save_checkpoint(folder, result.model, record, split)


def unrolling_proxy(checkpoint: Checkpoint, recipe: TrainRecipe, dataset: ImageDataset, split: ForgetSplit,
                    runtime: Runtime) -> dict | None:
    """Thudi et al.'s unlearning-error proxy of the original training, where it applies: plain SGD and a
    registered model whose initial weights its training seed rebuilds (as `train` built them)."""
    from .evaluation.unrolling import unlearning_error_proxy

    if recipe.optimizer != "sgd" or str(checkpoint.record.get("model", {}).get("name", "")).startswith("custom:"):
        return None
    spec = checkpoint.model_spec
    seed_everything(int(checkpoint.record.get("seed", 0)))
    initial = spec.build().to(runtime.device)
    return unlearning_error_proxy(checkpoint.load_model().to(runtime.device), initial, recipe, split.n_train,
                                  dataset.train(augment=False), runtime)
