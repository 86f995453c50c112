"""A pool of same-architecture models, each trained on its own subset: as one vectorised computation
(`torch.func.stack_module_state` + `vmap` + `functional_call`), or one member at a time, whichever is faster.

Per-example membership audits (U-LiRA and the like) need 16-256 small shadow models. Member k reproduces what
`training.fit` gives for `seed_everything(seeds[k]); spec.build()` trained on `dataset.train(subsets[k])` with
seed `seeds[k]`: the same initial weights, data order, augmentation draws, LR schedule, optimiser (SGD, Adam
and AdamW are elementwise, so one optimiser over the stacked parameters equals K optimisers) and BatchNorm
running statistics, up to float rounding: vmap turns each member's matmuls and convolutions into batched or
grouped kernels that sum in another order. Rounding differences stay at 1e-7 on noisy inputs, but on images
with a constant background (digits) exact ties in max-pooling are broken by them, which reroutes a gradient
and the members then drift apart like two runs on different hardware (same accuracy, weights 1e-1 apart).

Measured on a 2-core AMD EPYC (AVX-512), batch 32, 32 members (benchmarks/pool_training.py): `fit` already runs
the digits CNN's convolutions near the core's peak FLOP rate (about half its step), and most of the rest is slow
kernels (NCHW max-pooling, BatchNorm), not per-operation overhead, so no pool trainer can reach 2x on CPU. vmap
removes only that overhead, and pays with grouped convolutions (1.5-2.5x slower per member than the dense ones
in oneDNN) and layout copies of activations that no longer fit in cache: 0.8-0.95x of `fit` on 1 thread,
1.2-1.3x on 2 (bigger operations share the threads better). On one thread the fastest is one member at a time
in channels_last, where max-pooling is 20x faster (1.0-1.2x). vmap wins on 1 thread (1.6x) only for models of a
few thousand parameters.
"""
from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from ..config import TrainRecipe
from ..data.images import ImageDataset
from ..errors import ConfigError
from ..models import ModelSpec
from ..progress import task
from ..runtime import Runtime, seed_everything
from ..training import diverged, fit, make_optimizer, make_schedule

# On CPU (1 thread) only models this small gained from vmap (the width-8 CNN, 6k parameters: 1.6x at 32
# members); the digits CNN (94k), LeNet-5 (62k) and the MLPs (51k, 235k) ran at 0.55-1.07x per step. On 2 busy
# threads vmap won for the digits CNN too (1.27x), but on an idle machine it did not (0.89x). On CUDA a small
# model leaves the GPU idle between kernel launches, which is what vmap removes (not yet measured here);
# ResNet-18 (11M) is compute-bound everywhere and would hold K copies of weights, gradients and momenta.
MAX_VECTORISED_PARAMETERS = {"cpu": 20_000, "cuda": 2_000_000}


def parameter_count(spec: ModelSpec) -> int:
    """Parameters of one model of `spec`, counted on the meta device (no memory, no initialisation cost)."""
    with torch.device("meta"):
        model = spec.build()
    return sum(p.numel() for p in model.parameters())


def pool_is_vectorisable(spec: ModelSpec, runtime: Runtime | None = None) -> bool:
    """Whether a pool of `spec` models trains faster as one vmap computation than one member at a time on
    `runtime`'s device: a single model (not an ensemble) within MAX_VECTORISED_PARAMETERS for that device."""
    device = runtime.device.type if runtime else ("cuda" if torch.cuda.is_available() else "cpu")
    return not spec.ensemble and parameter_count(spec) <= MAX_VECTORISED_PARAMETERS.get(device, 0)


def train_pool(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, seeds: Sequence[int],
               subsets: Sequence, runtime: Runtime | None = None, vectorised: bool | None = None,
               chunk_size: int | None = None, channels_last: bool | None = None) -> list[dict[str, Tensor]]:
    """Train one model of `spec` per (seed, subset) pair with `recipe`; returns their state dicts, in order.

    Member k is `training.fit` of `seed_everything(seeds[k]); spec.build()` on `dataset.train(subsets[k])`
    with seed `seeds[k]`. Subsets must have equal sizes, so that every member takes the same batches.
    `vectorised` (default: `pool_is_vectorisable`) trains `chunk_size` members (default: all) at a time as one
    vmap computation; otherwise each member runs `fit`, in channels_last when `channels_last` (default: for
    convolutional models on CPU, where it is faster); `channels_last=False` is `fit` exactly.
    """
    runtime = runtime or Runtime.create()
    seeds = [int(s) for s in seeds]
    index = _subset_index(subsets, len(seeds), len(dataset.train_labels))
    if chunk_size is not None and chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if vectorised and spec.ensemble:
        raise ConfigError(f"an ensemble spec ({spec.name} x{spec.ensemble['size']}) cannot be trained as a "
                          "vectorised pool; pool its single model instead")
    if vectorised is None:
        vectorised = pool_is_vectorisable(spec, runtime)
    if not vectorised:
        return [_fit_one(dataset, spec, recipe, seed, rows, runtime, channels_last)
                for seed, rows in zip(seeds, index)]
    step = chunk_size or len(seeds)
    states: list[dict[str, Tensor]] = []
    for start in range(0, len(seeds), step):
        states += _train_stacked(dataset, spec, recipe, seeds[start:start + step], index[start:start + step],
                                 runtime)
    return states


