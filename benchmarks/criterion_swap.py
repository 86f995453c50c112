"""Which stopping rule each calibrated method uses for random forgetting: every method at its defaults, and with
the other rule (the loss rule pushed to the held-out mean, `criterion=loss, stop_z=0`, or the membership-AUC rule,
`criterion=auc, stop_z=1`), on the random scenarios of scenarios/transfer.yaml with something to forget, 3 seeds.

Scored by the closing fractions to the noise floor in Avg.Gap and KL (benchmarks/references.py), mean per seed, and
the worst test accuracy under the oracle's. Cells are cached per (scenario, seed, method, rule) in
<out>/<scenario>.json, so two processes can take different scenarios and a later call only prints.

    UNLEARNKIT_STORE=<store> python benchmarks/criterion_swap.py <out> [scenario ...]   # run (all if none given)
    python benchmarks/criterion_swap.py <out> --summarise                               # the table
"""
from __future__ import annotations

from pathlib import Path

from references import cached, cells_main, mean_closing, run_cells

from unlearnkit.unlearning.methods import AUC_RULE, LOSS_RULE, METHODS

CALIBRATED = [name for name, method in METHODS.items() if "criterion" in method.parameters("random:0.1")]


def rules(method: str) -> dict[str, dict]:
    """The method's own rule (no overrides) and the other one."""
    own = METHODS.get(method).parameters("random:0.1")["criterion"]
    return {"default": {}, "swapped": AUC_RULE if own == "loss" else LOSS_RULE}


def run(out: Path, name: str) -> None:
    run_cells(out, name, lambda seed: [(f"{seed}:{m}:{rule}", m, overrides) for m in CALIBRATED
                                       for rule, overrides in rules(m).items()])


def summarise(out: Path) -> None:
    cells = cached(out)
    print("| method (its rule) | " + " | ".join(cells) + " |")
    print("|---|" + "---|" * len(cells))
    for method in CALIBRATED:
        own = METHODS.get(method).parameters("random:0.1")["criterion"]
        print(f"| {method} ({own}) | "
              + " | ".join(f"{mean_closing(cells[n], f'{method}:default')} → "
                           f"{mean_closing(cells[n], f'{method}:swapped')}" for n in cells) + " |")


if __name__ == "__main__":
    cells_main(run, summarise)
