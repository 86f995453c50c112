"""Why SFR-on's temperature λ does nothing on a memorised forget set: at the original, how many forget samples have a
cross-entropy of exactly 0 in fp32, and how large SFR-on's forget gradient is there, against plain ascent's.

SFR-on's weights are w_i ∝ 1 / (l_i^λ + 1e-15) over a batch (unlearning/forgetting.py, as in the official code). A
sample whose loss rounds to 0 gets 1e15, so the weights of a batch with one such sample all fall on those samples.
A loss that rounds to 0 means p_y rounds to 1: their gradient is 0 or nearly. Per scenario and seed, over the
forget set in the recipe's batches (eval mode): the share of samples with l_i == 0, the share of batches with at
least one, and the median gradient norm of the weighted objective Σ w_i l_i at λ 0.5 and λ 1 and of the plain mean
(λ 0), all before the forget step's clip of 7 (MNIST needs ../shared/data/mnist).

    UNLEARNKIT_STORE=<store> python benchmarks/forget_underflow.py [scenario ...]   # default: every random scenario
"""
from __future__ import annotations

import statistics

import torch
import torch.nn.functional as F
from references import FORGETTABLE, SEEDS, arguments, references, transfer_scenario

from unlearnkit.runtime import Runtime
from unlearnkit.unlearning.forgetting import adaptive_weights


def gradient_norm(model, x, y, lambd: float) -> float:
    model.zero_grad(set_to_none=True)
    losses = F.cross_entropy(model(x), y, reduction="none")
    (adaptive_weights(losses, lambd) * losses).sum().backward()
    return torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters() if p.grad is not None)).item()


def measure(name: str, seed: int, runtime) -> str:
    scenario, data, spec, recipe = transfer_scenario(name)
    refs = references(scenario, data, spec, recipe, seed, runtime)
    model = refs.original.load_model().eval()
    view = data.train(refs.split.forget).eval()
    zero, batches_with_zero, norms = 0, 0, {0.0: [], 0.5: [], 1.0: []}
    for positions in torch.arange(len(view)).split(recipe.batch_size):
        x, y = view.batch(positions)
        with torch.no_grad():
            exactly_zero = int((F.cross_entropy(model(x), y, reduction="none") == 0).sum())
        zero += exactly_zero
        batches_with_zero += exactly_zero > 0
        for lambd in norms:
            norms[lambd].append(gradient_norm(model, x, y, lambd))
    batches = len(norms[0.0])
    median = {lambd: statistics.median(values) for lambd, values in norms.items()}
    return (f"| {name} | {seed} | {100 * zero / len(view):.0f}% | {batches_with_zero} of {batches} | "
            f"{median[0.0]:.2e} | {median[0.5]:.2e} | {median[1.0]:.2e} |")


if __name__ == "__main__":
    runtime = Runtime.create("cpu", 1)
    print("| scenario | seed | D_f with loss 0 | batches with one | median gradient norm, λ 0 | λ 0.5 | λ 1 |")
    print("|---|---|---|---|---|---|---|")
    for name in arguments(0) or FORGETTABLE:
        for seed in SEEDS:
            print(measure(name, seed, runtime), flush=True)
