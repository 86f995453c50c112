"""The captioned digits: scikit-learn's 8x8 digits in three stroke styles, padded to 16x16, with a caption each.

Every image gets one style, fixed per sample (a seeded, per-digit balanced assignment that no run seed
changes), applied as a real image transform:
- thick: grey dilation, 5x5 square element on the digit upsampled 4x (bilinear), then area-downsampled back:
  strokes widen by about half a pixel on each side at 8x8;
- thin: grey erosion the same way, then the image rescaled to a maximum of 1 so the thinned strokes stay bright;
- inverted: the whole 16x16 canvas inverted (1 - x): a dark digit on a white background.
The label of a sample is its caption's index in `prompts.PROMPTS` (digit * 3 + style), and the dataset's
`classes` are the captions, so a concept's training samples are the labels of its prompts.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import ConfigError
from .prompts import PROMPTS, STYLES, Concept, concept_prompts, parse_concepts

STYLE_SEED = 0  # the style assignment is part of the dataset, not of a run
IMAGE_SIZE = 16


def _morph(x: Tensor, dilate: bool, factor: int = 4, element: int = 5) -> Tensor:
    up = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
    sign = 1.0 if dilate else -1.0
    up = sign * F.max_pool2d(sign * up, element, 1, element // 2)
    return F.avg_pool2d(up, factor)


def stylise(images: Tensor, styles: Tensor, image_size: int = IMAGE_SIZE) -> Tensor:
    """Images (N, 1, h, w) in [0, 1] in their styles (indices into STYLES), centred on an `image_size` canvas."""
    h = images.shape[-1]
    if image_size < h:
        raise ConfigError(f"image_size must be >= {h}, got {image_size}")
    out = images.clone()
    thick, thin, inverted = (styles == i for i in range(len(STYLES)))
    if thick.any():
        out[thick] = _morph(images[thick], dilate=True)
    if thin.any():
        eroded = _morph(images[thin], dilate=False)
        out[thin] = eroded / eroded.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    before = (image_size - h) // 2
    out = F.pad(out.clamp(0, 1), (before, image_size - h - before, before, image_size - h - before))
    out[inverted] = 1 - out[inverted]
    return out


def assign_styles(labels: Tensor, seed: int = STYLE_SEED) -> Tensor:
    """One style per sample: within each digit, a seeded shuffle of its samples takes the styles in turn, so
    every (digit, style) pair has a third of the digit's samples (up to one)."""
    styles = torch.empty_like(labels)
    generator = torch.Generator().manual_seed(seed)
    for digit in labels.unique():
        rows = torch.nonzero(labels == digit).flatten()
        order = rows[torch.randperm(len(rows), generator=generator)]
        styles[order] = torch.arange(len(rows)) % len(STYLES)
    return styles


def captioned_digits(image_size: int = IMAGE_SIZE) -> ImageDataset:
    """The embedded default of the text-to-image domain (1437 training, 360 test images, 30 captions)."""
    from ..data import load_dataset

    base = load_dataset("digits")

    def part(images: Tensor, digits: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        styles = assign_styles(digits, seed)
        return stylise(images.float(), styles, image_size), digits * len(STYLES) + styles

    train_x, train_y = part(base.train_images, base.train_labels, STYLE_SEED)
    test_x, test_y = part(base.test_images, base.test_labels, STYLE_SEED + 1)
    source = {"name": "captioned-digits", "root": None, "options": {"image_size": image_size},
              "styles": {"seed": STYLE_SEED, "names": list(STYLES), "thick": "grey dilation 5x5 at 4x",
                         "thin": "grey erosion 5x5 at 4x, max rescaled to 1", "inverted": "1 - x on the canvas"}}
    # mean/std 0.5: the model space is [-1, 1], the DDPM convention (as generation/data.py)
    return ImageDataset(f"captioned-digits-{image_size}", train_x, train_y, test_x, test_y, list(PROMPTS),
                        (0.5,), (0.5,), source=source)


@torch.no_grad()
def latent_dataset(dataset: ImageDataset, model, batch_size: int = 64) -> ImageDataset:
    """`dataset` in the latent space of `model`'s VAE, where an SD UNet is trained and fine-tuned: each image, as
    RGB in [-1, 1] at the VAE's size, encoded to its posterior mean x the VAE's scaling factor. The latents are
    the model space as they are (mean 0, std 1)."""
    if model.vae is None:
        raise ConfigError("latent_dataset: the model has no VAE (it works in pixel space)")
    size = model.vae.config.sample_size

    def encode(images: Tensor) -> Tensor:
        x = images.float() / (255 if images.dtype == torch.uint8 else 1)
        x = F.interpolate(x * 2 - 1, size=(size, size), mode="bilinear", align_corners=False)
        return torch.cat([model.encode(x[i:i + batch_size].expand(-1, 3, -1, -1))
                          for i in range(0, len(x), batch_size)])

    return replace(dataset, name=f"{dataset.name}-latent", train_images=encode(dataset.train_images),
                   test_images=encode(dataset.test_images), mean=(0.0,), std=(1.0,),
                   source={**dataset.source, "latents": {"vae_sample_size": size}}, _fingerprint=None)


def relabelled(dataset: ImageDataset, kind: str) -> ImageDataset:
    """The same images labelled by digit (10 classes) or style (3 classes): what the evaluation classifiers learn."""
    from .prompts import DIGITS, prompt_digit, prompt_style

    of, classes = (prompt_digit, list(DIGITS)) if kind == "digit" else (prompt_style, list(STYLES))
    table = torch.tensor([of(p) for p in range(len(PROMPTS))])
    return replace(dataset, name=f"{dataset.name}-{kind}", train_labels=table[dataset.train_labels],
                   test_labels=table[dataset.test_labels], classes=classes,
                   source={**dataset.source, "labels": kind}, _fingerprint=None)


def concept_split(dataset: ImageDataset, concepts: str | tuple[Concept, ...], seed: int = 0) -> ForgetSplit:
    """The forget split of erasing `concepts`: every training sample whose caption names one of them."""
    concepts = parse_concepts(concepts) if not isinstance(concepts, tuple) else concepts
    erased = concept_prompts(concepts)
    labels = dataset.train_labels.cpu().numpy()
    forget = np.flatnonzero(np.isin(labels, erased)).astype(np.int64)
    remain = np.setdiff1d(np.arange(len(labels)), forget).astype(np.int64)
    if len(forget) == 0 or len(remain) == 0:
        raise ConfigError(f"erasing {[c.name for c in concepts]} leaves an empty forget or remain set")
    spec = "concept:" + "+".join(c.name for c in concepts)
    return ForgetSplit(spec, seed, forget, remain, tuple(erased), dataset)
