"""The self-contained HTML report: tables and plots (PNG, embedded) for every scenario."""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..artifacts import atomic_write_text  # noqa: E402
from .runner import NOISE_FLOOR, ORACLE, ORIGINAL  # noqa: E402
from .tables import SEED_NOTE, closes, fmt, gap_columns, method_label, own_columns, seed_table  # noqa: E402


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def gap_figure(rows: list[dict]):
    """Gap to the oracle of each accuracy (and the MIA) the domain measures, per method; None if it measures none."""
    columns = gap_columns(rows)
    if not columns:
        return None
    rows = [r for r in rows if r["method"] != ORACLE]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(rows)), 3.4))
    width = 0.8 / len(columns)
    for i, (key, title) in enumerate(columns):
        ax.bar([j + i * width for j in range(len(rows))], [r[f"gap_{key}"] for r in rows], width,
               label=title.split(" ")[0])
    # A method that diverged has no bars: its label says so, or the empty slot reads as a gap of 0.
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rows))], [method_label(r) for r in rows], rotation=45,
                  ha="right")
    ax.set_ylabel("|gap to oracle| (points)")
    ax.legend(ncol=4, fontsize=8)
    ax.set_title("Gap to the oracle per metric (lower is better)")
    return fig


def tradeoff_figure(rows: list[dict]):
    """Avg.Gap against the unlearning wall time, with the oracle-vs-oracle noise floor."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    shown = [r for r in rows if r["method"] not in (ORACLE, ORIGINAL) and r["rte_s"] and not math.isnan(r["rte_s"])
             and not math.isnan(r["avg_gap"])]
    for r in shown:
        ax.scatter(r["rte_s"], r["avg_gap"], color="tab:red" if r["method"].startswith("sfron") else "tab:blue")
        ax.annotate(r["method"], (r["rte_s"], r["avg_gap"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    floor = next((r["avg_gap"] for r in rows if r["method"] == NOISE_FLOOR), None)
    nothing = next((r["avg_gap"] for r in rows if r["method"] == ORIGINAL), None)
    if floor is not None:
        ax.axhline(floor, ls="--", color="gray", lw=1, label="noise floor (RT′)")
    if nothing is not None:
        ax.axhline(nothing, ls=":", color="black", lw=1, label="no unlearning")
    if shown:
        ax.set_xscale("log")
    ax.set_xlabel("unlearning wall time (s, log)")
    ax.set_ylabel("Avg.Gap (lower is better)")
    ax.legend(fontsize=8)
    return fig


def per_class_figure(rows: list[dict], classes: list[str], forgotten: list[int]):
    """Test accuracy per class, for each method and the oracle: the forgotten classes should read ~0."""
    rows = [r for r in rows if r["per_class_test_acc"]]
    data = [r["per_class_test_acc"] for r in rows]
    fig, ax = plt.subplots(figsize=(0.5 * len(classes) + 3, 0.32 * len(rows) + 1.2))
    image = ax.imshow(data, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(classes)), [f"{c}*" if i in forgotten else c for i, c in enumerate(classes)])
    ax.set_yticks(range(len(rows)), [r["method"] for r in rows])
    for i, values in enumerate(data):
        for j, v in enumerate(values):
            ax.text(j, i, "" if v is None or math.isnan(v) else f"{v:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if v is not None and v < 50 else "black")
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    ax.set_title("Per-class test accuracy (* = forgotten)")
    return fig


def _table(rows: list[dict], columns: dict[str, str]) -> str:
    gapped, columns = gap_columns(rows), own_columns(rows, columns)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ("method", *(t for _, t in gapped), *columns.values(),
                                                          "Avg.Gap ↓", "D_KL ↓", "closes Avg.Gap", "closes KL",
                                                          "RTE (s)", "speed-up"))
    body = []
    best = min((r["avg_gap"] for r in rows if r["method"] not in (ORACLE, NOISE_FLOOR, ORIGINAL)), default=None)
    for r in rows:
        cells = [f"{fmt(r[k])}±{fmt(r[k + '_std'])} <small>({fmt(r['gap_' + k])})</small>" for k, _ in gapped]
        cells += [f"{fmt(r.get(k))}±{fmt(r.get(k + '_std'))}" for k in columns]
        gap = fmt(r["avg_gap"])
        gap = f"<b>{gap}</b>" if best is not None and r["avg_gap"] == best else gap
        speed = "—" if math.isnan(r["speedup"]) else f"{r['speedup']:.1f}×"
        row = [html.escape(method_label(r)), *cells, gap, fmt(r["kl_forget"], 3), closes(r, "avg_gap"),
               closes(r, "kl_forget"), fmt(r["rte_s"]), speed]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>" + _seed_table(rows)


def _seed_table(rows: list[dict]) -> str:
    seeds, per_seed = seed_table(rows)
    if not seeds:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("method", *(f"seed {s}" for s in seeds)))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in (name, *cells)) + "</tr>"
                   for name, cells in per_seed)
    return f"<p>{html.escape(SEED_NOTE)}</p><table><tr>{head}</tr>{body}</table>"


def write_report(summary: dict[str, list[dict]], out_dir: Path, titles: dict[str, str],
                 classes: dict[str, list[str]], forgotten: dict[str, list[int]], command: str,
                 said: dict[str, dict] | None = None, columns: dict[str, str] | None = None,
                 images: dict[str, list[Path]] | None = None, note: str = "") -> Path:
    """report.html in `out_dir`: per scenario its verdict, table and plots; `columns` are a domain's own figures
    (key -> title), `images` its own PNGs per scenario (a grid of samples, say), embedded after the plots, and
    `note` its paragraph on what the figures mean."""
    sections = []
    for scenario, rows in summary.items():
        sentence = f"<p><b>{html.escape(said[scenario]['sentence'])}</b></p>" if said and scenario in said else ""
        against = any(not math.isnan(r["avg_gap"]) for r in rows)  # an oracle to compare with
        figures = [gap_figure(rows), tradeoff_figure(rows)] if against else []
        if forgotten.get(scenario) and any(r["per_class_test_acc"] for r in rows):
            figures.append(per_class_figure(rows, classes[scenario], forgotten[scenario]))
        pictures = [_png(f) for f in figures if f is not None]
        pictures += [base64.b64encode(Path(p).read_bytes()).decode() for p in (images or {}).get(scenario, [])]
        shown = "".join(f'<img src="data:image/png;base64,{p}">' for p in pictures)
        sections.append(f"<h2>{html.escape(titles.get(scenario, scenario))}</h2>{sentence}"
                        f"{_table(rows, columns or {})}<div>{shown}</div>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>unlearnkit bench</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} td:first-child{{text-align:left}}
img{{margin:8px;max-width:48%;vertical-align:top}} small{{color:#777}}</style></head><body>
<h1>unlearnkit bench</h1><p>Command: <code>{html.escape(command)}</code></p>
<p>Each cell: mean ± std over seeds, (mean per-seed |gap| to that seed's oracle). Avg.Gap: mean of the gaps
shown. D_KL: KL(oracle ‖ model) on the forget set. RTE: wall time of the unlearning call; speed-up over
training the oracle. RT′: a second oracle (another seed), the noise floor. Original: the model before unlearning.</p>
<p>{html.escape(note)}</p>
{''.join(sections)}</body></html>"""
    path = out_dir / "report.html"
    atomic_write_text(path, page)
    return path
