"""Real MNIST from ../shared/data/mnist; skipped where that folder is absent (a user's machine)."""
from pathlib import Path

import pytest
import torch

from unlearnkit.config import TrainRecipe
from unlearnkit.data import load_dataset, make_split
from unlearnkit.models import spec_for
from unlearnkit.training import accuracy, fit

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
pytestmark = pytest.mark.skipif(not MNIST.is_dir(), reason="real MNIST is not at ../shared/data/mnist")


def test_real_mnist_loads_and_a_lenet_learns_it(runtime):
    data = load_dataset("mnist", MNIST)
    assert data.train_images.shape == (60000, 1, 28, 28) and len(data.test_labels) == 10000
    assert torch.bincount(data.train_labels).tolist()[:2] == [5923, 6742]
    split = make_split("class:3", data)
    assert len(split.forget) == 6131
    model = spec_for("lenet5", data).build()
    fit(model, data.train(torch.arange(6000)), TrainRecipe(epochs=1, batch_size=64, lr=0.05, augment=False), runtime,
        seed=0)
    assert accuracy(model, data.test(), runtime) > 80
