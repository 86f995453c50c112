"""What every part of an unlearning run can see: the model, a frozen copy of the original, the forget and
remain data, the resolved hyperparameters, and the run's progress."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import TrainRecipe
from ..data.images import DataView, ImageDataset
from ..runtime import Runtime
from .calibration import Calibrator
from .task import Classification


@dataclass
class Batch:
    """A preprocessed batch and the positions of its samples within their view (forget or remain)."""

    x: Tensor
    y: Tensor
    positions: Tensor

    def __len__(self) -> int:
        return len(self.y)

    def relabelled(self, y: Tensor) -> "Batch":
        return replace(self, y=y)

    @staticmethod
    def cat(first: "Batch", second: "Batch") -> "Batch":
        return Batch(torch.cat([first.x, second.x]), torch.cat([first.y, second.y]),
                     torch.cat([first.positions, second.positions]))


@dataclass
class Context:
    model: nn.Module
    dataset: ImageDataset
    forget: DataView
    remain: DataView
    hp: dict[str, Any]
    runtime: Runtime
    generator: torch.Generator
    task: Any = None           # a Task (classification unless a caller says otherwise)
    recipe: TrainRecipe | None = None  # how the original was trained: the scale relative settings refer to
    heldout: DataView | None = None    # data the model never saw (the test split by default), for calibration
    split_kind: str = "random"         # "random", "class" or "indices": which stopping rule applies
    seed: int = 0
    store: Path | None = None  # where methods may keep content-keyed artefacts
    step: int = 0              # the current iteration of the geometry's schedule
    total_steps: int = 1
    state: dict[str, Any] = field(default_factory=dict)  # per-run state of parts (teachers, labels, masks)
    sample_passes: int = 0     # forward+backward sample passes, the compute-cost measure reported with RTE
    forward_passes: int = 0    # forward-only sample passes (calibration probes), a third of a sample pass each
    updates: int = 0           # optimiser steps taken
    reused_seconds: float = 0.0    # work a cache answered (a Fisher): counted in the run time as if done
    excluded_seconds: float = 0.0  # one-off work done during the call that is not unlearning (SISA's first training)
    _original: nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def progress(self) -> float:
        """Fraction of the schedule done, in [0, 1)."""
        return self.step / max(self.total_steps, 1)

    @property
    def original(self) -> nn.Module:
        """A frozen copy of the model as it was before unlearning (a teacher for distillation parts)."""
        if self._original is None:
            raise RuntimeError("the original model is taken with snapshot_original() before unlearning starts")
        return self._original

    def __post_init__(self):
        if self.task is None:
            self.task = Classification()

    def calibrator(self, total_steps: int, stepper=None, align: int = 1):
        """The oracle-free stopping rule for a loop of `total_steps` steps whose optimiser `stepper` it may back
        off (its record lands in the state)."""
        calibrator = Calibrator(self, total_steps, stepper, align)
        self.state["calibrator"] = calibrator
        return calibrator

    def snapshot_original(self) -> None:
        self._original = copy.deepcopy(self.model).eval().requires_grad_(False)

    def batch(self, view: DataView, positions: Tensor) -> Batch:
        x, y = view.batch(positions, self.generator)
        return Batch(x.to(self.device), y.to(self.device), positions)