def _subset_index(subsets: Sequence, members: int, n_train: int) -> Tensor:
    """The subsets as one (K, n) int64 tensor of training-set rows, after checking the pool is well formed."""
    if members == 0:
        raise ConfigError("a pool needs at least one member; got no seeds")
    if len(subsets) != members:
        raise ConfigError(f"a pool needs one subset per seed; got {members} seeds and {len(subsets)} subsets")
    rows = [torch.as_tensor(s, dtype=torch.long).reshape(-1).cpu() for s in subsets]
    sizes = sorted({len(r) for r in rows})
    if len(sizes) > 1:
        raise ConfigError(f"pool members must train on subsets of equal size (same batches per epoch); got sizes "
                          f"{sizes[0]}..{sizes[-1]}")
    if sizes[0] == 0:
        raise ConfigError("pool members' subsets are empty")
    index = torch.stack(rows)
    if index.min() < 0 or index.max() >= n_train:
        raise ConfigError(f"subset rows must lie in [0, {n_train}) (the training set); got "
                          f"{int(index.min())}..{int(index.max())}")
    return index


def _has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _fit_one(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, seed: int, rows: Tensor,
             runtime: Runtime, channels_last: bool | None) -> dict[str, Tensor]:
    seed_everything(seed)  # initial weights depend on the seed alone, as in pipeline.train
    model = spec.build()
    if channels_last is None:
        channels_last = runtime.device.type == "cpu" and _has_convolutions(model)
    if channels_last:  # the weights' layout carries the activations' through every convolution
        model = model.to(memory_format=torch.channels_last)
    fit(model, dataset.train(rows), recipe, runtime, seed, label=f"pool {spec.name} seed {seed}")
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


def _train_stacked(dataset: ImageDataset, spec: ModelSpec, recipe: TrainRecipe, seeds: list[int], index: Tensor,
                   runtime: Runtime) -> list[dict[str, Tensor]]:
    device = runtime.device
    members = []
    for seed in seeds:
        seed_everything(seed)
        members.append(spec.build().to(device))
    keys = list(members[0].state_dict())
    params, buffers = stack_module_state(members)
    # A weightless copy to call with each member's tensors, in train mode: BatchNorm updates the stacked running
    # statistics and num_batches_tracked in place, each member its own, because they are passed in batched.
    base = copy.deepcopy(members[0]).to("meta").train()
    del members
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]  # what seed_everything gives fit
    optimizer = make_optimizer(list(params.values()), recipe.optimizer, recipe.lr, recipe.momentum,
                               recipe.weight_decay)
    schedule = make_schedule(optimizer, recipe.schedule, recipe.epochs)
    augment = recipe.augment and dataset.augment.active  # fit trains on view.eval() without recipe.augment
    images, labels = dataset.train_images, dataset.train_labels
    k, n = index.shape

    def member_loss(p, b, x, y):
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    pooled_loss = vmap(member_loss)
    finite = torch.ones(k, dtype=torch.bool, device=device)
    with task(f"pool of {k} {spec.name}", recipe.epochs) as advance:
        for epoch in range(recipe.epochs):
            # Each member draws its order, then its augmentation, from its own generator, as DataView.batches.
            order = torch.stack([torch.randperm(n, generator=g) for g in generators])
            rows = index.gather(1, order)
            for start in range(0, n, recipe.batch_size):  # the last batch is partial, as in fit
                batch = rows[:, start:start + recipe.batch_size]
                x = dataset.normalise(images[batch.reshape(-1).to(images.device)])  # elementwise: as per member
                x = x.reshape(k, -1, *x.shape[1:])
                if augment:
                    x = torch.stack([dataset.augment(x[m], generators[m]) for m in range(k)])
                y = labels[batch.to(labels.device)]
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with runtime.autocast():
                    losses = pooled_loss(params, buffers, x, y)
                optimizer.zero_grad(set_to_none=True)
                losses.sum().backward()  # member k's parameters get the gradient of member k's loss alone
                optimizer.step()
                finite &= torch.isfinite(losses.detach())
            if not finite.all():  # checked once an epoch, not every step as fit does, to spare a sync per step
                broken = [seeds[m] for m in range(k) if not finite[m]]
                raise diverged(f"pool member(s) with seed {broken}", f"the loss became NaN or infinite by epoch "
                               f"{epoch + 1}", recipe.lr)
            schedule.step()
            advance()
    stacked = {**params, **buffers}
    return [{key: stacked[key][m].detach().clone() for key in keys} for m in range(k)]
