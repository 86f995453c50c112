"""`unlearn()`: run any registered method on a model and a forget split."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..config import TrainRecipe, as_recipe
from ..data.images import DataView, ImageDataset
from ..data.splits import ForgetSplit, check_split
from ..errors import ConfigError, DivergenceError
from ..models import trainable
from ..registry import Registry
from ..runtime import Runtime, check_seed, seed_everything, warm_up
from .context import Context
from .methods import METHODS
from .task import Task


@dataclass(repr=False)
class UnlearnResult:
    model: nn.Module
    method: str
    hyperparameters: dict[str, Any]
    wall_time_s: float
    sample_passes: int
    steps: int
    details: dict[str, Any] = field(default_factory=dict)
    split: ForgetSplit | None = None  # what was forgotten, so that evaluating it against another split fails

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "hyperparameters": self.hyperparameters, "wall_time_s": self.wall_time_s,
                "sample_passes": self.sample_passes, "steps": self.steps, **self.details,
                **({"split": self.split.describe()} if self.split is not None else {})}

    def __repr__(self) -> str:  # a summary: the default would print the model and every calibration check
        calibration = self.details.get("calibration", {})
        decision, kept = calibration.get("decision"), calibration.get("stopped_at_step")
        # A calibrated run plans `steps` and keeps the weights of one check: "nothing to forget" keeps step 0.
        steps = (f"{self.steps} step{'s' * (self.steps != 1)}" if kept is None
                 else f"kept step {kept} of {self.steps} planned")
        return (f"UnlearnResult({self.method!r}: {steps}, {self.sample_passes} sample passes, "
                f"{self.wall_time_s:.2f} s" + (f"; {decision}" if decision else "") + ")")


def non_finite(model: nn.Module) -> list[str]:
    """Names of the model's floating-point tensors (weights and buffers) that hold NaN or infinite values."""
    return [n for n, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]


def check_heldout(heldout, dataset: ImageDataset, split: ForgetSplit) -> None:
    """Held-out data is a DataView (e.g. `data.train(validation_indices)`, `data.test()`) of samples shaped like
    the dataset's: the calibration feeds it to the model beside D_f; class-wise, it reads the classes that stay."""
    if not isinstance(heldout, DataView):
        raise ConfigError(f"heldout must be a DataView such as data.test() or data.train(validation_indices), got "
                          f"{type(heldout).__name__}")
    if len(heldout) == 0:
        raise ConfigError("the held-out data is empty")
    theirs, ours = tuple(heldout.dataset.train_images.shape[1:]), tuple(dataset.train_images.shape[1:])
    if theirs != ours:
        raise ConfigError(f"the held-out samples are shaped {theirs} but the dataset's are {ours}")
    staying = set(heldout.labels.tolist()) - set(split.forgotten_classes)
    if split.kind == "class" and not staying:
        raise ConfigError(f"the held-out data holds only the forgotten classes {list(split.forgotten_classes)}: the "
                          "calibration needs held-out samples of the classes that stay")


def unlearn(model: nn.Module, split: ForgetSplit, method: str = "sfron", *, data: ImageDataset | None = None,
            recipe: TrainRecipe | dict | None = None, heldout: DataView | None = None, runtime: Runtime | None = None,
            seed: int = 0, store: Path | None = None, methods: Registry = METHODS,
            make_task: Callable[[dict], Task] | None = None, **hyperparameters) -> UnlearnResult:
    """Remove the influence of `split.forget` from `model` with `method`. The model is changed in place (and
    returned as `result.model`); keep a copy if you need the original.

    `data` is the dataset the split indexes (defaults to the one `make_split` was given); `recipe` is how the
    original was trained (default: the dataset's recipe), the scale of the methods' relative settings;
    `heldout` is data the model never saw, which the gradient methods' oracle-free calibration compares the
    forget set with (default: the dataset's test split; pass e.g. `data.train(validation_indices)` for a
    validation split kept out of training); `store` is where methods may keep content-keyed artefacts (SISA's
    shard models). Unknown methods and
    hyperparameters, and values out of range, are rejected before anything runs. If the run diverges, the model
    is restored to its weights before the call and DivergenceError is raised. `methods` and `make_task` (the
    Task built from the resolved hyperparameters; classification by default) let other model families, such as
    the diffusion models of `generation`, run on the same engine.
    """
    if not isinstance(model, nn.Module):
        raise ConfigError(f"unlearn() takes a torch nn.Module as the model, got {type(model).__name__}")
    dataset = check_split(split, data, "unlearn()")
    seed = check_seed(seed, "unlearn()'s seed")
    if heldout is not None:
        check_heldout(heldout, dataset, split)
    declared = methods.get(method)
    hp = declared.resolve(hyperparameters, split.spec)
    recipe = as_recipe(recipe, dataset.recipe)
    if not trainable(model):
        raise ConfigError("the model to unlearn has no trainable parameters (none requires grad): unfreeze the "
                          "layers a method may change")
    broken = non_finite(model)
    if broken:
        raise ConfigError(f"the model to unlearn has NaN or infinite weights in {broken[:3]}: it was broken before "
                          "unlearning (retrain it, e.g. with a lower learning rate)")
    runtime = Runtime.given(runtime, "unlearn()")
    model.to(runtime.device)
    backup = copy.deepcopy(model.state_dict())
    generator = seed_everything(seed)
    ctx = Context(model, dataset, dataset.train(split.forget), dataset.train(split.remain), hp, runtime, generator,
                  task=make_task(hp) if make_task else None, recipe=recipe,
                  heldout=heldout if heldout is not None else dataset.test(), split_kind=split.kind, seed=seed,
                  store=Path(store) if store else None)
    ctx.task.check(ctx)
    warm_up()
    started = time.perf_counter()
    try:
        declared.run(ctx)
        broken = non_finite(ctx.model)
        if broken:
            raise DivergenceError(f"weights became NaN or infinite in {broken[:3]}")
    except DivergenceError as exc:
        model.load_state_dict(backup)
        raise DivergenceError(f"method '{method}' diverged and was rolled back: {exc}") from None
    except BaseException:
        model.load_state_dict(backup)  # an interrupted or failed run leaves the caller's model as it was
        raise
    wall = time.perf_counter() - started + ctx.reused_seconds - ctx.excluded_seconds
    ctx.model.eval()
    details = {"updates": ctx.updates, "probe_forward_passes": ctx.forward_passes,
               **{k: ctx.state[k] for k in ("mask_density", "attack_success_rate", "sisa", "optimisation")
                  if k in ctx.state}}
    if "calibrator" in ctx.state:
        details["calibration"] = ctx.state["calibrator"].record()
    passes = ctx.sample_passes + ctx.forward_passes // 3  # a forward-only pass costs about a third of a training one
    return UnlearnResult(ctx.model, method, hp, wall, passes, ctx.total_steps, details, split)
