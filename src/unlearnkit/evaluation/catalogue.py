"""Every metric `evaluate()` reports: its key, column label, unit, and which direction is good.

`goal` is "oracle" for metrics judged by their gap to the oracle (retrained without D_f), "lower" or
"higher" for those with a fixed direction. Tables read this rather than hard-coding directions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..registry import Registry
from .membership import ATTACKS

Goal = Literal["oracle", "lower", "higher"]


@dataclass(frozen=True)
class Metric:
    key: str      # key in evaluate()'s result
    label: str    # short column header
    unit: str
    goal: Goal
    summary: str  # one line; the exact definition is in the docstring of `source`
    source: str   # the function that defines it, module.function within unlearnkit.evaluation


METRICS: Registry[Metric] = Registry("metric")
for _m in (
    Metric("forget_acc", "FA", "%", "oracle", "top-1 accuracy on the forget set D_f", "accuracy.accuracy"),
    Metric("remain_acc", "RA", "%", "oracle", "top-1 accuracy on the remain set D_r", "accuracy.accuracy"),
    Metric("test_acc", "TA", "%", "oracle", "top-1 accuracy on the test set", "accuracy.accuracy"),
    Metric("mia_entropy", "MIA-ent", "%", "oracle",
           "share of D_f an entropy logistic-regression attack calls member (SFR-on)",
           "membership.mia_entropy"),
    Metric("mia_entropy_scaled", "MIA-ent-s", "%", "oracle",
           "mia_entropy with standardised entropies (stable where all entropies are tiny)",
           "membership.mia_entropy_scaled"),
    Metric("mia_svc", "MIA-svc", "%", "oracle",
           "share of D_f a confidence SVC attack calls member (100 - SalUn's MIA-efficacy)",
           "membership.mia_svc"),
    Metric("mia_loss", "MIA-loss", "%", "oracle",
           "share of D_f under the loss threshold that best splits D_r from test (Yeom et al. 2018)",
           "membership.mia_loss"),
    Metric("avg_gap", "Avg.Gap", "%", "lower", "mean |model - oracle| over FA, RA, TA and the chosen MIA",
           "catalogue.avg_gap"),
    Metric("kl_forget", "D_KL", "nats", "lower", "mean KL(oracle || model) of softmax outputs on D_f",
           "divergence.kl_divergence"),
    Metric("js_forget", "JS", "nats", "lower", "mean JS divergence of oracle and model softmax outputs on D_f",
           "divergence.js_divergence"),
    Metric("verification_error", "VerErr", "L2", "lower", "||theta_model - theta_oracle||_2 over all parameters",
           "weights.verification_error"),
    Metric("verification_error_rel", "VerErr-rel", "ratio", "lower",
           "verification error / ||theta_original - theta_oracle||_2", "weights.verification_error"),
    Metric("rte_s", "RTE", "s", "lower", "wall time of the unlearning call", "cost.runtime_efficiency"),
    Metric("speedup", "Speed-up", "x", "higher", "oracle training wall time / RTE", "cost.runtime_efficiency"),
    Metric("cost_ratio", "Passes", "ratio", "lower", "unlearning sample passes / retraining sample passes",
           "cost.runtime_efficiency"),
    Metric("per_class_test_acc", "Per-class TA", "%", "oracle", "test accuracy within each true class",
           "accuracy.per_class_accuracy"),
):
    METRICS.register(_m.key, _m)


def gap_metrics(mia: str = "mia_entropy") -> tuple[str, ...]:
    """The metrics averaged into Avg.Gap: FA, RA, TA and one membership attack (SFR-on's Avg.D)."""
    ATTACKS.get(mia)
    return ("forget_acc", "remain_acc", "test_acc", mia)


GAP_METRICS = gap_metrics()


def avg_gap(model: dict, oracle: dict, keys: tuple[str, ...] = GAP_METRICS) -> float:
    """Avg.Gap in percentage points, lower is better (0 = indistinguishable from the oracle on these numbers):

        Avg.Gap = mean over k in keys of |model[k] - oracle[k]|,   keys = FA, RA, TA, MIA

    SFR-on's Avg.D: SFR-on CIFAR-10 (0.96 + 0.12 + 1.15 + 2.58) / 4 = 1.20.
    """
    return sum(abs(float(model[k]) - float(oracle[k])) for k in keys) / len(keys)
