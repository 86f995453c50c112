"""Forgetting and remaining parts that only make sense for a class-conditional generator.

- RemapCondition (SalUn's "RL" for DDPMs): the forgotten class is re-aimed at another class.
- SurrogateNoise and ReplayWithEWC (Selective Amnesia): the forgotten class is mapped to uniform noise
  images, while generative replay from the frozen original and an EWC penalty keep the rest.
The geometries (Joint, FastSlow), masks and the generic parts (Ascent, AdaptiveAscent, Descent) of the
engine are reused as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..models import trainable
from ..unlearning.context import Batch, Context
from ..unlearning.params import Field, Params
from ..unlearning.parts import ForgetPart, RemainPart
from .sampling import ddim_sample
from .task import Diffusion, drop_condition, noise_losses


def _diffusion(ctx: Context) -> Diffusion:
    if not isinstance(ctx.task, Diffusion):
        raise TypeError(f"this part needs the diffusion task, the run has {type(ctx.task).__name__}")
    return ctx.task


@dataclass
class RemapBatch(Batch):
    """A forget batch whose images keep their own class as the condition, with the class to aim them at."""

    target: Tensor | None = None


class RemapCondition(ForgetPart):
    """SalUn's RL for class-conditional DDPMs, as the official `saliency_unlearn --unlearn_loss rl` runs it:
    real images of the forgotten class c are noised to x_t; the prediction eps(x_t, t, c) is pulled (MSE,
    averaged over pixels, as nn.MSELoss) towards the model's own detached prediction eps(x_t, t, c'),
    with c' = (c + remap_offset) mod K. Both passes drop the condition with the task's probability.
    """

    label = "remap class c -> c+1 (RL)"

    class Params(Params):
        remap_offset: int = Field(1, ge=1, description="the forgotten class c is aimed at c + offset (mod K)")

    def relabel(self, ctx: Context, batch: Batch) -> RemapBatch:
        offset = ctx.hp["remap_offset"]
        if offset % ctx.num_classes == 0:
            raise ConfigError(f"remap_offset must not be a multiple of the {ctx.num_classes} classes, got {offset}")
        return RemapBatch(batch.x, batch.y, batch.positions, (batch.y + offset) % ctx.num_classes)

    def loss(self, ctx: Context, outputs, batch: RemapBatch) -> Tensor:
        with torch.no_grad():
            target = _diffusion(ctx).predict(ctx, ctx.model, outputs, batch.target)
        return F.mse_loss(outputs.eps, target)


class SurrogateNoise(ForgetPart):
    """Selective Amnesia's forgetting term (official `sa_forget`): the forgotten class is taught to generate
    a surrogate distribution, images of uniform noise in [-1, 1], by descent on the noise-prediction loss."""

    label = "class -> uniform-noise images (SA)"

    def relabel(self, ctx: Context, batch: Batch) -> Batch:
        noise = torch.rand(batch.x.shape, generator=ctx.generator) * 2 - 1
        return replace(batch, x=noise.to(ctx.device))

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        return ctx.task.losses(outputs, batch).mean()


class ReplayWithEWC(RemainPart):
    """Selective Amnesia's remembering terms: generative replay plus an EWC penalty at the original weights.

    prepare(): the frozen original samples `replay_per_class` images of every class (DDIM, the task's
    guidance, eta 1); the EWC Fisher is computed on `fim_per_class` (at most `replay_per_class`) of them per
    class, every class included as in the official FIM: per sample, the squared gradient of its loss summed
    over the diffusion chain, the sum estimated from `fim_timesteps` stratified timesteps scaled by
    T / fim_timesteps (the official code sums all T = 1000). Each step, the remain batch is replaced by as
    many replay samples of the remaining classes, and the objective is their noise-prediction loss
    + ewc_lambda * sum_i F_i (theta_i - theta0_i)^2.
    """

    label = "generative replay + EWC at θ0 (SA)"
    # The official values (500 replay images per class sampled with 1000 steps, the FIM on all of them over
    # all 1000 timesteps, lambda 10); generation/methods.py scales them to the digits scenario.
    class Params(Params):
        replay_per_class: int = Field(500, ge=1, description="replay images sampled per class")
        sample_steps: int = Field(1000, ge=1, description="DDIM steps of the replay sampling")
        ewc_lambda: float = Field(10.0, ge=0, description="weight λ of the EWC penalty")
        fim_per_class: int = Field(500, ge=1, description="replay images per class the EWC Fisher is computed on")
        fim_timesteps: int = Field(1000, ge=1, description="stratified timesteps per image of the EWC Fisher")
        fim_cond_drop_prob: float = Field(0.1, ge=0, lt=1, description="condition dropout of the EWC Fisher passes")

    def prepare(self, ctx: Context) -> None:
        task, hp = _diffusion(ctx), ctx.hp
        classes = torch.arange(ctx.num_classes)
        labels = classes.repeat_interleave(hp["replay_per_class"])
        images = ddim_sample(ctx.original, task.schedule, labels, tuple(ctx.dataset.image_shape), hp["sample_steps"],
                             task.guidance, eta=1.0, seed=ctx.seed + 1, device=ctx.device)
        remaining = torch.isin(labels, ctx.remain.labels.cpu().unique())
        ctx.state["replay"] = (images[remaining].to(ctx.device), labels[remaining].to(ctx.device))
        chosen = torch.cat([torch.nonzero(labels == c).flatten()[: hp["fim_per_class"]] for c in classes])
        ctx.state["ewc_fisher"] = self.fisher(ctx, images[chosen].to(ctx.device), labels[chosen].to(ctx.device))
        ctx.state["ewc_anchor"] = {n: p.detach().clone() for n, p in trainable(ctx.model).items()}

    def fisher(self, ctx: Context, images: Tensor, labels: Tensor) -> dict[str, Tensor]:
        task, hp, model = _diffusion(ctx), ctx.hp, ctx.model
        k, total = hp["fim_timesteps"], task.schedule.timesteps
        if not 1 <= k <= total:
            raise ConfigError(f"fim_timesteps must be in 1..{total}, got {k}")
        generator = torch.Generator().manual_seed(ctx.seed + 2)
        params = trainable(model)
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        was_training = model.training
        model.eval()
        for x, y in zip(images, labels):
            offset = torch.randint(0, total // k, (1,), generator=generator)
            t = (torch.arange(k) * (total // k) + offset).clamp_max(total - 1).to(ctx.device)
            noise = torch.randn((k, *x.shape), generator=generator).to(ctx.device)
            condition = drop_condition(y.repeat(k), hp["fim_cond_drop_prob"], model.num_classes, generator)
            eps = model(task.schedule.q_sample(x.expand(k, *x.shape), t, noise), t, condition)
            model.zero_grad(set_to_none=True)
            (noise_losses(noise, eps).sum() * total / k).backward()
            for n, p in params.items():
                if p.grad is not None:
                    fisher[n] += p.grad.detach() ** 2 / len(images)
            ctx.sample_passes += k
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        return fisher

    def relabel(self, ctx: Context, batch: Batch) -> Batch:
        images, labels = ctx.state["replay"]
        if len(labels) == 0:
            raise ConfigError("generative replay has no sample of a remaining class: raise replay_per_class")
        chosen = torch.randint(0, len(labels), (len(batch),), generator=ctx.generator).to(ctx.device)
        return Batch(images[chosen], labels[chosen], batch.positions)

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        fisher, anchor = ctx.state["ewc_fisher"], ctx.state["ewc_anchor"]
        penalty = sum((fisher[n] * (p - anchor[n]).square()).sum() for n, p in ctx.model.named_parameters()
                      if n in fisher)
        return ctx.task.losses(outputs, batch).mean() + ctx.hp["ewc_lambda"] * penalty
