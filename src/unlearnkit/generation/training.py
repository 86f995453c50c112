"""Training the class-conditional DDPM from scratch (the original model, and the oracle on the remain set),
content-keyed like `pipeline.train`."""
from __future__ import annotations

import copy
import math
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..artifacts import (
    Checkpoint,
    content_key,
    load_checkpoint,
    save_checkpoint,
    writable_store,
)
from ..config import validated
from ..data.images import DataView, ImageDataset
from ..data.splits import ForgetSplit
from ..errors import CheckpointError
from ..progress import task
from ..runtime import Runtime, seed_everything, warm_up
from ..training import check_finite, diverged
from .schedule import NoiseSchedule
from .task import noise_losses, noise_pass
from .unet import DenoiserSpec


class DiffusionRecipe(BaseModel):
    """How a DDPM is trained: the noise schedule, condition dropout and the optimisation.

    The official CIFAR-10 recipe is Adam lr 2e-4, batch 128, 800k iterations, EMA 0.9999, grad clip 1,
    condition dropout 0.1, linear betas 1e-4..0.02 over T = 1000. The defaults here keep the objective and
    schedule and shorten the optimisation for 16x16 digits on a CPU (see docs/generation.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: int = Field(default=1000, gt=0)
    batch_size: int = Field(default=128, gt=0)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = Field(default=1.0, ge=0)
    ema_decay: float = Field(default=0.995, ge=0, lt=1)
    cond_drop_prob: float = Field(default=0.1, ge=0, lt=1)
    timesteps: int = Field(default=1000, gt=1)
    beta_start: float = Field(default=1e-4, gt=0)
    beta_end: float = Field(default=0.02, lt=1)

    def schedule(self) -> NoiseSchedule:
        return NoiseSchedule.linear(self.timesteps, self.beta_start, self.beta_end)

    def with_overrides(self, overrides: dict) -> "DiffusionRecipe":
        return validated(DiffusionRecipe, {**self.model_dump(), **overrides}, "diffusion recipe")


def fit_denoiser(model: nn.Module, view: DataView, recipe: DiffusionRecipe, runtime: Runtime, seed: int,
                 label: str = "diffusion") -> tuple[nn.Module, float]:
    """Train `model` in place on `view`; return its exponential moving average (the model to sample from)
    and the mean loss over the last tenth of the steps."""
    generator = seed_everything(seed)
    schedule = recipe.schedule()
    model.to(runtime.device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.steps) if recipe.lr_schedule == "cosine"
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))
    stream = view.stream(recipe.batch_size, generator)
    tail, tail_start = [], recipe.steps - max(recipe.steps // 10, 1)
    with task(label, recipe.steps) as advance:
        for step in range(recipe.steps):
            x, y = next(stream)
            x, y = x.to(runtime.device), y.to(runtime.device)
            outputs = noise_pass(model, schedule, x, y, recipe.cond_drop_prob, generator, runtime)
            loss = noise_losses(outputs.noise, outputs.eps).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                for target, source in zip(ema.parameters(), model.parameters()):
                    target.lerp_(source, 1 - recipe.ema_decay)
            value = loss.item()
            if not math.isfinite(value):
                raise diverged(label, f"the loss became {value} at step {step + 1}", recipe.lr)
            if step >= tail_start:
                tail.append(value)
            advance(info=f"loss {value:.2f}")
    check_finite(ema, label, recipe.lr)
    return ema, sum(tail) / len(tail)


def train_denoiser(dataset: ImageDataset, spec: DenoiserSpec, recipe: DiffusionRecipe | None = None, seed: int = 0,
                   split: ForgetSplit | None = None, runtime: Runtime | None = None, store: Path | None = None,
                   force: bool = False) -> Checkpoint:
    """Train the original DDPM (no split) or the oracle (on `split.remain` only), or reuse a stored one.

    `dataset` is a generation dataset (see `generation_dataset`). The checkpoint holds the EMA weights and a
    record of the data, denoiser, recipe, noise schedule and split, and is found again by that content.
    """
    runtime = runtime or Runtime.create()
    recipe = recipe or DiffusionRecipe()
    kind = "original" if split is None else "oracle"
    identity = {"kind": kind, "task": "generation", "data": dataset.fingerprint, "model": spec.describe(),
                "recipe": recipe.model_dump(), "seed": seed, "split": split.fingerprint if split else None,
                "compute": runtime.identity()}
    key = content_key(identity)
    store = writable_store(store)
    folder = store / "models" / f"diffusion-{kind}-{dataset.name}-{spec.name}-{key}"
    if folder.exists() and not force:
        return load_checkpoint(folder)
    seed_everything(seed)  # initial weights depend on the seed alone, for the original and the oracle alike
    network = spec.build()
    view = dataset.train(split.remain if split else None)
    warm_up()
    started = time.perf_counter()
    ema, loss = fit_denoiser(network, view, recipe, runtime, seed, label=f"diffusion {kind} seed {seed}")
    wall = time.perf_counter() - started
    record = {"kind": kind, "task": "generation", "key": key, "seed": seed, "data": dataset.describe(),
              "model": spec.describe(), "recipe": recipe.model_dump(), "schedule": recipe.schedule().describe(),
              "split": split.describe() if split else None, "metrics": {"train_loss": loss},
              "wall_time_s": wall, "sample_passes": recipe.steps * recipe.batch_size,
              "device": str(runtime.device), "threads": runtime.threads}
    return save_checkpoint(folder, ema, record, split)


def load_denoiser(checkpoint: Checkpoint) -> tuple[nn.Module, NoiseSchedule]:
    """The denoiser stored in a generation checkpoint, and the noise schedule it was trained with."""
    record = checkpoint.record
    if record.get("task") != "generation":
        raise CheckpointError(f"checkpoint '{checkpoint.path}' is not a generation (diffusion) checkpoint")
    try:
        spec = DenoiserSpec(**record["model"])
        recipe = DiffusionRecipe(**record["recipe"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint '{checkpoint.path}' has no usable denoiser or recipe record: "
                              f"{exc}") from None
    model = checkpoint.load_model(spec.build())
    return model.eval(), recipe.schedule()
