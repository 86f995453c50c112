"""How well a concept was erased from a text-to-image model, and what it cost the other concepts.

- Concept classifiers: the registry's `cnn` trained on the real captioned images, one labelled by digit
  (10 classes), one by style (3 classes); stored and found again by content (generation/metrics.py).
- forget_acc: % of images generated from the erased concept's prompts that the concept's classifier still
  recognises as that concept (lower is better).
- retain_acc: % of images generated from the other prompts that are recognised as their own concept (the
  classifier of the erased concept's kind: the digit for a digit, the style for a style).
- per-concept accuracy and the neighbours: the retain accuracy of every concept, and of the two concepts the
  digit (or style) classifier most confuses with the erased one on real images (the interference).
- FID*: Frechet distance between the digit classifier's penultimate features of the retained prompts'
  samples and of their real training images. NOT Inception FID: comparable only within one bench.
- alignment: mean over retained-prompt samples of p_digit(prompted digit | x) * p_style(prompted style | x),
  the probability both concept classifiers give the whole prompt. It is a classifier's probability, not CLIP
  similarity (no CLIP image model at this scale).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..data.images import ImageDataset
from ..generation.metrics import classify, train_classifier
from ..runtime import Runtime
from .data import relabelled
from .prompts import Concept, prompt_digit, prompt_style

KINDS = ("digit", "style")


@dataclass
class ConceptClassifiers:
    """One classifier per concept kind, on the model space [-1, 1] of the generated images."""

    digit: nn.Module
    style: nn.Module

    def of(self, kind: str) -> nn.Module:
        return self.digit if kind == "digit" else self.style


def train_concept_classifiers(dataset: ImageDataset, runtime: Runtime, store: Path | None = None,
                              seed: int = 0) -> ConceptClassifiers:
    """The digit and style classifiers of the captioned dataset, trained or found in the store."""
    models = [train_classifier(relabelled(dataset, kind), runtime, store, seed).load_model().to(runtime.device).eval()
              for kind in KINDS]
    return ConceptClassifiers(*models)


def concept_label(prompt: int, kind: str) -> int:
    return prompt_digit(prompt) if kind == "digit" else prompt_style(prompt)


@dataclass
class Predictions:
    """Both classifiers' softmax on a set of images generated from known prompts, and the digit features."""

    prompts: Tensor             # the prompt index each image was generated from
    probs: dict[str, Tensor]    # kind -> (N, classes)
    features: Tensor            # the digit classifier's penultimate features

    @classmethod
    @torch.no_grad()
    def of(cls, classifiers: ConceptClassifiers, images: Tensor, prompts: Tensor, runtime: Runtime) -> "Predictions":
        probs, features = {}, None
        for kind in KINDS:
            logits, feats = classify(classifiers.of(kind), images, runtime)
            probs[kind] = logits.softmax(1)
            if kind == "digit":
                features = feats
        return cls(prompts, probs, features)

    def labels(self, kind: str) -> Tensor:
        return torch.tensor([concept_label(int(p), kind) for p in self.prompts], dtype=torch.long)

    def recognised(self, kind: str, target: Tensor | int | None = None) -> Tensor:
        """Per image: whether the classifier of `kind` picks `target` (default: the prompted concept)."""
        target = self.labels(kind) if target is None else target
        return self.probs[kind].argmax(1) == target


def percent(flags: Tensor) -> float:
    return float("nan") if len(flags) == 0 else 100.0 * flags.double().mean().item()


def forget_accuracy(pred: Predictions, erased: tuple[Concept, ...]) -> float:
    """% of (image, erased concept it was prompted with) pairs recognised as that concept."""
    hits = []
    for concept in erased:
        chosen = torch.tensor([concept_label(int(p), concept.kind) == concept.index for p in pred.prompts])
        hits.append(pred.recognised(concept.kind, concept.index)[chosen])
    return percent(torch.cat(hits)) if hits else float("nan")


def retain_accuracy(pred: Predictions, kinds: list[str]) -> float:
    """% of (image, kind) pairs recognised as the prompt's own concept, over the kinds erased."""
    return percent(torch.cat([pred.recognised(kind) for kind in kinds])) if len(pred.prompts) else float("nan")


def alignment(pred: Predictions) -> float:
    """Mean p_digit(prompted digit) * p_style(prompted style)."""
    rows = torch.arange(len(pred.prompts))
    joint = pred.probs["digit"][rows, pred.labels("digit")] * pred.probs["style"][rows, pred.labels("style")]
    return float(joint.mean()) if len(joint) else float("nan")


def per_concept(pred: Predictions, kind: str, classes: list[str]) -> dict[str, float]:
    """Recognition rate of each concept of `kind` on the images prompted with it."""
    labels, hits = pred.labels(kind), pred.recognised(kind)
    return {name: percent(hits[labels == i]) for i, name in enumerate(classes) if (labels == i).any()}


@torch.no_grad()
def neighbours(classifiers: ConceptClassifiers, dataset: ImageDataset, concept: Concept, runtime: Runtime,
               k: int = 2) -> list[int]:
    """The k concepts of the same kind that the classifier most confuses with `concept`: the highest mean
    softmax, other than the concept's own, on the concept's real training images."""
    view = relabelled(dataset, concept.kind).train(augment=False)
    rows = torch.nonzero(view.labels == concept.index).flatten()
    images, _ = view.batch(rows)
    logits, _ = classify(classifiers.of(concept.kind), images, runtime)
    mean = logits.softmax(1).mean(0)
    mean[concept.index] = -1.0
    return mean.argsort(descending=True)[:k].tolist()
