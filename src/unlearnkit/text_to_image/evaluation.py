"""Scoring text-to-image models after concept erasure: every model is sampled from the same prompts and the
same noise (paired comparisons), then scored by the concept classifiers (metrics.py)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..data.images import ImageDataset
from ..errors import ConfigError
from ..evaluation.divergence import kl_divergence
from ..generation.metrics import classify, frechet_distance
from ..runtime import Runtime
from .metrics import (
    ConceptClassifiers,
    Predictions,
    alignment,
    forget_accuracy,
    neighbours,
    per_concept,
    percent,
    retain_accuracy,
)
from .prompts import DIGITS, PROMPTS, STYLES, Concept, concept_prompts
from .sampling import sample


@dataclass(frozen=True)
class SampleBudget:
    """Images per prompt (erased and retained prompts), DDIM steps, SD-convention guidance, eta, noise seed."""

    forget_per_prompt: int = 20
    retain_per_prompt: int = 8
    steps: int = 25
    guidance: float = 3.0
    eta: float = 1.0
    seed: int = 0

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class Scores:
    forget_acc: float
    retain_acc: float
    fid: float
    alignment: float
    neighbour_acc: float
    per_concept: dict[str, float]
    forget_by: dict[str, float]  # forget_acc of each erased concept
    sample_seconds: float
    samples: Tensor
    prompts: Tensor
    forget_probs: dict[str, Tensor]  # erased kind -> its classifier's softmax on the erased prompts' images

    def row(self) -> dict:
        return {"forget_acc": self.forget_acc, "retain_acc": self.retain_acc,
                "remain_acc": self.retain_acc,  # the common key of every domain, under this domain's name too
                "fid": self.fid,
                "alignment": self.alignment, "neighbour_acc": self.neighbour_acc,
                **({f"forget_acc_{k}": v for k, v in self.forget_by.items()} if len(self.forget_by) > 1 else {}),
                **{f"acc_{k}": v for k, v in self.per_concept.items()}, "eval_seconds": self.sample_seconds}


class PromptEvaluator:
    """Scores models of the captioned digits against one erasure (one or more concepts)."""

    def __init__(self, dataset: ImageDataset, erased: tuple[Concept, ...], classifiers: ConceptClassifiers,
                 runtime: Runtime, budget: SampleBudget = SampleBudget()):
        if not erased:
            raise ConfigError("the evaluation needs the erased concept(s)")
        self.dataset, self.erased, self.classifiers, self.runtime, self.budget = (dataset, erased, classifiers,
                                                                                  runtime, budget)
        self.erased_prompts = concept_prompts(erased)
        self.kinds = list(dict.fromkeys(c.kind for c in erased))
        counts = [budget.forget_per_prompt if p in self.erased_prompts else budget.retain_per_prompt
                  for p in range(len(PROMPTS))]
        self.prompts = torch.cat([torch.full((n,), p) for p, n in enumerate(counts)])
        self.forgotten = torch.isin(self.prompts, torch.tensor(self.erased_prompts))
        self.neighbours = {c.name: neighbours(classifiers, dataset, c, runtime) for c in erased}
        kept = ~torch.isin(dataset.train_labels, torch.tensor(self.erased_prompts))
        real = dataset.train(torch.nonzero(kept).flatten(), augment=False)
        images, _ = real.batch(torch.arange(len(real)))
        _, self.reference = classify(classifiers.digit, images, runtime)

    def score(self, model: nn.Module) -> Scores:
        b = self.budget
        started = time.perf_counter()
        images = sample(model, [PROMPTS[int(p)] for p in self.prompts], b.steps, b.guidance, b.eta, b.seed)
        pred = Predictions.of(self.classifiers, images, self.prompts, self.runtime)
        forget = Predictions(pred.prompts[self.forgotten], {k: v[self.forgotten] for k, v in pred.probs.items()},
                             pred.features[self.forgotten])
        keep = ~self.forgotten
        kept = Predictions(pred.prompts[keep], {k: v[keep] for k, v in pred.probs.items()}, pred.features[keep])
        concepts = {**per_concept(kept, "digit", list(DIGITS)), **per_concept(kept, "style", list(STYLES))}
        near = []
        for concept in self.erased:
            labels, hits = kept.labels(concept.kind), kept.recognised(concept.kind)
            near.append(hits[torch.isin(labels, torch.tensor(self.neighbours[concept.name]))])
        return Scores(forget_accuracy(forget, self.erased), retain_accuracy(kept, self.kinds),
                      frechet_distance(kept.features, self.reference), alignment(kept), percent(torch.cat(near)),
                      concepts, {c.name: forget_accuracy(forget, (c,)) for c in self.erased},
                      time.perf_counter() - started, images, self.prompts,
                      {kind: forget.probs[kind] for kind in self.kinds})

    def against(self, scores: Scores, oracle: Scores | None) -> dict:
        """A model's row, and against the oracle's scores (both sampled from the same prompts and noise): Avg.Gap
        of forget and retain accuracy (percentage points) and KL(oracle ‖ model) of the erased kinds' classifier
        on the erased prompts' images, image by image (summed over the kinds). Without an oracle (an erasure no
        model was trained without), the row alone."""
        row = {key: value for key, value in scores.row().items() if key != "eval_seconds"}
        if oracle is None:
            return row
        gaps = {"forget_acc": abs(scores.forget_acc - oracle.forget_acc),
                "remain_acc": abs(scores.retain_acc - oracle.retain_acc)}
        kl = sum(kl_divergence(oracle.forget_probs[kind], scores.forget_probs[kind]) for kind in self.kinds)
        return {**row, "avg_gap": sum(gaps.values()) / len(gaps), "kl_forget": kl,
                "fid_gap": abs(scores.fid - oracle.fid), "gaps": gaps}

    def describe(self) -> dict:
        return {**self.budget.describe(), "erased_prompts": [PROMPTS[p] for p in self.erased_prompts],
                "neighbours": {c.name: [(DIGITS if c.kind == "digit" else STYLES)[i] for i in self.neighbours[c.name]]
                               for c in self.erased}}
