"""Geometries: how the parts' gradients become weight updates.

- Joint: one Euclidean step on forget + remain objectives per iteration (GA, FT, RL, SalUn, BT, NegGrad+).
- FastSlow ("R-on"): a masked forget step, then remain steps at the up-to-date weights, so the remain
  steps implicitly precondition the forgetting direction by the current remain Hessian (SFR-on).
- MaxMin: epoch-wise alternation of a forget pass and a remain pass (SCRUB's max and min steps).
All share one Stepper: mask, clipping, strict freezing, divergence checks.
"""
from __future__ import annotations

from typing import ClassVar, Iterator, Literal

import torch
from torch import Tensor, nn

from ..config import Schedule
from ..errors import DivergenceError
from ..models import trainable
from ..training import make_optimizer, make_schedule
from .calibration import CalibrationParams, budget_left, probe_reserve
from .context import Batch, Context
from .params import Field, NoParams, Params


class Optimisation(Params):
    """The optimiser every step of a gradient run shares, and the run's budget. Step sizes and budget are
    relative to the original's training recipe, so one default means the same on 1,400 images and on 50,000."""

    optimizer: Literal["recipe", "sgd", "adam", "adamw"] = Field("recipe", description="optimiser of the "
                                                                 "unlearning steps (recipe: the training recipe's)")
    lr_scale: float = Field(0.1, gt=0, description="learning rate as a multiple of the training recipe's")
    lr: float | None = Field(None, gt=0, description="absolute learning rate (none: lr_scale × the recipe's)")
    momentum: float | None = Field(None, ge=0, lt=1, description="SGD momentum (none: the recipe's)")
    weight_decay: float | None = Field(None, ge=0, description="weight decay (none: the recipe's)")
    lr_schedule: Schedule = Field("cosine", description="learning-rate schedule over the planned steps")
    batch_size: int | None = Field(None, ge=1, description="samples per forget or remain batch (none: the recipe's)")
    strict_mask: bool = Field(False, description="put masked-out weights back after each step (momentum and weight "
                                                 "decay would still move them)")
    budget: float = Field(0.25, gt=0, le=10, description="most compute the run may use, as a share of one "
                                                         "retraining's sample passes (the steps are planned from it)")


class LoopParams(Optimisation, CalibrationParams):
    """The settings every gradient loop reads: its optimiser and budget, and the oracle-free stopping rule."""


def optimisation(ctx: Context) -> dict:
    """The concrete optimiser settings of the run: relative values resolved against the training recipe."""
    hp, recipe = ctx.hp, ctx.recipe
    return {"optimizer": recipe.optimizer if hp["optimizer"] == "recipe" else hp["optimizer"],
            "lr": hp["lr"] if hp["lr"] is not None else hp["lr_scale"] * recipe.lr,
            "momentum": recipe.momentum if hp["momentum"] is None else hp["momentum"],
            "weight_decay": recipe.weight_decay if hp["weight_decay"] is None else hp["weight_decay"],
            "batch_size": recipe.batch_size if hp["batch_size"] is None else hp["batch_size"]}


