"""Diagonal empirical Fisher information, as the official SFR-on code computes it, with a content-keyed cache."""
from __future__ import annotations

import hashlib
import time

import torch
from torch import Tensor, nn

from ..artifacts import content_key, weights_key
from ..data.images import DataView
from ..models import trainable
from .context import Batch, Context

_CACHE: dict[str, tuple[dict[str, Tensor], float, int]] = {}
_CACHE_LIMIT = 16


def diagonal_fisher(ctx: Context, view: DataView, batch_size: int, clip: float = 0.0) -> dict[str, Tensor]:
    """Mean over minibatches of the squared gradient of the minibatch-mean loss, model in eval mode.

    This is the Fisher of minibatch-mean gradients (not per-sample), over one pass of `view` with its
    train-time transforms, as in the official `get_weight_saliency_mask`. `clip` clips each minibatch
    gradient's norm before squaring (the official DDPM Fisher does; 0 = off). The result is cached under
    a key of the weights, the data, the indices and these settings (never by path), and the seconds it took
    and sample passes are added to the run's cost even when the cache answers.
    """
    key = content_key({"weights": weights_key(ctx.model), "data": ctx.dataset.fingerprint, "part": view.part,
                       "indices": hashlib.sha256(view.indices.cpu().numpy().tobytes()).hexdigest(),
                       "batch_size": batch_size, "augment": view.augment, "clip": clip, "task": ctx.task.cache_key(),
                       "seed": ctx.seed if view.augment else None,
                       # the parameters it holds: a Fisher of a partly frozen model lacks the frozen ones
                       "trainable": sorted(trainable(ctx.model))})
    if key in _CACHE:
        fisher, seconds, passes = _CACHE[key]
        ctx.reused_seconds += seconds
        ctx.sample_passes += passes
        return {k: v.to(ctx.device) for k, v in fisher.items()}
    started = time.perf_counter()
    model = ctx.model
    was_training = model.training
    model.eval()
    params = trainable(model)
    fisher = {n: torch.zeros_like(p) for n, p in params.items()}
    generator = torch.Generator().manual_seed(ctx.seed)
    batches, passes = 0, 0
    for start in range(0, len(view), batch_size):
        positions = torch.arange(start, min(start + batch_size, len(view)))
        x, y = view.batch(positions, generator)
        model.zero_grad(set_to_none=True)
        ctx.task.fisher_loss(ctx, Batch(x.to(ctx.device), y.to(ctx.device), positions)).backward()
        if clip > 0:
            nn.utils.clip_grad_norm_(params.values(), clip)
        for n, p in params.items():
            if p.grad is not None:
                fisher[n] += p.grad.detach() ** 2
        batches += 1
        passes += len(y)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    fisher = {n: f / max(batches, 1) for n, f in fisher.items()}
    if len(_CACHE) >= _CACHE_LIMIT:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = ({k: v.detach().cpu() for k, v in fisher.items()}, time.perf_counter() - started, passes)
    ctx.sample_passes += passes
    return fisher
