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

from ..artifacts import Checkpoint, content_key, writable_store
from ..config import validated
from ..data.images import DataView, ImageDataset
from ..data.splits import ForgetSplit
from ..errors import CheckpointError
from ..pipeline import stored_training
from ..progress import task
from ..runtime import Runtime, seed_everything, warm_up
from ..training import check_finite, diverged, load_state, restore_state, save_state
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


DIFFUSION_STATE = frozenset({"model", "ema", "optimizer", "schedule", "generator", "torch_rng", "step", "tail"})
SAVE_EVERY_S = 30.0  # how often a training with a resume file saves its state, at most


@torch.no_grad()
def ema_update(ema: nn.Module, live: nn.Module, decay: float) -> None:
    """One step of the exponential moving average of `live`'s weights, in place in `ema`."""
    for target, source in zip(ema.parameters(), live.parameters()):
        target.lerp_(source, 1 - decay)


def fit_denoiser(model: nn.Module, view: DataView, recipe: DiffusionRecipe, runtime: Runtime, seed: int,
                 label: str = "diffusion", resume_file: Path | None = None) -> tuple[nn.Module, float]:
    """Train `model` in place on `view`; return its exponential moving average (the model to sample from)
    and the mean loss over the last tenth of the steps.

    With `resume_file`, the whole state (weights, EMA, optimiser, schedule, RNGs, step) is saved there at the end of
    a pass over the data at most every SAVE_EVERY_S seconds, and a run started again continues from it with the
    same result as an uninterrupted one (a pass's shuffle and noise come from the one generator, so a pass boundary
    is where its state is whole)."""
    generator = seed_everything(seed)
    schedule = recipe.schedule()
    model.to(runtime.device).train()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.steps) if recipe.lr_schedule == "cosine"
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))
    step, tail, tail_start = 0, [], recipe.steps - max(recipe.steps // 10, 1)
    state = load_state(resume_file, DIFFUSION_STATE) if resume_file is not None else None
    if state is not None:
        restore_state(state, model, optimizer, scheduler, generator)
        ema.load_state_dict(state["ema"])
        step, tail = int(state["step"]), list(state["tail"])
    last_save = time.monotonic()
    with task(label, recipe.steps) as advance:
        advance(step)
        while step < recipe.steps:  # passes over the data, as the official code's cycle(loader)
            for x, y in view.batches(recipe.batch_size, shuffle=True, generator=generator):
                x, y = x.to(runtime.device), y.to(runtime.device)
                outputs = noise_pass(model, schedule, x, y, recipe.cond_drop_prob, generator, runtime)
                loss = noise_losses(outputs.noise, outputs.eps).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
                optimizer.step()
                scheduler.step()
                ema_update(ema, model, recipe.ema_decay)
                value = loss.item()
                if not math.isfinite(value):
                    raise diverged(label, f"the loss became {value} at step {step + 1}", recipe.lr)
                if step >= tail_start:
                    tail.append(value)
                step += 1
                advance(info=f"loss {value:.2f}")
                if step == recipe.steps:
                    break
            else:
                if resume_file is not None and time.monotonic() - last_save >= SAVE_EVERY_S:
                    save_state(resume_file, model=model.state_dict(), ema=ema.state_dict(),
                               optimizer=optimizer.state_dict(), schedule=scheduler.state_dict(),
                               generator=generator.get_state(), step=step, tail=tail)
                    last_save = time.monotonic()
    check_finite(ema, label, recipe.lr)
    return ema, sum(tail) / len(tail)


def train_denoiser(dataset: ImageDataset, spec: DenoiserSpec, recipe: DiffusionRecipe | None = None, seed: int = 0,
                   split: ForgetSplit | None = None, runtime: Runtime | None = None, store: Path | None = None,
                   force: bool = False) -> Checkpoint:
    """Train the original DDPM (no split) or the oracle (on `split.remain` only), or reuse a stored one.

    `dataset` is a generation dataset (see `generation_dataset`). The checkpoint holds the EMA weights and a
    record of the data, denoiser, recipe, noise schedule and split, and is found again by that content; the
    store, the content key and the resume of a killed training are the common pipeline's (`stored_training`).
    """
    runtime = runtime or Runtime.create()
    recipe = recipe or DiffusionRecipe()
    kind = "original" if split is None else "oracle"
    identity = {"kind": kind, "task": "generation", "data": dataset.fingerprint, "model": spec.describe(),
                "recipe": recipe.model_dump(), "seed": seed, "split": split.fingerprint if split else None,
                "compute": runtime.identity()}
    key = content_key(identity)

    def run(resume: Path) -> tuple[nn.Module, dict, ForgetSplit | None]:
        seed_everything(seed)  # initial weights depend on the seed alone, for the original and the oracle alike
        network = spec.build()
        view = dataset.train(split.remain if split else None)
        warm_up()
        started = time.perf_counter()
        ema, loss = fit_denoiser(network, view, recipe, runtime, seed, f"diffusion {kind} seed {seed}", resume)
        record = {"kind": kind, "task": "generation", "key": key, "seed": seed, "data": dataset.describe(),
                  "model": spec.describe(), "recipe": recipe.model_dump(), "schedule": recipe.schedule().describe(),
                  "split": split.describe() if split else None, "metrics": {"train_loss": loss},
                  "wall_time_s": time.perf_counter() - started, "sample_passes": recipe.steps * recipe.batch_size,
                  "device": str(runtime.device), "threads": runtime.threads}
        return ema, record, split

    return stored_training(writable_store(store), f"diffusion-{kind}-{dataset.name}-{spec.name}-{key}", key, force,
                           run)


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