def budget_steps(ctx: Context, per_step: float) -> int:
    """How many steps of `per_step` sample passes the rest of the budget pays for (at least one), after what
    the mask took and what the calibration's checks will take."""
    left = budget_left(ctx) - probe_reserve(ctx)
    return max(1, int(left // max(per_step, 1)))


class Stepper:
    """One optimiser shared by every step of a run (as in the official code: momentum flows between
    forget and remain steps), with its LR schedule over the run's planned steps."""

    def __init__(self, ctx: Context, mask: dict[str, Tensor] | None, schedule_length: int):
        settings = optimisation(ctx)
        ctx.state["optimisation"] = {**settings, "planned_steps": schedule_length}
        self.ctx, self.mask = ctx, mask
        self.params = trainable(ctx.model)
        self.optimizer = make_optimizer(self.params.values(), settings["optimizer"], settings["lr"],
                                        settings["momentum"], settings["weight_decay"])
        self.schedule = make_schedule(self.optimizer, ctx.hp["lr_schedule"], schedule_length)

    def scale_lr(self, factor: float, keep_momentum: bool = False) -> None:
        """Multiply the learning rate from now on (the schedule keeps its shape); unless `keep_momentum`, forget
        the optimiser's momentum (after the calibration rewound the weights, it points the wrong way)."""
        for group in self.optimizer.param_groups:
            group["lr"] *= factor
        self.schedule.base_lrs = [lr * factor for lr in self.schedule.base_lrs]
        if not keep_momentum:
            self.optimizer.state.clear()

    def step(self, loss: Tensor, masked: bool, clip: float = 0.0) -> None:
        if not torch.isfinite(loss):
            # An absolute lr (every generation method sets one) overrides lr_scale: name the one that is read.
            rate = "lr_scale" if self.ctx.hp["lr"] is None else "lr"
            raise DivergenceError(f"the loss became {loss.item()} at step {self.ctx.step}: "
                                  f"lower {rate} or the forgetting scale")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mask = self.mask if masked else None
        if mask is not None:
            for n, p in self.params.items():
                if p.grad is not None and n in mask:
                    p.grad.mul_(mask[n])
        if clip > 0:
            nn.utils.clip_grad_norm_(self.params.values(), clip)
        frozen = None
        if mask is not None and self.ctx.hp["strict_mask"]:
            # Momentum and weight decay would still move masked-out weights: put them back after the step.
            frozen = {n: p.detach().clone() for n, p in self.params.items() if n in mask}
        self.optimizer.step()
        self.ctx.updates += 1
        if frozen is not None:
            with torch.no_grad():
                for n, old in frozen.items():
                    self.params[n].copy_(torch.where(mask[n].bool(), self.params[n], old))


def guarded(ctx: Context, calibrator, step: int, run) -> None:
    """Run one step; if its loss goes NaN or infinite, let the calibration rewind and back off, or re-raise."""
    try:
        run()
    except DivergenceError as exc:
        if not calibrator.recover(ctx, step, exc):
            raise


def part_loss(ctx: Context, part, batch: Batch, mode: str = "train") -> Tensor:
    """Relabel the batch for `part`, run the task's forward pass, and return the part's objective."""
    batch = part.relabel(ctx, batch)
    ctx.sample_passes += len(batch)
    return part.loss(ctx, ctx.task.forward(ctx, batch, train=mode == "train"), batch)


class Geometry:
    """How the gradient steps of a method's parts combine (the fourth part of the unified framework)."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""
    kind: ClassVar[str] = "gradient"
    Params: ClassVar[type[Params]] = NoParams

    def run(self, ctx: Context, method, mask: dict[str, Tensor] | None) -> None:
        raise NotImplementedError


class Procedure(Geometry):
    """A method that is a whole procedure rather than a combination of parts' gradients: retraining, SISA, the
    one-shot updates (influence, Fisher, SSD, one-step) and closed forms. It takes no forgetting or remaining
    part, and what it needs besides the model and the split (the training recipe, a store) comes in through the
    context."""

    kind: ClassVar[str] = "procedure"


class Joint(Geometry):
    """Each step descends forget_weight * L_forget + remain_weight * L_remain in one Euclidean step.

    sampling='paired': a remain batch and a forget batch per step, epochs counted over D_r (or over D_f
    when there is no remaining part). sampling='union': batches drawn from D_f ∪ D_r together, one forward
    pass, each part weighted by its share of the batch (the official RL, SalUn and BT loaders).
    The steps are `epochs` passes when given, else as many as the budget pays for; the LR schedule runs
    over them, stepped per step.
    """

    name, label = "joint", "Euclidean (joint step)"

    class Params(LoopParams):
        epochs: int | None = Field(None, ge=1, description="passes over D_r (over D_f when the method has no "
                                                           "remaining part); none: as many steps as the budget pays")
        forget_weight: float = Field(1.0, ge=0, description="weight of the forgetting objective")
        remain_weight: float = Field(1.0, ge=0, description="weight of the remaining objective")
        clip: float = Field(0.0, ge=0, description="gradient-norm clip of every step (0: off)")
        forget_mode: Literal["train", "eval"] = Field("train", description="forget batches in train mode (BatchNorm "
                                                                           "statistics move) or eval mode")

    def __init__(self, sampling: str = "paired"):
        self.sampling = sampling

    def run(self, ctx: Context, method, mask) -> None:
        hp = ctx.hp
        bs = optimisation(ctx)["batch_size"]
        if self.sampling == "union":
            per_epoch = -(-(len(ctx.forget) + len(ctx.remain)) // bs)
            per_step = bs
        else:
            driver = ctx.remain if method.remain is not None else ctx.forget
            per_epoch = -(-len(driver) // bs)
            per_step = bs * (2 if method.forget is not None and method.remain is not None else 1)
        total = hp["epochs"] * per_epoch if hp["epochs"] is not None else budget_steps(ctx, per_step)
        stepper = Stepper(ctx, mask, total)
        ctx.total_steps = total
        calibrator = ctx.calibrator(total, stepper)
        step = 0
        while step < total and not calibrator(ctx, step):
            for loss in self._losses(ctx, method, bs):
                ctx.step = step
                guarded(ctx, calibrator, step, lambda: stepper.step(loss, masked=True, clip=hp["clip"]))
                stepper.schedule.step()
                step += 1
                if step >= total or calibrator(ctx, step):
                    break
        calibrator(ctx, step, last=True)

    def _losses(self, ctx: Context, method, bs: int) -> Iterator[Tensor]:
        """One pass over the epoch's driver set."""
        hp, g = ctx.hp, ctx.generator
        wf, wr = hp["forget_weight"], hp["remain_weight"]
        if self.sampling == "union":
            n_f = len(ctx.forget)
            order = torch.randperm(n_f + len(ctx.remain), generator=g)
            for start in range(0, len(order), bs):
                chunk = order[start : start + bs]
                fpos, rpos = chunk[chunk < n_f], chunk[chunk >= n_f] - n_f
                fb = method.forget.relabel(ctx, ctx.batch(ctx.forget, fpos))
                rb = method.remain.relabel(ctx, ctx.batch(ctx.remain, rpos))
                outputs = ctx.task.forward(ctx, Batch.cat(fb, rb), train=True)  # one pass: BN sees the mixed batch
                ctx.sample_passes += len(chunk)
                loss = torch.zeros((), device=ctx.device)
                if len(fpos):
                    loss = loss + wf * len(fpos) / len(chunk) * method.forget.loss(ctx, outputs[: len(fpos)], fb)
                if len(rpos):
                    loss = loss + wr * len(rpos) / len(chunk) * method.remain.loss(ctx, outputs[len(fpos) :], rb)
                yield loss
            return
        driver = ctx.remain if method.remain is not None else ctx.forget
        forget_stream = ctx.state.setdefault("forget_stream", _positions(len(ctx.forget), bs, g))
        for pos in torch.randperm(len(driver), generator=g).split(bs):
            loss = None
            if method.remain is not None:
                loss = wr * part_loss(ctx, method.remain, ctx.batch(ctx.remain, pos))
            if method.forget is not None:
                fb = ctx.batch(ctx.forget, pos if method.remain is None else next(forget_stream))
                term = wf * part_loss(ctx, method.forget, fb, hp["forget_mode"])
                loss = term if loss is None else loss + term
            yield loss


def _positions(n: int, bs: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless shuffled batches of positions in 0..n-1 (a cycled loader)."""
    while True:
        yield from torch.randperm(n, generator=generator).split(bs)


class FastSlow(Geometry):
    """SFR-on's R-on schedule: at every `forget_freq`-th iteration a masked, norm-clipped forget step;
    at every iteration a remain step; the LR schedule advances per iteration.

    online=False is the ablation without "on": the forget and remain gradients are taken at the same
    weights and summed into one (masked, clipped) step, so the remain part no longer corrects the
    forgetting direction at the up-to-date weights. forget_mode='train' (code) lets forget batches
    update BatchNorm statistics; 'eval' freezes them. remain_clip (0 = off, the classification code) clips
    the remain steps' gradient norm, as the official DDPM runner clips every step. The iterations are
    `iters` when given, else as many as the budget pays for.
    """

    name = "fast-slow"

    class Params(LoopParams):
        iters: int | None = Field(None, ge=1, description="iterations, each with a remain step (none: as many as "
                                                          "the budget pays for)")
        forget_freq: int = Field(5, ge=1, description="a forget step every this many iterations")
        forget_clip: float = Field(7.0, ge=0, description="gradient-norm clip of the forget steps (0: off)")
        remain_clip: float = Field(0.0, ge=0, description="gradient-norm clip of the remain steps (0: off)")
        forget_mode: Literal["train", "eval"] = Field("train", description="forget batches in train mode (BatchNorm "
                                                                           "statistics move) or eval mode")

    def __init__(self, online: bool = True):
        self.online = online
        self.label = "remain manifold, online (fast-slow R-on)" if online else "remain manifold, joint step (no 'on')"

    def run(self, ctx: Context, method, mask) -> None:
        hp = ctx.hp
        freq, bs = hp["forget_freq"], optimisation(ctx)["batch_size"]
        per_iter = (bs if method.remain is not None else 0) + (bs / freq if method.forget is not None else 0)
        iters = hp["iters"] if hp["iters"] is not None else budget_steps(ctx, per_iter)
        stepper = Stepper(ctx, mask, iters)
        ctx.total_steps = iters
        calibrator = ctx.calibrator(iters, stepper, align=freq if method.forget is not None else 1)
        forget_stream = _positions(len(ctx.forget), bs, ctx.generator)
        remain_stream = _positions(len(ctx.remain), bs, ctx.generator)
        def iteration(t: int) -> None:
            forget_loss = None
            if method.forget is not None and t % freq == 0:
                forget_loss = part_loss(ctx, method.forget, ctx.batch(ctx.forget, next(forget_stream)),
                                        hp["forget_mode"])
                if self.online:
                    stepper.step(forget_loss, masked=True, clip=hp["forget_clip"])
                    forget_loss = None
            if method.remain is not None:
                remain_loss = part_loss(ctx, method.remain, ctx.batch(ctx.remain, next(remain_stream)))
                if forget_loss is None:
                    stepper.step(remain_loss, masked=False, clip=hp["remain_clip"])
                else:
                    stepper.step(forget_loss + remain_loss, masked=True, clip=hp["forget_clip"])
            elif forget_loss is not None:
                stepper.step(forget_loss, masked=True, clip=hp["forget_clip"])

        for t in range(iters):
            if calibrator(ctx, t):
                return
            ctx.step = t
            guarded(ctx, calibrator, t, lambda: iteration(t))
            stepper.schedule.step()
        calibrator(ctx, iters, last=True)


class MaxMin(Geometry):
    """SCRUB: each epoch a max pass over D_f (the first `msteps` epochs only), then a min pass over D_r.
    The epochs are `epochs` when given, else as many as the budget pays for (at least one); the stopping rule
    is checked within min passes only, where the remain steps have repaired the max steps' damage."""

    name, label = "max-min", "Euclidean (alternating max/min epochs)"

    class Params(LoopParams):
        epochs: int | None = Field(None, ge=1, description="epochs, each ending with a min pass over D_r (none: as "
                                                           "many as the budget pays for)")
        msteps: int = Field(2, ge=0, description="the first this many epochs start with a max pass over D_f")

    def run(self, ctx: Context, method, mask) -> None:
        hp = ctx.hp
        bs = optimisation(ctx)["batch_size"]
        epochs = hp["epochs"]
        if epochs is None:
            left, epochs = budget_steps(ctx, 1), 0
            while left >= len(ctx.remain) + (len(ctx.forget) if epochs < hp["msteps"] else 0) or epochs == 0:
                left -= len(ctx.remain) + (len(ctx.forget) if epochs < hp["msteps"] else 0)
                epochs += 1
        passes = [(epoch < hp["msteps"], -(-len(ctx.remain) // bs)) for epoch in range(epochs)]
        total = sum(-(-len(ctx.forget) // bs) * has_max + remain for has_max, remain in passes)
        stepper = Stepper(ctx, mask, total)
        ctx.total_steps = total
        calibrator = ctx.calibrator(total, stepper)
        if calibrator(ctx, 0):
            return
        step = 0
        for epoch in range(epochs):
            views = [(ctx.forget, method.forget, False)] if epoch < hp["msteps"] else []
            for view, part, check in views + [(ctx.remain, method.remain, True)]:
                for pos in torch.randperm(len(view), generator=ctx.generator).split(bs):
                    ctx.step = step
                    guarded(ctx, calibrator, step,
                            lambda: stepper.step(part_loss(ctx, part, ctx.batch(view, pos)), masked=True))
                    stepper.schedule.step()
                    step += 1
                    if check and step < total and calibrator(ctx, step):
                        return
        calibrator(ctx, step, last=True)
