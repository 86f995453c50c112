"""Training from scratch (the original model and the oracle), prediction, and accuracy."""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from .artifacts import atomic_write_file
from .config import TrainRecipe
from .data.images import DataView
from .errors import ConfigError, DivergenceError
from .progress import task
from .runtime import Runtime, seed_everything


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ConfigError(f"unknown optimizer '{name}'; expected sgd, adam or adamw")


def make_schedule(optimizer: torch.optim.Optimizer, kind: str, total: int) -> torch.optim.lr_scheduler.LRScheduler:
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total, 1))
    if kind == "step":  # the classic x0.1 at 50% and 75% of training
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [total // 2, (3 * total) // 4], 0.1)
    if kind == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    raise ConfigError(f"unknown learning-rate schedule '{kind}'; expected cosine, constant or step")


def training_loss(recipe: TrainRecipe):
    """Cross-entropy, plus the recipe's logit-std penalty when it has one ("Unrolling SGD", Thudi et al. 2022,
    `std_loss` of their code: λ · Σ_i std_k(z_ik) / (N·K), the unbiased standard deviation over the classes)."""
    penalty = recipe.logit_std_penalty

    def loss(logits, labels):
        value = nn.functional.cross_entropy(logits, labels)
        if penalty > 0:
            value = value + penalty * logits.std(dim=1).sum() / logits.numel()
        return value

    return loss


def sgd_step_sizes(lr: float, epochs: int, schedule: str) -> list[float]:
    """The learning rate of each training epoch under the recipe's per-epoch schedule (as `fit` steps it)."""
    probe = make_optimizer([torch.zeros(1, requires_grad=True)], "sgd", lr, 0.0, 0.0)
    scheduler = make_schedule(probe, schedule, epochs)
    rates = []
    for _ in range(epochs):
        rates.append(probe.param_groups[0]["lr"])
        probe.step()
        scheduler.step()
    return rates


def diverged(what: str, where: str, lr: float, option: str = "lr") -> DivergenceError:
    """The error of a training that went NaN or infinite, naming the recipe value to change."""
    return DivergenceError(f"{what} diverged ({where}); nothing was stored: lower the recipe's {option} "
                           f"(given {lr:g})")


def check_finite(model: nn.Module, what: str, lr: float, option: str = "lr") -> None:
    """Raise `diverged` if any floating-point weight or buffer of `model` is NaN or infinite."""
    broken = [n for n, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        raise diverged(what, f"{len(broken)} weight tensor(s) became NaN or infinite, e.g. {broken[0]}", lr, option)


def fit(model: nn.Module, view: DataView, recipe: TrainRecipe, runtime: Runtime, seed: int,
        label: str = "train", resume_file: Path | None = None, save_every_s: float = 30.0) -> int:
    """Train `model` in place with `recipe` (LR schedule stepped per epoch, as the official code does).

    With `resume_file`, the full training state is saved there every `save_every_s` seconds, and a run
    started again continues from it with the same result as an uninterrupted one. Returns the number of
    sample passes (forward+backward).
    """
    if len(view) == 0:
        raise ConfigError(f"{label}: the training set has no samples")
    generator = seed_everything(seed)
    model.to(runtime.device)
    check_classifier(model, view, runtime)
    optimizer = make_optimizer(model.parameters(), recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay)
    schedule = make_schedule(optimizer, recipe.schedule, recipe.epochs)
    view = view if recipe.augment else view.eval()
    start_epoch, started = 0, time.monotonic()
    state = load_state(resume_file) if resume_file is not None else None
    earlier = 0.0  # seconds the interrupted runs this one resumes had trained, up to their last save
    if state is not None:
        restore_state(state, model, optimizer, schedule, generator)
        start_epoch, earlier = state["epoch"], float(state.get("elapsed", 0.0))
    loss_fn = training_loss(recipe)
    last_save = time.monotonic()
    with task(label, recipe.epochs) as advance:
        advance(start_epoch)
        for epoch in range(start_epoch, recipe.epochs):
            model.train()
            total, count = 0.0, 0
            for x, y in view.batches(recipe.batch_size, shuffle=True, generator=generator):
                x, y = x.to(runtime.device, non_blocking=True), y.to(runtime.device, non_blocking=True)
                with runtime.autocast():
                    loss = loss_fn(model(x).float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                value = loss.item()
                if not math.isfinite(value):
                    raise diverged(label, f"the loss became {value} in epoch {epoch + 1}", recipe.lr)
                total += value * len(y)
                count += len(y)
            schedule.step()
            advance(info=f"loss {total / max(count, 1):.3f}")
            if resume_file is not None and (time.monotonic() - last_save > save_every_s or epoch + 1 == recipe.epochs):
                save_state(resume_file, model=model.state_dict(), optimizer=optimizer.state_dict(),
                           schedule=schedule.state_dict(), generator=generator.get_state(), epoch=epoch + 1,
                           elapsed=earlier + time.monotonic() - started)
                last_save = time.monotonic()
    check_finite(model, label, recipe.lr)
    return recipe.epochs * len(view)


CLASSIFIER_STATE = frozenset({"model", "optimizer", "schedule", "generator", "torch_rng", "epoch"})


def resumed_seconds(path: Path) -> float:
    """The training seconds a resume state at `path` holds (0 for none): a resumed run's wall time counts them."""
    state = load_state(path)
    return float(state.get("elapsed", 0.0)) if state is not None else 0.0


def load_state(path: Path, required: frozenset[str] = CLASSIFIER_STATE) -> dict | None:
    """The training state saved at `path` (with every key of `required`), or None; a state that cannot be read is
    discarded with a warning."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=True)
        if not required <= set(state):
            raise ValueError("keys are missing")
        return state
    except Exception as exc:  # torch.load raises many types on a damaged file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        warnings.warn(f"discarded the unreadable resume state '{path}' ({reason}); training starts afresh",
                      stacklevel=2)
        path.unlink(missing_ok=True)
        return None


def restore_state(state: dict, model: nn.Module, optimizer: torch.optim.Optimizer,
                  schedule: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator) -> None:
    """Put what `save_state` saved back: the weights, the optimiser, the LR schedule and both RNGs."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])


def save_state(path: Path, **state) -> None:
    """A training state (state dicts, RNG states, counters), written atomically with the global RNG's state.

    Trainings running side by side (Ray workers) share the store's resume folder, and one that finishes removes it
    once it is empty (`pipeline.discard`): if it vanished between making it and writing into it, make it again."""
    state = {**state, "torch_rng": torch.get_rng_state()}
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write_file(path, lambda tmp: torch.save(state, tmp))
            return
        except (OSError, RuntimeError):  # torch reports a missing folder as a RuntimeError
            if path.parent.exists() or attempt == 2:
                raise


@torch.no_grad()
def predict(model: nn.Module, view: DataView, runtime: Runtime,
            batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels for every sample of `view`, with test-time transforms, the model in eval mode."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for x, y in view.eval().batches(batch_size):
        with runtime.autocast():
            logits.append(model(x.to(runtime.device)).float().cpu())
        labels.append(y.cpu())
    model.train(was_training)
    if not logits:
        return torch.empty(0, 0), torch.empty(0, dtype=torch.long)
    return torch.cat(logits), torch.cat(labels)


@torch.no_grad()
def check_classifier(model: nn.Module, view: DataView, runtime: Runtime) -> None:
    """Raise ConfigError unless `model` gives (N, K) class scores on `view`'s inputs, K at least the dataset's
    classes: one eval-mode forward on two unaugmented samples (no random stream is drawn from), so that a model
    built for other inputs or fewer classes fails in one line before training, not deep inside a loop."""
    x, _ = view.eval().batch(torch.arange(min(2, len(view))))
    was_training = model.training
    model.eval()
    try:
        with runtime.autocast():
            outputs = model(x.to(runtime.device))
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:  # shape, signature or dtype mismatches
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"the model cannot take this dataset's inputs, batches of shape {tuple(x.shape)}: "
                          f"{first}") from None
    finally:
        model.train(was_training)
    classes = view.dataset.num_classes
    shape = tuple(getattr(outputs, "shape", ()))
    if len(shape) != 2 or shape[0] != len(x) or shape[1] < classes:
        raise ConfigError(f"the model gives outputs of shape {shape} for {len(x)} samples; expected "
                          f"({len(x)}, {classes}): one score per class of the dataset")


def accuracy(model: nn.Module, view: DataView, runtime: Runtime) -> float:
    """Top-1 accuracy in percent (test-time transforms)."""
    logits, labels = predict(model, view, runtime)
    return 100.0 * (logits.argmax(1) == labels).double().mean().item() if len(labels) else float("nan")
