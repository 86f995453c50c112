"""Top-1 accuracy: FA (forget set), RA (remain set), TA (test set), and per class."""
from __future__ import annotations

import math

import torch

from ..errors import ConfigError


def _as_predictions(predicted: torch.Tensor) -> torch.Tensor:
    predicted = torch.as_tensor(predicted)
    return predicted.argmax(dim=1) if predicted.dim() == 2 else predicted.reshape(-1)


def accuracy(predicted: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent: 100 * mean(predicted_i == y_i).

    `predicted` is a vector of predicted classes, or logits (N, K) whose argmax is taken. NaN on an empty set.
    As FA/RA/TA it is measured with test-time transforms; which direction is good depends on the set, so
    the protocol compares each to the oracle's value (SFR-on §3.1: the target of FA is the oracle's FA, not 0).
    """
    predicted, labels = _as_predictions(predicted), torch.as_tensor(labels).reshape(-1)
    if len(predicted) != len(labels):
        raise ConfigError(f"accuracy needs one prediction per label, got {len(predicted)} and {len(labels)}")
    if len(labels) == 0:
        return math.nan
    return 100.0 * (predicted.cpu() == labels.cpu()).double().mean().item()


def per_class_accuracy(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float]:
    """Accuracy in percent within each true class c: 100 * mean over {i: y_i = c} of (predicted_i == c).

    One value per class 0..num_classes-1, NaN for a class with no sample. On the test set it shows a
    class-wise forgetting directly: the forgotten class's entry should match the oracle's (near 0).
    """
    predicted, labels = _as_predictions(predicted).cpu(), torch.as_tensor(labels).reshape(-1).cpu()
    if len(labels) and int(labels.max()) >= num_classes:
        raise ConfigError(f"label {int(labels.max())} is out of range for {num_classes} classes")
    correct = (predicted == labels).double()
    totals = torch.bincount(labels, minlength=num_classes).double()
    hits = torch.bincount(labels, weights=correct, minlength=num_classes)
    return [100.0 * h / t if t > 0 else math.nan for h, t in zip(hits.tolist(), totals.tolist())]
