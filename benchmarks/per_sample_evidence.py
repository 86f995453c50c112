"""Which forget samples the oracle is unsure of: is that knowable without retraining, and from what?

For each random scenario of scenarios/transfer.yaml and seed, each candidate gives a distribution over the classes
for every forget sample, and is scored against the oracle's on D_f: the Spearman correlation of the true-class
probabilities (does it rank the samples as the oracle does?), the ROC AUC of one minus that probability for the
samples the oracle misclassifies (does it find them?), the mean KL(oracle ‖ candidate) (does it also get the scale
right?), and the closing fraction of that KL, (original − candidate) / (original − floor), as a model with those
outputs on D_f would score it. The candidates a user has: the original itself; the original with one softmax
temperature fitted on the held-out (test) split, the split the calibration compares with; a k-nearest-neighbour
classifier on the inputs of D_r; a logistic regression on the original's penultimate features of D_r, its
temperature fitted on the held-out split. For reference: SFR-on at its defaults, and the second oracle (the noise
floor), which a user does not have. Writes <out>/results.md (MNIST scenarios need ../shared/data/mnist).

    UNLEARNKIT_STORE=<store> python benchmarks/per_sample_evidence.py <out> [scenario ...]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from references import FORGETTABLE, arguments, nanmean, seeds_arg, trained
from scipy.optimize import minimize_scalar
from scipy.stats import spearmanr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from unlearnkit.artifacts import atomic_write_text
from unlearnkit.bench.verdict import closing_fraction
from unlearnkit.evaluation import kl_per_sample
from unlearnkit.evaluation.outputs import Outputs
from unlearnkit.runtime import Runtime

NEIGHBOURS = 10
SMOOTHING = 0.02  # mass spread evenly over the classes, so that a neighbour vote of 0 has a finite KL
CANDIDATES = ("original", "original, tempered", "kNN on inputs", "feature probe, tempered", "SFR-on", "floor")


def fitted_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The softmax temperature that minimises the negative log-likelihood of `labels` (searched in log space)."""
    def nll(log_t):
        return torch.nn.functional.cross_entropy(logits / np.exp(log_t), labels).item()

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(1e-3), np.log(1e3)), method="bounded").x))


def penultimate(model, view, runtime) -> tuple[torch.Tensor, Outputs]:
    """The input of the model's classifier layer `fc` for every sample of `view`, and the model's outputs."""
    captured = []
    handle = model.fc.register_forward_hook(lambda layer, inputs, output: captured.append(inputs[0].float().cpu()))
    outputs = Outputs.of(model, view, runtime)
    handle.remove()
    return torch.cat(captured), outputs


def flat_inputs(view) -> np.ndarray:
    return torch.cat([x.flatten(1) for x, _ in view.eval().batches(1024)]).numpy()


def over_all_classes(values: np.ndarray, classes: np.ndarray, k: int, fill: float = 0.0) -> torch.Tensor:
    """An sklearn classifier's per-class values (over the classes it saw) as (N, k), `fill` for the others."""
    full = np.full((len(values), k), fill)
    full[:, classes] = values
    return torch.as_tensor(full)


