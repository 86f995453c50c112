"""Forgetting parts of concept erasure in text-to-image models, on the shared engine's ForgetPart interface.

- `Scoped`: the UNet parameters a method trains (the official `train_method` switches), frozen outside.
- `NegativeGuidance` (ESD): regress eps(x_t, c) onto the frozen original's negatively guided prediction.
- `RemapPrompt` (SalUn for SD; SFR-on's SD forget step): pull eps(x_t, c) onto the model's own detached
  prediction under another prompt, on the same noisy image.
- `AttentionResteer` (FMN): minimise the cross-attention probabilities on the concept's tokens.
The engine's geometries (Joint, FastSlow), masks (FisherRatioMask, GradientSaliencyMask) and Descent are reused.
"""
from __future__ import annotations

import re
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import ConfigError
from ..unlearning.context import Batch, Context
from ..unlearning.params import Field, Params
from ..unlearning.parts import ForgetPart
from .components import cross_attention_layers
from .sampling import partial_generation
from .task import NoisyBatch, RemapBatch, text_task

TrainMethod = Literal["full", "xattn", "noxattn", "xattn-kv"]

# CompVis/ESD names mapped onto diffusers': input/middle/output blocks hold 'attn2' in both; CompVis'
# `time_embed` is diffusers' `time_embedding`, its final `out.` is `conv_norm_out` + `conv_out`.
_NOT_IN_NOXATTN = re.compile(r"(^|\.)(attn2|time_embedding|conv_norm_out|conv_out)\.")


def in_scope(name: str, method: str) -> bool:
    """Whether UNet parameter `name` is trained under `method`:
    full: every parameter; xattn (ESD-x): cross-attention ('attn2'); noxattn (ESD-u): all but cross-attention,
    the time embedding and the output layer, as the original ESD code's 'noxattn'; xattn-kv: the
    cross-attention key and value projections (ESD's 'esd-x-strict', what UCE edits)."""
    if method == "full":
        return True
    if method == "xattn":
        return ".attn2." in f".{name}"
    if method == "noxattn":
        return not _NOT_IN_NOXATTN.search(name)
    if method == "xattn-kv":
        return bool(re.search(r"(^|\.)attn2\.to_[kv]\.", name))
    raise ConfigError(f"unknown train_method '{method}'; expected full, xattn, noxattn or xattn-kv")


class ScopeParams(Params):
    train_method: TrainMethod = Field("full", description="UNet parameters trained: full, xattn (cross-attention), "
                                                          "noxattn (all but cross-attention, time embedding and "
                                                          "output layer), xattn-kv")


class Scoped(ForgetPart):
    """A forgetting part that trains only the parameters of its `train_method` (the others are frozen with
    requires_grad, so optimiser, masks and Fishers see only the trained ones; restored in finish)."""

    Params = ScopeParams

    def prepare(self, ctx: Context) -> None:
        flags = {n: p.requires_grad for n, p in ctx.model.named_parameters()}
        ctx.state["scope_flags"] = flags
        method = ctx.hp["train_method"]
        trained = 0
        for name, p in ctx.model.named_parameters():
            p.requires_grad_(flags[name] and in_scope(name.removeprefix("unet."), method))
            trained += p.requires_grad
        if not trained:
            raise ConfigError(f"train_method '{method}' selects no parameter of this model")

    def finish(self, ctx: Context) -> None:
        flags = ctx.state.pop("scope_flags", None)
        if flags:
            for name, p in ctx.model.named_parameters():
                p.requires_grad_(flags[name])


class NegativeGuidance(Scoped):
    """ESD (Gandikota et al. 2023), `train-esd.py` / `esd_sd.py`: for a forget batch's prompts c,

        x_t  <- DDIM (eta 0, `esd_ddim_steps` steps, guidance `start_guidance`) from fresh noise, stopped at
                the stop-th timestep, stop ~ U{0..steps-1}; t ~ U[t_stop, t_stop + T/steps)
        loss  = MSE( eps_θ(x_t, t, c),  eps_0(x_t, t, null) - η (eps_0(x_t, t, c) - eps_0(x_t, t, null)) )

    with eps_0 the frozen original. x_t comes from the model being trained (`esd_sampler='model'`, the
    original CompVis code and paper) or from the frozen original (`'original'`, the diffusers rewrite
    `esd_sd.py`). Differences: one stop index per batch (the code: batch 1), the forget batch's own captions as
    the concept prompts (the code: one prompt string), fewer DDIM steps by default (`esd_ddim_steps`; the
    code: 50) for CPU cost; the images of the batch are not used, as in the code.
    """

    label = "negative guidance to the frozen original (ESD)"

    class Params(ScopeParams):
        negative_guidance: float = Field(1.0, ge=0, description="η of the target eps_0(null) - η (eps_0(c) - "
                                                                "eps_0(null)) (CompVis README: 1; esd_sd.py: 2)")
        start_guidance: float = Field(3.0, ge=0, description="guidance (SD convention) of the partial generation")
        esd_ddim_steps: int = Field(50, ge=2, description="DDIM steps of the partial generation (official: 50)")
        esd_sampler: Literal["model", "original"] = Field("model", description="who generates x_t: the model "
                                                                               "being trained, or the original")

    def relabel(self, ctx: Context, batch: Batch) -> NoisyBatch:
        hp, task = ctx.hp, text_task(ctx)
        steps = hp["esd_ddim_steps"]
        stop = int(torch.randint(0, steps, (1,), generator=ctx.generator))
        context = task.context(ctx, ctx.model, batch.y)
        null = task.context(ctx, ctx.model, torch.full_like(batch.y[:1], task.null))
        generator = ctx.model if hp["esd_sampler"] == "model" else ctx.original
        x_t, t = partial_generation(generator, context, null, steps, stop, hp["start_guidance"], ctx.generator)
        ctx.forward_passes += 2 * (steps - 1 - stop) * len(batch)
        with torch.no_grad(), ctx.runtime.autocast():
            both = ctx.original(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                torch.cat([context, null.expand_as(context)])).float()
        e_p, e_0 = both.chunk(2)
        ctx.forward_passes += 2 * len(batch)
        target = e_0 - hp["negative_guidance"] * (e_p - e_0)
        return NoisyBatch(x_t, batch.y, batch.positions, t=t, target=target)

    def loss(self, ctx: Context, outputs, batch: NoisyBatch) -> Tensor:
        return F.mse_loss(outputs.eps, batch.target)


