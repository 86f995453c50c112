"""Where the KL to the oracle lives on random forgetting, and why a rule that only sees population statistics
cannot close it everywhere.

For each random scenario of scenarios/transfer.yaml and seed, the per-sample KL(oracle ‖ model) on D_f of doing
nothing (the original), of SFR-on at its defaults and of the second oracle (the noise floor): the share of the
original's KL carried by the tenth of D_f the oracle is least sure of (by its true-class probability), the mean
KL on that tenth and on the rest, and how many of the forget samples the oracle misclassifies each model also
misclassifies (the KL a confident right answer pays where the oracle errs is what the floor avoids by making the
same mistakes). Writes <out>/results.md (MNIST scenarios need ../shared/data/mnist).

    UNLEARNKIT_STORE=<store> python benchmarks/kl_concentration.py <out> [scenario ...]
"""
from __future__ import annotations

from pathlib import Path

import torch
from references import FORGETTABLE, arguments, trained

from unlearnkit.artifacts import atomic_write_text
from unlearnkit.evaluation import kl_per_sample
from unlearnkit.evaluation.outputs import Outputs
from unlearnkit.runtime import Runtime

HARD_SHARE = 0.1


def row(name: str, seed: int, runtime: Runtime) -> str:
    run = trained(name, seed, runtime)
    forget = run.data.train(run.split.forget)
    reference = Outputs.of(run.oracle.load_model(), forget, runtime)
    models = {"nothing": run.original.load_model(), "sfron": run.sfron.model, "floor": run.floor.load_model()}
    outputs = {who: Outputs.of(model, forget, runtime) for who, model in models.items()}
    kl = {who: kl_per_sample(reference.probabilities, out.probabilities) for who, out in outputs.items()}
    confidence = reference.probabilities.gather(1, reference.labels[:, None])[:, 0]
    hard = confidence.argsort()[: max(1, round(HARD_SHARE * len(confidence)))]
    rest = torch.ones(len(confidence), dtype=torch.bool)
    rest[hard] = False
    errors = reference.predictions != reference.labels
    shared = {who: int((errors & (out.predictions != out.labels)).sum()) for who, out in outputs.items()}
    share = (kl["nothing"][hard].sum() / kl["nothing"].sum()).item()
    cells = [f"{kl[w].mean().item():.4f}" for w in models] + [f"{share:.0%}"]
    cells += [f"{kl[w][hard].mean().item():.3f} / {kl[w][rest].mean().item():.4f}" for w in models]
    cells += [f"{int(errors.sum())}", " / ".join(str(shared[w]) for w in models)]
    return f"| {name} | {seed} | " + " | ".join(cells) + " |"


def main(out: Path, names) -> None:
    runtime = Runtime.create("cpu", 1)
    header = ("| scenario | seed | KL nothing | KL SFR-on | KL floor | hardest tenth's share of doing nothing's KL | "
              "KL on the hardest tenth / the rest: nothing | SFR-on | floor | forget samples the oracle gets wrong | "
              "of them also wrong: nothing / SFR-on / floor |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for name in names:
        for seed in (0, 1, 2):
            lines.append(row(name, seed, runtime))
            print(lines[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    args = arguments()
    main(Path(args[0]), args[1:] or FORGETTABLE)
