"""SFR-on's paper variants at its random-forgetting defaults: where the official code and the paper differ
(docs/methods.md), the code is the default and the paper is an option. This runs
each option alone, with every other setting at its default, on the random scenarios of scenarios/transfer.yaml
with something to forget, 3 seeds:

- `normalise=set`: the adaptive weights sum to N_f over the whole forget set (paper) instead of to 1 over the
  minibatch (code);
- `alpha_decay=linear`: the forgetting objective's scale decays linearly (paper) instead of by a cosine (code);
- `strict_mask=true`: the weights outside the saliency mask are frozen exactly, put back after every step (paper),
  instead of masking the gradient only, which leaves momentum and weight decay to move them (code);
- `forget_mode=eval`: the forget batches run with BatchNorm in eval mode, so they leave its running statistics
  alone (as the official GA does), instead of in train mode (SFR-on's code). Only digits' CNN has BatchNorm: on
  LeNet-5 and the MLP this cell must equal the default's, which checks that the option touches nothing else.

Scored as benchmarks/criterion_swap.py scores (benchmarks/references.py): mean per-seed closing fraction to the
noise floor, Avg.Gap / KL. Cells are cached per (scenario, seed, variant) in <out>/<scenario>.json.

    UNLEARNKIT_STORE=<store> python benchmarks/paper_variants.py <out> [scenario ...]   # run (all if none given)
    python benchmarks/paper_variants.py <out> --summarise                               # the table
"""
from __future__ import annotations

from pathlib import Path

from references import cached, cells_main, mean_closing, run_cells

VARIANTS = {"default": {}, "normalise=set": {"normalise": "set"}, "alpha_decay=linear": {"alpha_decay": "linear"},
            "strict_mask=true": {"strict_mask": True}, "forget_mode=eval": {"forget_mode": "eval"}}


def run(out: Path, name: str) -> None:
    run_cells(out, name, lambda seed: [(f"{seed}:{variant}", "sfron", overrides)
                                       for variant, overrides in VARIANTS.items()])


def summarise(out: Path) -> None:
    cells = cached(out)
    print("| SFR-on, random defaults with | " + " | ".join(cells) + " |")
    print("|---|" + "---|" * len(cells))
    for variant in VARIANTS:
        print(f"| {variant} | " + " | ".join(mean_closing(cells[n], variant) for n in cells) + " |")


if __name__ == "__main__":
    cells_main(run, summarise)
