"""The Python API's conveniences for a user's own data and models: evaluation against an oracle from checkpoints,
modules or unlearning results; the noise floor; the oracle-free verdict; the bench on dataset objects."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from .artifacts import Checkpoint
from .config import TrainRecipe
from .data.images import ImageDataset
from .data.splits import ForgetSplit, check_split
from .errors import ConfigError
from .models import ModelSpec
from .runtime import Runtime, check_seed

FLOOR_OFFSET = 1000  # the second oracle's seed: the oracle's + this (as the bench's RT′ row)


def _model_and_record(thing, what: str) -> tuple[nn.Module, dict | None]:
    """An nn.Module and the record of how it was made, from a module, a Checkpoint or an UnlearnResult; its
    weights finite (a broken model has no metrics to speak of)."""
    from .unlearning.engine import UnlearnResult, non_finite

    if isinstance(thing, UnlearnResult):
        found = thing.model, thing.record()
    elif isinstance(thing, Checkpoint):
        found = thing.load_model(), thing.record.get("unlearning") or thing.record
    elif isinstance(thing, nn.Module):
        found = thing, None
    else:
        raise ConfigError(f"{what} must be an nn.Module, a Checkpoint (uk.train) or an UnlearnResult (uk.unlearn), "
                          f"got {type(thing).__name__}")
    broken = non_finite(found[0])
    if broken:
        raise ConfigError(f"the {what} has NaN or infinite weights in {broken[:3]}")
    return found


def _made_for(thing, split: ForgetSplit, what: str, retrained: bool = False) -> None:
    """A stored checkpoint or an unlearning result must belong to this very forget split: an oracle (or floor) of
    another split would score every method against the wrong answer without a word, and a result judged on
    another split reads as damage. An oracle must have a split at all (an original has none); a module carries
    no split to check."""
    from .unlearning.engine import UnlearnResult

    if isinstance(thing, UnlearnResult) and thing.split is not None:
        if thing.split.fingerprint != split.fingerprint:
            raise ConfigError(f"the {what} forgot split {thing.split.spec} seed {thing.split.seed} "
                              f"({thing.split.fingerprint}), not the split given, {split.spec} seed {split.seed} "
                              f"({split.fingerprint})")
        return
    if not isinstance(thing, Checkpoint):
        return
    own = thing.split
    if own is None:
        if retrained:
            raise ConfigError(f"the {what} '{thing.path}' has no forget split beside its weights: it was trained "
                              "on every sample, not retrained without D_f (uk.train(..., split=split))")
        return
    if own.fingerprint != split.fingerprint:
        raise ConfigError(f"the {what} '{thing.path}' was made for forget split {own.spec} seed {own.seed} "
                          f"({own.fingerprint}), not the split given, {split.spec} seed {split.seed} "
                          f"({split.fingerprint})")


def noise_floor(data: ImageDataset, model: str | ModelSpec | nn.Module, split: ForgetSplit,
                recipe: TrainRecipe | dict | None = None, seed: int = 0, runtime: Runtime | None = None,
                store: Path | None = None) -> Checkpoint:
    """A second oracle: the same recipe on the remain set with another seed (`seed` + 1000), the best any
    unlearning method can hope to match. `model` is the spec the oracle was built from, or a module whose
    architecture is re-initialised under the new seed, or a registered model's name."""
    from .pipeline import as_model, train
    from .unlearning.forgetting import fresh_copy

    seed = check_seed(seed, "noise_floor()'s seed")  # the train() below checks the split
    if not isinstance(split, ForgetSplit):
        raise ConfigError(f"noise_floor() takes the ForgetSplit (uk.make_split) its second oracle is retrained "
                          f"without, got {type(split).__name__}")
    model = as_model(model, data, "noise_floor()")
    network = model if isinstance(model, ModelSpec) else fresh_copy(model, seed + FLOOR_OFFSET)
    return train(data, network, recipe, seed + FLOOR_OFFSET, split, runtime=runtime, store=store)


