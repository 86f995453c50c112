"""The base of every part of the unified update: a saliency mask, a forgetting part, a remaining part.

Each part declares the hyperparameters it reads as a typed `Params` block beside itself (type, range,
one-line description); a method's settings are the union of its parts' blocks."""
from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from .context import Batch, Context
from .params import NoParams, Params


class Part:
    """A named piece of an unlearning update, with the hyperparameters it reads."""

    label: ClassVar[str] = ""
    Params: ClassVar[type[Params]] = NoParams

    def prepare(self, ctx: Context) -> None:
        """Once, before the first step (build a teacher, draw labels, compute a Fisher)."""

    def finish(self, ctx: Context) -> None:
        """Once, after the last step (undo any model surgery)."""


class MaskPart(Part):
    def compute(self, ctx: Context) -> dict[str, Tensor]:
        """A {parameter name: 0/1 float tensor} map; gradients are multiplied by it before each masked step."""
        raise NotImplementedError


class LossPart(Part):
    def relabel(self, ctx: Context, batch: Batch) -> Batch:
        """The labels (targets or conditions) this part trains the batch toward; the true ones by default."""
        return batch

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        """The objective to minimise, from the task's `outputs` on the relabelled batch (a forgetting part
        returns e.g. minus a loss to ascend it)."""
        raise NotImplementedError


class ForgetPart(LossPart):
    """Acts on forget batches."""


class RemainPart(LossPart):
    """Acts on remain batches."""
