"""Seeded DDIM sampling from prompts with classifier-free guidance, and ESD's partial generation.

Guidance follows SD's convention: eps = eps(x, null) + s (eps(x, c) - eps(x, null)), s = `guidance`
(s = 1 + w of the DDPM convention in generation/schedule.py). The DDIM update and timestep skip are
generation/sampling.py's.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..generation.sampling import ddim_timesteps
from ..generation.schedule import NoiseSchedule, guided
from .prompts import NULL_PROMPT


@torch.no_grad()
def guided_eps(model: nn.Module, x: Tensor, t: Tensor, context: Tensor, null: Tensor, guidance: float) -> Tensor:
    """SD's guided noise prediction, the conditional and null passes as one batch (guidance 1: conditional only)."""
    if guidance == 1:
        return model(x, t, context)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([context, null.expand_as(context)]))
    cond, uncond = both.chunk(2)
    return guided(cond, uncond, guidance - 1)


@torch.no_grad()
def ddim_steps(model: nn.Module, schedule: NoiseSchedule, x: Tensor, context: Tensor, null: Tensor, seq: list[int],
               stop: int, guidance: float, eta: float, generator: torch.Generator, batch_size: int = 256) -> Tensor:
    """Run the DDIM chain over the timesteps `seq` (ascending) from x at seq[-1] down to seq[stop]; stop = -1
    goes to the clean end and returns the predicted x_0."""
    device = x.device
    order = list(reversed(seq))
    targets = order[1:] + [-1]
    for t, prev in zip(order, targets):
        if stop >= 0 and t <= seq[stop]:
            break
        a_t = schedule.alpha_bar(torch.tensor([t]), device)
        a_prev = schedule.alpha_bar(torch.tensor([prev]), device)
        eps = torch.empty_like(x)
        for start in range(0, len(x), batch_size):
            part = slice(start, start + batch_size)
            step = torch.full((len(x[part]),), t, device=device, dtype=torch.long)
            eps[part] = guided_eps(model, x[part], step, context[part], null, guidance)
        x0 = (x - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
        if eta > 0 and prev >= 0:
            x = x + sigma * torch.randn(x.shape, generator=generator).to(device)
    return x


@torch.no_grad()
def sample(model: nn.Module, prompts: list[str], steps: int = 25, guidance: float = 3.0, eta: float = 1.0,
           seed: int = 0, batch_size: int = 256, decode: bool = True) -> Tensor:
    """Images (N, C, H, W) in [-1, 1] for `prompts` (decoded by the VAE when the model has one), model in eval
    mode. All noise is drawn for all N at once from `seed`, so two models sampled with one seed see the same
    noise (paired comparisons)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn((len(prompts), *model.sample_shape), generator=generator).to(device)
    context = model.text.embed(list(prompts)).to(device)
    null = model.text.embed([NULL_PROMPT]).to(device)
    x = ddim_steps(model, model.schedule, x, context, null, ddim_timesteps(model.schedule.timesteps, steps), -1,
                   guidance, eta, generator, batch_size)
    model.train(was_training)
    return (model.decode(x) if decode else x.clamp(-1, 1) if model.vae is None else x).cpu()


@torch.no_grad()
def partial_generation(model: nn.Module, context: Tensor, null: Tensor, steps: int, stop: int, guidance: float,
                       generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """ESD's x_t: deterministic DDIM (eta 0) with `steps` steps from fresh noise, stopped at the `stop`-th
    timestep t_s = seq[stop]; returns (x_t, t) with t drawn per sample uniformly in [t_s, t_s + T/steps), as
    the official code draws t_enc_ddpm for a latent sampled till t_enc."""
    was_training = model.training
    model.eval()
    device = context.device
    seq = ddim_timesteps(model.schedule.timesteps, steps)
    x = torch.randn((len(context), *model.sample_shape), generator=generator).to(device)
    x = ddim_steps(model, model.schedule, x, context, null, seq, stop, guidance, 0.0, generator)
    width = model.schedule.timesteps // steps
    t = (seq[stop] + torch.randint(0, width, (len(context),), generator=generator)).clamp_max(
        model.schedule.timesteps - 1).to(device)
    model.train(was_training)
    return x, t
