"""Remaining parts: the objective each step minimises on a remain batch, to keep what should stay."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .context import Batch, Context
from .losses import decayed, kd_kl, teacher_kl
from .params import Field, Params
from .parts import RemainPart


class Descent(RemainPart):
    """Fine-tune on the remain set: the task's own training loss."""

    label = "descent on D_r"

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        return ctx.task.losses(outputs, batch).mean()


class L1Sparse(RemainPart):
    """l1-sparse (Jia et al. 2023): loss on D_r + alpha_t ||θ||_1, alpha decayed linearly to 0 over the run."""

    label = "descent on D_r + l1 penalty"

    class Params(Params):
        l1_alpha: float = Field(5e-4, ge=0, description="weight of the l1 penalty at the start (decays linearly to 0)")

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        penalty = sum(p.abs().sum() for p in ctx.model.parameters())
        return ctx.task.losses(outputs, batch).mean() + decayed(ctx.hp["l1_alpha"], ctx.progress, "linear") * penalty


class GoodTeacher(RemainPart):
    """Bad Teacher's remain part: match the original (competent) teacher on D_r."""

    label = "KL to original"

    class Params(Params):
        kd_temperature: float = Field(1.0, gt=0, description="distillation temperature")

    def loss(self, ctx: Context, logits: Tensor, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher = ctx.original(batch.x)
        return teacher_kl(logits, teacher, ctx.hp["kd_temperature"])


class ScrubMin(RemainPart):
    """SCRUB's min step: scrub_gamma * CE + scrub_alpha * KL(original ‖ model) at temperature kd_T."""

    label = "CE + KL to original"

    class Params(Params):
        scrub_gamma: float = Field(0.99, ge=0, description="weight of the cross-entropy on D_r")
        scrub_alpha: float = Field(0.001, ge=0, description="weight of the KL to the original on D_r")
        kd_T: float = Field(4.0, gt=0, description="distillation temperature")

    def loss(self, ctx: Context, logits: Tensor, batch: Batch) -> Tensor:
        with torch.no_grad():
            teacher = ctx.original(batch.x)
        return (ctx.hp["scrub_gamma"] * F.cross_entropy(logits, batch.y)
                + ctx.hp["scrub_alpha"] * kd_kl(logits, teacher, ctx.hp["kd_T"]))
