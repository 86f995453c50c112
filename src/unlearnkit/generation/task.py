"""The diffusion Task: what the unlearning engine's parts see when the model is a class-conditional DDPM.

A forward pass draws timesteps (antithetic pairs) and noise from the run's generator, drops the condition
to the null class with probability `cond_drop_prob`, and predicts the noise. The per-sample loss is
||eps - eps_hat||^2 summed over pixels (the official `noise_estimation_loss_conditional`). The Fisher loss
is the same loss of the classifier-free-guided prediction (1 + w) eps_c - w eps_null, model in eval mode,
as the official `generate_fisher` computes it; its noise comes from a generator of its own (seeded by the
task's seed and the batch's positions), so a Fisher is a function of the weights, data and seed alone and
computing it (or finding it cached) never shifts the random stream of the unlearning steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..runtime import Runtime
from ..unlearning.context import Batch, Context
from ..unlearning.params import Field, Params
from ..unlearning.task import Task
from .schedule import NoiseSchedule, antithetic_timesteps, guided


def drop_condition(labels: Tensor, prob: float, null: int, generator: torch.Generator) -> Tensor:
    """`labels` with each entry replaced by the null class with probability `prob` (classifier-free training)."""
    if prob <= 0:
        return labels
    dropped = (torch.rand(len(labels), generator=generator) < prob).to(labels.device)
    return torch.where(dropped, torch.full_like(labels, null), labels)


@dataclass
class DiffusionOutputs:
    """One noise-prediction pass: the noisy input, its timesteps, the condition used, the true and predicted noise."""

    x_t: Tensor
    t: Tensor
    condition: Tensor
    noise: Tensor
    eps: Tensor

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, index: slice) -> "DiffusionOutputs":
        return DiffusionOutputs(self.x_t[index], self.t[index], self.condition[index], self.noise[index],
                                self.eps[index])


def noise_losses(noise: Tensor, eps: Tensor) -> Tensor:
    """Per-sample ||eps - eps_hat||^2 summed over channels and pixels."""
    return (noise - eps).square().flatten(1).sum(1)


def noisy(schedule: NoiseSchedule, x: Tensor, generator: torch.Generator,
          device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(x_t, t, noise) for clean images `x`: antithetic timesteps, then Gaussian noise, drawn from `generator`."""
    t = antithetic_timesteps(len(x), schedule.timesteps, generator).to(device)
    noise = torch.randn(x.shape, generator=generator).to(device)
    return schedule.q_sample(x, t, noise), t, noise


def noise_pass(model: nn.Module, schedule: NoiseSchedule, x: Tensor, y: Tensor, cond_drop_prob: float,
               generator: torch.Generator, runtime: Runtime) -> DiffusionOutputs:
    """One pass of the training objective: noise `x`, drop the condition `y` to the null class with
    `cond_drop_prob`, predict the noise. Training the DDPM and the unlearning Task both run it."""
    x_t, t, noise = noisy(schedule, x, generator, runtime.device)
    condition = drop_condition(y, cond_drop_prob, model.num_classes, generator)
    with runtime.autocast():
        eps = model(x_t, t, condition).float()
    return DiffusionOutputs(x_t, t, condition, noise, eps)


class Diffusion(Task):
    name = "diffusion"

    class Params(Params):
        """The diffusion task's own settings, hyperparameters of every generation method."""

        cond_drop_prob: float = Field(0.1, ge=0, lt=1, description="probability of dropping the condition to the "
                                                                    "null class in every training pass")
        guidance: float = Field(2.0, ge=0, description="classifier-free guidance scale w of the Fisher loss and of "
                                                       "replay sampling")

    def __init__(self, schedule: NoiseSchedule, cond_drop_prob: float = 0.1, guidance: float = 2.0, seed: int = 0):
        self.schedule, self.cond_drop_prob, self.guidance, self.seed = schedule, cond_drop_prob, guidance, seed

    def cache_key(self) -> str:
        return f"diffusion:{self.schedule.describe()}:drop={self.cond_drop_prob}:w={self.guidance}:seed={self.seed}"

    def forward(self, ctx: Context, batch: Batch, train: bool) -> DiffusionOutputs:
        ctx.model.train(train)
        return noise_pass(ctx.model, self.schedule, batch.x, batch.y, self.cond_drop_prob, ctx.generator, ctx.runtime)

    def predict(self, ctx: Context, model: nn.Module, outputs: DiffusionOutputs, labels: Tensor) -> Tensor:
        """`model`'s noise prediction on the same noisy inputs under other class labels (dropped to the null
        class with the task's probability, like a training pass)."""
        condition = drop_condition(labels, self.cond_drop_prob, model.num_classes, ctx.generator)
        with ctx.runtime.autocast():
            return model(outputs.x_t, outputs.t, condition).float()

    def losses(self, outputs: DiffusionOutputs, batch: Batch) -> Tensor:
        return noise_losses(outputs.noise, outputs.eps)

    def fisher_loss(self, ctx: Context, batch: Batch) -> Tensor:
        ctx.model.eval()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(batch.positions[0]))
        x_t, t, noise = noisy(self.schedule, batch.x, generator, ctx.device)
        null = torch.full_like(batch.y, ctx.model.num_classes)
        with ctx.runtime.autocast():
            eps = ctx.model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([batch.y, null])).float()
        return noise_losses(noise, guided(*eps.chunk(2), self.guidance)).mean()
