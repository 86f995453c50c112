"""A reproduction regression: a few cells of the quick digits bench, recomputed from scratch and compared with
values stored in the repository, so that an accidental change to a method's numbers fails CI.

With a fixed seed the cells are deterministic (the weights are byte-identical from run to run on one machine).
Refresh the stored values when a change is intended:

    python -m unlearnkit.bench.regression tests/expected/quick_bench.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..artifacts import atomic_write_text
from ..evaluation.protocol import evaluate
from ..runtime import Runtime
from ..unlearning.engine import unlearn
from .runner import load_scenario, original_and_oracle
from .scenarios import load_bench_config

# (scenario of the embedded bench, method): a gradient loop with a mask, a plain loop, an ascent, a one-shot edit.
CELLS = (("digits-random10", "sfron"), ("digits-random10", "ft"), ("digits-class3", "sfron"),
         ("digits-class3", "ga"), ("digits-class3", "ssd"))
SEED = 0
KEYS = ("forget_acc", "remain_acc", "test_acc", "kl_forget", "verification_error")


def compute(store: Path) -> dict[str, dict[str, float]]:
    """The cells' figures, recomputed in `store` on one CPU thread."""
    runtime = Runtime.create("cpu", 1)
    scenarios = {s.name: s for s in load_bench_config().scenarios}
    values: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(scenario for scenario, _ in CELLS):
        scenario = scenarios[name]
        loaded = load_scenario(scenario)
        split, original, oracle = original_and_oracle(scenario, loaded, SEED, runtime, store)
        for method in (m for s, m in CELLS if s == name):
            result = unlearn(original.load_model(), split, method, data=loaded[0], recipe=loaded[2],
                             runtime=runtime, seed=SEED, store=store, **scenario.hyperparameters.get(method, {}))
            metrics = evaluate(result.model, oracle.load_model(), split, loaded[0], runtime, attacks=(), seed=SEED)
            values[f"{name}/{method}"] = {k: metrics[k] for k in KEYS}
    return values


def main(argv: list[str] | None = None) -> None:
    import tempfile

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m unlearnkit.bench.regression EXPECTED.json")
    with tempfile.TemporaryDirectory() as store:
        values = compute(Path(store))
    atomic_write_text(Path(argv[0]), json.dumps(values, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(values)} cells to {argv[0]}")


if __name__ == "__main__":
    main()
