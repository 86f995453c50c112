"""The text-to-image Task: what the unlearning engine's parts see when the model is a text-conditioned UNet.

A forward pass noises the batch's images (uniform timesteps, as LDM's training does), optionally drops the
prompt to the empty one, and predicts the noise conditioned on the frozen text encoder's embedding of each
sample's caption (its label indexes the dataset's prompt table). The per-sample loss is LDM's: the mean
squared error over pixels. A `NoisyBatch` brings its own x_t and timesteps (ESD's partially generated
latents) and is never dropped. The Fisher loss is the official SD scripts' (`generate_fisher.py`,
`generate_mask.py`): the MSE of the guided prediction (1 + w) eps_c - w eps_null against the noise, model
in eval mode, its noise from a generator of its own (seeded by the task's seed and the batch's positions).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..unlearning.context import Batch, Context
from ..unlearning.params import Field, Params
from ..unlearning.task import Task
from .prompts import NULL_PROMPT


@dataclass
class NoisyBatch(Batch):
    """A batch that is already noised: x is x_t at timesteps t; `target` is what its part regresses to."""

    t: Tensor | None = None
    target: Tensor | None = None


@dataclass
class RemapBatch(Batch):
    """A forget batch with the prompt each sample's prediction is pulled towards (index = the null prompt
    when it equals the number of prompts)."""

    target: Tensor | None = None


@dataclass
class T2IOutputs:
    """One noise-prediction pass: the noisy input, timesteps, prompt indices used, true and predicted noise."""

    x_t: Tensor
    t: Tensor
    condition: Tensor
    noise: Tensor | None
    eps: Tensor

    def __len__(self) -> int:
        return len(self.t)

    def __getitem__(self, index: slice) -> "T2IOutputs":
        return T2IOutputs(self.x_t[index], self.t[index], self.condition[index],
                          None if self.noise is None else self.noise[index], self.eps[index])


def per_sample_mse(a: Tensor, b: Tensor) -> Tensor:
    return (a - b).square().flatten(1).mean(1)


class TextToImage(Task):
    name = "text-to-image"

    class Params(Params):
        """The text-to-image task's settings, hyperparameters of every text-to-image method."""

        cond_drop_prob: float = Field(0.0, ge=0, lt=1, description="probability of dropping a sample's prompt to "
                                                                   "the empty one in unlearning passes (official "
                                                                   "SD scripts: 0)")
        fisher_guidance: float = Field(7.5, ge=0, description="guidance w of the Fisher / saliency loss, "
                                                              "(1 + w) eps_c - w eps_null (official c_guidance 7.5)")

    def __init__(self, prompts: list[str], cond_drop_prob: float = 0.0, fisher_guidance: float = 7.5, seed: int = 0,
                 remap: dict[int, int] | None = None, snippets: dict[int, list[str]] | None = None):
        """`prompts`: the prompt of each label; `remap`: prompt -> the prompt a remapping part aims it at (the
        null prompt is index len(prompts)); `snippets`: prompt -> the words naming the erased concept in it."""
        self.prompts, self.cond_drop_prob, self.fisher_guidance, self.seed = (list(prompts), cond_drop_prob,
                                                                              fisher_guidance, seed)
        self.remap, self.snippets = dict(remap or {}), dict(snippets or {})
        self._table: Tensor | None = None

    @property
    def null(self) -> int:
        return len(self.prompts)

    def cache_key(self) -> str:
        digest = hashlib.sha256("\n".join(self.prompts).encode()).hexdigest()[:12]
        return f"text-to-image:{digest}:drop={self.cond_drop_prob}:w={self.fisher_guidance}:seed={self.seed}"

    def table(self, model: nn.Module, device: torch.device) -> Tensor:
        """(P + 1, L, D) embeddings of every prompt and, last, the empty prompt (the text encoder is frozen)."""
        if self._table is None or self._table.device != device:
            self._table = model.text.embed(self.prompts + [NULL_PROMPT]).to(device)
        return self._table

    def context(self, ctx: Context, model: nn.Module, labels: Tensor) -> Tensor:
        return self.table(model, ctx.device)[labels.to(ctx.device)]

    def dropped(self, labels: Tensor, generator: torch.Generator) -> Tensor:
        if self.cond_drop_prob <= 0:
            return labels
        drop = (torch.rand(len(labels), generator=generator) < self.cond_drop_prob).to(labels.device)
        return torch.where(drop, torch.full_like(labels, self.null), labels)

    def forward(self, ctx: Context, batch: Batch, train: bool) -> T2IOutputs:
        ctx.model.train(train)
        if isinstance(batch, NoisyBatch):
            x_t, t, noise, condition = batch.x, batch.t, None, batch.y
        else:
            t = torch.randint(0, ctx.model.schedule.timesteps, (len(batch),), generator=ctx.generator).to(ctx.device)
            noise = torch.randn(batch.x.shape, generator=ctx.generator).to(ctx.device)
            x_t = ctx.model.schedule.q_sample(batch.x, t, noise)
            condition = self.dropped(batch.y, ctx.generator)
        with ctx.runtime.autocast():
            eps = ctx.model(x_t, t, self.context(ctx, ctx.model, condition)).float()
        return T2IOutputs(x_t, t, condition, noise, eps)

    @torch.no_grad()
    def predict(self, ctx: Context, model: nn.Module, outputs: T2IOutputs, labels: Tensor) -> Tensor:
        """`model`'s noise prediction on the same x_t and timesteps under the prompts `labels`."""
        with ctx.runtime.autocast():
            return model(outputs.x_t, outputs.t, self.context(ctx, model, labels)).float()

    def losses(self, outputs: T2IOutputs, batch: Batch) -> Tensor:
        if outputs.noise is None:
            raise ValueError("a pre-noised batch has no noise target: its part supplies the target")
        return per_sample_mse(outputs.eps, outputs.noise)

    def fisher_loss(self, ctx: Context, batch: Batch) -> Tensor:
        model = ctx.model
        model.eval()
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + int(batch.positions[0]))
        t = torch.randint(0, model.schedule.timesteps, (len(batch),), generator=generator).to(ctx.device)
        noise = torch.randn(batch.x.shape, generator=generator).to(ctx.device)
        x_t = model.schedule.q_sample(batch.x, t, noise)
        null = torch.full_like(batch.y, self.null)
        context = self.context(ctx, model, torch.cat([batch.y, null]))
        with ctx.runtime.autocast():
            cond, uncond = model(torch.cat([x_t, x_t]), torch.cat([t, t]), context).float().chunk(2)
        w = self.fisher_guidance
        return F.mse_loss((1 + w) * cond - w * uncond, noise)


def text_task(ctx: Context) -> TextToImage:
    if not isinstance(ctx.task, TextToImage):
        raise TypeError(f"this part needs the text-to-image task, the run has {type(ctx.task).__name__}")
    return ctx.task
