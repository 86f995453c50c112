"""What the benchmark scripts compare a method with, per scenario and seed: the original, its oracle (retrained
without the forget set), a second oracle with another seed (the noise floor) and doing nothing, each scored against
the oracle by `evaluate`; the closing fraction of a figure between doing nothing and the floor; and the transfer
scenarios the scripts run on."""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from unlearnkit.bench.runner import load_scenario, original_and_oracle
from unlearnkit.bench.scenarios import load_bench_config, select_scenarios
from unlearnkit.bench.transfer import CAP, FLOOR_OFFSET
from unlearnkit.bench.verdict import CLOSED, closing_fraction
from unlearnkit.evaluation.protocol import evaluate
from unlearnkit.pipeline import train

TRANSFER = Path(__file__).resolve().parents[1] / "scenarios" / "transfer.yaml"
RANDOM = ("digits-random10", "digits-random50", "mnist-random10", "mnist8k-random10", "mnist2k-random10",
          "breast_cancer-random10")  # its random-forgetting scenarios
FORGETTABLE = tuple(name for name in RANDOM if name != "mnist-random10")  # full MNIST at 10%: nothing to forget
SEEDS = (0, 1, 2)  # the seeds the scripts run unless told otherwise


def arguments(needed: int = 1) -> list[str]:
    """The running script's command-line arguments. With -h or --help, or fewer than `needed`, its docstring (which
    says how to call it) is printed instead and the script ends: a flag is never taken for an output folder."""
    args = sys.argv[1:]
    usage = (sys.modules["__main__"].__doc__ or "").strip()
    if {"-h", "--help"} & set(args):
        print(usage)
        raise SystemExit(0)
    if len(args) < needed:
        raise SystemExit(usage)
    return args


def seeds_arg(args: list[str]) -> tuple[tuple[int, ...], list[str]]:
    """`--seeds 0,1,2` taken out of a script's arguments: (the seeds, SEEDS if not given; the other arguments)."""
    if "--seeds" not in args:
        return SEEDS, args
    at = args.index("--seeds")
    return tuple(int(s) for s in args[at + 1].split(",")), args[:at] + args[at + 2:]


def transfer_scenario(name: str):
    """A scenario of scenarios/transfer.yaml by name: (scenario, dataset, model spec, training recipe)."""
    scenario = select_scenarios(load_bench_config(TRANSFER), name).scenarios[0]
    return (scenario, *load_scenario(scenario))


@dataclass
class Trained:
    """One transfer scenario and seed, as models: the original, its oracle, the second oracle (the noise floor)
    and SFR-on at its defaults, with the dataset and split they were made on."""
    data: object
    split: object
    original: object  # checkpoints: .load_model() gives a fresh copy
    oracle: object
    floor: object
    sfron: object  # the unlearning result: .model


def trained(name: str, seed: int, runtime) -> Trained:
    from unlearnkit.unlearning.engine import unlearn

    scenario, data, spec, recipe = transfer_scenario(name)
    split, original, oracle = original_and_oracle(scenario, (data, spec, recipe), seed, runtime, None)
    floor = train(data, spec, recipe, seed + FLOOR_OFFSET, split, runtime=runtime)
    result = unlearn(original.load_model(), split, "sfron", data=data, recipe=recipe, runtime=runtime, seed=seed)
    return Trained(data, split, original, oracle, floor, result)


@dataclass
class References:
    split: object
    original: object  # the original's checkpoint: .load_model() gives a fresh copy to unlearn
    against: Callable[[object, dict], dict]  # (model, its run record) -> evaluate's figures against the oracle
    nothing: dict
    floor: dict


def references(scenario, data, spec, recipe, seed: int, runtime) -> References:
    split, original, oracle = original_and_oracle(scenario, (data, spec, recipe), seed, runtime, None)
    second = train(data, spec, recipe, seed + FLOOR_OFFSET, split, runtime=runtime)

    def against(model, record):
        return evaluate(model, oracle.load_model(), split, data, runtime, original.load_model(), record,
                        oracle.record, "mia_entropy", ("mia_entropy",), seed=seed)

    return References(split, original, against, against(original.load_model(), {"wall_time_s": 0, "sample_passes": 0}),
                      against(second.load_model(), second.record))


def closing(refs: References, scored: dict) -> list[float]:
    """(doing nothing − method) / (doing nothing − floor) per figure; NaN where doing nothing is within the floor."""
    return [closing_fraction(refs.nothing[k], refs.floor[k], scored[k]) for k in CLOSED]


