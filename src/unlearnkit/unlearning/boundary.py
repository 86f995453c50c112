"""Boundary Unlearning (Chen et al., CVPR 2023): move the decision boundary instead of the data's influence.

- Boundary Shrink: each forget sample is relabelled with the class its adversarial example (FGSM, or PGD,
  on the frozen original model) falls into, its nearest wrong class, and the model is fine-tuned on D_f
  toward those labels.
- Boundary Expanding: the classifier gets one extra "shadow" output, D_f is trained toward it, and the
  shadow output is pruned again, so the final model has the original architecture.

Both run under the Joint geometry with no remaining part (epochs counted over D_f), as the official code
(the authors' `boundary_unlearning.py`, and SalUn's `unlearn/boundary_sh.py`/`boundary_ex.py`) loops over
the forget loader. Where the two codes differ, the defaults follow the authors' code and the docstrings say so.
"""
from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..models import classifier_layer
from .context import Batch, Context
from .params import Field, Params
from .parts import ForgetPart

Attack = Literal["fgsm", "pgd"]
ATTACKS = get_args(Attack)


def adversarial_examples(model: nn.Module, x: Tensor, y: Tensor, mean: Tensor, std: Tensor, bound: float,
                         attack: str = "fgsm", step: float = 8 / 255, iters: int = 5,
                         value_range: tuple[Tensor, Tensor] | None = None, clamp: bool = True) -> Tensor:
    """L∞ adversarial examples of normalised inputs `x`, as both official codes build them: the attack works in
    pixel space [0, 1] (sign-gradient steps of the cross-entropy of the true labels, each projected onto the
    `bound` ball around the clean image, clamped to [0, 1] and rounded to 1/255), and the result is normalised
    again. FGSM is one step of size `bound`; PGD takes `iters` steps of `step` (no random start, as the authors'
    code). `mean`/`std` are per-channel (C,) tensors; the model is used as it is (put it in eval mode).

    Inputs outside [0, 1] (a table's rows, images in other units) give their per-channel `value_range`, (low,
    high) as (C,) tensors: `bound` and `step` are then fractions of each channel's high − low, so that the
    attack moves an input as far, relative to its spread, whatever units it was given in. They are not rounded
    (they are not 8-bit pixels), and clamped to the range only where `clamp` (images; a table's feature has no
    hard limits, and the official codes know only images)."""
    if attack not in ATTACKS:
        raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}, got '{attack}'")
    per_channel = (1, -1) + (1,) * (x.dim() - 2)
    mean, std = mean.view(per_channel), std.view(per_channel)
    low, high = (torch.tensor(0.0), torch.tensor(1.0)) if value_range is None else value_range
    low, high = low.to(x.device).view(per_channel), high.to(x.device).view(per_channel)
    span = high - low
    radius = bound * span
    natural = (x * std + mean).detach()
    adv = natural.clone()
    step, iters = (bound, 1) if attack == "fgsm" else (step, iters)
    for _ in range(iters):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model((adv - mean) / std).float(), y)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * span * grad.sign()
        adv = natural + torch.maximum(torch.minimum(adv - natural, radius), -radius)
        if clamp:
            adv = torch.maximum(torch.minimum(adv, high), low)
        if value_range is None:
            adv = torch.round(adv * 255) / 255
    return ((adv - mean) / std).detach()


