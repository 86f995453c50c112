import os

os.environ.setdefault("UNLEARNKIT_PROGRESS", "0")
os.environ.setdefault("UNLEARNKIT_THREADS", "1")

import pytest
import torch

from unlearnkit.data.images import ImageDataset
from unlearnkit.runtime import Runtime

torch.set_num_threads(1)


def synthetic_dataset(n_train: int = 90, n_test: int = 45, classes: int = 3, size: int = 8,
                      seed: int = 0) -> ImageDataset:
    """Easy, separable little images: each class lights up its own band of rows, plus noise."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        labels = torch.arange(n) % classes
        images = 0.1 * torch.rand(n, 1, size, size, generator=g)
        band = size // classes
        for c in range(classes):
            images[labels == c, :, c * band:(c + 1) * band, :] += 0.8
        return images.clamp(0, 1), labels

    train_x, train_y = make(n_train)
    test_x, test_y = make(n_test)
    return ImageDataset("synthetic", train_x, train_y, test_x, test_y, [str(c) for c in range(classes)],
                        (0.3,), (0.4,), source={"name": "synthetic", "root": None, "options": {}})


@pytest.fixture
def tiny_data() -> ImageDataset:
    return synthetic_dataset()


@pytest.fixture
def runtime() -> Runtime:
    return Runtime.create("cpu", 1)


@pytest.fixture(autouse=True)
def isolated_store(tmp_path, monkeypatch):
    """Every test writes its runs under its own temporary store."""
    monkeypatch.setenv("UNLEARNKIT_STORE", str(tmp_path / "store"))
    return tmp_path / "store"
