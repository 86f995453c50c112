"""The generation bench's own picture: a PNG grid of samples, one row per model (the tables are the common bench's)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data import to_unit


def sample_grid(path: Path, names: list[str], samples: list[Tensor], labels: Tensor, classes: list[str],
                forgotten: list[int], per_class: int = 3) -> None:
    """Rows: one model each; columns: `per_class` samples of every class, the forgotten classes framed in red.
    All rows were sampled from the same noise, so a column compares the models on one starting point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gap = 2
    first = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(len(classes))]
    c, h, w = samples[0].shape[1:]
    block_w = per_class * (w + 1) - 1
    canvas_w = len(classes) * (block_w + 2 * gap)
    canvas_h = len(names) * (h + 2 * gap)
    canvas = np.ones((canvas_h, canvas_w, 3))
    for r, images in enumerate(samples):
        top = r * (h + 2 * gap) + gap
        for k, chosen in enumerate(first):
            left = k * (block_w + 2 * gap) + gap
            if k in forgotten:
                canvas[top - gap:top + h + gap, left - gap:left + block_w + gap] = (0.85, 0.1, 0.1)
            for j, index in enumerate(chosen.tolist()):
                pixels = to_unit(images[index]).permute(1, 2, 0).numpy()
                x = left + j * (w + 1)
                canvas[top:top + h, x:x + w] = pixels if c == 3 else np.repeat(pixels, 3, axis=2)
    fig, ax = plt.subplots(figsize=(max(6.0, canvas_w / 22), max(2.0, canvas_h / 22)))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_yticks([r * (h + 2 * gap) + gap + h / 2 for r in range(len(names))], names)
    ax.set_xticks([k * (block_w + 2 * gap) + gap + block_w / 2 for k in range(len(classes))],
                  [f"{name}\n(forgotten)" if k in forgotten else name for k, name in enumerate(classes)])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
