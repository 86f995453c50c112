"""The dataset registry: every dataset unlearnkit can read, with its default model and training recipe."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..config import GENERIC_RECIPE, TrainRecipe, as_recipe
from ..errors import ConfigError, DataError
from ..registry import Registry
from .images import Augment, ImageDataset, pixel_values
from .readers import read_cifar, read_idx_folder, read_image_folder, require_folder


@dataclass(frozen=True)
class DatasetSpec:
    load: Callable[..., ImageDataset]  # load(root, **options)
    description: str
    default_model: str
    recipe: TrainRecipe
    needs_root: bool = True

    def options(self) -> list[str]:
        return [p for p in inspect.signature(self.load).parameters if p != "root"]


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def load_dataset(name: str, root: str | Path | None = None, **options) -> ImageDataset:
    """Load a registered dataset by name; `root` is its local folder (not needed for `digits`)."""
    spec = DATASETS.get(name)
    unknown = set(options) - set(spec.options())
    if unknown:
        raise ConfigError(f"dataset '{name}' has no option(s) {sorted(unknown)}; it takes: {spec.options() or 'none'}")
    dataset = spec.load(root, **options)
    dataset.source = {"name": name, "root": str(Path(root).expanduser().resolve()) if root else None,
                      "options": options}
    dataset.recipe = spec.recipe
    return dataset


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = pixel_values(images)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist())


def _load_digits(root=None) -> ImageDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32)[:, None]
    labels = torch.tensor(digits.target, dtype=torch.long)
    # A fixed, stratified split: the test set never moves between runs or seeds.
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0,
                                           stratify=digits.target)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    mean, std = _channel_stats(images[train_idx])
    return ImageDataset("digits", images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                        [str(i) for i in range(10)], mean, std)


def _load_cifar(variant: str, mean, std):
    def load(root=None) -> ImageDataset:
        parts, names = read_cifar(root, variant)
        n_classes = 10 if variant == "cifar10" else 100
        names = names if len(names) == n_classes else [str(i) for i in range(n_classes)]
        return ImageDataset(variant, *parts["train"], *parts["test"], names, mean, std,
                            Augment(crop_padding=4, hflip=True))

    return load


def _subset(images: torch.Tensor, labels: torch.Tensor, size: int, seed: int, part: str):
    """A seeded random `size` of the samples (all of them for size 0), kept in their original order."""
    for option, value in ((f"{part}_size", size), ("subset_seed", seed)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{option} must be a whole number, got {value!r}")
    if size == 0:
        return images, labels
    if not 0 < size <= len(labels):
        raise ConfigError(f"{part}_size must be in 1..{len(labels)} (or 0 for all), got {size}")
    chosen = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:size].sort().values
    return images[chosen], labels[chosen]


def _load_mnist(root=None, train_size: int = 0, test_size: int = 0, subset_seed: int = 0) -> ImageDataset:
    """MNIST-style IDX files; `train_size`/`test_size` keep a seeded random subset (0: all), e.g. a small
    training set on which a model memorises what it is trained on."""
    parts = read_idx_folder(root, "mnist")
    train = _subset(*parts["train"], train_size, subset_seed, "train")
    test = _subset(*parts["test"], test_size, subset_seed + 1, "test")
    n_classes = int(max(train[1].max(), test[1].max())) + 1
    mean, std = _channel_stats(train[0])
    name = "mnist" if not (train_size or test_size) else f"mnist-{len(train[1])}"
    return ImageDataset(name, *train, *test, [str(i) for i in range(n_classes)], mean, std)


def _load_tabular(name: str):
    """scikit-learn's bundled tabular classification sets, each feature min-max scaled to [0, 1] on the training
    part and held as a (features, 1, 1) "image", so that the per-channel normalisation standardises each feature
    and the MLP reads them as a vector. A fixed stratified 75/25 split."""

    def load(root=None) -> ImageDataset:
        from sklearn import datasets
        from sklearn.model_selection import train_test_split

        bunch = getattr(datasets, f"load_{name}")()
        x, y = np.asarray(bunch.data, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)
        train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=0.25, random_state=0, stratify=y)
        train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
        low, high = x[train_idx].min(0), x[train_idx].max(0)
        x = np.clip((x - low) / np.maximum(high - low, 1e-12), 0, 1)
        images = torch.from_numpy(x)[:, :, None, None]
        labels = torch.from_numpy(y)
        mean, std = _channel_stats(images[train_idx])
        return ImageDataset(name, images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                            [str(c) for c in bunch.target_names], mean, std)

    return load


def _load_imagefolder(root=None, image_size: int = 32, channels: int = 3, test_fraction: float = 0.2,
                      seed: int = 0) -> ImageDataset:
    """`root/train/<class>/*` and `root/test/<class>/*`, or `root/<class>/*` split with `test_fraction`."""
    folder = require_folder(root, "imagefolder")
    if channels not in (1, 3):
        raise ConfigError(f"imagefolder: channels must be 1 or 3, got {channels}")
    if (folder / "train").is_dir():
        train_x, train_y, classes = read_image_folder(folder / "train", image_size, channels)
        if not (folder / "test").is_dir():
            raise DataError(f"imagefolder: '{folder}' has a 'train' folder but no 'test' folder")
        test_x, test_y, _ = read_image_folder(folder / "test", image_size, channels, classes)
    else:
        if not 0 < test_fraction < 1:
            raise ConfigError(f"imagefolder: test_fraction must be in (0, 1), got {test_fraction}")
        images, labels, classes = read_image_folder(folder, image_size, channels)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        n_test = max(1, int(round(test_fraction * len(labels))))
        if n_test >= len(labels):
            raise DataError(f"imagefolder: '{folder}' holds {len(labels)} image(s), too few to split into a training "
                            f"and a test part with test_fraction {test_fraction}: add images, or give "
                            "root/train and root/test")
        test_idx, train_idx = order[:n_test].sort().values, order[n_test:].sort().values
        train_x, train_y, test_x, test_y = images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]
    mean, std = _channel_stats(train_x)
    return ImageDataset("imagefolder", train_x, train_y, test_x, test_y, classes, mean, std,
                        Augment(crop_padding=max(1, image_size // 8), hflip=True))


LAYOUTS = ("CHW", "HWC", "HW", "F")
_FLOAT_PIXEL_LIMIT = 10.0  # non-negative float images above this hold 0-255 pixels, not [0, 1] ones


def _label_shape(y) -> tuple[int, ...] | None:
    """The shape of a label holding several values (a one-hot vector, say); None for a single value."""
    if isinstance(y, (str, bytes)):
        return None
    try:
        shape = tuple(y.shape) if hasattr(y, "shape") else tuple(np.shape(y))
    except ValueError:  # a ragged sequence
        return (len(y),)
    return shape if int(np.prod(shape)) != 1 else None


def from_torch(train, test, classes: list[str] | None = None, name: str = "custom",
               augment: Augment | None = Augment(), layout: str = "CHW", normalize: bool = False,
               recipe: TrainRecipe | dict | None = None) -> ImageDataset:
    """Materialise any map-style torch Datasets yielding (image, int label) in memory.

    Images are tensors or arrays laid out as `layout`: "CHW" (torch's convention), "HWC" (PIL and numpy
    images) or "HW" (one channel); "F" is a feature vector (a table's row), which models are then given as
    (N, F) batches, each feature normalised as a channel. uint8 images are read as 0-255 pixels and scaled to
    [0, 1]; float images are used as given: pixels on [0, 1], or values the Dataset standardised itself. Float
    images with no negative value but values above 10 are taken for 0-255 pixels, which a model would be fed
    unscaled: they are refused unless `normalize=True` (or divide them by 255, or yield uint8). With
    `normalize=True` the per-channel mean and std of the training images are learned and applied; otherwise
    none is (apply your own in the Dataset). Labels must be class indices, one integer 0..K-1 per sample (not
    one-hot vectors). `augment` is an `Augment` (train-time crops and flips) or None for none.
    `recipe` is how models are trained on this data from scratch by default (a TrainRecipe, or a dict of fields
    over `config.GENERIC_RECIPE`, the default). `name` only labels records and tables: it never selects a
    recipe or any default.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if augment is None:
        augment = Augment()
    elif not isinstance(augment, Augment):
        raise ConfigError(f"augment must be an Augment, e.g. uk.Augment(crop_padding=4, hflip=True), or None; "
                          f"got {augment!r}")
    if layout == "F" and augment.active:
        raise ConfigError("augment crops and flips images; feature vectors (layout='F') take no augmentation")
    recipe = as_recipe(recipe, GENERIC_RECIPE)

    def collect(ds, part):
        if len(ds) == 0:
            raise DataError(f"the {part} dataset is empty")
        try:
            xs, ys = zip(*(ds[i] for i in range(len(ds))))
        except (TypeError, ValueError) as exc:
            raise DataError(f"the {part} dataset must yield (image, label) pairs: {exc}") from None
        arrays = [np.asarray(x) for x in xs]
        kinds = {a.dtype.kind for a in arrays}
        if not kinds <= {"u", "f", "b"} or any(a.dtype.kind == "u" and a.dtype != np.uint8 for a in arrays):
            raise DataError(f"the {part} dataset yields images of dtype "
                            f"{sorted({str(a.dtype) for a in arrays})}; expected uint8 (0-255) or float (0-1)")
        try:  # each image scaled by its own dtype: a Dataset may yield uint8 and float images side by side
            images = torch.stack([pixel_values(torch.as_tensor(a if a.dtype == np.uint8 else a.astype(np.float32)))
                                  for a in arrays])
        except RuntimeError as exc:
            raise DataError(f"the {part} dataset must yield images of one shape: {exc}") from None
        expected = len(layout)  # dimensions of one sample
        if images.dim() != expected + 1:
            hint = "; for feature vectors pass layout='F'" if images.dim() == 2 else ""
            raise DataError(f"the {part} dataset yields images of shape {tuple(images.shape[1:])}, not {layout} "
                            f"({expected} dimension{'s' if expected > 1 else ''}){hint}")
        if layout == "F":  # held as (F, 1, 1), as the bundled tables are, so that normalisation is per feature
            images = images[:, :, None, None]
        elif layout == "HW":
            images = images[:, None]
        elif layout == "HWC":
            if images.shape[3] not in (1, 3, 4) and images.shape[1] in (1, 3, 4):
                raise DataError(f"the {part} images have shape {tuple(images.shape[1:])}, which looks like (C, H, W), "
                                "not the layout='HWC' given: pass layout='CHW'")
            images = images.permute(0, 3, 1, 2)
        elif images.shape[1] not in (1, 3, 4) and images.shape[3] in (1, 3, 4):
            raise DataError(f"the {part} images have shape {tuple(images.shape[1:])}, which looks like (H, W, C): "
                            "pass layout='HWC' (or permute them to (C, H, W))")
        if not torch.isfinite(images).all():
            raise DataError(f"the {part} dataset holds NaN or infinite pixel values")
        if layout != "F" and not normalize and images.min() >= 0 and images.max() > _FLOAT_PIXEL_LIMIT:
            raise DataError(f"the {part} images are floats from {float(images.min()):g} to {float(images.max()):g}, "
                            "which look like 0-255 pixels, but float pixels are read on [0, 1]: divide them by 255, "
                            "yield uint8, or pass normalize=True")
        labels = []
        for y in ys:
            shape = _label_shape(y)
            if shape is not None:
                raise DataError(f"the {part} dataset yields labels of shape {shape}; labels must be class indices, "
                                "one integer per sample (for one-hot labels, take their argmax)")
            value = y.item() if hasattr(y, "item") else y
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value).is_integer():
                raise DataError(f"the {part} dataset yields label {y!r}; expected integer class indices 0..K-1")
            labels.append(int(value))
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.min() < 0:
            raise DataError(f"the {part} dataset yields label {int(labels.min())}; expected class indices 0..K-1")
        return images.contiguous(), labels

    train_x, train_y = collect(train, "train")
    test_x, test_y = collect(test, "test")
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataError(f"train images are {tuple(train_x.shape[1:])} but test images are {tuple(test_x.shape[1:])}")
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    if n_classes < 2:
        raise DataError("the labels name a single class; a classifier needs at least two")
    if classes is not None and len(classes) < n_classes:
        raise DataError(f"{len(classes)} class names given, but the labels go up to {n_classes - 1}")
    classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
    channels = train_x.shape[1]
    mean, std = _channel_stats(train_x) if normalize else ((0.0,) * channels, (1.0,) * channels)
    return ImageDataset(name, train_x, train_y, test_x, test_y, classes, mean, std, augment,
                        {"name": name, "root": None, "options": {"normalize": normalize, "layout": layout}}, recipe,
                        vectors=layout == "F")


