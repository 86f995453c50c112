"""Aggregate bench cells over seeds, and write them as the paper's table (Markdown), CSV and JSON."""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path

from ..artifacts import atomic_write_text, finite_json
from .runner import NOISE_FLOOR, ORIGINAL, REFERENCE_ROWS, Cell
from .verdict import CLOSED, assess, per_seed_closing, seed_fractions

ACCURACIES = (("forget_acc", "FA"), ("remain_acc", "RA"), ("test_acc", "TA"))
# Averaged over seeds in every domain (a domain without one of them, e.g. no test set, leaves its column out).
FIGURES = ("forget_acc", "remain_acc", "test_acc", "mia_entropy", "mia_svc", "avg_gap", "kl_forget", "js_forget",
           "verification_error", "verification_error_rel", "rte_s", "retrain_s", "sample_passes", "cost_ratio")
NOTE = ("FA/RA/TA/MIA: mean ± std over seeds (mean per-seed |gap| to that seed's oracle). Avg.Gap: mean of the "
        "gaps shown. D_KL: KL(oracle ‖ model) on the forget set. RTE: wall time of the unlearning call; "
        "speed-up: oracle training time / RTE; cost: forward-backward sample passes / the oracle's. "
        "RT′ is a second oracle trained with another seed: the noise floor. Closes: (doing nothing − method) / "
        "(doing nothing − RT′), for Avg.Gap and KL, of the mean rows; in brackets, the mean of each seed's own "
        "fraction: 100% is as close to the oracle as a second oracle is.")


def _stats(values: list) -> tuple[float, float]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(cells: list[Cell], mia: str | None, figures: tuple[str, ...] = ()) -> dict[str, list[dict]]:
    """Per scenario, one row per method (reference rows first): mean and std over seeds of every number (the
    common FIGURES and a domain's own `figures`), gaps to the oracle taken per seed against that seed's oracle,
    then averaged. `mia`: the attack in Avg.Gap (None: the domain has none). Where doing nothing and the floor
    were run, each method's row also holds `seed_closing_avg_gap` and `seed_closing_kl_forget`: the mean of its
    per-seed closing fractions (bench.verdict.per_seed_closing), and `seed_fractions`, each seed's own."""
    by_scenario: dict[str, dict[str, dict[int, dict]]] = {}
    for c in cells:
        by_scenario.setdefault(c.scenario, {}).setdefault(c.method, {})[c.seed] = c.metrics
    summary = {}
    for scenario, rows in by_scenario.items():
        order = [r for r in REFERENCE_ROWS if r in rows] + [r for r in rows if r not in REFERENCE_ROWS]
        summary[scenario] = [_row(name, list(rows[name].values()), mia, figures) for name in order]
        if ORIGINAL in rows and NOISE_FLOOR in rows:
            finished = {name: {s: m for s, m in runs.items() if "error" not in m} for name, runs in rows.items()}
            for row in summary[scenario]:
                if row["method"] not in REFERENCE_ROWS:
                    runs = finished[row["method"]], finished[ORIGINAL], finished[NOISE_FLOOR]
                    row.update({f"seed_closing_{k}": v for k, v in per_seed_closing(*runs).items()})
                    row["seed_fractions"] = seed_fractions(*runs)
    return summary


def verdicts(summary: dict[str, list[dict]]) -> dict[str, dict]:
    """Each scenario's verdict in words (bench.verdict.assess), closing fractions added to its rows."""
    return {scenario: assess(rows) for scenario, rows in summary.items()}


def _row(name: str, runs: list[dict], mia: str | None, figures: tuple[str, ...]) -> dict:
    """Mean and std over the seeds a method finished; seeds where it diverged are counted, not averaged."""
    diverged = sum(1 for r in runs if "error" in r)
    runs = [r for r in runs if "error" not in r]
    row: dict = {"method": name, "seeds": len(runs), "diverged": diverged}
    for key in dict.fromkeys((*FIGURES, *figures)):
        row[key], row[f"{key}_std"] = _stats([r.get(key) for r in runs])
    for key in ("forget_acc", "remain_acc", "test_acc", *([mia] if mia else [])):
        row[f"gap_{key}"] = _stats([r.get("gaps", {}).get(key) for r in runs])[0]
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


