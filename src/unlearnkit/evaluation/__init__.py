"""Evaluation of a model against its oracle (the model retrained without the forget set).

One module per kind of metric, each metric one function whose docstring holds its exact definition:
  accuracy.py    FA, RA, TA (top-1 accuracy on D_f, D_r, test) and per-class accuracy
  membership.py  the membership-inference attacks mia_entropy (SFR-on) and mia_svc (SalUn), `ATTACKS`
  divergence.py  KL(oracle || model) and JS divergence of softmax outputs
  weights.py     verification error: weight distance to the oracle
  cost.py        RTE: unlearning wall time and sample passes against retraining's
  catalogue.py   `METRICS` (label, unit, direction of every reported key), `GAP_METRICS`, `avg_gap`
  protocol.py    `evaluate()`: all of them from one prediction pass per model and set
  checkpoints.py `evaluate_checkpoints()`: the same on stored checkpoints, with consistency checks (import it
                 from there: it reads the pipeline, which this package must not import)
  oracle_free.py what a user can measure without an oracle: membership AUC, the verdict after a forget
  unrolling.py   the unlearning-error proxy of "Unrolling SGD"
  report.py      the printed table
"""
from .accuracy import accuracy, per_class_accuracy
from .catalogue import GAP_METRICS, METRICS, Metric, avg_gap, gap_metrics
from .cost import runtime_efficiency
from .divergence import js_divergence, kl_divergence, kl_per_sample
from .membership import (
                         ATTACKS,
                         membership_rate_lr,
                         membership_rate_svc,
                         mia_entropy,
                         mia_svc,
                         shannon_entropy,
                         true_class_confidence,
)
from .outputs import Outputs
from .protocol import evaluate
from .report import format_report
from .weights import parameter_distance, verification_error

__all__ = ["ATTACKS", "GAP_METRICS", "METRICS", "Metric", "Outputs", "accuracy", "avg_gap", "evaluate",
           "format_report", "gap_metrics", "js_divergence", "kl_divergence", "kl_per_sample",
           "membership_rate_lr", "membership_rate_svc", "mia_entropy", "mia_svc", "parameter_distance",
           "per_class_accuracy", "runtime_efficiency", "shannon_entropy", "true_class_confidence",
           "verification_error"]
