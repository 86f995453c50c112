"""Training the text-to-image model from scratch (text encoder and UNet together): the original on every
caption, the oracle without the erased concept's samples; content-keyed in the store like generation/training.py.

Objective: DDPM noise prediction (LDM's loss: the mean squared error over pixels), the caption dropped to the
empty prompt with probability `cond_drop_prob` (classifier-free guidance), linear betas over T = 1000,
Adam with a cosine schedule, gradient norm clipped, and an EMA of both networks (the stored weights).
A stored model is a diffusers folder (`Components.save`) plus record.json.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ..artifacts import content_key, versions, warn_damaged, writable_store
from ..config import validated
from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import CheckpointError
from ..generation.training import ema_update
from ..progress import task
from ..runtime import Runtime, seed_everything, warm_up
from ..training import diverged
from .components import Components, ModelSpec, TextToImageModel, build_components, load_components
from .prompts import NULL_PROMPT

RECORD = "record.json"


class TextToImageRecipe(BaseModel):
    """How the model is trained from scratch. The defaults were sized for the 16x16 captioned digits on one CPU
    thread (docs/text_to_image.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    steps: int = Field(default=2400, gt=0)
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=5e-3, gt=0)
    text_lr_scale: float = Field(default=0.4, gt=0)  # the text encoder learns at lr x this (5e-3 on it fails)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float = Field(default=1.0, ge=0)
    ema_decay: float = Field(default=0.995, ge=0, lt=1)
    cond_drop_prob: float = Field(default=0.1, ge=0, lt=1)
    beta_start: float = Field(default=1e-4, gt=0)
    beta_end: float = Field(default=0.02, lt=1)

    def with_overrides(self, overrides: dict) -> "TextToImageRecipe":
        return validated(TextToImageRecipe, {**self.model_dump(), **overrides}, "text-to-image recipe")


