"""Erasing a free-text concept ("nudity", "Van Gogh") from any text-to-image model, such as Stable Diffusion read
from a local diffusers folder: `unlearnkit erase --model-dir DIR --concept nudity --prompt ... --keep ...`.

There is no training data to hand, so the forget and remain sets are the model's own generations, in its latent
space: `per_prompt` samples of each concept prompt (D_f) and of each prompt to keep (D_r), as the SD scripts of
SalUn and SFR-on build theirs. ESD and UCE need only the prompts; SalUn and SFR-on remap the concept's prompts to
the `anchor` prompt (SFR-on's nudity script: "a person wearing clothes"; default the empty prompt) and keep D_r;
FMN re-steers the attention off the concept's words. The erased model is written as a diffusers folder beside a
record of the erasure.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..artifacts import versions
from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import ConfigError
from ..runtime import Runtime
from ..unlearning.engine import UnlearnResult, unlearn
from .methods import TEXT_TO_IMAGE_METHODS
from .sampling import sample
from .task import TextToImage


@torch.no_grad()
def prompt_dataset(model, prompts: list[str], per_prompt: int, steps: int, guidance: float, seed: int,
                   classes: list[str] | None = None) -> ImageDataset:
    """`per_prompt` of the model's own samples of every prompt, in the space its UNet works in (latents with a
    VAE), labelled by prompt; a second draw (seed + 1) is the test part. `classes` names the labels (default:
    the prompts; more names than prompts for a task whose table holds prompts that are never sampled)."""
    labels = torch.arange(len(prompts)).repeat_interleave(per_prompt)
    repeated = [prompts[int(i)] for i in labels]
    train, test = (sample(model, repeated, steps, guidance, seed=seed + k, decode=False) for k in (0, 1))
    channels = train.shape[1]
    return ImageDataset("generated-prompts", train, labels, test, labels.clone(), list(classes or prompts),
                        (0.0,) * channels,
                        (1.0,) * channels, source={"name": "generated", "per_prompt": per_prompt, "steps": steps,
                                                   "guidance": guidance, "seed": seed})


def erase_concept(model, concept: str, method: str, *, prompts: list[str] | None = None, keep: list[str] = (),
                  anchor: str = "", per_prompt: int = 4, steps: int = 25, guidance: float = 7.5, seed: int = 0,
                  runtime: Runtime | None = None, **hyperparameters) -> UnlearnResult:
    """Erase `concept` (its words; its prompts default to the concept itself) from the TextToImageModel `model`,
    in place, with a text-to-image method, keeping the prompts `keep`."""
    prompts = list(prompts or [concept])
    keep = [k for k in keep if k not in prompts]
    if not concept.strip():
        raise ConfigError("erase: the concept is empty")
    declared = TEXT_TO_IMAGE_METHODS.get(method)
    needs_remain = declared.remain is not None or declared.mask is not None
    if needs_remain and not keep:
        raise ConfigError(f"{method} keeps a remain set: give the prompts to keep (--keep), e.g. 'a photo of a person'")
    if per_prompt < 1:
        raise ConfigError(f"erase: per_prompt must be at least 1, got {per_prompt}")
    table = prompts + keep + ([anchor] if anchor and anchor not in prompts + keep else [])
    anchor_index = table.index(anchor) if anchor else len(table)  # len(table): the task's null (empty) prompt
    data = prompt_dataset(model, prompts + keep, per_prompt, steps, guidance, seed, classes=table)
    labels = data.train_labels.numpy()
    forget = np.flatnonzero(labels < len(prompts)).astype(np.int64)
    remain = np.flatnonzero(labels >= len(prompts)).astype(np.int64)
    split = ForgetSplit(f"concept:{concept}", seed, forget, remain, (), data)
    targets = {p: anchor_index for p in range(len(prompts))}
    words = {p: [concept] for p in range(len(prompts))}
    return unlearn(model, split, method, data=data, runtime=runtime, seed=seed, methods=TEXT_TO_IMAGE_METHODS,
                   make_task=lambda hp: TextToImage(table, hp["cond_drop_prob"], hp["fisher_guidance"], seed, targets,
                                                    words), **hyperparameters)


def erase_folder(model_dir: str | Path, out: str | Path, concept: str, method: str, *, force: bool = False,
                 runtime: Runtime | None = None, **options) -> dict:
    """`erase_concept` on the model of a local diffusers folder; writes the erased model to `out` (a diffusers
    folder, written whole to a temporary folder and renamed into place) with `erasure.json`."""
    from .components import TextToImageModel, load_components

    TEXT_TO_IMAGE_METHODS.get(method)  # a typo fails before the model loads
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise ConfigError(f"'{out}' exists: choose another --out, or pass --force to replace it")
    runtime = runtime or Runtime.create()
    model = TextToImageModel(load_components(model_dir)).to(runtime.device)
    result = erase_concept(model, concept, method, runtime=runtime, **options)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.components().save(tmp)
    record = {"kind": "erased", "task": "text-to-image", "model_dir": str(Path(model_dir).expanduser()),
              "concept": concept, "unlearning": result.record(), "versions": versions(),
              "options": {k: v for k, v in options.items() if k in ("prompts", "keep", "anchor", "per_prompt",
                                                                    "steps", "guidance", "seed")}}
    (tmp / "erasure.json").write_text(json.dumps(record, indent=2, default=str))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return {"model_dir": str(out), "method": method, "concept": concept, "task": "text-to-image",
            "wall_time_s": result.wall_time_s, "updates": result.details["updates"],
            "hyperparameters": result.hyperparameters}