def _measured(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def gap_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """The (key, title) of each accuracy and attack shown with its gap to the oracle: those some row measured."""
    mia = rows[0]["mia"] if rows else None
    keys = [*ACCURACIES, *([(mia, f"MIA ({mia})")] if mia else [])]
    return [(key, title) for key, title in keys if any(_measured(r.get(key)) for r in rows)]


def own_columns(rows: list[dict], columns: dict[str, str]) -> dict[str, str]:
    """A domain's own columns (key -> title) that some row of this scenario measured."""
    return {key: title for key, title in columns.items() if any(_measured(r.get(key)) for r in rows)}


def percent(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.0f}%"


def closes(row: dict, key: str) -> str:
    """A closing fraction of the mean rows, with the mean per-seed one in brackets where it was measured."""
    per_seed = row.get(f"seed_closing_{key}")
    return percent(row.get(f"closing_{key}")) + (f" ({percent(per_seed)})" if _measured(per_seed) else "")


def seed_table(rows: list[dict]) -> tuple[list[int], list[tuple[str, list[str]]]]:
    """Each method's closing fractions seed by seed, "Avg.Gap / KL" (the mean in brackets is theirs): the seeds,
    and per method its cells; no seeds where fewer than two have fractions, since one seed's is the mean."""
    measured = [r for r in rows if r.get("seed_fractions")]
    seeds = sorted({s for r in measured for s in r["seed_fractions"]})
    if len(seeds) < 2:
        return [], []
    cells = [(method_label(r), [" / ".join(percent(r["seed_fractions"][s][k]) for k in CLOSED)
                                if s in r["seed_fractions"] else "no result" for s in seeds]) for r in measured]
    return seeds, cells


SEED_NOTE = ("Closing per seed, Avg.Gap / KL, each against that seed's doing nothing and RT′ (— where that seed's "
             "doing nothing is already within its floor):")


def markdown(summary: dict[str, list[dict]], titles: dict[str, str] | None = None,
             said: dict[str, dict] | None = None, columns: dict[str, str] | None = None, note: str = NOTE) -> str:
    """The paper's layout: the accuracies (and the attack) the domain measures, as mean±std (gap to the oracle),
    its own figures (`columns`: key -> title) as mean±std, then Avg.Gap, KL and RTE, the closing fractions, and
    each scenario's verdict in words."""
    out = []
    for scenario, rows in summary.items():
        gapped, shown = gap_columns(rows), own_columns(rows, columns or {})
        out += [f"### {titles.get(scenario, scenario) if titles else scenario}", ""]
        if said and scenario in said:
            out += [said[scenario]["sentence"], ""]
        heads = ["method", *(title for _, title in gapped), *shown.values(), "Avg.Gap ↓", "D_KL ↓", "closes Avg.Gap",
                 "closes KL", "RTE (s)", "speed-up", "cost"]
        out += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
        for r in rows:
            cells = [f"{fmt(r[k])}±{fmt(r[k + '_std'])} ({fmt(r['gap_' + k])})" for k, _ in gapped]
            cells += [f"{fmt(r.get(k))}±{fmt(r.get(k + '_std'))}" for k in shown]
            speed = f"{fmt(r['speedup'], 1)}×" if not math.isnan(r["speedup"]) else "—"
            out.append(f"| {method_label(r)} | " + " | ".join(cells) + f" | {fmt(r['avg_gap'])} | "
                       f"{fmt(r['kl_forget'], 3)} | {closes(r, 'avg_gap')} | "
                       f"{closes(r, 'kl_forget')} | {fmt(r['rte_s'], 2)} | {speed} | "
                       f"{fmt(r['cost_ratio'], 3)} |")
        out.append("")
        seeds, per_seed = seed_table(rows)
        if seeds:
            out += [SEED_NOTE, "", "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                    "|" + "---|" * (len(seeds) + 1)]
            out += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in per_seed]
            out.append("")
        if any(r.get("audit_auc") is not None for r in rows):
            out += ["Per-example audits on a pool of models (the oracle row of the pool is the RT′ line; 0.5 AUC and "
                    "the RT′ ε are chance):", "",
                    "| method | U-LiRA AUC | TPR @ 1% FPR | mean ε | KLOM p95 |", "|---|---|---|---|---|"]
            out += [f"| {r['method']} | {fmt(r.get('audit_auc'), 3)} | {fmt(r.get('audit_tpr_1pct'), 3)} | "
                    f"{fmt(r.get('audit_epsilon'))} | {fmt(r.get('audit_klom'))} |"
                    for r in rows if r.get("audit_auc") is not None]
            out.append("")
    out.append(note)
    return "\n".join(out) + "\n"


CSV_FIELDS = ["scenario", "seed", "method", "forget_acc", "remain_acc", "test_acc", "mia_entropy", "mia_svc", "avg_gap",
              "kl_forget", "js_forget", "verification_error", "verification_error_rel", "rte_s", "retrain_s", "speedup",
              "sample_passes", "cost_ratio", "steps", "hyperparameters"]


def write_tables(cells: list[Cell], summary: dict, out_dir: Path, titles: dict[str, str] | None = None,
                 said: dict[str, dict] | None = None, columns: dict[str, str] | None = None, note: str = NOTE,
                 extra: dict | None = None) -> dict[str, Path]:
    """results.md (`markdown`), results.csv (one line per cell) and results.json (summary, verdicts, cells and the
    domain's `extra`, e.g. its settings) in `out_dir`."""
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "json": out_dir / "results.json"}
    atomic_write_text(paths["markdown"], markdown(summary, titles, said, columns, note))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, [*CSV_FIELDS, *(columns or {})], extrasaction="ignore")
    writer.writeheader()
    for c in cells:
        writer.writerow({"scenario": c.scenario, "seed": c.seed, "method": c.method, **c.metrics,
                         "hyperparameters": json.dumps(c.metrics.get("hyperparameters", {}), sort_keys=True)})
    atomic_write_text(paths["csv"], buffer.getvalue())
    saved = {**(extra or {}), "summary": summary, "verdicts": said or {}, "cells": [c.__dict__ for c in cells]}
    atomic_write_text(paths["json"], json.dumps(finite_json(saved), indent=1))
    return paths
