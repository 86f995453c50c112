"""How well a class was forgotten by a generator, and how good the rest of its samples are.

- Forgetting accuracy (FA): the share of samples generated for the forgotten class that a classifier trained
  on the real images recognises as that class (lower is better; the official DDPM protocol, with our
  classifier instead of a fine-tuned ResNet-34).
- FID: the Frechet distance between Gaussians fitted to the classifier's penultimate features of generated
  samples and of real images. This is NOT the Inception FID of published DDPM tables: the features come
  from a small CNN trained on the dataset itself, so values are only comparable between runs that share
  the classifier, the reference images and the sample counts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..artifacts import Checkpoint
from ..config import TrainRecipe
from ..data.images import ImageDataset
from ..errors import ConfigError
from ..models import classifier_layer, spec_for
from ..pipeline import train
from ..runtime import Runtime

CLASSIFIER_OPTIONS = {"width": 16}
CLASSIFIER_RECIPE = TrainRecipe(epochs=15, batch_size=32, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=False)


def train_classifier(dataset: ImageDataset, runtime: Runtime, store: Path | None = None, seed: int = 0,
                     model: str = "cnn", options: dict | None = None, recipe: TrainRecipe | None = None) -> Checkpoint:
    """The evaluation classifier: a registered classifier trained on the real images of the generation
    dataset (same size and [-1, 1] scaling as the samples), stored and found again by content."""
    spec = spec_for(model, dataset, **(CLASSIFIER_OPTIONS if options is None else options))
    return train(dataset, spec, recipe or CLASSIFIER_RECIPE, seed, None, runtime, store)


@torch.no_grad()
def classify(classifier: nn.Module, images: Tensor, runtime: Runtime, batch_size: int = 1024) -> tuple[Tensor, Tensor]:
    """(logits, penultimate features) of images in model space [-1, 1]; features are the input of the final
    linear layer, taken with a forward hook so any registered classifier works."""
    layer = classifier_layer(classifier)
    captured: list[Tensor] = []
    handle = layer.register_forward_hook(
        lambda module, inputs, output: captured.append(inputs[0].detach().float().cpu()))
    was_training = classifier.training
    classifier.eval()
    logits = []
    try:
        for start in range(0, len(images), batch_size):
            with runtime.autocast():
                logits.append(classifier(images[start:start + batch_size].to(runtime.device)).float().cpu())
    finally:
        handle.remove()
        classifier.train(was_training)
    if not logits:
        return torch.empty(0), torch.empty(0)
    return torch.cat(logits), torch.cat(captured)


def recognition_rate(logits: Tensor, labels: Tensor) -> float:
    """Percent of samples the classifier assigns to the class they were generated for. On samples of a
    forgotten class this is the forgetting accuracy (FA, lower is better)."""
    if len(labels) == 0:
        return float("nan")
    return 100.0 * (logits.argmax(1) == labels).double().mean().item()


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a) + Tr(S_b) - 2 Tr((S_a S_b)^(1/2)) between Gaussians fitted to two feature sets.

    The trace of the matrix root is taken as Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), a symmetric PSD matrix whose
    eigenvalues are those of S_a S_b, so two symmetric eigen-decompositions give it without complex parts.
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ConfigError(f"the Frechet distance needs at least 2 samples per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(middle.clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