def nanmean(values) -> float:
    """The mean of the values that are not NaN (NaN if none is): a seed with nothing to forget has no fraction."""
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def cached(out: Path) -> dict[str, dict]:
    """run_cells' cache in <out>: the cells of every scenario of FORGETTABLE that has a file there."""
    return {name: json.loads((out / f"{name}.json").read_text()) for name in FORGETTABLE
            if (out / f"{name}.json").exists()}


def score(closing: list[float]) -> float:
    """bench.transfer's score of a pair of closing fractions: the smaller, each capped at CAP (NaN where neither
    has one)."""
    return min((min(v, CAP) for v in closing if not math.isnan(v)), default=math.nan)


def mean_fractions(cells: dict, candidate: str, seeds: tuple[int, ...] = SEEDS) -> list[float]:
    """One candidate's mean per-seed closing fractions (Avg.Gap, KL) over the seeds of `seeds` that its cached
    cells on one scenario ("<seed>:<candidate>") have."""
    rows = [cells[f"{seed}:{candidate}"]["closing"] for seed in seeds if f"{seed}:{candidate}" in cells]
    return [nanmean(row[i] for row in rows) for i in range(2)]


def mean_closing(cells: dict, candidate: str, seeds: tuple[int, ...] = SEEDS) -> str:
    """One candidate's cached cells on one scenario ("<seed>:<candidate>", the seeds of `seeds` that it has) as
    "Avg.Gap / KL", the mean per-seed closing, with "(TA −x)" where the worst seed's test accuracy is more than 3
    points under the oracle's."""
    rows = [cells[f"{seed}:{candidate}"] for seed in seeds if f"{seed}:{candidate}" in cells]
    if any("diverged" in row for row in rows):
        return "diverged"
    avg_gap, kl = mean_fractions(cells, candidate, seeds)
    worst = min(row["ta_vs_oracle"] for row in rows)
    return f"{avg_gap:.2f} / {kl:.2f}" + (f" (TA {worst:+.1f})" if worst < -3 else "")


def cells_main(run: Callable[[Path, str], None], summarise: Callable[[Path], None]) -> None:
    """The command line of a script built on run_cells: `<out> [scenario ...]` runs the scenarios (every one of
    FORGETTABLE if none is named); `<out> --summarise` prints the table of what is cached."""
    args = arguments()
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    if args[1:] == ["--summarise"]:
        summarise(out)
    else:
        for name in args[1:] or FORGETTABLE:
            run(out, name)


def run_cells(out: Path, name: str, cells: Callable[[int], list[tuple[str, str, dict]]],
              seeds: tuple[int, ...] = SEEDS) -> None:
    """Run and cache, in <out>/<name>.json, the cells `cells(seed)` names for each seed on transfer scenario
    `name`: each (cell key, method, overrides) is `unlearn` at its defaults with the overrides, scored against the
    seed's references. A run that diverges (the engine rolls it back) is cached as {"diverged": why}. Cached cells
    are skipped (a seed's references are built only if one is missing), so two processes can take different
    scenarios and a killed run resumes."""
    from unlearnkit.artifacts import atomic_write_text
    from unlearnkit.errors import DivergenceError
    from unlearnkit.runtime import Runtime
    from unlearnkit.unlearning.engine import unlearn

    runtime = Runtime.create("cpu", 1)
    scenario, data, spec, recipe = transfer_scenario(name)
    path = out / f"{name}.json"
    done = json.loads(path.read_text()) if path.exists() else {}
    for seed in seeds:
        missing = [cell for cell in cells(seed) if cell[0] not in done]
        refs = references(scenario, data, spec, recipe, seed, runtime) if missing else None
        for cell, method, overrides in missing:
            try:
                result = unlearn(refs.original.load_model(), refs.split, method, data=data, recipe=recipe,
                                 runtime=runtime, seed=seed, **overrides)
            except DivergenceError as exc:
                done[cell] = {"diverged": str(exc)}
            else:
                scored = refs.against(result.model, result.record())
                done[cell] = {"closing": closing(refs, scored), "cost": scored["cost_ratio"],
                              "ta_vs_oracle": scored["test_acc"] - scored["oracle"]["test_acc"],
                              "decision": result.details["calibration"]["decision"]}
            atomic_write_text(path, json.dumps(done, indent=1))
            print(f"{name} {cell}: {done[cell]}", flush=True)
