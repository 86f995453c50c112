"""Per-example audits of forgetting over pools of models, as pure functions over their outputs.

statistics.py holds one function per statistic, its exact definition in its docstring:
  logit_confidence, margins        per-model statistics from logits (LiRA's phi, KLOM's margin)
  roc, tpr_at_fpr, best_accuracy   the ROC of a membership score and LiRA's summaries of it
  ulira_scores, ulira              U-LiRA (Hayes et al.): per-example Gaussian likelihood ratio, leave one model out
  challenge_epsilons, challenge_points, challenge_forget_score
                                   the NeurIPS 2023 unlearning challenge's per-example epsilon and forget score
  klom, klom_summary               KLOM (Attribute-to-Delete): binned KL of margins, unlearned vs oracle models

pools.py builds the pools (plan_pool, member_dataset, build_pool), audit.py runs the audit over them (run_audit,
audit_command), report.py writes its HTML page; they are imported on first use, since they pull in training.
"""
from .statistics import (
    Roc,
    ULiRAResult,
    best_accuracy,
    challenge_epsilons,
    challenge_forget_score,
    challenge_points,
    klom,
    klom_summary,
    logit_confidence,
    margins,
    roc,
    tpr_at_fpr,
    ulira,
    ulira_scores,
)

_LAZY = {"run_audit": "audit", "audit_command": "audit", "audit_row": "audit",
         "plan_pool": "pools", "PoolPlan": "pools", "member_dataset": "pools", "build_pool": "pools",
         "write_report": "report"}


def __getattr__(name: str):
    # The pool and audit modules import the pipeline, which may one day import this package: load them late.
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Roc", "ULiRAResult", "best_accuracy", "challenge_epsilons", "challenge_forget_score", "challenge_points",
           "klom", "klom_summary", "logit_confidence", "margins", "roc", "tpr_at_fpr", "ulira", "ulira_scores", *_LAZY]
