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

from ..unlearning.context import Batch, Context
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


class Diffusion(Task):
    name = "diffusion"

    def __init__(self, schedule: NoiseSchedule, cond_drop_prob: float = 0.1, guidance: float = 2.0, seed: int = 0):
        self.schedule, self.cond_drop_prob, self.guidance, self.seed = schedule, cond_drop_prob, guidance, seed

    def cache_key(self) -> str:
        return (f"diffusion:{self.schedule.describe()}:drop={self.cond_drop_prob}:w={self.guidance}:seed={self.seed}")

    def noisy(self, ctx: Context, batch: Batch, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        """(x_t, t, noise) for a batch of clean images, drawn from `generator`."""
        t = antithetic_timesteps(len(batch), self.schedule.timesteps, generator).to(ctx.device)
        noise = torch.randn(batch.x.shape, generator=generator).to(ctx.device)
        return self.schedule.q_sample(batch.x, t, noise), t, noise

    def forward(self, ctx: Context, batch: Batch, train: bool) -> DiffusionOutputs:
        ctx.model.train(train)
        x_t, t, noise = self.noisy(ctx, batch, ctx.generator)
        condition = drop_condition(batch.y, self.cond_drop_prob, ctx.model.num_classes, ctx.generator)
        with ctx.runtime.autocast():
            eps = ctx.model(x_t, t, condition).float()
        return DiffusionOutputs(x_t, t, condition, noise, eps)

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
        x_t, t, noise = self.noisy(ctx, batch, generator)
        null = torch.full_like(batch.y, ctx.model.num_classes)
        with ctx.runtime.autocast():
            eps = ctx.model(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([batch.y, null])).float()
        return noise_losses(noise, guided(*eps.chunk(2), self.guidance)).mean()
