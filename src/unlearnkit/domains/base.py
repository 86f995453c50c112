"""The interface every domain implements (see the package docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from ..artifacts import Checkpoint
from ..data.splits import ForgetSplit
from ..registry import Registry
from ..runtime import Runtime


@dataclass(frozen=True)
class Loaded:
    """A scenario made concrete: the dataset the splits index, the model spec every original and oracle is built
    from, and the training recipe (a domain's own recipe type)."""

    dataset: Any
    model: Any
    recipe: Any

    def __iter__(self):  # (dataset, model, recipe) = loaded
        return iter((self.dataset, self.model, self.recipe))


class Evaluator:
    """Scores models of one scenario and split against that split's oracle: `evaluate` returns the domain's
    figures under the common keys (see the package docstring), the oracle's own under "oracle", and the gaps of
    the metrics Avg.Gap averages under "gaps"."""

    def evaluate(self, model: nn.Module, oracle: Checkpoint, original: Checkpoint | None, record: dict | None
                 ) -> dict:
        raise NotImplementedError


class Domain:
    """One model family. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""

    def columns(self, mia: str) -> tuple[tuple[str, str], ...]:
        """The bench table's columns before Avg.Gap, KL and cost: (result key, label), in order."""
        raise NotImplementedError

    @property
    def methods(self) -> Registry:
        raise NotImplementedError

    def default_methods(self) -> list[str]:
        """What the bench runs when no method is named."""
        return self.methods.names()

    def load(self, scenario) -> Loaded:
        """A bench scenario (or the CLI's settings as one) as dataset, model spec and recipe."""
        raise NotImplementedError

    def train(self, loaded: Loaded, seed: int, split: ForgetSplit | None, runtime: Runtime, store: Path | None,
              force: bool = False) -> Checkpoint:
        """The original (no split) or the oracle, trained or found in the store by content."""
        raise NotImplementedError

    def model_identity(self, loaded: Loaded, seed: int, split: ForgetSplit | None) -> dict:
        """What makes `train` train another model: scenarios sharing it share one training job."""
        raise NotImplementedError

    def load_model(self, checkpoint: Checkpoint) -> nn.Module:
        raise NotImplementedError

    def unlearn(self, original: Checkpoint, split: ForgetSplit, method: str, loaded: Loaded, runtime: Runtime,
                seed: int, store: Path | None, hyperparameters: dict):
        """Run `method` from the original's weights (an UnlearnResult)."""
        raise NotImplementedError

    def evaluator(self, loaded: Loaded, split: ForgetSplit, seed: int, runtime: Runtime, store: Path | None,
                  mia: str = "mia_entropy", attacks: tuple[str, ...] | None = None) -> Evaluator:
        raise NotImplementedError

    def dataset_of(self, checkpoint: Checkpoint, root=None):
        """The dataset a stored checkpoint was trained on, reloaded and checked against its fingerprint."""
        raise NotImplementedError

    def report_figures(self, scenario: str, rows: list[dict], loaded: Loaded, split: ForgetSplit) -> list:
        """Matplotlib figures this domain adds to the bench's HTML report for one scenario (none by default)."""
        return []
