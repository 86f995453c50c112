"""The oracle-free verdict on the two models whose answer is known: the untouched original (doing nothing: not
forgotten) and the oracle retrained without D_f (forgotten, up to the draw of D_f), on every random scenario of
scenarios/transfer.yaml, 3 seeds. Writes <out>/results.md (MNIST scenarios need ../shared/data/mnist).

    UNLEARNKIT_STORE=<store> python benchmarks/verdict_references.py <out> [scenario ...]
"""
from __future__ import annotations

from pathlib import Path

from references import RANDOM, arguments, transfer_scenario

from unlearnkit.artifacts import atomic_write_text
from unlearnkit.bench.runner import original_and_oracle
from unlearnkit.evaluation.oracle_free import verdict
from unlearnkit.runtime import Runtime


def cells(said: dict) -> str:
    after = said["after"]
    return (f"{said['verdict']} | {after['membership_auc']:.3f} (band {said['auc_tolerance']:.3f}) | "
            f"{after['forget_loss']:.4f} / {after['heldout_loss']:.4f} (band {after['loss_band']:.4f})")


def main(out: Path, names) -> None:
    runtime = Runtime.create("cpu", 1)
    lines = ["| scenario | seed | doing nothing | AUC | mean loss, forget / held-out | the oracle | AUC | "
             "mean loss, forget / held-out |", "|---|---|---|---|---|---|---|---|"]
    for name in names:
        scenario, data, spec, recipe = transfer_scenario(name)
        for seed in (0, 1, 2):
            split, original, oracle = original_and_oracle(scenario, (data, spec, recipe), seed, runtime, None)
            nothing = verdict(original.load_model(), original.load_model(), split, data, runtime)
            retrained = verdict(original.load_model(), oracle.load_model(), split, data, runtime)
            lines.append(f"| {name} | {seed} | {cells(nothing)} | {cells(retrained)} |")
            print(lines[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    args = arguments()
    main(Path(args[0]), args[1:] or RANDOM)
