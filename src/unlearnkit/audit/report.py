"""The audit's self-contained HTML page (PNG plots embedded as base64), beside rows.json and rows.md.

Plots: every row's U-LiRA ROC on log-log axes with the chance line (as LiRA plots them); per row, a histogram of
the per-example challenge epsilon; per method, the forget examples most exposed, ranked by their mean online
U-LiRA score over the members that forgot them (a log-likelihood ratio: graded, where epsilon on K/4 models per
side takes few values), captioned with how often an attacker flags them at 1% FPR and their epsilon.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..artifacts import atomic_write_text, finite_json, versions  # noqa: E402
from ..data.images import ImageDataset, pixel_values  # noqa: E402
from .pools import SANITY_ROWS  # noqa: E402
from .statistics import CHALLENGE_EPSILON_CAP, KLOM_BINS, KLOM_EPS  # noqa: E402

EXPOSED = 8  # forget examples shown per method
MARKDOWN_COLUMNS = (("method", "row"), ("auc", "U-LiRA AUC"), ("tpr_at_1pct_fpr", "TPR@1%"),
                    ("tpr_at_0p1pct_fpr", "TPR@0.1%"), ("epsilon", "mean ε"), ("forget_score", "F"),
                    ("klom", "KLOM p95"), ("klom_mean", "KLOM mean"), ("test_acc", "test acc"),
                    ("forget_acc", "forget acc"))


# Fewer models per side (K/4) than this and ε and KLOM measure the pool's size more than the method, so every report
# says so. Why 16 (K = 64): KLOM bins 2 × K/4 margins into KLOM_BINS = 20 bins, and with fewer samples than bins the
# unlearned and oracle histograms mostly miss each other, so an example's KLOM is the eps ceiling ln(1/1e-5) = 11.5:
# at K = 8 the p95 is that ceiling on every row, oracle vs oracle included, and at K = 16 it was still 10.9 on every
# row of digits and MNIST; ε on 2 models per side is ~0 or 50 (oracle row ~33). At K = 64 (16 per side) the digits
# rows separate and the oracle floor of ε is 1.6 (docs/audits.md, "Reading small pools"; docs/results/audit/).
TRUSTED_PER_SIDE = 16


def small_pool_note(pool: dict[str, Any]) -> str | None:
    """One line saying that ε and KLOM cannot be trusted on this pool (`pool`: the plan's describe()), or None."""
    per_side = pool["per_side"]
    if per_side >= TRUSTED_PER_SIDE:
        return None
    ceiling = math.log(1 / KLOM_EPS)
    return (f"note: a pool of {pool['models']} models has {per_side} per side for ε and KLOM, fewer than "
            f"{TRUSTED_PER_SIDE} (--models {4 * TRUSTED_PER_SIDE}): too few to fill KLOM's {KLOM_BINS} bins or rank "
            f"ε, so both read the pool's size (KLOM p95 near its ceiling {ceiling:.2f}, ε inflated, the oracle row "
            f"included); read U-LiRA and compare every row with the oracle row, or audit with --models "
            f"{4 * TRUSTED_PER_SIDE} or more.")


# ------------------------------------------------------------------------------------------------ JSON, Markdown

def summary(row: dict) -> dict:
    """An audit row (`audit.audit_row`) without its per-example arrays, JSON-ready (NaN as null)."""
    return finite_json({key: value for key, value in row.items() if key != "arrays"})


def markdown_table(rows: list[dict]) -> str:
    """The rows' summaries as a Markdown table; a diverged method shows its error instead of numbers."""
    lines = ["| " + " | ".join(title for _, title in MARKDOWN_COLUMNS) + " |",
             "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for row in rows:
        if row.get("error"):
            lines.append(f"| {row['method']} | diverged: {row['error']} |" + " |" * (len(MARKDOWN_COLUMNS) - 2))
            continue
        lines.append("| " + " | ".join(_fmt(row.get(key)) for key, _ in MARKDOWN_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_rows(result: dict[str, Any], folder: Path, command: str = "") -> dict[str, Path]:
    """rows.json (the summaries, the configuration, the pool and the versions) and rows.md (a table) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    note = small_pool_note(result["pool"])
    payload = {"command": command, "rows": [summary(r) for r in result["rows"]], "config": result.get("config"),
               "pool": result["pool"], "note": note, "versions": versions()}
    json_path, md_path = folder / "rows.json", folder / "rows.md"
    atomic_write_text(json_path, json.dumps(finite_json(payload), indent=2, default=str))
    atomic_write_text(md_path, markdown_table(result["rows"]) + (f"\n{note}\n" if note else ""))
    return {"json": json_path, "markdown": md_path}


# ------------------------------------------------------------------------------------------------------- plots


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _ok(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not r.get("error")]


def roc_figure(rows: list[dict]):
    """U-LiRA ROC of every row, log-log, with the chance line TPR = FPR."""
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    lowest = 1.0
    for row in _ok(rows):
        fpr, tpr = row["arrays"]["roc_fpr"], row["arrays"]["roc_tpr"]
        style = {"ls": "--"} if row["method"] in SANITY_ROWS else {}
        ax.plot(fpr, tpr, label=f"{row['method']} (AUC {row['auc']:.3f})", **style)
        positive = fpr[fpr > 0]
        lowest = min(lowest, positive.min() if len(positive) else 1.0)
    ax.plot([lowest, 1], [lowest, 1], color="gray", lw=1, ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lowest, 1)
    ax.set_ylim(lowest, 1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("U-LiRA (online): unlearned vs never seen")
    ax.legend(fontsize=7, loc="lower right")
    return fig


EPSILON_ZOOM = 5.0  # ε on K/4 models per side is mostly below a few, or at the cap: show [0, 5] and one bar ≥ 5


def epsilon_figure(rows: list[dict]):
    """Per row, the histogram of the per-example challenge epsilon (0 = indistinguishable from the oracles):
    bins of 0.25 up to EPSILON_ZOOM, then one bar for everything above (mostly the cap, 50)."""
    rows = _ok(rows)
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows) + 0.6, 2.8), sharey=True, squeeze=False)
    edges = np.arange(0, EPSILON_ZOOM + 0.5, 0.25)
    for ax, row in zip(axes[0], rows):
        eps = row["arrays"]["epsilon"]
        eps = eps[~np.isnan(eps)]
        counts, _ = np.histogram(np.minimum(eps, EPSILON_ZOOM + 0.1), bins=edges)
        colors = ["tab:gray" if row["method"] in SANITY_ROWS else "tab:blue"] * (len(counts) - 1) + ["tab:red"]
        ax.bar(edges[:-1], counts, width=0.25, align="edge", color=colors)
        ticks = np.arange(int(EPSILON_ZOOM))
        ax.set_xticks([*ticks, EPSILON_ZOOM + 0.125], [*map(str, ticks), f"≥{EPSILON_ZOOM:g}"], fontsize=7)
        at_cap = int((eps >= CHALLENGE_EPSILON_CAP).sum())
        mean = "—" if row["epsilon"] is None else f"{row['epsilon']:.2f}"
        ax.set_title(f"{row['method']}: mean ε {mean}\n{at_cap} of {len(eps)} at the cap "
                     f"({CHALLENGE_EPSILON_CAP:g})", fontsize=8)
        ax.set_xlabel("ε per example", fontsize=8)
    axes[0][0].set_ylabel("examples")
    fig.tight_layout()
    return fig


def _image(dataset: ImageDataset, n: int, span: tuple | None) -> np.ndarray:
    """Training image `n` for imshow, in [0, 1]: pixels as they are; a table's row, or an image in other units,
    scaled by each channel's training range (`span`, `ImageDataset.input_range`). A row is drawn as a strip."""
    x = pixel_values(dataset.train_images[n].detach().cpu())
    if span is not None:
        low, high = (t.cpu()[:, None, None] for t in span)
        x = (x - low) / (high - low).clamp_min(1e-12)
    x = x.numpy()
    if dataset.vectors:
        return x[:, 0, 0][None, :]
    return x[0] if x.shape[0] == 1 else np.clip(x.transpose(1, 2, 0)[..., :3], 0, 1)


def exposed_figure(row: dict, dataset: ImageDataset, count: int = EXPOSED):
    """The `count` forget examples with the highest mean U-LiRA score, each captioned with its training index,
    label, mean score, how many of its forgetting members an attacker flags at 1% FPR, and its epsilon."""
    arrays = row["arrays"]
    score = np.where(np.isnan(arrays["exposure"]), -np.inf, arrays["exposure"])
    top = np.argsort(-score, kind="stable")[:count]
    fig, axes = plt.subplots(1, len(top), figsize=(1.45 * len(top), 2.0), squeeze=False)
    span = dataset.input_range
    for ax, i in zip(axes[0], top):
        n = int(arrays["examples"][i])
        image = _image(dataset, n, span)
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
        label = dataset.classes[int(dataset.train_labels[n])]
        eps = arrays["epsilon"][i]
        ax.set_title(f"#{n} '{label}'\nmean Λ {arrays['exposure'][i]:.1f}\nflagged {arrays['flagged'][i]:.0%}\n"
                     f"ε {'—' if math.isnan(eps) else f'{eps:.1f}'}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{row['method']}: forget examples most exposed", fontsize=9, y=1.12)
    return fig


def _table(rows: list[dict]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in MARKDOWN_COLUMNS)
    body = []
    for row in rows:
        if row.get("error"):
            body.append(f"<tr><td>{html.escape(row['method'])}</td><td colspan='{len(MARKDOWN_COLUMNS) - 1}'>"
                        f"diverged: {html.escape(row['error'])}</td></tr>")
            continue
        cells = [_fmt(row.get(key)) for key, _ in MARKDOWN_COLUMNS]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


EXPLANATION = """<p>Rows: each method's unlearned models; <b>oracle</b>, the retrained models as if a method had
produced them (must read chance: AUC 0.5, TPR@FPR = FPR, the noise floor of ε and KLOM); <b>original</b>, nothing
unlearned (must read clearly above chance, or the pool cannot see anything). U-LiRA (Hayes et al.): for each model
in turn, Gaussian likelihood ratio of its logit-scaled confidence on a candidate against the other models that
unlearned it and that never saw it; positives are its forget examples, negatives the candidates outside its half.
ε: the NeurIPS 2023 unlearning challenge's per-example ε between the row's models of group A that forgot the
example and the oracles of group B that did (K/4 each); F its forget score (1 is best; needs K/4 ≥ 3). KLOM
(Attribute-to-Delete): binned KL of the margins, same two sets, 95th percentile over candidates. Lower is better
for all but F. Definitions: <code>unlearnkit/audit/statistics.py</code>; protocol: docs (audits).</p>"""


def write_report(result: dict[str, Any], dataset: ImageDataset, folder: Path, command: str = "") -> dict[str, Path]:
    """report.html, rows.json and rows.md in `folder`; returns their paths as "report", "json", "markdown"."""
    paths = write_rows(result, folder, command)
    rows = result["rows"]
    pool = result["pool"]
    figures = [roc_figure(rows), epsilon_figure(rows)]
    exposed = [exposed_figure(r, dataset) for r in _ok(rows) if r["method"] not in SANITY_ROWS]
    images = "".join(f'<img src="data:image/png;base64,{_png(f)}">' for f in figures)
    exposure = "".join(f'<div><img class="wide" src="data:image/png;base64,{_png(f)}"></div>' for f in exposed)
    facts = (f"{pool['models']} members (seed {pool['seed']}, {pool['trainer']} training), each on {pool['half']} of "
             f"{pool['n_train']} training examples; forget '{html.escape(pool['forget'])}': {pool['candidates']} "
             f"candidates, {min(pool['forget_per_member'])}–{max(pool['forget_per_member'])} forgotten per member; "
             f"{pool['per_side']} models per side for ε and KLOM.")
    note = small_pool_note(pool)
    if note:
        facts += f"</p><p><b>{html.escape(note)}</b>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>unlearnkit audit</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} td:first-child{{text-align:left}}
img{{margin:8px;max-width:48%;vertical-align:top}} img.wide{{max-width:95%}}</style></head><body>
<h1>unlearnkit audit</h1><p>Command: <code>{html.escape(command)}</code></p><p>{facts}</p>{EXPLANATION}
{_table(rows)}<div>{images}</div><h2>Which forget examples leak</h2>
<p>Per method, the candidates with the highest mean U-LiRA score (mean Λ, a log-likelihood ratio) over the members
that forgot them; "flagged":
the share of those members on which an attacker thresholding at 1% FPR calls the example unlearned.</p>
{exposure}</body></html>"""
    report = folder / "report.html"
    atomic_write_text(report, page)
    return {"report": report, **paths}
