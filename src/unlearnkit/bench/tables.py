"""Aggregate bench cells over seeds, and write them as the paper's table (Markdown), CSV and JSON."""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

from ..artifacts import atomic_write_text, finite_json
from .runner import REFERENCE_ROWS, Cell
from .verdict import assess

ACCURACIES = (("forget_acc", "FA"), ("remain_acc", "RA"), ("test_acc", "TA"))


def _stats(values: list) -> tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(cells: list[Cell], mia: str) -> dict[str, list[dict]]:
    """Per scenario, one row per method (reference rows first): mean and std over seeds of every number,
    gaps to the oracle taken per seed against that seed's oracle, then averaged."""
    by_scenario: dict[str, dict[str, list[dict]]] = {}
    for c in cells:
        by_scenario.setdefault(c.scenario, {}).setdefault(c.method, []).append(c.metrics)
    summary = {}
    for scenario, rows in by_scenario.items():
        order = [r for r in REFERENCE_ROWS if r in rows] + [r for r in rows if r not in REFERENCE_ROWS]
        summary[scenario] = [_row(name, rows[name], mia) for name in order]
    return summary


def verdicts(summary: dict[str, list[dict]]) -> dict[str, dict]:
    """Each scenario's verdict in words (bench.verdict.assess), closing fractions added to its rows."""
    return {scenario: assess(rows) for scenario, rows in summary.items()}


def _row(name: str, runs: list[dict], mia: str) -> dict:
    """Mean and std over the seeds a method finished; seeds where it diverged are counted, not averaged."""
    diverged = sum(1 for r in runs if "error" in r)
    runs = [r for r in runs if "error" not in r]
    row: dict = {"method": name, "seeds": len(runs), "diverged": diverged}
    for key in ("forget_acc", "remain_acc", "test_acc", "mia_entropy", "mia_svc", "avg_gap", "kl_forget",
                "js_forget", "verification_error", "verification_error_rel", "rte_s", "retrain_s",
                "sample_passes", "cost_ratio"):
        row[key], row[f"{key}_std"] = _stats([r.get(key) for r in runs])
    for key in ("forget_acc", "remain_acc", "test_acc", mia):
        row[f"gap_{key}"] = _stats([r["gaps"].get(key) for r in runs])[0]
    row["mia"] = mia
    row["speedup"] = row["retrain_s"] / row["rte_s"] if row["rte_s"] and row["rte_s"] > 0 else math.nan
    classes = [r["per_class_test_acc"] for r in runs if r.get("per_class_test_acc")]
    row["per_class_test_acc"] = [_stats(list(col))[0] for col in zip(*classes)] if classes else []
    return row


def fmt(value: float, digits: int = 2) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def method_label(row: dict) -> str:
    """A summary row's method name, flagged with the seeds on which it diverged."""
    return row["method"] + (f" (diverged on {row['diverged']} seed(s))" if row["diverged"] else "")


def percent(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def markdown(summary: dict[str, list[dict]], titles: dict[str, str] | None = None,
             said: dict[str, dict] | None = None) -> str:
    """The paper's layout: FA, RA, TA and MIA as mean±std (gap to the oracle), then Avg.Gap, KL and RTE, the
    closing fractions, and each scenario's verdict in words."""
    out = []
    for scenario, rows in summary.items():
        mia = rows[0]["mia"] if rows else "mia_entropy"
        out += [f"### {titles.get(scenario, scenario) if titles else scenario}", ""]
        if said and scenario in said:
            out += [said[scenario]["sentence"], ""]
        out += [f"| method | FA | RA | TA | MIA ({mia}) | Avg.Gap ↓ | D_KL ↓ | closes Avg.Gap | closes KL | RTE (s) | "
                "speed-up | cost |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            cells = [f"{fmt(r[k])}±{fmt(r[k + '_std'])} ({fmt(r['gap_' + k])})"
                     for k in ("forget_acc", "remain_acc", "test_acc", mia)]
            speed = f"{fmt(r['speedup'], 1)}×" if not math.isnan(r["speedup"]) else "—"
            out.append(f"| {method_label(r)} | " + " | ".join(cells) + f" | {fmt(r['avg_gap'])} | "
                       f"{fmt(r['kl_forget'], 3)} | {percent(r.get('closing_avg_gap'))} | "
                       f"{percent(r.get('closing_kl_forget'))} | {fmt(r['rte_s'], 2)} | {speed} | "
                       f"{fmt(r['cost_ratio'], 3)} |")
        out.append("")
        if any(r.get("audit_auc") is not None for r in rows):
            out += ["Per-example audits on a pool of models (the oracle row of the pool is the RT′ line; 0.5 AUC and "
                    "the RT′ ε are chance):", "",
                    "| method | U-LiRA AUC | TPR @ 1% FPR | mean ε | KLOM p95 |", "|---|---|---|---|---|"]
            out += [f"| {r['method']} | {fmt(r.get('audit_auc'), 3)} | {fmt(r.get('audit_tpr_1pct'), 3)} | "
                    f"{fmt(r.get('audit_epsilon'))} | {fmt(r.get('audit_klom'))} |"
                    for r in rows if r.get("audit_auc") is not None]
            out.append("")
    out.append("FA/RA/TA/MIA: mean ± std over seeds (mean per-seed |gap| to that seed's oracle). Avg.Gap: mean of the "
               "four gaps. D_KL: KL(oracle ‖ model) on the forget set. RTE: wall time of the unlearning call; "
               "speed-up: oracle training time / RTE; cost: forward-backward sample passes / the oracle's. "
               "RT′ is a second oracle trained with another seed: the noise floor. Closes: (doing nothing − method) / "
               "(doing nothing − RT′), for Avg.Gap and KL: 100% is as close to the oracle as a second oracle is.")
    return "\n".join(out) + "\n"


CSV_FIELDS = ["scenario", "seed", "method", "forget_acc", "remain_acc", "test_acc", "mia_entropy", "mia_svc", "avg_gap",
              "kl_forget", "js_forget", "verification_error", "verification_error_rel", "rte_s", "retrain_s", "speedup",
              "sample_passes", "cost_ratio", "steps", "hyperparameters"]


def write_tables(cells: list[Cell], summary: dict, out_dir: Path, titles: dict[str, str] | None = None,
                 said: dict[str, dict] | None = None) -> dict[str, Path]:
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    atomic_write_text(paths["markdown"], markdown(summary, titles, said))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for c in cells:
        writer.writerow({"scenario": c.scenario, "seed": c.seed, "method": c.method, **c.metrics,
                         "hyperparameters": json.dumps(c.metrics.get("hyperparameters", {}), sort_keys=True)})
    atomic_write_text(paths["csv"], buffer.getvalue())
    atomic_write_text(paths["json"], json.dumps(finite_json({"summary": summary, "verdicts": said or {},
                                                             "cells": [c.__dict__ for c in cells]}), indent=1))
    return paths