class NearestWrongClass(ForgetPart):
    """Boundary Shrink's forgetting part: descend on D_f relabelled with the original model's prediction on
    each sample's adversarial example.

    The labels are computed per batch, on exactly the (augmented) images the model trains on, with the frozen
    original model in eval mode, as both official codes do; without augmentation they are the same every epoch.
    When the attack fails on a sample the label is its true class (the code keeps it too); the share of
    successful attacks is reported as `attack_success_rate`. The perturbation lives in pixel space [0, 1]; on
    inputs in other units (a table's rows, images normalised by the user's own Dataset) `bound` is a fraction
    of each channel's range over the training inputs (`ImageDataset.input_range`), so the default means the
    same in any units.
    """

    label = "nearest wrong class (adversarial labels)"

    class Params(Params):
        bound: float = Field(0.1, gt=0, le=1, description="L∞ bound of the attack in pixel space [0, 1]; on "
                                                           "other inputs, a fraction of each channel's range")
        attack: Attack = Field("fgsm", description="FGSM (code) or PGD (the authors' commented-out alternative)")
        attack_step: float = Field(8 / 255, gt=0, description="PGD step size, in the bound's units")
        attack_iters: int = Field(5, ge=1, description="PGD steps")

    def prepare(self, ctx: Context) -> None:
        ctx.state["attack_hits"] = [0, 0]
        ctx.state["input_range"] = ctx.dataset.input_range

    def relabel(self, ctx: Context, batch: Batch) -> Batch:
        hp, model = ctx.hp, ctx.original
        mean = torch.tensor(ctx.dataset.mean, device=batch.x.device)
        std = torch.tensor(ctx.dataset.std, device=batch.x.device)
        with ctx.runtime.autocast():
            adv = adversarial_examples(model, batch.x, batch.y, mean, std, hp["bound"], hp["attack"],
                                       hp["attack_step"], hp["attack_iters"], ctx.state["input_range"],
                                       clamp=not ctx.dataset.vectors)
            with torch.no_grad():
                labels = model(adv).float().argmax(1)
        ctx.sample_passes += len(batch) * (1 if hp["attack"] == "fgsm" else hp["attack_iters"])
        hits = ctx.state["attack_hits"]
        hits[0] += int((labels != batch.y).sum())
        hits[1] += len(batch)
        return batch.relabelled(labels)

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        return ctx.task.losses(outputs, batch).mean()

    def finish(self, ctx: Context) -> None:
        hits, total = ctx.state.pop("attack_hits")
        ctx.state["attack_success_rate"] = hits / max(total, 1)


def _module_path(model: nn.Module, target: nn.Module) -> str:
    for name, module in model.named_modules():
        if module is target:
            return name
    raise ConfigError(f"the classifier layer is not a submodule of {type(model).__name__}")


def _replace_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attribute = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attribute, module)


def _resized_linear(layer: nn.Linear, out_features: int, init: str = "uniform") -> nn.Linear:
    """A linear layer with `out_features` outputs whose first rows copy `layer`'s. New rows keep nn.Linear's
    default initialisation (`init="uniform"`, SalUn's `expand_model`) or are drawn Xavier-normal with a zero
    bias (`init="xavier"`, the authors' code, which initialises the whole widened layer so before copying)."""
    resized = nn.Linear(layer.in_features, out_features, bias=layer.bias is not None,
                        device=layer.weight.device, dtype=layer.weight.dtype)
    rows = min(out_features, layer.out_features)
    with torch.no_grad():
        if init == "xavier":
            nn.init.xavier_normal_(resized.weight)
            if resized.bias is not None:
                resized.bias.zero_()
        resized.weight[:rows] = layer.weight[:rows]
        if layer.bias is not None:
            resized.bias[:rows] = layer.bias[:rows]
    return resized


ShadowInit = Literal["xavier", "uniform"]


class ShadowClass(ForgetPart):
    """Boundary Expanding's forgetting part: widen the final linear layer by one shadow output, descend on D_f
    labelled with that output, then prune it, so the model keeps its architecture and loads from its spec.

    The whole network trains (as in both codes). The shadow row is drawn Xavier-normal with a zero bias, as
    the authors' code does (`shadow_init="xavier"`); `shadow_init="uniform"` keeps nn.Linear's default, as
    SalUn's `expand_model`. SalUn's code never prunes and evaluates the widened model; the authors' code and
    the paper prune, as here.

    After pruning, D_f's predictions spread over the remaining classes: training toward the shadow output
    pushes each other logit down in proportion to its probability, which evens them out rather than ranking
    the forgotten class last. On class-wise forgetting the forget accuracy therefore settles near chance
    (1/K of D_f), not at the oracle's 0.
    """

    label = "shadow class (expand, then prune)"

    class Params(Params):
        shadow_init: ShadowInit = Field("xavier", description="the shadow row: Xavier-normal, zero bias (authors' "
                                                              "code) or nn.Linear's default (SalUn's copy)")

    def prepare(self, ctx: Context) -> None:
        layer = classifier_layer(ctx.model)
        path = _module_path(ctx.model, layer)
        ctx.state["shadow"] = (path, layer.out_features)
        _replace_module(ctx.model, path, _resized_linear(layer, layer.out_features + 1, ctx.hp["shadow_init"]))

    def relabel(self, ctx: Context, batch: Batch) -> Batch:
        return batch.relabelled(torch.full_like(batch.y, ctx.state["shadow"][1]))

    def loss(self, ctx: Context, outputs, batch: Batch) -> Tensor:
        return ctx.task.losses(outputs, batch).mean()

    def finish(self, ctx: Context) -> None:
        path, classes = ctx.state.pop("shadow")
        _replace_module(ctx.model, path, _resized_linear(ctx.model.get_submodule(path), classes))
