"""In-memory labelled image sets, their preprocessing, and views that yield batches.

Every dataset is held as tensors, so batching is indexing: no DataLoader workers, and on a small set
like digits an epoch costs milliseconds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ..config import GENERIC_RECIPE, TrainRecipe
from ..errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """Train-time augmentation: random crop after zero padding, and horizontal flips."""

    crop_padding: int = 0
    hflip: bool = False

    def __post_init__(self):  # checked here: a bad value would otherwise fail only in the first training batch
        padding = self.crop_padding
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ConfigError(f"Augment: crop_padding must be a whole number of pixels >= 0, got {padding!r}")
        if not isinstance(self.hflip, (bool, np.bool_)):
            raise ConfigError(f"Augment: hflip must be True or False, got {self.hflip!r}")
        object.__setattr__(self, "crop_padding", int(padding))  # numpy scalars as plain values, for the run keys
        object.__setattr__(self, "hflip", bool(self.hflip))

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.hflip

    def __call__(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        n, _, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            batch = torch.arange(n, device=x.device)[:, None, None, None]
            chans = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
            x = padded[batch, chans, rows, cols]
        if self.hflip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x


@dataclass(repr=False)
class ImageDataset:
    """A train and a test part, each images (N, C, H, W) and int64 labels, with their preprocessing.

    Images are uint8 in [0, 255] or float in [0, 1]; `mean`/`std` normalise per channel.
    `source` records where the data came from, for the run record; `recipe` is how a model is trained on it
    from scratch by default (the registered dataset's, or the one given to `from_torch`). `vectors` marks a
    table held as (N, F, 1, 1): models are given its rows as (N, F), as a user's own model expects them.
    """

    name: str
    train_images: Tensor
    train_labels: Tensor
    test_images: Tensor
    test_labels: Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: Augment = Augment()
    source: dict = field(default_factory=dict)
    recipe: TrainRecipe = GENERIC_RECIPE
    vectors: bool = False
    _fingerprint: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:  # a summary: the default would print every pixel
        dtype = str(self.train_images.dtype).removeprefix("torch.")
        shape = f"features ({self.image_shape[0]},)" if self.vectors else f"images {self.image_shape}"
        return (f"ImageDataset({self.name!r}: {len(self.train_labels)} train / {len(self.test_labels)} test, "
                f"{self.num_classes} classes, {shape} {dtype}, "
                f"recipe {self.recipe.epochs} epochs of batch {self.recipe.batch_size} at lr {self.recipe.lr:g})")

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])  # type: ignore[return-value]

    @property
    def fingerprint(self) -> str:
        """A content hash of all images and labels: runs are keyed on the data, not on its path."""
        if self._fingerprint is None:
            digest = hashlib.sha256(b"vectors" if self.vectors else b"")
            for t in (self.train_images, self.train_labels, self.test_images, self.test_labels):
                t = t.detach().cpu().contiguous()
                digest.update(str((t.dtype, tuple(t.shape))).encode())
                digest.update(t.numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def describe(self) -> dict:
        return {
            **self.source,
            "loader": self.source.get("name"),  # the registered dataset that reads it again (see pipeline.dataset_of)
            "name": self.name,
            "fingerprint": self.fingerprint,
            "n_train": len(self.train_labels),
            "n_test": len(self.test_labels),
            "num_classes": self.num_classes,
            "image_shape": list(self.image_shape),
        }

    @property
    def input_range(self) -> tuple[Tensor, Tensor] | None:
        """Each channel's lowest and highest value over the training images, before normalisation, as (C,)
        tensors; None for images whose values all lie in [0, 1] (8-bit pixels, or floats in that range), the
        pixel space the official attack codes assume. A table's features, and images given in other units
        (normalised by the user's own Dataset), have only the range they were observed in."""
        images = self.train_images
        if images.dtype == torch.uint8 and not self.vectors:
            return None
        x = pixel_values(images)
        low, high = x.amin(dim=(0, 2, 3)), x.amax(dim=(0, 2, 3))
        if not self.vectors and low.min() >= 0 and high.max() <= 1:
            return None
        return low, high

    def to(self, device: torch.device) -> "ImageDataset":
        """Move the tensors (e.g. onto the GPU, where indexing beats host-to-device copies)."""
        moved = {k: getattr(self, k).to(device) for k in ("train_images", "train_labels", "test_images", "test_labels")}
        return replace(self, **moved, _fingerprint=self.fingerprint)

    def train(self, indices=None, augment: bool = True) -> "DataView":
        """The training part (or a subset of it), with train-time augmentation unless switched off."""
        return DataView(self, "train", _as_index(indices, len(self.train_labels)), augment and self.augment.active)

    def test(self) -> "DataView":
        return DataView(self, "test", _as_index(None, len(self.test_labels)), False)

    def normalise(self, images: Tensor) -> Tensor:
        x = pixel_values(images)
        mean = torch.tensor(self.mean, device=x.device)[None, :, None, None]
        std = torch.tensor(self.std, device=x.device)[None, :, None, None]
        x = (x - mean) / std
        return x.flatten(1) if self.vectors else x


def pixel_values(images: Tensor) -> Tensor:
    """Images as floats in their stored scale: uint8 pixels read as 0-255 and brought to [0, 1]."""
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def _as_index(indices, n: int) -> Tensor:
    if indices is None:
        return torch.arange(n)
    if isinstance(indices, np.ndarray) and not indices.flags.writeable:
        indices = indices.copy()  # read-only (e.g. from Ray's object store): torch would warn on every view
    return torch.as_tensor(indices, dtype=torch.long).reshape(-1)


@dataclass(frozen=True)
class DataView:
    """A subset of one part of a dataset, with train-time or test-time transforms."""

    dataset: ImageDataset
    part: str
    indices: Tensor
    augment: bool

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def _images(self) -> Tensor:
        return self.dataset.train_images if self.part == "train" else self.dataset.test_images

    @property
    def labels(self) -> Tensor:
        labels = self.dataset.train_labels if self.part == "train" else self.dataset.test_labels
        return labels[self.indices.to(labels.device)]

    def eval(self) -> "DataView":
        """The same samples with test-time transforms (no augmentation): use this for evaluation."""
        return replace(self, augment=False)

    def batch(self, positions: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Samples at `positions` within this view, preprocessed: (images, labels)."""
        rows = self.indices[positions]
        images = self._images
        rows = rows.to(images.device)
        x = self.dataset.normalise(images[rows])
        if self.augment:
            x = self.dataset.augment(x, generator)
        labels = self.dataset.train_labels if self.part == "train" else self.dataset.test_labels
        return x, labels[rows.to(labels.device)]

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One pass over the view."""
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for start in range(0, len(self), batch_size):
            yield self.batch(order[start : start + batch_size], generator)

    def stream(self, batch_size: int, generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless shuffled batches, reshuffled every pass (the official code's `cycle(loader)`)."""
        if len(self) == 0:
            raise ConfigError("cannot stream batches from an empty view")
        while True:
            yield from self.batches(batch_size, shuffle=True, generator=generator)

    def num_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)
