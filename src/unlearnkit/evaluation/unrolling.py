"""The unlearning-error proxy of "Unrolling SGD" (Thudi et al., EuroS&P 2022; code `Unlearning/master_unlearning.py`).

Unrolling t SGD steps from the initial weights w_0 to second order, the error of approximate unlearning (the
distance between a single-gradient unlearned model and the model retrained without the data) is bounded by

    e ≈ (η² t / 2) · ||w_t − w_0||_2 · σ,     σ = sqrt(largest eigenvalue of the loss Hessian at w_t)

(the code computes σ with PyHessian on the current batch, `sigma = sqrt(top_eigenvalues[-1])`). For a recipe with
a learning-rate schedule, η² t generalises to Σ_t η_t² (identical for a constant rate). The proxy applies to a model
trained by plain SGD whose initial weights can be rebuilt (a registered model and its training seed). Smaller is
closer to retraining; the training penalty of the same paper (`TrainRecipe.logit_std_penalty`) lowers it by keeping
the weights near w_0.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..config import TrainRecipe
from ..data.images import DataView
from ..models import trainable
from ..runtime import Runtime
from ..training import sgd_step_sizes


def top_hessian_eigenvalue(model: nn.Module, view: DataView, runtime: Runtime, batch_size: int = 256,
                           iters: int = 20, seed: int = 0) -> float:
    """The largest eigenvalue of the Hessian of the mean cross-entropy on one batch of `view`, by power iteration
    on Hessian-vector products (what PyHessian's `eigenvalues()` returns), model in eval mode."""
    was_training = model.training
    model.eval()
    params = list(trainable(model).values())
    generator = torch.Generator().manual_seed(seed)
    positions = torch.randperm(len(view), generator=generator)[:batch_size]
    x, y = view.eval().batch(positions)
    x, y = x.to(runtime.device), y.to(runtime.device)
    loss = nn.functional.cross_entropy(model(x).float(), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    vector = [torch.randn(p.shape, generator=generator).to(p.device) for p in params]
    eigenvalue = 0.0
    for _ in range(iters):
        norm = math.sqrt(sum(float((v * v).sum()) for v in vector))
        vector = [v / norm for v in vector]
        product = torch.autograd.grad(grads, params, grad_outputs=vector, retain_graph=True)
        eigenvalue = sum(float((h * v).sum()) for h, v in zip(product, vector))
        vector = [h.detach() for h in product]
    model.train(was_training)
    return eigenvalue


def unlearning_error_proxy(trained: nn.Module, initial: nn.Module, recipe: TrainRecipe, n_train: int,
                           view: DataView, runtime: Runtime, seed: int = 0) -> dict:
    """Thudi et al.'s proxy for a model `trained` from `initial` with `recipe` on `n_train` samples (SGD)."""
    steps_per_epoch = math.ceil(n_train / recipe.batch_size)
    rates = sgd_step_sizes(recipe.lr, recipe.epochs, recipe.schedule)
    squared_rates = steps_per_epoch * sum(r * r for r in rates)
    moved = math.sqrt(sum(float(((a.detach().cpu().double() - b.detach().cpu().double()) ** 2).sum())
                          for a, b in zip(trained.parameters(), initial.parameters())))
    eigenvalue = top_hessian_eigenvalue(trained, view, runtime, seed=seed)
    sigma = math.sqrt(max(eigenvalue, 0.0))
    return {"proxy": 0.5 * squared_rates * moved * sigma, "weight_distance": moved, "sigma": sigma,
            "sum_squared_lr": squared_rates, "steps": steps_per_epoch * recipe.epochs}
