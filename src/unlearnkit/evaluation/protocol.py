"""`evaluate()`: every metric of a model against its oracle, from one prediction pass per model and set."""
from __future__ import annotations

from torch import nn

from ..data.images import ImageDataset
from ..data.splits import ForgetSplit, check_split
from ..progress import task
from ..runtime import Runtime
from .accuracy import accuracy, per_class_accuracy
from .catalogue import avg_gap, gap_metrics
from .cost import runtime_efficiency
from .divergence import js_divergence, kl_divergence
from .membership import ATTACKS
from .outputs import Outputs
from .weights import verification_error

SETS = ("forget", "remain", "test")


def scores(outputs: dict[str, Outputs], num_classes: int, attacks: tuple[str, ...], seed: int = 0) -> dict:
    """The metrics of one model that need only its own outputs on D_f, D_r and the test set."""
    forget, remain, test = (outputs[s] for s in SETS)
    found = {"forget_acc": accuracy(forget.predictions, forget.labels),
             "remain_acc": accuracy(remain.predictions, remain.labels),
             "test_acc": accuracy(test.predictions, test.labels)}
    found.update({name: ATTACKS.get(name)(remain, test, forget, seed=seed) for name in attacks})
    found["per_class_test_acc"] = per_class_accuracy(test.predictions, test.labels, num_classes)
    return found


def evaluate(model: nn.Module, oracle: nn.Module, split: ForgetSplit, dataset: ImageDataset,
             runtime: Runtime | None = None, original: nn.Module | None = None, unlearn_record: dict | None = None,
             oracle_record: dict | None = None, mia: str = "mia_entropy", attacks: tuple[str, ...] | None = None,
             seed: int = 0) -> dict:
    """Evaluate `model` against `oracle` (retrained on `split.remain`) on `dataset`, which the split indexes.

    Returns one flat dict (metric keys as in `catalogue.METRICS`):
      forget_acc, remain_acc, test_acc, <each attack>, per_class_test_acc   the model's own numbers
      oracle                      the same numbers for the oracle, by the same protocol
      gaps                        |model - oracle| for FA, RA, TA and the chosen MIA
      avg_gap, mia                their mean (Avg.Gap), and which attack it used
      kl_forget, js_forget        KL(oracle || model) and JS on D_f
      verification_error[_rel]    weight distance to the oracle (relative needs `original`)
      rte_s, retrain_s, speedup, sample_passes, retrain_sample_passes, cost_ratio   from the two records
      sizes, classes, seed, notes set sizes, class names, the attack seed, and why any value is NaN

    `attacks` (default: every registered attack) chooses which membership attacks run; `mia` is always one.
    `unlearn_record` needs wall_time_s and sample_passes (`UnlearnResult.record()`), `oracle_record` the
    oracle checkpoint's record. Models are moved to the runtime's device and evaluated in eval mode.
    """
    runtime = runtime or Runtime.create()
    ATTACKS.get(mia)
    chosen = tuple(dict.fromkeys((*(attacks if attacks is not None else ATTACKS.names()), mia)))
    for name in chosen:
        ATTACKS.get(name)
    check_split(split, dataset, "evaluate()")
    views = {"forget": dataset.train(split.forget), "remain": dataset.train(split.remain), "test": dataset.test()}
    outputs: dict[str, dict[str, Outputs]] = {"model": {}, "oracle": {}}
    with task("evaluate", 2 * len(SETS)) as advance:
        for who, network in (("model", model), ("oracle", oracle)):
            network.to(runtime.device)
            for name, view in views.items():
                outputs[who][name] = Outputs.of(network, view, runtime)
                advance()
    mine = scores(outputs["model"], dataset.num_classes, chosen, seed)
    theirs = scores(outputs["oracle"], dataset.num_classes, chosen, seed)
    compared = gap_metrics(mia)
    weights = verification_error(model, oracle, original)
    cost = runtime_efficiency(unlearn_record, oracle_record)
    p_oracle, p_model = outputs["oracle"]["forget"].probabilities, outputs["model"]["forget"].probabilities
    return {
        **mine,
        "oracle": theirs,
        "gaps": {k: abs(mine[k] - theirs[k]) for k in compared},
        "avg_gap": avg_gap(mine, theirs, compared),
        "mia": mia,
        "kl_forget": kl_divergence(p_oracle, p_model),
        "js_forget": js_divergence(p_oracle, p_model),
        **{k: v for k, v in weights.items() if k != "notes"},
        **{k: v for k, v in cost.items() if k != "notes"},
        "sizes": {name: len(view) for name, view in views.items()},
        "classes": list(dataset.classes),
        "seed": seed,
        "notes": weights["notes"] + cost["notes"],
    }
