"""The human-readable table of an `evaluate()` result."""
from __future__ import annotations

import math

from .catalogue import METRICS

PER_CLASS_ROWS = 20  # beyond this many classes, list only those furthest from the oracle


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def format_report(result: dict) -> str:
    lines = []
    if "checkpoints" in result:
        what = result.get("method") or result.get("model_kind") or "model"
        lines.append(f"model   {result['checkpoints']['model']} ({what})")
        lines.append(f"oracle  {result['checkpoints']['oracle']}")
    split = result.get("split")
    sizes = result["sizes"]
    lines.append(f"split   {split['spec'] + ' seed ' + str(split['seed']) + ': ' if split else ''}"
                 f"{sizes['forget']} forget, {sizes['remain']} remain, {sizes['test']} test samples")
    lines += ["", f"{'metric':<14}{'model':>9}{'oracle':>9}{'|gap|':>9}"]
    attacks = [k for k in result["oracle"] if k.startswith("mia_")]
    for key in ("forget_acc", "remain_acc", "test_acc", *attacks):
        metric = METRICS.get(key)
        gap = abs(result[key] - result["oracle"][key])
        marker = "  (in Avg.Gap)" if key == result["mia"] else ""
        lines.append(f"{metric.label + ' (%)':<14}{_num(result[key]):>9}{_num(result['oracle'][key]):>9}"
                     f"{_num(gap):>9}{marker}")
    lines += [
        "",
        f"Avg.Gap (FA, RA, TA, {METRICS.get(result['mia']).label})  {_num(result['avg_gap'])} points   "
        "(lower is better)",
        f"D_KL(oracle || model) on D_f    {_num(result['kl_forget'], 4)} nats   (lower is better)",
        f"JS(oracle, model) on D_f        {_num(result['js_forget'], 4)} nats   (lower is better)",
        f"verification error              {_num(result['verification_error'], 4)}"
        + (f"  = {_num(result['verification_error_rel'], 3)} x the original's distance"
           if not math.isnan(result["verification_error_rel"]) else ""),
        f"RTE                             {_num(result['rte_s']) + ' s' if not math.isnan(result['rte_s']) else 'n/a'}"
        + (f"; retraining {_num(result['retrain_s'])} s, {_num(result['speedup'], 1)}x faster"
           if not math.isnan(result["speedup"]) else "")
        + (f"; {_num(100 * result['cost_ratio'], 1)}% of retraining's sample passes"
           if not math.isnan(result["cost_ratio"]) else ""),
    ]
    lines += ["", *_per_class(result)]
    if result.get("notes"):
        lines += ["", "notes:", *(f"  - {note}" for note in result["notes"])]
    return "\n".join(lines)


def _per_class(result: dict) -> list[str]:
    mine, theirs, names = result["per_class_test_acc"], result["oracle"]["per_class_test_acc"], result["classes"]
    rows = list(range(len(mine)))
    title = "per-class test accuracy (%)"
    if len(rows) > PER_CLASS_ROWS:
        distance = [abs(m - t) if not (math.isnan(m) or math.isnan(t)) else -1.0 for m, t in zip(mine, theirs)]
        rows = sorted(rows, key=lambda c: -distance[c])[:10]
        title += f", the 10 of {len(mine)} classes furthest from the oracle"
    width = max(5, *(len(names[c]) for c in rows))
    lines = [title, f"  {'class':<{width}}{'model':>9}{'oracle':>9}"]
    lines += [f"  {names[c]:<{width}}{_num(mine[c]):>9}{_num(theirs[c]):>9}" for c in rows]
    return lines
