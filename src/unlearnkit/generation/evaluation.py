"""Evaluating a class-conditional generator after class-wise forgetting: forgetting accuracy on samples of
the forgotten classes, FID of the remaining classes' samples against their real images, and the
remaining-class accuracy (the share of remaining-class samples the classifier assigns to their class)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import ConfigError
from ..evaluation.divergence import kl_divergence
from ..runtime import Runtime
from .metrics import classify, frechet_distance, recognition_rate
from .sampling import ddim_sample
from .schedule import NoiseSchedule


@dataclass(frozen=True)
class SampleBudget:
    """How many samples each evaluation draws, and how. eta = 1 by default: the official FID samples use the
    stochastic ("generalized", eta 1) sampler, and with eta = 0 a small, briefly trained model leaves
    residual noise on part of its samples (docs/generation.md)."""

    forget_per_class: int = 100
    remain_per_class: int = 50
    steps: int = 25
    guidance: float = 2.0
    eta: float = 1.0
    seed: int = 0

    def describe(self) -> dict:
        return asdict(self)


@dataclass
class GeneratorScores:
    forget_accuracy: float   # percent of forgotten-class samples classified as their class (lower is better)
    fid: float               # classifier-feature FID of remaining-class samples vs their real images
    remain_accuracy: float   # percent of remaining-class samples classified as their class
    sample_seconds: float
    samples: Tensor          # every sample, in model space [-1, 1]
    labels: Tensor           # the class each was generated for
    logits: Tensor           # the classifier's logits of each sample

    def row(self) -> dict:
        return {"forget_accuracy": self.forget_accuracy, "fid": self.fid, "remain_accuracy": self.remain_accuracy,
                "eval_seconds": self.sample_seconds}


class GeneratorEvaluator:
    """Scores generators of one dataset and class-wise split against one classifier and one sample budget;
    every generator is sampled from the same noise (paired comparisons)."""

    def __init__(self, dataset: ImageDataset, split: ForgetSplit, classifier: nn.Module, runtime: Runtime,
                 budget: SampleBudget = SampleBudget()):
        if not split.forgotten_classes:
            raise ConfigError(f"generation is evaluated on class-wise forgetting (class:C), got '{split.spec}'")
        self.dataset, self.classifier, self.runtime, self.budget = dataset, classifier, runtime, budget
        self.forgotten = list(split.forgotten_classes)
        self.remaining = [c for c in range(dataset.num_classes) if c not in self.forgotten]
        self.labels = torch.cat([torch.full((budget.forget_per_class,), c) for c in self.forgotten]
                                + [torch.full((budget.remain_per_class,), c) for c in self.remaining])
        real = dataset.train(split.remain, augment=False)
        images, _ = real.batch(torch.arange(len(real)))
        _, self.reference = classify(classifier, images, runtime)

    def score(self, model: nn.Module, schedule: NoiseSchedule) -> GeneratorScores:
        b = self.budget
        started = time.perf_counter()
        samples = ddim_sample(model, schedule, self.labels, tuple(self.dataset.image_shape), b.steps, b.guidance, b.eta,
                              b.seed, device=self.runtime.device)
        logits, features = classify(self.classifier, samples, self.runtime)
        forgotten = torch.isin(self.labels, torch.tensor(self.forgotten))
        fa = recognition_rate(logits[forgotten], self.labels[forgotten])
        ra = recognition_rate(logits[~forgotten], self.labels[~forgotten])
        fid = frechet_distance(features[~forgotten], self.reference)
        return GeneratorScores(fa, fid, ra, time.perf_counter() - started, samples, self.labels, logits)

    def against(self, scores: GeneratorScores, oracle: GeneratorScores) -> dict:
        """The common keys of a model's scores against the oracle's (both sampled from the same noise): forget
        and remain accuracy, Avg.Gap of the two (percentage points), FID*, and KL(oracle ‖ model) of the
        classifier's predictions on the forgotten classes' samples, sample by sample."""
        forgotten = torch.isin(self.labels, torch.tensor(self.forgotten))
        kl = kl_divergence(*(s.logits[forgotten].double().softmax(1) for s in (oracle, scores)))
        gaps = {"forget_acc": abs(scores.forget_accuracy - oracle.forget_accuracy),
                "remain_acc": abs(scores.remain_accuracy - oracle.remain_accuracy)}
        return {"forget_acc": scores.forget_accuracy, "remain_acc": scores.remain_accuracy, "fid": scores.fid,
                "avg_gap": sum(gaps.values()) / len(gaps), "kl_forget": kl, "fid_gap": abs(scores.fid - oracle.fid),
                "gaps": gaps}