class RemapPrompt(Scoped):
    """Concept remapping on real images of the concept, as SalUn's SD `random_label.py` / `nsfw_removal.py`
    and SFR-on's SD `nsfw_removal.py` compute it:

        loss = MSE( eps_θ(x_t, t, c),  sg eps_θ(x_t, t, c') )

    x_t one noisy version of the forget image (same noise and t for both passes), c its caption, c' the prompt
    it is remapped to (the task's `remap`: the same caption with the next concept, SalUn's (c + 1) mod 10 and
    SFR-on's 'wearing clothes' for 'nude'; or the empty prompt). The target is the current model's own
    prediction, detached, as in the code.
    """

    label = "remap the concept's prompt to another (sg ε(x_t, c'))"

    def relabel(self, ctx: Context, batch: Batch) -> RemapBatch:
        task = text_task(ctx)
        missing = sorted({int(y) for y in batch.y} - set(task.remap))
        if missing:
            raise ConfigError(f"no remap target for prompt(s) {[task.prompts[i] for i in missing]}")
        target = torch.tensor([task.remap[int(y)] for y in batch.y], device=batch.y.device)
        return RemapBatch(batch.x, batch.y, batch.positions, target)

    def loss(self, ctx: Context, outputs, batch: RemapBatch) -> Tensor:
        target = text_task(ctx).predict(ctx, ctx.model, outputs, batch.target)
        ctx.forward_passes += len(batch)
        return F.mse_loss(outputs.eps, target)


class _Recorder:
    """Cross-attention processor that computes attention like diffusers' AttnProcessor and keeps the
    probabilities at the marked token positions while switched on."""

    def __init__(self, store: dict):
        self.store = store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch, tokens = context.shape[0], context.shape[1]
        attention_mask = attn.prepare_attention_mask(attention_mask, tokens, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if attn.norm_cross and encoder_hidden_states is not None:
            context = attn.norm_encoder_hidden_states(context)
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(context))
        value = attn.head_to_batch_dim(attn.to_v(context))
        probs = attn.get_attention_scores(query, key, attention_mask)
        marks = self.store.get("positions")
        if marks is not None:
            heads = probs.shape[0] // len(marks)
            # rows of probs are (sample, head) with the sample outer, as head_to_batch_dim lays them out
            chosen = marks.repeat_interleave(heads, dim=0)[:, None, :].expand_as(probs)
            self.store["probs"].append(probs[chosen])
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class AttentionResteer(Scoped):
    """FMN (Zhang et al. 2024), `train_attn.py`: on real images of the concept with their captions and a random
    timestep, the loss is the norm || concat over every cross-attention layer of the attention probabilities
    at the concept's token positions ||_2 (plus every EOS position with `use_pooler`, the official default;
    SD v1's tokenizer pads with EOS, so the padding counts too). The UNet's prediction itself is unused.
    Differences: no textual-inversion stage (`use_ti`: the official recipe first learns tokens for the concept
    from its images; here the concept is already a word of the vocabulary, the code's `use_ti: false` path).
    """

    label = "‖cross-attention on the concept's tokens‖ (FMN)"

    class Params(ScopeParams):
        use_pooler: bool = Field(True, description="also minimise the attention on EOS tokens (official default)")

    def prepare(self, ctx: Context) -> None:
        super().prepare(ctx)
        layers = cross_attention_layers(ctx.model)
        if not layers:
            raise ConfigError("FMN needs cross-attention layers ('attn2'); this model has none")
        store = {"positions": None, "probs": []}
        ctx.state["fmn"] = {"store": store, "processors": {n: m.processor for n, m in layers.items()}}
        for module in layers.values():
            module.set_processor(_Recorder(store))
        task = text_task(ctx)
        marks = []
        for p, prompt in enumerate(task.prompts):
            mask = torch.zeros(ctx.model.text.max_length, dtype=torch.bool)
            for snippet in task.snippets.get(p, []):
                mask |= ctx.model.text.positions(prompt, snippet, ctx.hp["use_pooler"])
            marks.append(mask)
        ctx.state["fmn"]["marks"] = torch.stack(marks).to(ctx.device)

    def relabel(self, ctx: Context, batch: Batch) -> Batch:
        marks = ctx.state["fmn"]["marks"][batch.y.to(ctx.device)]
        if not marks.any(dim=1).all():
            raise ConfigError("FMN: a forget prompt names none of the erased concept's words")
        store = ctx.state["fmn"]["store"]
        store["positions"], store["probs"] = marks, []
        return batch

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        store = ctx.state["fmn"]["store"]
        probs, store["positions"], store["probs"] = store["probs"], None, []
        if not probs:
            raise ConfigError("FMN recorded no cross-attention: the model's attn2 layers were not called")
        return torch.cat(probs).norm()

    def finish(self, ctx: Context) -> None:
        state = ctx.state.pop("fmn", None)
        if state:
            layers = cross_attention_layers(ctx.model)
            for name, processor in state["processors"].items():
                layers[name].set_processor(processor)
        super().finish(ctx)
