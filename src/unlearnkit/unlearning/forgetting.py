"""Forgetting parts: the objective each step minimises on a forget batch."""
from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import Tensor, nn

from .context import Batch, Context
from .losses import DECAYS, decayed, kd_kl, teacher_kl
from .params import Field, Params
from .parts import ForgetPart


class Ascent(ForgetPart):
    """Gradient ascent: minimise minus the task loss of the true labels."""

    label = "gradient ascent"

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        return -ctx.task.losses(outputs, batch).mean()


def adaptive_weights(losses: Tensor, lambd: float) -> Tensor:
    """SFR-on's per-sample forgetting weights over a minibatch: l_i^(-λ) normalised to sum to 1."""
    coef = 1.0 / (losses.detach() ** lambd + 1e-15)
    return coef / coef.sum()


class AdaptiveAscent(ForgetPart):
    """SFR-on's adaptive weighted ascent: -alpha_t * sum_i w_i l_i with w_i ∝ l_i^(-λ) (well-remembered
    samples weigh most). λ = 0 is plain ascent scaled by alpha_t.

    normalise='batch' (official code): weights sum to 1 over the minibatch.
    normalise='set' (paper): w_i = N_f l_i^(-λ) / sum over the whole forget set at the current weights,
    and the objective is the batch mean of w_i l_i (one extra forward pass over D_f per forget step).
    """

    label = "adaptive weighted ascent (λ)"

    class Params(Params):
        lambd: float = Field(0.5, ge=0, description="temperature λ: weights ∝ loss^-λ (0: plain ascent)")
        alpha: float = Field(25.0, gt=0, description="scale of the forgetting objective at the start")
        alpha_decay: DECAYS = Field("cosine", description="decay of alpha over the run (cosine: code; linear: paper)")
        normalise: Literal["batch", "set"] = Field("batch", description="weights sum to 1 over the minibatch (code) "
                                                                        "or to N_f over D_f (paper)")

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        lambd, mode = ctx.hp["lambd"], ctx.hp["normalise"]
        losses = ctx.task.losses(outputs, batch)
        if mode == "batch":
            objective = (adaptive_weights(losses, lambd) * losses).sum()
        else:
            coef = 1.0 / (losses.detach() ** lambd + 1e-15)
            objective = (len(ctx.forget) * coef / self._set_normaliser(ctx, lambd) * losses).mean()
        return -decayed(ctx.hp["alpha"], ctx.progress, ctx.hp["alpha_decay"]) * objective

    @staticmethod
    @torch.no_grad()
    def _set_normaliser(ctx: Context, lambd: float) -> Tensor:
        total = torch.zeros((), device=ctx.device)
        for positions in torch.arange(len(ctx.forget)).split(1024):
            batch = ctx.batch(ctx.forget.eval(), positions)
            losses = ctx.task.losses(ctx.task.forward(ctx, batch, train=False), batch)
            total += (1.0 / (losses ** lambd + 1e-15)).sum()
        return total


class RandomLabels(ForgetPart):
    """Descend on the forget set relabelled with a random wrong class per sample, drawn once (RL, SalUn)."""

    label = "random labels"

    def prepare(self, ctx: Context) -> None:
        true = ctx.forget.labels.cpu()
        offset = torch.randint(1, ctx.num_classes, (len(true),), generator=ctx.generator)
        ctx.state["random_labels"] = ((true + offset) % ctx.num_classes).to(ctx.device)

    def relabel(self, ctx: Context, batch: Batch) -> Batch:
        return batch.relabelled(ctx.state["random_labels"][batch.positions.to(ctx.device)])

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        return ctx.task.losses(outputs, batch).mean()


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model`'s architecture with every layer re-initialised (seeded)."""
    clone = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in clone.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
            if hasattr(module, "reset_running_stats"):
                module.reset_running_stats()
    return clone


class BadTeacher(ForgetPart):
    """Bad Teacher (Chundawat et al. 2023): match a randomly initialised, incompetent teacher on D_f."""

    label = "KL to incompetent teacher"

    class Params(Params):
        kd_temperature: float = Field(1.0, gt=0, description="distillation temperature")

    def prepare(self, ctx: Context) -> None:
        ctx.state["bad_teacher"] = fresh_copy(ctx.model, ctx.seed + 1).eval().requires_grad_(False)

    def loss(self, ctx: Context, logits: Tensor, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher = ctx.state["bad_teacher"](batch.x)
        return teacher_kl(logits, teacher, ctx.hp["kd_temperature"])


class ScrubMax(ForgetPart):
    """SCRUB's max step: push the student away from the original (teacher) on D_f, -KL at temperature kd_T."""

    label = "max KL(original ‖ model)"

    class Params(Params):
        kd_T: float = Field(4.0, gt=0, description="distillation temperature")

    def loss(self, ctx: Context, logits: Tensor, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher = ctx.original(batch.x)
        return -kd_kl(logits, teacher, ctx.hp["kd_T"])
