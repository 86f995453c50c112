"""What a model computes and what its per-sample loss is. The engine and the generic parts (ascent,
descent, adaptive weights, Fisher masks) only talk to a Task, so classification and diffusion share them."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..training import check_classifier

if TYPE_CHECKING:  # only for annotations: the context imports this module, not the other way round
    from .context import Batch, Context


class Task:
    name = ""

    def cache_key(self) -> str:
        """What distinguishes this task's losses, for content-keyed caches (Fishers)."""
        return self.name

    def forward(self, ctx: Context, batch: Batch, train: bool):
        """The model's outputs on `batch` (train or eval mode); they must support slicing [a:b]."""
        raise NotImplementedError

    def losses(self, outputs, batch: Batch) -> Tensor:
        """Per-sample training loss, shape (len(batch),)."""
        raise NotImplementedError

    def fisher_loss(self, ctx: Context, batch: Batch) -> Tensor:
        """The scalar whose gradient a Fisher accumulates (eval mode): the mean training loss by default."""
        return self.losses(self.forward(ctx, batch, train=False), batch).mean()

    def check(self, ctx: Context) -> None:
        """Raise ConfigError, before any update, where the model cannot score this data; nothing by default."""

    def probe(self, ctx: Context, view) -> tuple[Tensor, Tensor]:
        """Per-sample membership scores (higher: fits better, like a training sample) and whether each sample is
        predicted right, in eval mode without gradients: what the oracle-free calibration compares."""
        raise ConfigError(f"the {self.name} task has no oracle-free probe: pass calibrate=False")


class Classification(Task):
    name = "classification"

    def forward(self, ctx: Context, batch: Batch, train: bool) -> Tensor:
        ctx.model.train(train)
        with ctx.runtime.autocast():
            return ctx.model(batch.x).float()

    def losses(self, outputs: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(outputs, batch.y, reduction="none")

    def check(self, ctx: Context) -> None:
        check_classifier(ctx.model, ctx.forget, ctx.runtime)

    @torch.no_grad()
    def probe(self, ctx: Context, view) -> tuple[Tensor, Tensor]:
        """The logit-scaled confidence of the true class (LiRA's φ) and correctness, over the dataset's classes only:
        a method's extra output (Boundary Expanding's shadow class) is pruned before the model is returned, so the
        model is judged as it will be."""
        from ..evaluation.oracle_free import logit_confidence

        scores, correct = [], []
        for positions in torch.arange(len(view)).split(1024):
            batch = ctx.batch(view, positions)
            logits = self.forward(ctx, batch, train=False)[:, :ctx.dataset.num_classes]
            scores.append(logit_confidence(logits, batch.y).cpu())
            correct.append((logits.argmax(1) == batch.y).cpu())
        return torch.cat(scores), torch.cat(correct)
