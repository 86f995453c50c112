"""Does the held-out set the calibration compares D_f with explain "nothing to forget" on MNIST 2k, random 10%?

SFR-on at its defaults against the test split (the default) and against 2,000 MNIST *training* images outside the
2k subset (the training distribution, never seen by the model); per seed, the calibration's decision and the
closing fractions to the noise floor. Needs MNIST at ../shared/data/mnist (scenarios/transfer.yaml).

    UNLEARNKIT_STORE=<store> python benchmarks/heldout_distribution.py [scenario] [method]
"""
from __future__ import annotations

import torch
from references import arguments, nanmean, references, transfer_scenario
from references import closing as closing_fractions

from unlearnkit.data.images import ImageDataset
from unlearnkit.data.readers import read_idx_folder
from unlearnkit.runtime import Runtime
from unlearnkit.unlearning.engine import unlearn


def training_distribution(scenario, data: ImageDataset, size: int = 2000) -> ImageDataset:
    """MNIST training images outside the scenario's subset, normalised as the subset is (as its test part)."""
    images, labels = read_idx_folder(scenario.root, "mnist")["train"]
    size_of_subset = scenario.data_options["train_size"]  # drawn as data.datasets._subset draws it (seed 0)
    subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:size_of_subset]
    outside = torch.ones(len(labels), dtype=torch.bool)
    outside[subset] = False
    pool = torch.nonzero(outside).flatten()
    pool = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(5))[:size]]
    return ImageDataset("mnist-outside", images[:1], labels[:1], images[pool], labels[pool], data.classes, data.mean,
                        data.std)


def main(name: str, method: str) -> None:
    runtime = Runtime.create("cpu", 1)
    scenario, data, spec, recipe = transfer_scenario(name)
    outside = training_distribution(scenario, data)
    closing: dict[str, list] = {"test split": [], "training distribution": []}
    for seed in (0, 1, 2):
        refs = references(scenario, data, spec, recipe, seed, runtime)
        for kind, heldout in (("test split", None), ("training distribution", outside.test())):
            result = unlearn(refs.original.load_model(), refs.split, method, data=data, recipe=recipe,
                             runtime=runtime, seed=seed, heldout=heldout)
            scored = refs.against(result.model, result.record())
            fractions = closing_fractions(refs, scored)
            closing[kind].append(fractions)
            print(f"seed {seed}, {kind}: {result.details['calibration']['decision']} | closes "
                  f"{fractions[0]:.2f} / {fractions[1]:.2f}, TA {scored['test_acc']:.2f} "
                  f"(original {refs.nothing['test_acc']:.2f})", flush=True)
    for kind, rows in closing.items():
        print(f"{kind}: mean closing Avg.Gap {nanmean(r[0] for r in rows):.2f}, KL {nanmean(r[1] for r in rows):.2f}")


if __name__ == "__main__":
    given = arguments(0)[:2]
    main(*(given + ["mnist2k-random10", "sfron"][len(given):]))
