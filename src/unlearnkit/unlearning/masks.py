"""Weight-saliency masks: which parameters an unlearning step may move."""
from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from ..models import trainable
from .context import Context
from .fisher import diagonal_fisher
from .geometry import optimisation
from .params import Field, Params
from .parts import MaskPart


class FisherRatioMask(MaskPart):
    """SFR-on's forget-remain balanced saliency: 1[F_f / F_r >= gamma], diagonal Fishers computed once.

    Each Fisher is estimated on a seeded random subset of at most `fisher_samples` samples (0: the whole set, as
    the official code; none: as many as D_f has, within `fisher_share` of the run's budget), so the two
    estimates are equally noisy and a full pass over a large D_r does not eat the budget (one pass over D_r is
    a fifth of a 5-epoch retraining). fisher_clip > 0 clips each minibatch gradient's norm before squaring (the
    official DDPM Fisher: 1.0).
    """

    label = "Fisher ratio F_f/F_r >= γ"

    class Params(Params):
        gamma: float = Field(1.0, gt=0, description="saliency threshold γ on F_f / F_r")
        fisher_batch_size: int = Field(128, ge=1, description="minibatch of the Fisher passes")
        fisher_samples: int | None = Field(None, ge=0, description="samples each Fisher is estimated on (0: the "
                                                                   "whole set; none: as many as D_f, within "
                                                                   "fisher_share of the budget)")
        fisher_share: float = Field(0.2, gt=0, le=1, description="most of the budget the two Fisher passes use "
                                                                 "when fisher_samples is none")
        fisher_clip: float = Field(0.0, ge=0, description="gradient-norm clip before squaring (0: off)")

    @staticmethod
    def samples(ctx: Context) -> int:
        if ctx.hp["fisher_samples"] is not None:
            return ctx.hp["fisher_samples"]
        affordable = ctx.hp["fisher_share"] * ctx.hp["budget"] * ctx.recipe.epochs * len(ctx.remain) / 2
        return max(1, int(min(len(ctx.forget), affordable)))

    def compute(self, ctx: Context) -> dict[str, Tensor]:
        batch, cap, clip = ctx.hp["fisher_batch_size"], self.samples(ctx), ctx.hp["fisher_clip"]
        forget = diagonal_fisher(ctx, _subset(ctx.forget, cap, ctx.seed), batch, clip)
        remain = diagonal_fisher(ctx, _subset(ctx.remain, cap, ctx.seed), batch, clip)
        return {n: (((forget[n] + 1e-15) / (remain[n] + 1e-15)) >= ctx.hp["gamma"]).float() for n in forget}


def _subset(view, cap: int, seed: int):
    if cap <= 0 or cap >= len(view):
        return view
    chosen = torch.randperm(len(view), generator=torch.Generator().manual_seed(seed))[:cap].sort().values
    return replace(view, indices=view.indices[chosen])


class GradientSaliencyMask(MaskPart):
    """SalUn: the top `mask_ratio` share of |gradient of the forget loss| (summed over forget minibatches,
    eval mode), ranked over the whole model."""

    label = "top-k |∇ L_f| (SalUn)"

    class Params(Params):
        mask_ratio: float = Field(0.5, gt=0, le=1, description="share of the weights the mask keeps")

    def compute(self, ctx: Context) -> dict[str, Tensor]:
        ratio = ctx.hp["mask_ratio"]
        model = ctx.model
        was_training = model.training
        model.eval()
        params = trainable(model)
        grads = {n: torch.zeros_like(p) for n, p in params.items()}
        for positions in torch.arange(len(ctx.forget)).split(optimisation(ctx)["batch_size"]):
            batch = ctx.batch(ctx.forget, positions)
            model.zero_grad(set_to_none=True)
            (-ctx.task.fisher_loss(ctx, batch)).backward()
            for n, p in params.items():
                if p.grad is not None:
                    grads[n] += p.grad
            ctx.sample_passes += len(batch)
        model.zero_grad(set_to_none=True)
        model.train(was_training)
        flat = torch.cat([g.abs().flatten() for g in grads.values()])
        keep = int(len(flat) * ratio)
        chosen = torch.zeros_like(flat)
        chosen[torch.argsort(flat, descending=True, stable=True)[:keep]] = 1.0
        return dict(zip(grads, (c.view_as(g)
                                for c, g in zip(chosen.split([g.numel() for g in grads.values()]), grads.values()))))