DATASETS.register("digits", DatasetSpec(
    _load_digits, "scikit-learn's bundled 8x8 handwritten digits (1437 train / 360 test), the embedded default",
    default_model="cnn", needs_root=False,
    recipe=TrainRecipe(epochs=15, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=False)))
DATASETS.register("mnist", DatasetSpec(
    _load_mnist, "MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST), .gz or raw, from --root",
    default_model="lenet5",
    recipe=TrainRecipe(epochs=5, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=False)))
DATASETS.register("breast_cancer", DatasetSpec(
    _load_tabular("breast_cancer"), "scikit-learn's bundled Wisconsin breast-cancer table (426 train / 143 test, "
                                    "30 features, 2 classes)", default_model="mlp", needs_root=False,
    recipe=TrainRecipe(epochs=60, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=False)))
DATASETS.register("wine", DatasetSpec(
    _load_tabular("wine"), "scikit-learn's bundled wine table (133 train / 45 test, 13 features, 3 classes)",
    default_model="mlp", needs_root=False,
    recipe=TrainRecipe(epochs=80, batch_size=16, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=False)))
DATASETS.register("cifar10", DatasetSpec(
    _load_cifar("cifar10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "CIFAR-10 python pickle batches from --root", default_model="resnet18",
    recipe=TrainRecipe(epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4)))
DATASETS.register("cifar100", DatasetSpec(
    _load_cifar("cifar100", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "CIFAR-100 python pickle batches from --root", default_model="resnet18",
    recipe=TrainRecipe(epochs=200, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4)))
DATASETS.register("imagefolder", DatasetSpec(
    _load_imagefolder, "class-per-folder images from --root (root/train and root/test, or one folder split)",
    default_model="resnet18",
    recipe=TrainRecipe(epochs=100, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4)))
