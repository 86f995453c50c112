"""What the benchmark scripts compare a method with, per scenario and seed: the original, its oracle (retrained
without the forget set), a second oracle with another seed (the noise floor) and doing nothing, each scored against
the oracle by `evaluate`; the closing fraction of a figure between doing nothing and the floor; and the transfer
scenarios the scripts run on."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from unlearnkit.bench.runner import load_scenario, original_and_oracle
from unlearnkit.bench.scenarios import load_bench_config, select_scenarios
from unlearnkit.bench.transfer import FLOOR_OFFSET
from unlearnkit.bench.verdict import CLOSED, closing_fraction
from unlearnkit.evaluation.protocol import evaluate
from unlearnkit.pipeline import train

TRANSFER = Path(__file__).resolve().parents[1] / "scenarios" / "transfer.yaml"
RANDOM = ("digits-random10", "digits-random50", "mnist-random10", "mnist8k-random10", "mnist2k-random10",
          "breast_cancer-random10")  # its random-forgetting scenarios


def transfer_scenario(name: str):
    """A scenario of scenarios/transfer.yaml by name: (scenario, dataset, model spec, training recipe)."""
    scenario = select_scenarios(load_bench_config(TRANSFER), name).scenarios[0]
    return (scenario, *load_scenario(scenario))


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
