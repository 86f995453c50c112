"""`unlearn()`: run any registered method on a model and a forget split."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..artifacts import default_store
from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import ConfigError, DivergenceError
from ..registry import Registry
from ..runtime import Runtime, seed_everything, warm_up
from .context import Context
from .methods import METHODS
from .task import Task


@dataclass
class UnlearnResult:
    model: nn.Module
    method: str
    hyperparameters: dict[str, Any]
    wall_time_s: float
    sample_passes: int
    steps: int
    details: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"method": self.method, "hyperparameters": self.hyperparameters, "wall_time_s": self.wall_time_s,
                "sample_passes": self.sample_passes, "steps": self.steps, **self.details}


def unlearn(model: nn.Module, split: ForgetSplit, method: str = "sfron", *, data: ImageDataset | None = None,
            runtime: Runtime | None = None, seed: int = 0, store: Path | None = None, methods: Registry = METHODS,
            make_task: Callable[[dict], Task] | None = None, **hyperparameters) -> UnlearnResult:
    """Remove the influence of `split.forget` from `model` (in place) with `method`.

    `data` is the dataset the split indexes (defaults to the one `make_split` was given); `store` is where
    methods may keep content-keyed artefacts (SISA's shard models). Unknown methods
    and hyperparameters are rejected with the valid names. If the run diverges, the model is restored to
    its weights before the call and DivergenceError is raised. `methods` and `make_task` (the Task built
    from the resolved hyperparameters; classification by default) let other model families, such as the
    diffusion models of `generation`, run on the same engine.
    """
    dataset = data if data is not None else split.dataset
    if dataset is None:
        raise ConfigError("unlearn() needs the dataset the split indexes: pass data=")
    if split.n_train != len(dataset.train_labels):
        raise ConfigError(f"the split covers {split.n_train} training samples but the dataset has "
                          f"{len(dataset.train_labels)}")
    declared = methods.get(method)
    hp = declared.resolve(dataset.name, hyperparameters, split.spec)
    runtime = runtime or Runtime.create()
    model.to(runtime.device)
    backup = copy.deepcopy(model.state_dict())
    generator = seed_everything(seed)
    ctx = Context(model, dataset, dataset.train(split.forget), dataset.train(split.remain), hp, runtime, generator,
                  task=make_task(hp) if make_task else None, seed=seed, store=Path(store) if store else default_store())
    warm_up()
    started = time.perf_counter()
    try:
        declared.run(ctx)
        broken = [n for n, p in ctx.model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
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
    details = {"updates": ctx.updates, **{k: ctx.state[k] for k in ("mask_density", "attack_success_rate", "sisa")
                                          if k in ctx.state}}
    return UnlearnResult(ctx.model, method, hp, wall, ctx.sample_passes, ctx.total_steps, details)