def candidates(run, runtime) -> tuple[dict[str, torch.Tensor], tuple]:
    """Each candidate's class probabilities on D_f, and the two fitted temperatures (original, probe)."""
    forget, remain, heldout = run.data.train(run.split.forget), run.data.train(run.split.remain), run.data.test()
    model = run.original.load_model()
    k = run.data.num_classes
    (f_remain, _), (f_forget, own), (f_held, held) = (penultimate(model, v, runtime) for v in (remain, forget, heldout))
    t_own = fitted_temperature(held.logits.double(), held.labels)
    knn = KNeighborsClassifier(NEIGHBOURS).fit(flat_inputs(remain), remain.labels.numpy())
    voted = over_all_classes(knn.predict_proba(flat_inputs(forget)), knn.classes_, k)
    probe = LogisticRegression(max_iter=2000).fit(f_remain.numpy(), remain.labels.numpy())
    def log_probabilities(f):  # a probability that rounds to 0 kept finite, so that the held-out NLL stays finite
        logs = np.log(np.maximum(probe.predict_proba(f.numpy()), np.finfo(float).tiny))
        return over_all_classes(logs, probe.classes_, k, -np.inf)

    probe_logits = {"forget": log_probabilities(f_forget), "held": log_probabilities(f_held)}
    t_probe = fitted_temperature(probe_logits["held"], held.labels)
    return {"original": own.probabilities,
            "original, tempered": torch.softmax(own.logits.double() / t_own, 1),
            "kNN on inputs": (1 - SMOOTHING) * voted + SMOOTHING / k,
            "feature probe, tempered": torch.softmax(probe_logits["forget"] / t_probe, 1),
            "SFR-on": Outputs.of(run.sfron.model, forget, runtime).probabilities,
            "floor": Outputs.of(run.floor.load_model(), forget, runtime).probabilities}, (t_own, t_probe)


def scores(name: str, seed: int, runtime: Runtime) -> tuple[dict[str, tuple[float, float, float]], tuple, int]:
    run = trained(name, seed, runtime)
    reference = Outputs.of(run.oracle.load_model(), run.data.train(run.split.forget), runtime)
    rows = torch.arange(len(reference))
    truth = reference.probabilities[rows, reference.labels].numpy()
    errors = (reference.predictions != reference.labels).numpy()
    given, temperatures = candidates(run, runtime)
    out = {}
    for who, probabilities in given.items():
        p_true = probabilities[rows, reference.labels].numpy()
        # a constant ranking (every sample at probability 1) has no correlation; one class of errors, no AUC
        rank = spearmanr(p_true, truth).statistic if np.ptp(p_true) > 0 else np.nan
        found = roc_auc_score(errors, -p_true) if 0 < errors.sum() < len(errors) else np.nan
        out[who] = (rank, found, kl_per_sample(reference.probabilities, probabilities.double()).mean().item())
    return out, temperatures, int(errors.sum())


def cell(value: float, digits: int) -> str:
    return "—" if np.isnan(value) else f"{value:.{digits}f}"


def main(out: Path, names, seeds) -> None:
    runtime = Runtime.create("cpu", 1)
    per_seed = ["| scenario | seed | oracle's forget errors | temperature: original / probe | candidate | Spearman "
                "| AUC for the oracle's errors | KL(oracle ‖ candidate) |", "|---|---|---|---|---|---|---|---|"]
    means = ["| scenario | candidate | Spearman | AUC for the oracle's errors | KL(oracle ‖ candidate) | closes KL |",
             "|---|---|---|---|---|---|"]
    for name in names:
        by_seed = []
        for seed in seeds:
            got, (t_own, t_probe), errors = scores(name, seed, runtime)
            by_seed.append(got)
            for who, (rank, found, kl) in got.items():
                per_seed.append(f"| {name} | {seed} | {errors} | {t_own:.3g} / {t_probe:.3g} | {who} | "
                                f"{cell(rank, 3)} | {cell(found, 3)} | {kl:.4f} |")
                print(per_seed[-1], flush=True)
        for who in CANDIDATES:
            figures = [nanmean([s[who][i] for s in by_seed]) for i in range(3)]
            closes = nanmean([closing_fraction(s["original"][2], s["floor"][2], s[who][2]) for s in by_seed])
            means.append(f"| {name} | {who} | {cell(figures[0], 3)} | {cell(figures[1], 3)} | {figures[2]:.4f} | "
                         f"{cell(closes, 2)} |")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", "## Means over the seeds\n\n" + "\n".join(means)
                      + "\n\n## Per seed\n\n" + "\n".join(per_seed) + "\n")


if __name__ == "__main__":
    chosen, rest = seeds_arg(arguments())
    main(Path(rest[0]), rest[1:] or FORGETTABLE, chosen)