def fit(components: Components, dataset: ImageDataset, indices, recipe: TextToImageRecipe, runtime: Runtime,
        seed: int, label: str) -> tuple[Components, float]:
    """Train text encoder and UNet in place on the training samples `indices` (all when None); return the EMA
    components and the mean loss of the last tenth of the steps."""
    generator = seed_everything(seed)
    unet, text = components.unet.to(runtime.device).train(), components.text_encoder.to(runtime.device).train()
    ema_unet, ema_text = (copy.deepcopy(m).eval().requires_grad_(False) for m in (unet, text))
    params = list(unet.parameters()) + list(text.parameters())
    optimizer = torch.optim.Adam([{"params": list(unet.parameters())},
                                  {"params": list(text.parameters()), "lr": recipe.lr * recipe.text_lr_scale}],
                                 lr=recipe.lr)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.steps) if recipe.lr_schedule == "cosine"
                 else torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0))
    schedule = components.schedule()
    prompts = list(dataset.classes)
    ids, _ = _ids(components, prompts)  # row len(prompts) is the empty prompt
    ids = ids.to(runtime.device)
    stream = dataset.train(indices, augment=False).stream(recipe.batch_size, generator)
    tail, tail_start = [], recipe.steps - max(recipe.steps // 10, 1)
    with task(label, recipe.steps) as advance:
        for step in range(recipe.steps):
            x, y = next(stream)
            x, y = x.to(runtime.device), y.to(runtime.device)
            dropped = (torch.rand(len(y), generator=generator) < recipe.cond_drop_prob).to(runtime.device)
            y = torch.where(dropped, torch.full_like(y, len(prompts)), y)  # index len(prompts): the empty prompt
            t = torch.randint(0, schedule.timesteps, (len(x),), generator=generator).to(runtime.device)
            noise = torch.randn(x.shape, generator=generator).to(runtime.device)
            with runtime.autocast():
                context = text(ids[y]).last_hidden_state
                eps = unet(schedule.q_sample(x, t, noise), t, encoder_hidden_states=context).sample.float()
            loss = F.mse_loss(eps, noise)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if recipe.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
            optimizer.step()
            scheduler.step()
            for ema, live in ((ema_unet, unet), (ema_text, text)):
                ema_update(ema, live, recipe.ema_decay)
            value = loss.item()
            if not math.isfinite(value):
                raise diverged(label, f"the loss became {value} at step {step + 1}", recipe.lr)
            if step >= tail_start:
                tail.append(value)
            advance(info=f"loss {value:.3f}")
    trained = Components(ema_unet.requires_grad_(True), ema_text, components.tokenizer, components.scheduler,
                         components.vae)
    return trained, sum(tail) / len(tail)


def _ids(components: Components, prompts: list[str]):
    out = components.tokenizer(prompts + [NULL_PROMPT], padding="max_length",
                                max_length=components.tokenizer.model_max_length, truncation=True, return_tensors="pt")
    return out.input_ids, out.attention_mask


def train_text_to_image(dataset: ImageDataset, spec: ModelSpec | None = None,
                        recipe: TextToImageRecipe | None = None, seed: int = 0, split: ForgetSplit | None = None,
                        runtime: Runtime | None = None, store: Path | None = None, force: bool = False) -> Path:
    """Train the original (no split) or the oracle (on `split.remain` only), or find a stored one; returns the
    stored diffusers folder. The content key covers the data, model spec, recipe, seed, split and compute."""
    runtime = runtime or Runtime.create()
    spec, recipe = spec or ModelSpec(), recipe or TextToImageRecipe()
    kind = "original" if split is None else "oracle"
    identity = {"kind": kind, "task": "text-to-image", "data": dataset.fingerprint, "model": spec.model_dump(),
                "recipe": recipe.model_dump(), "seed": seed, "split": split.fingerprint if split else None,
                "compute": runtime.identity()}
    key = content_key(identity)
    folder = writable_store(store) / "models" / f"t2i-{kind}-{dataset.name}-{key}"
    if (folder / RECORD).is_file() and not force:
        problem = damage(folder)
        if problem is None:
            return folder
        warn_damaged(folder, problem)
    seed_everything(seed)  # initial weights depend on the seed alone, for the original and the oracle alike
    components = build_components(spec, schedule=(recipe.beta_start, recipe.beta_end))
    warm_up()
    started = time.perf_counter()
    trained, loss = fit(components, dataset, split.remain if split else None, recipe, runtime, seed,
                        f"text-to-image {kind} seed {seed}")
    record = {**identity, "key": key, "data": dataset.describe(), "split": split.describe() if split else None,
              "metrics": {"train_loss": loss}, "wall_time_s": time.perf_counter() - started,
              "sample_passes": recipe.steps * recipe.batch_size, "device": str(runtime.device),
              "threads": runtime.threads, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions()}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    trained.save(tmp)
    record["files"] = files_key(tmp)
    (tmp / RECORD).write_text(json.dumps(record, indent=2, default=str))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def files_key(folder: Path) -> str:
    """A hash of every file of a stored diffusers folder but its record (names and bytes): what the record was
    written for."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != RECORD):
        digest.update(f"{path.relative_to(folder).as_posix()}:{path.stat().st_size}:".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def damage(folder: Path) -> str | None:
    """Why a stored model cannot be reused (an unreadable record, or files changed or damaged since it was
    written), or None. A record from before the files were hashed is taken as it is."""
    try:
        expected = stored_record(folder).get("files")
    except CheckpointError as exc:
        return str(exc)
    if expected is not None and files_key(folder) != expected:
        return f"its files are not those its {RECORD} was written for"
    return None


def load_text_to_image(folder: str | Path, runtime: Runtime | None = None) -> TextToImageModel:
    """The model in a diffusers folder (stored by `train_text_to_image`, or any local SD folder)."""
    model = TextToImageModel(load_components(folder))
    model.eval()
    return model.to(runtime.device) if runtime else model


def stored_record(folder: str | Path) -> dict:
    path = Path(folder) / RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"'{folder}' has no readable {RECORD}: {exc}") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"'{folder}' has no readable {RECORD}: a JSON {type(record).__name__}, not an object")
    return record
