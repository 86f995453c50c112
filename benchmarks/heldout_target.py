"""Where the loss rule aims, against where a retrained model sits: on each random scenario and seed, the mean
cross-entropy of held-out data under the original (the rule's target at the start: `criterion=loss` stops SFR-on
once D_f's mean loss reaches the held-out one), against the oracle's own loss on held-out data and on D_f, and the
second oracle's on D_f (a retrained model that never saw D_f either). Then where SFR-on at its defaults ended: its
D_f and held-out losses and its calibration's decision. All on the whole sets, in eval mode, in float64 from the
logits. MNIST needs ../shared/data/mnist.

    UNLEARNKIT_STORE=<store> python benchmarks/heldout_target.py [--seeds 0,1,2] [scenario ...]
"""
from __future__ import annotations

import torch.nn.functional as F
from references import FORGETTABLE, arguments, seeds_arg, trained

from unlearnkit.runtime import Runtime
from unlearnkit.training import predict


def mean_loss(model, view, runtime) -> float:
    logits, labels = predict(model, view, runtime)
    return F.cross_entropy(logits.double(), labels).item()


def row(name: str, seed: int, runtime) -> str:
    t = trained(name, seed, runtime)
    forget, heldout = t.data.train(t.split.forget), t.data.test()
    original, oracle, floor = (c.load_model() for c in (t.original, t.oracle, t.floor))
    target = mean_loss(original, heldout, runtime)
    oracle_heldout, oracle_forget = mean_loss(oracle, heldout, runtime), mean_loss(oracle, forget, runtime)
    floor_forget = mean_loss(floor, forget, runtime)
    ended_forget, ended_heldout = mean_loss(t.sfron.model, forget, runtime), mean_loss(t.sfron.model, heldout, runtime)
    decision = t.sfron.details["calibration"]["decision"].split(":")[0].split(" (")[0]
    return (f"| {name} | {seed} | {target:.4f} | {oracle_heldout:.4f} | {oracle_forget:.4f} | {floor_forget:.4f} | "
            f"{oracle_forget / target:.1f}× | {ended_forget:.4f} / {ended_heldout:.4f} | {decision} |")


if __name__ == "__main__":
    seeds, names = seeds_arg(arguments(0))
    runtime = Runtime.create("cpu", 1)
    print("| scenario | seed | original, held-out (the target) | oracle, held-out | oracle, D_f | second oracle, D_f "
          "| oracle D_f / target | SFR-on's end: D_f / held-out | SFR-on's decision |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names or FORGETTABLE:
        for seed in seeds:
            print(row(name, seed, runtime), flush=True)