def evaluate(model, oracle, split: ForgetSplit, data: ImageDataset | None = None, *, original=None, floor=None,
             mia: str = "mia_entropy", attacks: tuple[str, ...] | None = None, runtime: Runtime | None = None,
             seed: int = 0) -> dict:
    """Every metric of `model` against `oracle` (each an nn.Module, a Checkpoint or, for the model, the
    UnlearnResult of `uk.unlearn`, whose run record gives the run-time figures), on the data `split` indexes.

    With `original` (the model before unlearning) and `floor` (a second oracle, `uk.noise_floor`), the result
    also holds what doing nothing scores (`nothing`), what the floor scores (`floor`), and the closing fractions
    `closing` = (nothing − model) / (nothing − floor) for Avg.Gap and KL: the bench's summary for one run.
    """
    from .bench.verdict import closing_fraction
    from .evaluation.protocol import evaluate as protocol

    data = check_split(split, data, "evaluate()")
    seed = check_seed(seed, "evaluate()'s seed")
    for thing, what, retrained in ((model, "model", False), (original, "original", False), (oracle, "oracle", True),
                                   (floor, "floor", True)):
        _made_for(thing, split, what, retrained)
    runtime = Runtime.given(runtime, "evaluate()")
    network, record = _model_and_record(model, "model")
    oracle_net, oracle_record = _model_and_record(oracle, "oracle")
    original_net = _model_and_record(original, "original")[0] if original is not None else None

    def against_oracle(net, run_record):
        return protocol(net, oracle_net, split, data, runtime, original_net, run_record, oracle_record, mia, attacks,
                        seed)

    result = against_oracle(network, record)
    if original_net is not None and floor is not None:
        floor_net, floor_record = _model_and_record(floor, "floor")
        result["nothing"] = against_oracle(original_net, {"wall_time_s": 0.0, "sample_passes": 0})
        result["floor"] = against_oracle(floor_net, floor_record)
        result["closing"] = {k: closing_fraction(result["nothing"][k], result["floor"][k], result[k])
                             for k in ("avg_gap", "kl_forget")}
    return result


def verdict(original, unlearned, split: ForgetSplit, data: ImageDataset | None = None,
            runtime: Runtime | None = None, seed: int = 0) -> dict:
    """The oracle-free verdict of an unlearning run (`evaluation.oracle_free.verdict`): forgotten / not yet /
    model damaged, with the signals it rests on before and after."""
    from .evaluation.oracle_free import verdict as judge

    data = check_split(split, data, "verdict()")
    seed = check_seed(seed, "verdict()'s seed")
    _made_for(unlearned, split, "unlearned model")
    runtime = Runtime.given(runtime, "verdict()")
    before, _ = _model_and_record(original, "original")
    after, _ = _model_and_record(unlearned, "unlearned")
    return judge(before.to(runtime.device), after.to(runtime.device), split, data, runtime, seed)


def tune(data: ImageDataset, model: str | ModelSpec | nn.Module, methods: list[str],
         forget: tuple[str, ...] | list[str] = ("random:0.1",), seeds: tuple[int, ...] | list[int] = (100,),
         recipe: TrainRecipe | dict | None = None, max_trials: int = 20, max_cost: float = 0.5,
         out: Path | None = None, store: Path | None = None, runtime: Runtime | None = None) -> dict:
    """`unlearnkit tune` on a user's own dataset object: Optuna's TPE over each method's declared grid, against
    the oracle on the tuning `seeds` (none of which may be a reported one). Returns what `bench.tuning.tune`
    returns (the best settings per scenario and method, every trial). `model` is as for `bench`."""
    from .artifacts import writable_store
    from .bench.scenarios import on_objects
    from .bench.tuning import tune as run

    config, provided = on_objects(data, model, forget, methods, [0], recipe)
    store = writable_store(store)
    return run(config, methods, seeds, Runtime.given(runtime, "tune()"), Path(out or store / "tune"), store,
               max_trials, max_cost, provided=provided)


def bench(data: ImageDataset, model: str | ModelSpec | nn.Module, forget: tuple[str, ...] | list[str] = ("random:0.1",),
          methods: list[str] | None = None, seeds: tuple[int, ...] | list[int] = (0, 1, 2),
          recipe: TrainRecipe | dict | None = None, out: Path | None = None, store: Path | None = None,
          runtime: Runtime | None = None, mia: str = "mia_entropy") -> dict:
    """The bench on a user's own dataset object: for each forget spec, the original, the oracle and the noise
    floor (trained or found in the store), every method at its defaults, the tables, the HTML report and each
    scenario's verdict in words. `model` is a registered model name, a ModelSpec, or your own nn.Module, left
    as it is: the bench trains a copy of it per model, re-initialised under that model's seed (each layer's
    `reset_parameters`). Returns what `bench.bench` returns."""
    from .bench import bench_on

    return bench_on(data, model, forget, methods, seeds, recipe, out, store, runtime, mia)
