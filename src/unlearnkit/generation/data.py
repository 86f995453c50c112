"""Images for the diffusion model: any labelled ImageDataset brought to a square size and scaled to [-1, 1]."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.images import Augment, ImageDataset
from ..errors import ConfigError

LAYOUTS = ("pad", "resize")


def generation_dataset(dataset: ImageDataset, image_size: int = 16, layout: str = "pad") -> ImageDataset:
    """`dataset` with its images brought to `image_size` x `image_size` and normalised to [-1, 1].

    layout='pad' centres the images on a zero (background) canvas, so every original pixel is kept as it is
    (the 8x8 digits become 16x16 with a 4-pixel border); 'resize' scales them bilinearly. The normalisation
    (mean 0.5, std 0.5 on [0, 1] pixels) is the DDPM convention, and the classifier used to evaluate samples
    is trained on the same images, so generated samples and real data share one input space. Of the
    dataset's augmentation only horizontal flips are kept (the official DDPM trains CIFAR-10 with random flips).
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {LAYOUTS}, got '{layout}'")
    # A table is held as (N, F, 1, 1) (the registered ones without `vectors`): it would pad into F-channel
    # images of one lit pixel.
    if dataset.vectors or dataset.image_shape[1:] == (1, 1):
        raise ConfigError(f"generation needs images; dataset '{dataset.name}' holds feature vectors (a table)")
    channels, height, width = dataset.image_shape
    if height != width:
        raise ConfigError(f"generation expects square images, dataset '{dataset.name}' has {height}x{width}")
    if layout == "pad" and image_size < height:
        raise ConfigError(f"layout 'pad' needs image_size >= {height} for {dataset.name}, got {image_size}")

    def convert(images: Tensor) -> Tensor:
        x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
        if height == image_size:
            return x
        if layout == "pad":
            before = (image_size - height) // 2
            after = image_size - height - before
            return F.pad(x, (before, after, before, after))
        return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False).clamp(0, 1)

    source = {**dataset.source, "generation": {"image_size": image_size, "layout": layout}}
    return replace(dataset, name=f"{dataset.name}-{layout}{image_size}", train_images=convert(dataset.train_images),
                   test_images=convert(dataset.test_images), mean=(0.5,) * channels, std=(0.5,) * channels,
                   augment=Augment(hflip=dataset.augment.hflip), source=source, _fingerprint=None)


def to_unit(images: Tensor) -> Tensor:
    """Model space [-1, 1] to displayable [0, 1] (clamped)."""
    return ((images + 1) / 2).clamp(0, 1)
