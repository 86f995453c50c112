"""The classification domain: image (or tabular) classifiers, the oracle retrained on the remain set, and every
method of `unlearning/methods.py`, evaluated by `evaluation/protocol.py` (FA, RA, TA, the membership attacks,
Avg.Gap, KL, verification error, RTE)."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import Checkpoint
from ..config import as_recipe
from ..data.datasets import DATASETS, load_dataset
from ..data.splits import ForgetSplit
from ..models import spec_for
from ..registry import Registry
from ..runtime import Runtime
from . import register
from .base import Domain, Evaluator, Loaded


class ClassificationEvaluator(Evaluator):
    def __init__(self, loaded: Loaded, split: ForgetSplit, seed: int, runtime: Runtime, mia: str,
                 attacks: tuple[str, ...] | None):
        self.loaded, self.split, self.seed, self.runtime = loaded, split, seed, runtime
        self.mia, self.attacks = mia, attacks

    def evaluate(self, model, oracle: Checkpoint, original: Checkpoint | None, record: dict | None) -> dict:
        from ..evaluation.protocol import evaluate

        return evaluate(model, oracle.load_model(), self.split, self.loaded.dataset, self.runtime,
                        original.load_model() if original is not None else None, record, oracle.record, self.mia,
                        self.attacks, seed=self.seed)


class Classification(Domain):
    name = "classification"
    title = "classifiers: random-subset and class-wise forgetting"

    @property
    def methods(self) -> Registry:
        from ..unlearning.methods import METHODS

        return METHODS

    def default_methods(self) -> list[str]:
        return [m for m in self.methods.names() if m != "retrain"]  # the RT′ row retrains already

    def columns(self, mia: str) -> tuple[tuple[str, str], ...]:
        return (("forget_acc", "FA"), ("remain_acc", "RA"), ("test_acc", "TA"), (mia, f"MIA ({mia})"))

    def load(self, scenario) -> Loaded:
        dataset = load_dataset(scenario.data, scenario.root, **scenario.data_options)
        spec = DATASETS.get(scenario.data)
        model = spec_for(scenario.model or spec.default_model, dataset, **scenario.model_options)
        return Loaded(dataset, model, spec.recipe.with_overrides(scenario.recipe))

    def train(self, loaded: Loaded, seed: int, split: ForgetSplit | None, runtime: Runtime, store: Path | None,
              force: bool = False) -> Checkpoint:
        from ..pipeline import train

        return train(loaded.dataset, loaded.model, loaded.recipe, seed, split, runtime, store, force)

    def model_identity(self, loaded: Loaded, seed: int, split: ForgetSplit | None) -> dict:
        from ..pipeline import describe_model

        dataset = loaded.dataset
        return {"data": dataset.fingerprint, "model": describe_model(loaded.model),
                "recipe": as_recipe(loaded.recipe, dataset.recipe).model_dump(), "seed": seed,
                "split": split.fingerprint if split is not None else None}

    def load_model(self, checkpoint: Checkpoint):
        return checkpoint.load_model()

    def unlearn(self, original: Checkpoint, split: ForgetSplit, method: str, loaded: Loaded, runtime: Runtime,
                seed: int, store: Path | None, hyperparameters: dict):
        from ..unlearning.engine import unlearn

        return unlearn(original.load_model(), split, method, data=loaded.dataset, recipe=loaded.recipe,
                       runtime=runtime, seed=seed, store=store, **hyperparameters)

    def evaluator(self, loaded: Loaded, split: ForgetSplit, seed: int, runtime: Runtime, store: Path | None,
                  mia: str = "mia_entropy", attacks: tuple[str, ...] | None = None) -> Evaluator:
        return ClassificationEvaluator(loaded, split, seed, runtime, mia, attacks)

    def dataset_of(self, checkpoint: Checkpoint, root=None):
        from ..pipeline import dataset_of

        return dataset_of(checkpoint, root=root)


register(Classification())
