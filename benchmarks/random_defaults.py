"""How SFR-on's random-forgetting defaults were chosen: leave-one-dataset-out over the transfer scenarios.

Every candidate (the ascent's temperature λ, the step size relative to the recipe's, whether the calibration may
grow it) runs at its defaults otherwise on every random scenario of scenarios/transfer.yaml, 3 seeds, and is scored
by its closing fractions to the noise floor (doing nothing → a second oracle) in Avg.Gap and KL as bench.transfer
scores them: per scenario the smaller of the two (each capped at 1.2), averaged over the scenarios with something
to forget. For each dataset left out, the candidate with the best score on the *other* datasets is picked and
scored on the left-out one. Runs are cached per (scenario, seed, candidate) in <out>/<scenario>.json, so two
processes can take different scenarios and a later call only prints (MNIST needs ../shared/data/mnist).

    UNLEARNKIT_STORE=<store> python benchmarks/random_defaults.py <out> [scenario ...] [--seeds 0,1,2]   # run
    python benchmarks/random_defaults.py <out> [<out> ...] --summarise [--median]   # the table and picks, pooled
    python benchmarks/random_defaults.py <out> [<out> ...] --paired     # the defaults against each, draw by draw
"""
from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

from references import RANDOM, arguments, nanmean, run_cells, seeds_arg
from references import score as transfer_score

from unlearnkit.unlearning.methods import METHODS

# The loss rule pushed to the target itself (stop_z 0: within a standard error of it, a check can land in the
# transient a forget step leaves before the remain steps repair it; measured: MNIST 8k seed 0 stopped at step 20 and
# closed -0.51 / -1.65, against 0.61 / 0.71 at the target), with its overshoot guard at 2 standard errors; the AUC
# rule, every λ and every fixed step size lost to it in the previous round's search (docs/defaults.md). This round
# adds the step-size growth of the calibration (max_growth 32: from the start's step size, doubled while a check
# closes less than its share of the distance): fixed step sizes against a growing one.
CANDIDATES = [{"lambd": lambd, "lr_scale": lr, "criterion": "loss", "stop_z": 0.0, "guard_z": 2.0,
               "max_growth": growth}
              for lambd, lr, growth in itertools.product((0.5, 1.0), (1.0, 3.0, 10.0), (1.0, 32.0))]


def key(candidate: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in candidate.items())


def run(out: Path, name: str, seeds: tuple[int, ...]) -> None:
    run_cells(out, name, lambda seed: [(f"{seed}:{key(c)}", "sfron", c) for c in CANDIDATES], seeds)


def nanmedian(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def load(outs: list[Path]) -> tuple[dict[str, dict], list[str]]:
    """Every cell of the folders, per scenario, keyed by draw ("<folder index>.<seed>") and candidate; the draws."""
    cells: dict[str, dict] = {}
    for i, out in enumerate(outs):
        for path in sorted(out.glob("*.json")):
            for cell, value in json.loads(path.read_text()).items():
                seed, candidate = cell.split(":", 1)
                cells.setdefault(path.stem, {})[f"{i}.{seed}:{candidate}"] = value
    return cells, sorted({cell.split(":")[0] for row in cells.values() for cell in row})


def paired(outs: list[Path]) -> None:
    """SFR-on's defaults against every other candidate, draw by draw: on one draw both share the original, oracle
    and floor, so the comparison is free of the draw-to-draw noise of the fractions themselves. Per scenario, the
    draws on which the default closes more of the Avg.Gap / of the KL distance, of the draws with a fraction."""
    cells, draws = load(outs)
    ours = METHODS.get("sfron").parameters("random:0.1")
    default = next(key(c) for c in CANDIDATES if all(ours[k] == v for k, v in c.items()))
    print(f"the draws on which the default ({default}) closes more than the candidate (Avg.Gap / KL; a tie "
          "counts for neither), of the draws with a fraction:\n")
    print("| candidate | " + " | ".join(cells) + " |")
    print("|---|" + "---|" * len(cells))
    for c in CANDIDATES:
        if key(c) == default:
            continue
        counts = []
        for row in cells.values():
            pairs = [(row[f"{d}:{default}"]["closing"], row[f"{d}:{key(c)}"]["closing"]) for d in draws
                     if f"{d}:{default}" in row]
            counts.append(" / ".join(
                f"{sum(a[i] > b[i] + 1e-9 for a, b in pairs)} of {sum(not math.isnan(a[i]) for a, _ in pairs)}"
                for i in range(2)))
        print(f"| {key(c)} | " + " | ".join(counts) + " |")


def summarise(outs: list[Path], over_draws=nanmean) -> None:
    """The table and the picks over every draw the folders hold: a draw is a seed in one folder. Folders made on
    machines whose float rounding differs hold different originals for the same seed, so they pool as more draws.
    `over_draws` averages a candidate's fractions over the draws (the mean, or the median: a fraction's
    denominator is doing nothing's distance to the floor, and a draw where that is small puts one seed at ±4)."""
    cells, seeds = load(outs)
    # per scenario and candidate: mean closing over draws of Avg.Gap and of KL
    table = {name: {key(c): [over_draws(cells[name][f"{s}:{key(c)}"]["closing"][i] for s in seeds
                                   if f"{s}:{key(c)}" in cells[name]) for i in range(2)]
                    for c in CANDIDATES} for name in cells}
    worst = {name: {k: min((row[f"{s}:{k}"]["ta_vs_oracle"] for s in seeds if f"{s}:{k}" in row),
                           default=math.nan) for k in table[name]} for name, row in cells.items()}
    dataset = {name: name.split("-")[0] for name in table}
    print("| candidate | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for c in CANDIDATES:
        k = key(c)
        print(f"| {k} | " + " | ".join(f"{a:.2f} / {b:.2f}" for a, b in (table[n][k] for n in table)) + " |")

    def score(k: str, names) -> float:  # as bench.transfer: the mean over scenarios of the smaller fraction, capped
        return nanmean(transfer_score(table[n][k]) for n in names)

    everywhere = max((key(c) for c in CANDIDATES if not any(worst[n][key(c)] < -5 for n in table)),
                     key=lambda k: score(k, list(table)))
    print(f"\nbest on all datasets: {everywhere} (score {score(everywhere, list(table)):.2f})")
    print("\nleave one dataset out:")
    for left in sorted(set(dataset.values())):
        others = [n for n in table if dataset[n] != left]
        safe = [key(c) for c in CANDIDATES if not any(worst[n][key(c)] < -5 for n in others)]  # no collapse
        pick = max(safe, key=lambda k: score(k, others))
        scored = [f"{n} {table[n][pick][0]:.2f} / {table[n][pick][1]:.2f}" for n in table if dataset[n] == left]
        print(f"- left out {left}: picked {pick} (score {score(pick, others):.2f} on the others); on {left}: "
              + ", ".join(scored))


if __name__ == "__main__":
    seeds, args = seeds_arg(arguments())
    if "--paired" in args:
        paired([Path(a) for a in args if not a.startswith("--")])
    elif "--summarise" in args:
        summarise([Path(a) for a in args if not a.startswith("--")], nanmedian if "--median" in args else nanmean)
    else:
        out = Path(args[0])
        out.mkdir(parents=True, exist_ok=True)
        for name in args[1:] or RANDOM:
            run(out, name, seeds)
