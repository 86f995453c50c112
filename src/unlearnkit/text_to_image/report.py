"""Files of the text-to-image bench: the Markdown table and a PNG sample grid per model, the erased prompts
framed in red."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .prompts import DIGITS, PROMPTS, STYLES, prompt_digit, prompt_style

COLUMNS = [("method", "method"), ("forget_acc", "forget_acc % ↓"), ("retain_acc", "retain_acc %"),
           ("fid", "FID* ↓"), ("alignment", "alignment"), ("neighbour_acc", "neighbours %"),
           ("updates", "updates"), ("unlearn_seconds", "time (s)")]


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.2f}"
    return str(value)


def markdown_table(rows: list[dict], columns=COLUMNS) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def sample_grid(path: Path, title: str, samples: Tensor, prompts: Tensor, erased: list[int],
                per_prompt: int = 2) -> None:
    """One row per digit, `per_prompt` samples of each of its three style prompts; the erased prompts' images
    framed in red. Every model is sampled from the same noise, so the grids of a bench compare cell by cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c, h, w = samples.shape[1:]
    gap, block = 2, per_prompt * (w + 1) - 1
    canvas = np.ones((len(DIGITS) * (h + 2 * gap), len(STYLES) * (block + 2 * gap), 3))
    for p in range(len(PROMPTS)):
        chosen = torch.nonzero(prompts == p).flatten()[:per_prompt]
        top = prompt_digit(p) * (h + 2 * gap) + gap
        left = prompt_style(p) * (block + 2 * gap) + gap
        if p in erased:
            canvas[top - gap:top + h + gap, left - gap:left + block + gap] = (0.85, 0.1, 0.1)
        for j, index in enumerate(chosen.tolist()):
            pixels = ((samples[index] + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
            x = left + j * (w + 1)
            canvas[top:top + h, x:x + w] = pixels if c == 3 else np.repeat(pixels[..., :1], 3, axis=2)
    fig, ax = plt.subplots(figsize=(3.2, 6.0))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([d * (h + 2 * gap) + gap + h / 2 for d in range(len(DIGITS))], list(DIGITS), fontsize=7)
    ax.set_xticks([s * (block + 2 * gap) + gap + block / 2 for s in range(len(STYLES))], list(STYLES), fontsize=7)
    ax.set_title(title, fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
