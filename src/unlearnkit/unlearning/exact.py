"""Exact unlearning: retraining from scratch (the oracle, as a method) and SISA (Bourtoule et al., S&P 2021).

Both are procedures rather than gradient loops, so each is a Procedure whose `run` does the work. Their
training hyperparameters are a `TrainRecipe`'s fields (with `lr_schedule` for the recipe's `schedule`, the
name every other method uses), and each left unset is the original model's own recipe (`ctx.recipe`), the
one the original and the oracle are trained with.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from ..artifacts import atomic_write_text, content_key, load_weights
from ..config import Optimizer, Schedule, TrainRecipe
from ..errors import ConfigError
from ..models import Ensemble
from ..training import accuracy, fit
from .context import Context
from .forgetting import fresh_copy
from .geometry import Procedure
from .params import Field, Params


class RecipeParams(Params):
    """A training recipe as method hyperparameters; each one left unset is the original model's recipe's."""

    epochs: int | None = Field(None, ge=1, description="epochs (none: the original's recipe)")
    batch_size: int | None = Field(None, ge=1, description="batch size (none: the original's recipe)")
    optimizer: Optimizer | None = Field(None, description="optimiser (none: the original's recipe)")
    lr: float | None = Field(None, gt=0, description="learning rate (none: the original's recipe)")
    momentum: float | None = Field(None, ge=0, lt=1, description="SGD momentum (none: the original's recipe)")
    weight_decay: float | None = Field(None, ge=0, description="weight decay (none: the original's recipe)")
    lr_schedule: Schedule | None = Field(None, description="learning-rate schedule (none: the original's recipe)")
    augment: bool | None = Field(None, description="train-time augmentation (none: the original's recipe)")


def recipe_from(ctx: Context) -> TrainRecipe:
    """The original's recipe with the run's recipe hyperparameters over it."""
    given = {k: ctx.hp[k] for k in RecipeParams.model_fields if ctx.hp.get(k) is not None}
    if "lr_schedule" in given:
        given["schedule"] = given.pop("lr_schedule")
    return ctx.recipe.with_overrides(given)


class Retrain(Procedure):
    """The exact oracle as a method: a freshly initialised copy of the architecture (seeded with the run's seed)
    trained on D_r with the recipe, whose weights then replace the model's."""

    name, label = "retrain", "exact: retrain from scratch on D_r"
    Params = RecipeParams

    def run(self, ctx: Context, method, mask) -> None:
        recipe = recipe_from(ctx)
        ctx.total_steps = recipe.epochs
        scratch = fresh_copy(ctx.model, ctx.seed)
        ctx.sample_passes += fit(scratch, ctx.remain, recipe, ctx.runtime, ctx.seed, label="retrain on D_r")
        ctx.model.load_state_dict(scratch.state_dict())
        ctx.step = recipe.epochs


# --- SISA ----------------------------------------------------------------------------------------------

SHARD_CHOICES = (5, 2, 1)  # tried in turn where `shards` is not given; 1 is a retraining, always within reach


@dataclass(frozen=True)
class ShardPlan:
    """Which training indices each shard holds, in order (cut into slices), and the epochs of each slice."""

    shards: list[np.ndarray]
    slices: int
    slice_epochs: list[int]

    @classmethod
    def make(cls, n_train: int, shards: int, slices: int, epochs: int, seed: int) -> "ShardPlan":
        """The code's uniform split (`distribution.py`: contiguous blocks of n // S, the last takes the rest) of a
        seeded permutation (the paper shards uniformly at random; the code relies on a pre-shuffled file), and its
        epochs per slice (`sisa.py`: slice r trains on slices 0..r for int((r+1)a) - int(ra) epochs, with
        a = 2R/(R+1) · e/R, so that a shard costs about as many sample passes as e epochs)."""
        if shards < 1 or slices < 1:
            raise ConfigError(f"shards and slices must be >= 1, got shards={shards}, slices={slices}")
        if shards * slices > n_train:
            raise ConfigError(f"{shards} shards x {slices} slices need at least {shards * slices} training samples, "
                              f"the dataset has {n_train}")
        order = torch.randperm(n_train, generator=torch.Generator().manual_seed(seed)).numpy()
        size = n_train // shards
        parts = [order[s * size:(s + 1) * size] for s in range(shards - 1)] + [order[(shards - 1) * size:]]
        per_slice = 2 * slices / (slices + 1) * epochs / slices
        slice_epochs = [int((r + 1) * per_slice) - int(r * per_slice) for r in range(slices)]
        return cls(parts, slices, slice_epochs)

    def slice_end(self, shard: int, r: int) -> int:
        """Slice r of a shard ends here (positions within the shard); the last slice takes the remainder."""
        size = len(self.shards[shard])
        return size if r == self.slices - 1 else (r + 1) * (size // self.slices)

    def first_affected_slice(self, shard: int, forget: np.ndarray) -> int | None:
        held = np.flatnonzero(np.isin(self.shards[shard], forget))
        if len(held) == 0:
            return None
        return next(r for r in range(self.slices) if held[0] < self.slice_end(shard, r))


def _seed(seed: int, shard: int, r: int | None = None) -> int:
    """A fixed seed per shard (its initial weights) and per slice (its data order)."""
    return int(content_key(["sisa", seed, shard, r]), 16) % 2**31


def _checkpoint_name(shard: int, r: int) -> str:
    return f"shard{shard}-slice{r}.safetensors"


def architecture_key(model: nn.Module) -> str:
    return content_key([repr(model), [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()]])


def _train_slices(ctx: Context, model: nn.Module, plan: ShardPlan, shard: int, first: int, recipe: TrainRecipe,
                  forget: np.ndarray, save_dir: Path | None = None) -> int:
    """Train `model` on slices first..R-1 of `shard` (each on slices 0..r, without `forget`), incrementally;
    with `save_dir`, save a checkpoint after each slice. Returns the sample passes."""
    passes = 0
    for r in range(first, plan.slices):
        indices = plan.shards[shard][:plan.slice_end(shard, r)]
        indices = indices[~np.isin(indices, forget)]
        if plan.slice_epochs[r] > 0 and len(indices):
            passes += fit(model, ctx.dataset.train(indices), recipe.with_overrides({"epochs": plan.slice_epochs[r]}),
                          ctx.runtime, _seed(ctx.seed, shard, r), label=f"SISA shard {shard} slice {r}")
        if save_dir is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_file(state, str(save_dir / _checkpoint_name(shard, r)))
    return passes


def _constituent(ctx: Context, shard: int) -> nn.Module:
    """A shard's model before its first slice: the architecture, freshly initialised with the shard's seed."""
    return fresh_copy(ctx.model, _seed(ctx.seed, shard)).to(ctx.device)


def sharded_training(ctx: Context, plan: ShardPlan, recipe: TrainRecipe, shards: int,
                     slices: int) -> tuple[Path, dict, bool]:
    """SISA's "original": every shard trained slice by slice on the full training set, a checkpoint per slice.
    Stored once under a content key (data, architecture, recipe, S, R, seed) in `ctx.store/sisa`, written to a
    temporary folder and renamed into place. Returns (folder, record, whether it was trained by this call)."""
    identity = {"kind": "sisa", "data": ctx.dataset.fingerprint, "architecture": architecture_key(ctx.model),
                "recipe": recipe.model_dump(), "shards": shards, "slices": slices, "seed": ctx.seed}
    key = content_key(identity)
    folder = Path(ctx.store) / "sisa" / f"sisa-{ctx.dataset.name}-{key}"
    if (folder / "record.json").is_file():
        return folder, json.loads((folder / "record.json").read_text()), False
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    started, passes = time.perf_counter(), 0
    for s in range(shards):
        passes += _train_slices(ctx, _constituent(ctx, s), plan, s, 0, recipe, np.empty(0, dtype=np.int64), tmp)
    record = {**identity, "key": key, "training_s": time.perf_counter() - started, "sample_passes": passes,
              "shard_sizes": [len(p) for p in plan.shards], "slice_epochs": plan.slice_epochs,
              "device": str(ctx.device)}
    atomic_write_text(tmp / "record.json", json.dumps(record, indent=2))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process stored the same training first: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, record, True


class Sisa(Procedure):
    """SISA exact unlearning: the sharded, sliced training of the full training set is the model; unlearning
    retrains only the shards holding forget samples, each from its checkpoint before the first slice that
    held one, and `ctx.model` becomes the ensemble of constituents (an `models.Ensemble`).

    The model passed in only supplies the architecture: SISA's original is its own sharded training, found in
    (or added to) the store. Its cost is reported in `details["sisa"]` and kept out of the unlearning wall time,
    which counts only the loading and the retraining of affected shards. Each slice restarts the recipe's
    optimiser and schedule, as the code's fresh process per shard resumes from a weights-only checkpoint.
    """

    name, label = "sisa", "exact: retrain affected shards (SISA)"

    class Params(RecipeParams):
        shards: int | None = Field(None, ge=1, description="disjoint shards, one constituent model each (none: the "
                                                           "most of 5, 2 and 1 whose ensemble keeps the held-out "
                                                           "accuracy within max_heldout_drop of the model's)")
        slices: int = Field(1, ge=1, description="slices per shard (checkpoints to resume from)")
        aggregation: Literal["vote", "softmax"] = Field("vote", description="how constituents' outputs combine")
        max_heldout_drop: float = Field(2.0, ge=0, description="shards none: the points of held-out accuracy the "
                                                               "sharded original may lose against the model")

    def run(self, ctx: Context, method, mask) -> None:
        recipe = recipe_from(ctx)
        started = time.perf_counter()
        if ctx.store is None:  # no store given: the sharded training lives as long as this run
            with tempfile.TemporaryDirectory(prefix="unlearnkit-sisa-") as scratch:
                ctx.store = Path(scratch)
                try:
                    return self._unlearn(ctx, recipe, started)
                finally:
                    ctx.store = None
        self._unlearn(ctx, recipe, started)

    def _original(self, ctx: Context, recipe: TrainRecipe) -> tuple[ShardPlan, Path, dict, bool, dict | None]:
        """SISA's original, the sharded training: of `shards` shards, or (shards none) of the most of
        SHARD_CHOICES whose ensemble, on the held-out set, is within `max_heldout_drop` points of the model's
        accuracy. A constituent sees 1/S of the data for the recipe's epochs, so it gets 1/S of the original's
        steps: 5 shards of MNIST 2k's 2,000 images (400 each, 4 steps an epoch) fell 20-48 points under the
        oracle, where 5 shards of full MNIST lose about 1. Returns the plan, the folder, its record, whether
        this call trained it, and the choice made (None where `shards` was given)."""
        hp, n = ctx.hp, len(ctx.dataset.train_labels)
        given = hp["shards"] is not None
        choices = [hp["shards"]] if given else [s for s in SHARD_CHOICES if s * hp["slices"] <= n] or [1]
        reference = None if given else accuracy(ctx.model, ctx.heldout, ctx.runtime)
        choice = None if given else {"model_heldout_acc": reference, "max_heldout_drop": hp["max_heldout_drop"],
                                     "tried": [], "within": False}
        trained_any = False
        for shards in choices:
            plan = ShardPlan.make(n, shards, hp["slices"], recipe.epochs, ctx.seed)
            folder, record, trained = sharded_training(ctx, plan, recipe, shards, hp["slices"])
            trained_any |= trained
            if given:
                break
            held = accuracy(self._ensemble(ctx, plan, folder, hp["aggregation"]), ctx.heldout, ctx.runtime)
            choice["tried"].append({"shards": shards, "heldout_acc": held})
            if reference - held <= hp["max_heldout_drop"]:
                choice["within"] = True
                break
        if choice is not None:
            choice["shards"] = len(plan.shards)
        return plan, folder, record, trained_any, choice

    @staticmethod
    def _ensemble(ctx: Context, plan: ShardPlan, folder: Path, aggregation: str) -> Ensemble:
        """The sharded original's constituents, each at its last slice, as one model."""
        constituents = []
        for s in range(len(plan.shards)):
            model = _constituent(ctx, s)
            load_weights(model, folder / _checkpoint_name(s, plan.slices - 1))
            constituents.append(model.eval())
        return Ensemble(constituents, aggregation).to(ctx.device).eval()

    def _unlearn(self, ctx: Context, recipe: TrainRecipe, started: float) -> None:
        hp = ctx.hp
        plan, folder, record, trained, choice = self._original(ctx, recipe)
        shards = len(plan.shards)
        # Building the original (and choosing its shards) is not unlearning: take its time out of the wall time.
        ctx.excluded_seconds += time.perf_counter() - started
        started = time.perf_counter()
        forget = ctx.forget.indices.cpu().numpy()
        constituents, affected, retrained, passes = [], [], 0, 0
        ctx.total_steps = shards
        for s in range(shards):
            ctx.step = s
            model = _constituent(ctx, s)
            first = plan.first_affected_slice(s, forget)
            resume = plan.slices - 1 if first is None else first - 1
            if resume >= 0:
                load_weights(model, folder / _checkpoint_name(s, resume))
            if first is not None:
                affected.append(s)
                retrained += plan.slices - first
                passes += _train_slices(ctx, model, plan, s, first, recipe, forget)
            constituents.append(model.eval())
        ctx.sample_passes += passes
        ctx.model = Ensemble(constituents, hp["aggregation"]).to(ctx.device).eval()
        ctx.state["sisa"] = {
            "shards": shards, "slices": hp["slices"], "aggregation": hp["aggregation"], "shard_choice": choice,
            "affected_shards": affected, "retrained_slices": retrained,
            "unlearning_s": time.perf_counter() - started, "unlearning_sample_passes": passes,
            "original_key": record["key"], "original_cached": not trained,
            "original_training_s": record["training_s"], "original_sample_passes": record["sample_passes"]}
