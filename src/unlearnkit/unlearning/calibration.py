"""Calibration without an oracle: one stopping and strength rule in the engine that decides how far every
gradient method forgets, from signals a user has without retraining.

- Random-subset forgetting: the forget set should look like data the model never saw. At regular checks the
  rule compares a fixed sample of D_f with a fixed held-out sample (the test split, or a validation split given
  to `unlearn`) by the logit-scaled confidence of the true class (LiRA's φ). Criterion "auc" (the default;
  SFR-on, FT, GA, NegGrad+ and l1-sparse use "loss" for random forgetting): a threshold membership attack on φ is
  at chance, AUC <= 0.5 (and within `auc_z` standard errors of 0.5 at the start, there is nothing to forget).
  Criterion "error": the forget error reaches the held-out error (SCRUB+R's rewinding rule, Kurmanji et al. 2023).
  Criterion "loss": the mean forget loss reaches the held-out mean, within `stop_z` standard errors of the
  difference of the two means (within `auc_z` at the start: nothing to forget).
- Class-wise forgetting: a class the model never saw is never predicted, so the target is a forget accuracy of
  at most `class_target` percent: on the probe, and, where the probe is part of D_f, confirmed on all of D_f (the
  verdict's measure) before a check counts as met. The run stops there, so the steps it no longer takes pay for
  the confirmation; one that fails ends the run sooner by what it cost.
- Strength: once a check meets the target, the straight stretch of weights from the last good check to it is
  bisected (`refine` halvings) for the point nearest the good end that still meets it: the least change that
  forgets, rather than wherever the check grid happened to land.
- Safety: if the remain accuracy (on a fixed sample of D_r) falls more than `max_remain_drop` points below its
  value at the start, or the held-out accuracy more than `max_heldout_drop` (the verdict's "model damaged"; where
  a probe of part of the held-out set is within `damage_z` standard errors of that, the whole set decides), the
  step size is too large for this problem: the rule rewinds to the last good check,
  clears the optimiser's momentum, halves the learning rate and goes on (at most `backoffs` times; then it stops
  at the last good check). An overshoot of the "auc" target (AUC below 0.5 by more than `auc_z` standard errors:
  the forget set now looks *less* like training data than unseen data does, itself a tell) backs off the same
  way. So the step size adapts to the problem; the default is a large one that back-offs can bring down. Under the
  "loss" rule such an overshoot, met or not, ends the run at the most change before it (the last stretch bisected
  for the furthest point still within the AUC band). A check that met the target and damaged the model is kept
  aside: a run that then ends without the target (its budget spent, or no step size left) bisects that stretch for
  the least change that meets the target undamaged, with D_r still fit as training data (its loss not risen
  halfway to the held-out's), and keeps it where there is one. Last, where the budget left
  pays for it, the kept weights are asked on all of the held-out set, then on D_r (up to 5,000 samples); past a
  ceiling there, they step back toward the start (`verify`).

Every check, back-off, refinement and the decision are recorded in the run's details.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from ..evaluation.oracle_free import (
    REMAIN_SAMPLE,
    auc_tolerance,
    fixed_sample,
    heldout_reference,
    loss_reached,
    loss_tolerance,
    membership_auc,
    reference_in_words,
    tail_share,
)
from .params import Field, Params

if TYPE_CHECKING:  # only for annotations: the context imports this module
    from .context import Context


class CalibrationParams(Params):
    calibrate: bool = Field(True, description="stop by the oracle-free rule (below); off: run the whole budget")
    criterion: Literal["auc", "tail", "error", "loss"] = Field(
        "auc", description="random forgetting: D_f vs held-out by the membership AUC of φ, the low tail of φ, the "
                           "error rate, or the mean loss")
    tail: float = Field(0.1, gt=0, lt=0.5, description="'tail': the held-out quantile of φ whose share of D_f "
                                                       "below it should reach the quantile itself")
    auc_z: float = Field(1.0, ge=0, description="within auc_z standard errors of the target at the start there is "
                                                "nothing to forget; past it by as much, the run overshot")
    stop_z: float = Field(1.0, ge=0, description="'auc'/'tail'/'loss', after the start: stop within stop_z "
                                                 "standard errors of the target (0: at the target itself)")
    class_target: float = Field(1.0, ge=0, le=100, description="class-wise: stop at this forget accuracy (%)")
    checks: int = Field(10, ge=1, description="checks spread over the run's planned steps")
    probe_samples: int = Field(512, ge=8, description="most samples a check uses from D_f, as many from the "
                                                      "held-out set and half as many from D_r (forward passes, a "
                                                      "third of a sample pass each; reserved from the budget)")
    max_remain_drop: float = Field(3.0, ge=0, description="the remain accuracy may fall this many points; beyond, "
                                                          "the run rewinds and backs off")
    max_heldout_drop: float = Field(5.0, ge=0, description="the held-out accuracy (of the retained classes, "
                                                           "class-wise) may fall this many points; beyond, the same")
    damage_z: float = Field(1.0, ge=0, description="a held-out probe's drop within this many standard errors of "
                                                   "max_heldout_drop is decided on the whole held-out set, as the "
                                                   "verdict judges it, and so are the kept weights (and on D_r) where "
                                                   "the budget pays (0: the probes decide alone)")
    backoffs: int = Field(3, ge=0, description="times a check that finds damage (or, 'auc', an overshoot below "
                                               "0.5) rewinds to the last good check and halves the step size "
                                               "before the run stops there")
    refine: int = Field(4, ge=0, description="halvings of the last stretch of weights between the last good check "
                                             "and the one that met the target, to land where it is first met")
    guard_z: float = Field(1.0, ge=0, description="'loss': the run ends at the most change before the membership "
                                                 "AUC falls this many standard errors below chance")
    max_growth: float = Field(1.0, ge=1, description="the step size may double at a check that closed less than its "
                                                     "share of the distance to the target, up to this multiple of "
                                                     "the start (1: never grows; off after a back-off)")


class StrengthParams(CalibrationParams):
    """The calibration of a one-shot edit: the same targets, met by scaling the edit instead of stopping a loop."""

    budget: float = Field(0.25, gt=0, le=10, description="share of one retraining's sample passes the strength "
                                                         "checks are sized from")
    max_strength: float = Field(64.0, ge=1, description="largest multiple of the method's own edit the strength "
                                                        "search tries")


@dataclass
class Check:
    step: int
    sample_passes: int
    forget_acc: float
    heldout_acc: float
    remain_acc: float
    forget_loss: float
    heldout_loss: float
    remain_loss: float
    heldout_reference: float  # the mean loss as many held-out samples as D_f's probe typically have (the target)
    auc: float
    tail: float
    loss_band: float
    met: bool
    heldout_drop_se: float = 0.0  # standard error of the probe's held-out drop since the start, for the whole set
    heldout_whole_drop: float | None = None  # the whole held-out set's drop, where the probe was too near the ceiling
    forget_whole_acc: float | None = None  # class-wise: all of D_f's accuracy, where a probe of part of it met


PROBE_SHARE = 0.3  # the checks may take at most this share of the budget
MIN_PROBE = 16
REMAIN_LOSS_SHARE = 0.5  # a fallback point's D_r loss may rise this share of the way to the held-out's


def _affordable(ctx: Context) -> float:
    """Samples per check that keep all the checks (at a third of a sample pass each) within PROBE_SHARE of the
    budget."""
    hp = ctx.hp
    return PROBE_SHARE * hp["budget"] * ctx.recipe.epochs * len(ctx.remain) * 3 / (hp["checks"] + 2 + hp["refine"])


def probe_size(ctx: Context) -> int:
    """Samples a check takes from the held-out set (and half as many from D_r): at most probe_samples, no more
    than the held-out set holds, and within the budget's share on a small problem. Not capped by D_f's size: a
    deletion request of a few samples still needs the held-out mean loss, which its few misclassified samples
    carry, from as many held-out samples as a larger request (16 of digits' 360 gave 0.005 for the 0.012 of all)."""
    cap = min(ctx.hp["probe_samples"], len(ctx.heldout), _affordable(ctx) / 2.5)
    return max(MIN_PROBE, int(cap))


def forget_probe_size(ctx: Context) -> int:
    """Class-wise, the target is the forget accuracy itself, so its check reads as much of D_f as the budget
    allows (up to 4 × probe_samples); a check of part of D_f that meets it is confirmed on all of D_f
    (`Calibrator._confirm`). Otherwise as many as the held-out probe, or all of D_f where it holds fewer."""
    heldout = probe_size(ctx)
    if ctx.split_kind == "class":
        spare = _affordable(ctx) - 1.5 * heldout
        return min(len(ctx.forget), max(heldout, int(min(4 * ctx.hp["probe_samples"], spare))))
    return min(len(ctx.forget), heldout)


def budget_left(ctx: Context) -> float:
    """Sample passes of the budget not yet spent (`budget` of one retraining's: the recipe's epochs over D_r),
    forward-only passes at a third each."""
    return ctx.hp["budget"] * (ctx.recipe.epochs * len(ctx.remain)) - ctx.sample_passes - ctx.forward_passes / 3


def probe_reserve(ctx: Context) -> float:
    """Sample passes the checks of a calibrated run cost (forward passes at a third each), kept out of the
    budget its steps are planned from."""
    if not ctx.hp.get("calibrate"):
        return 0.0
    per_check = forget_probe_size(ctx) + 1.5 * probe_size(ctx)
    return (ctx.hp["checks"] + 2 + ctx.hp["refine"]) * per_check / 3


def snapshot(model: torch.nn.Module) -> dict:
    """A copy of the model's weights and buffers now, to rewind to or bisect from."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _between(start: dict, end: dict, t: float) -> dict:
    """Weights t of the way from `start` to `end` (integer buffers, such as BatchNorm's step count, from `end`)."""
    return {k: torch.lerp(start[k], end[k], t) if end[k].is_floating_point() else end[k] for k in end}


class Calibrator:
    """Called by a gradient geometry at every step boundary (`__call__` returns True to stop); `finish` keeps
    the chosen weights and records the decision in ctx.state['calibration']."""

    def __init__(self, ctx: Context, total_steps: int, stepper=None, align: int = 1):
        hp = ctx.hp
        self.stepper, self.backoffs, self.events, self._good = stepper, 0, [], None
        self.growth = 1.0  # the step size now, as a multiple of the start's
        self.good_growth, self.too_large = 1.0, None  # the largest multiple that did no damage, the smallest that did
        self.hp, self.total = hp, max(total_steps, 1)
        # Checks land every `every` steps, a multiple of `align` (fast-slow: just before a forget step, when the
        # remain steps have repaired the last one).
        self.every = align * max(1, math.ceil(self.total / hp["checks"] / align))
        self.passes_at_start = ctx.sample_passes  # the training passes before the first step (the mask's)
        self.forward_at_start = ctx.forward_passes
        self.end_step = self.total  # sooner where a failed confirmation on all of D_f spent part of the budget
        self.classwise = ctx.split_kind == "class"
        cap = probe_size(ctx)
        self.forget = fixed_sample(ctx.forget, forget_probe_size(ctx), ctx.seed)
        self.remain = fixed_sample(ctx.remain, max(MIN_PROBE, cap // 2), ctx.seed + 1)
        heldout = ctx.heldout
        if self.classwise:  # held-out samples of the classes that stay
            forgotten = torch.as_tensor(sorted(set(ctx.forget.labels.tolist())))
            keep = ~torch.isin(heldout.labels.cpu(), forgotten)
            heldout = heldout.__class__(heldout.dataset, heldout.part, heldout.indices[keep], False)
        self.heldout = fixed_sample(heldout, cap, ctx.seed + 2)
        self.heldout_whole, self.heldout_ok_at_start = heldout.eval(), None
        self.forget_whole = ctx.forget.eval()  # class-wise, what a probe of part of D_f that meets the target asks
        self.remain_whole = fixed_sample(ctx.remain, REMAIN_SAMPLE, ctx.seed)  # the verdict's share of D_r
        self.whole_at_start: dict[str, float] = {}  # accuracy at the start on each set `_drop` reads in full
        self.tolerance = auc_tolerance(len(self.forget), len(self.heldout), hp["auc_z"])
        tail_se = math.sqrt(hp["tail"] * (1 - hp["tail"]) / len(self.forget))
        self.tail_tolerance = hp["auc_z"] * tail_se
        # After the start, "within noise of the target" is stop_z standard errors instead of auc_z.
        self.stop_tolerance = auc_tolerance(len(self.forget), len(self.heldout), hp["stop_z"])
        self.guard_tolerance = auc_tolerance(len(self.forget), len(self.heldout), hp["guard_z"])
        self.stop_tail_tolerance = hp["stop_z"] * tail_se
        self.checks: list[Check] = []
        self.previous: dict | None = None  # the weights at the last good check, to rewind to
        self.initial: dict | None = None   # the weights at step 0
        self.decision = "the whole budget ran (calibration off)"
        self.chosen_step = None
        self.stopped = False
        self.verified: dict | None = None  # what `verify` asked of the kept weights, on which sets, and found
        self.damaged: tuple | None = None  # the first stretch that met the target and damaged the model

    def _probe(self, ctx: Context, view) -> tuple[torch.Tensor, torch.Tensor]:
        scores, correct = ctx.task.probe(ctx, view)
        ctx.forward_passes += len(view)
        return scores, correct

    def _measure(self, ctx: Context, step: int, on_top: bool = False) -> Check:
        """One check of the model as it is. `on_top`: no step is left to pay for a look at the whole held-out set
        (a loop's last check, a one-shot edit's strength search), which then comes on top of the budget."""
        f_phi, f_ok = self._probe(ctx, self.forget)
        h_phi, h_ok = self._probe(ctx, self.heldout)
        r_phi, r_ok = self._probe(ctx, self.remain)
        if not all(torch.isfinite(x).all() for x in (f_phi, h_phi, r_phi)):
            # The outputs blew up: a check of a wrecked model, which the safety rule rewinds like any damage.
            f_phi, h_phi, r_phi = (torch.nan_to_num(x, nan=-1e30, posinf=1e30, neginf=-1e30)
                                   for x in (f_phi, h_phi, r_phi))
            r_ok = torch.zeros_like(r_ok)
        auc = membership_auc(f_phi, h_phi)
        tail = tail_share(f_phi, h_phi, self.hp["tail"])
        # The loss, from φ: l = log(1 + e^-φ).
        f_loss, h_loss, r_loss = F.softplus(-f_phi), F.softplus(-h_phi), F.softplus(-r_phi)
        forget_acc, heldout_acc = 100 * f_ok.float().mean().item(), 100 * h_ok.float().mean().item()
        band = loss_tolerance(f_loss, h_loss, self.hp["auc_z"] if step == 0 else self.hp["stop_z"])
        # Class-wise the target is the forget accuracy: the loss reference is only reported, as the mean.
        reference = h_loss.mean().item() if self.classwise else heldout_reference(h_loss, len(f_loss), ctx.seed)
        whole_forget = None
        if self.classwise:
            met = forget_acc <= self.hp["class_target"]
            if met and len(self.forget) < len(self.forget_whole):
                whole_forget = self._confirm(ctx)
                met = whole_forget is None or whole_forget <= self.hp["class_target"]
        elif self.hp["criterion"] == "tail":
            met = tail >= self.hp["tail"] - (self.tail_tolerance if step == 0 else self.stop_tail_tolerance)
        elif self.hp["criterion"] == "auc":
            met = auc <= 0.5 + (self.tolerance if step == 0 else self.stop_tolerance)
        elif self.hp["criterion"] == "error":
            met = forget_acc <= heldout_acc
        else:
            met = loss_reached(f_loss.mean().item(), reference, band)
        if not self.checks:  # the start: what every later check's held-out change is paired with
            self.heldout_ok_at_start = h_ok.float().cpu()
        se = self._drop_se(h_ok)
        whole = None
        if se > 0 and self.initial is not None:
            drop = self.checks[0].heldout_acc - heldout_acc
            near = abs(drop - self.hp["max_heldout_drop"]) <= self.hp["damage_z"] * se
            if self.hp["damage_z"] > 0 and near and (on_top or self._pays(ctx, self._whole_look())):
                whole = self._whole_heldout_drop(ctx)
        return Check(step, ctx.sample_passes + ctx.forward_passes // 3, forget_acc, heldout_acc,
                     100 * r_ok.float().mean().item(), f_loss.mean().item(), h_loss.mean().item(),
                     r_loss.mean().item(), reference, auc, tail, band, met, se, whole, whole_forget)

    def _confirm(self, ctx: Context) -> float | None:
        """Class-wise, the forget accuracy on all of D_f, where a probe of part of it met the target: a probe can
        miss the last few samples still predicted (digits class 8: 0 of 110 on the probe, 4 of 139 on all of it),
        and the verdict reads all of D_f. Paid for by the steps a run that stops here no longer takes (None,
        and the probe decides alone, where those do not cover it)."""
        if not self._pays(ctx, len(self.forget_whole)):
            return None
        return 100 * self._probe(ctx, self.forget_whole)[1].float().mean().item()

    def _whole_look(self) -> int:
        """Forward passes of a look at the whole held-out set: the first also reads it at the start's weights."""
        return len(self.heldout_whole) * (1 if "held-out" in self.whole_at_start else 2)

    def _pays(self, ctx: Context, forward: int) -> bool:
        """Whether the budget left, less what the checks still due will cost, pays for `forward` more forward
        passes (a third of a sample pass each). The budget left counts the steps still to come: a run that goes on
        after such a look ends sooner by as many steps (`_shorten`)."""
        reserve_left = probe_reserve(ctx) - (ctx.forward_passes - self.forward_at_start) / 3
        return budget_left(ctx) - max(0.0, reserve_left) >= forward / 3

    def _shorten(self, ctx: Context, check: Check, passes: float, why: str) -> None:
        """Checks the budget did not reserve, paid for by steps the run still takes: end it sooner by as many
        steps as they cost, so that the run stays within its budget."""
        per_step = (ctx.sample_passes - self.passes_at_start) / max(check.step, 1)
        self.end_step = max(check.step, self.end_step - math.ceil(passes / max(per_step, 1)))
        self.events.append(f"{why}: going on, to end by step {self.end_step}")

    def _drop_se(self, heldout_ok: torch.Tensor) -> float:
        """The standard error (points) of the probe's held-out accuracy change since the start, as an estimate of
        the whole held-out set's: paired per sample, with the finite-population correction (0 for a probe that is
        all of the set)."""
        ok = heldout_ok.float().cpu()
        n = len(ok)
        if n < 2:
            return 0.0
        change = ok - self.heldout_ok_at_start
        share_unseen = max(0.0, 1 - n / len(self.heldout_whole))
        return 100 * math.sqrt(change.var().item() / n * share_unseen)

    def _whole_heldout_drop(self, ctx: Context) -> float:
        """The held-out accuracy lost since the start on the whole held-out set, the verdict's measure of damage:
        asked only where the probe's drop is within its noise of the ceiling, so that neither a probe that saw
        too little damage nor one that saw too much decides alone."""
        return self._drop(ctx, "held-out", self.heldout_whole)

    def _drop(self, ctx: Context, name: str, view) -> float:
        """The accuracy (points) lost on all of `view` since the start; the start's figure is measured once, from
        the weights at step 0."""
        def accuracy() -> float:
            return 100 * self._probe(ctx, view)[1].float().mean().item()

        if name not in self.whole_at_start:
            now = snapshot(ctx.model)
            ctx.model.load_state_dict(self.initial)
            self.whole_at_start[name] = accuracy()
            ctx.model.load_state_dict(now)
        return self.whole_at_start[name] - accuracy()

    def __call__(self, ctx: Context, step: int, last: bool = False) -> bool:
        """Check at step 0, every `every` steps and at the end; True means stop now (and at every later call)."""
        if self.stopped:
            return True
        cut_short = step >= self.end_step  # a failed confirmation spent the steps after it
        self.stopped = self._check(ctx, step, last or cut_short) or cut_short
        return self.stopped

    def _target(self, check: Check) -> str:
        """The check against its criterion's target, with the comparison that holds (`<=` where met, `>` not)."""
        at_most, at_least = ("<=", ">=") if check.met else (">", "<")
        if self.classwise:
            if check.forget_whole_acc is not None:
                return (f"forget accuracy {check.forget_whole_acc:.1f}% on all {len(self.forget_whole)} of D_f "
                        f"({check.forget_acc:.1f}% on the probe) {at_most} {self.hp['class_target']}%")
            unconfirmed = (f" on the probe of {len(self.forget)} of D_f's {len(self.forget_whole)} (the budget left "
                           "does not pay to confirm it on all)" if check.met and len(self.forget) <
                           len(self.forget_whole) else "")
            return f"forget accuracy {check.forget_acc:.1f}%{unconfirmed} {at_most} {self.hp['class_target']}%"
        q = self.hp["tail"]
        return {"tail": f"{check.tail:.1%} of D_f below the held-out {q:.0%} quantile of φ {at_least} "
                        f"{q - (self.tail_tolerance if check.step == 0 else self.stop_tail_tolerance):.1%}",
                "auc": f"membership AUC {check.auc:.3f} {at_most} "
                       f"{0.5 + (self.tolerance if check.step == 0 else self.stop_tolerance):.3f}",
                "error": f"forget accuracy {check.forget_acc:.1f}% {at_most} held-out {check.heldout_acc:.1f}%",
                "loss": f"forget loss {check.forget_loss:.3f} {at_least} {self._reference(check)} − "
                        f"{check.loss_band:.3f}",
                }[self.hp["criterion"]]

    def _reference(self, check: Check, digits: int = 3) -> str:
        """The loss rule's target in words (`reference_in_words`), for the forget probe's size."""
        return reference_in_words(check.heldout_reference, check.heldout_loss, len(self.forget), digits)

    def _check(self, ctx: Context, step: int, last: bool) -> bool:
        if not self.hp["calibrate"] or not (step == 0 or last or step % self.every == 0):
            return False
        if self.checks and self.checks[-1].step == step:  # the last step was also a regular check
            if last:
                self._spent(ctx, self.checks[-1])
            return False
        look = self._whole_look()
        check = self._measure(ctx, step, on_top=last)
        self.checks.append(check)
        if check.heldout_whole_drop is not None and not last:
            self._shorten(ctx, check, look / 3, f"the held-out probe's drop at step {step} was within its noise of "
                          "the ceiling, and all of the held-out set was read")
        if check.forget_whole_acc is not None and not check.met and not last:
            self._shorten(ctx, check, len(self.forget_whole) / 3,
                          f"the probe met the target at step {check.step} but all {len(self.forget_whole)} of D_f "
                          f"are at {check.forget_whole_acc:.1f}%")
        start, good = self.checks[0], self.good
        if step > 0 and not self._keeps_accuracy(check):
            which, before, after = (("remain", start.remain_acc, check.remain_acc) if not self._keeps_remain(check)
                                    else ("held-out", start.heldout_acc, check.heldout_acc))
            damage = f"{which} accuracy fell from {before:.1f}% to {after:.1f}% at step {step}"
            if which == "held-out" and check.heldout_whole_drop is not None:
                damage += (f" (on the probe; {check.heldout_whole_drop:.1f} points on all "
                           f"{len(self.heldout_whole)} held-out samples)")
            if check.met and self.damaged is None and self.previous is not None:
                # Kept aside for a run that then ends without the target (`_use_fallback`).
                self.damaged = (self.previous, snapshot(ctx.model),
                                check, damage, good.step)
            if not last and self._back_off(ctx, damage):
                return False
            left = "no step left in the budget" if last else "no step size left to try"
            self._rewind(ctx, f"{damage}: rewound to step {good.step}, the last check before the damage, with {left}")
            self._use_fallback(ctx, self.decision)
            return True
        below = 0.5 - (self.guard_tolerance if self.hp["criterion"] == "loss" else self.tolerance)
        overshot = not self.classwise and (
            self.hp["criterion"] in ("auc", "loss") and check.auc < below
            or self.hp["criterion"] == "tail" and check.tail > self.hp["tail"] + self.tail_tolerance)
        past = (f"{check.tail:.1%} of D_f in the held-out tail > {self.hp['tail'] + self.tail_tolerance:.1%}"
                if self.hp["criterion"] == "tail" else f"membership AUC {check.auc:.3f} < {below:.3f}")
        if overshot and step > 0 and self.hp["criterion"] == "loss":
            # The loss rule can push D_f past unseen data before its mean loss reaches theirs (a forget set that
            # looks less like training data than unseen data does is itself a tell): keep the most change before it.
            # Where the same stretch met the target, the least change that meets it comes first, unless it too
            # overshot.
            if check.met and self.hp["refine"] > 0:
                end = snapshot(ctx.model)
                where, landed = self._refine(ctx, check)
                if landed.auc >= below:
                    self.decision, self.chosen_step = (f"target reached at step {step} ({self._target(landed)}), "
                                                       f"which overshot ({past}); kept {where:.3f} of the stretch "
                                                       f"from step {good.step}, the least change that meets the "
                                                       "target, which does not"), step
                    return True
                ctx.model.load_state_dict(end)
            where = self._refine_before_overshoot(ctx)
            self.decision, self.chosen_step = (f"overshot at step {step} ({past}); kept {where:.3f} of the stretch "
                                               f"from step {good.step}, the most change before it"), step
            return True
        if check.met and overshot and step > 0 and not last:
            if self._back_off(ctx, f"overshot at step {step} ({past})"):
                return False
        if check.met:
            if step == 0:
                self.decision, self.chosen_step = self._start_decision(check), 0
            else:
                where, _ = self._refine(ctx, check)
                self.decision, self.chosen_step = (f"target reached at step {step} ({self._target(check)}); kept "
                                                   f"{where:.3f} of the stretch from step {good.step}"), step
            return True
        if step > 0:
            self.good_growth = max(self.good_growth, self.growth)
            if not last:
                self._grow(check)
        self.good, self.previous = check, snapshot(ctx.model)
        if step == 0:
            self.initial = self.previous
        if last:
            self._spent(ctx, check)
        return False

    def _start_decision(self, check: Check) -> str:
        """Why a run met its target at step 0. "Nothing to forget" only where the mean loss agrees too (the
        verdict's second signal; under the loss rule it is the target itself): a rank statistic (AUC, tail) can
        be at chance on a model confident on nearly all data while D_f's mean loss is far below the held-out one,
        and then this rule stops but the verdict says "not yet"."""
        target = self._target(check)
        if self.classwise or loss_reached(check.forget_loss, check.heldout_reference, check.loss_band):
            return f"nothing to forget: at the start, {target}"
        return (f"stopped at the start, {target}: the '{self.hp['criterion']}' rule sees nothing to do, but the "
                f"mean forget loss {check.forget_loss:.4f} is below {self._reference(check, 4)} by more "
                f"than {check.loss_band:.4f}, so by the loss D_f is not yet like unseen data (criterion='loss' runs on "
                "until it is)")

    def _distance(self, check: Check) -> float:
        """How far a check is from the target, in the units of its criterion (0 or less: there)."""
        if self.classwise:
            acc = check.forget_acc if check.forget_whole_acc is None else check.forget_whole_acc
            return acc - self.hp["class_target"]
        return {"auc": check.auc - 0.5, "tail": self.hp["tail"] - check.tail,
                "error": check.forget_acc - check.heldout_acc,
                "loss": check.heldout_reference - check.forget_loss}[self.hp["criterion"]]

    def _grow(self, check: Check) -> None:
        """Raise the step size if the stretch since the last good check closed less than its share of the
        distance left (the distance over the checks left in the budget): the rule starts at a step size safe for
        the problem and finds one that reaches the target in time, instead of starting at the edge of what the
        problem can take (a step that wrecks the model wastes the stretch it took). It doubles until a step size
        damages; from then on it tries the geometric middle of the largest good one and the smallest damaging
        one (a bisection of the step size), never growing by less than a quarter."""
        if self.stepper is None:
            return
        before, now = self._distance(self.good), self._distance(check)
        checks_left = max(1.0, (self.total - check.step) / self.every)
        if before - now >= before / checks_left:
            return
        target = 2 * self.growth if self.too_large is None else math.sqrt(self.growth * self.too_large)
        if target > self.hp["max_growth"] or target < 1.25 * self.growth:
            return
        self.stepper.scale_lr(target / self.growth, keep_momentum=True)
        self.growth = target
        self.events.append(f"closed {before - now:.3g} of {before:.3g} between steps {self.good.step} and "
                           f"{check.step} (needed {before / checks_left:.3g}): step size ×{target:.3g} of the start")

    def _spent(self, ctx: Context, check: Check) -> None:
        """The budget ran out before the target: keep the weights, unless they show no more than noise of
        progress toward it, in which case the model goes back to its start."""
        # Both outcomes say what the budget bought, and from which recipe: a model trained longer than the recipe
        # it is sized by (a user's own, with none given) gets a budget too small for the checks to find a step size.
        bought = (f"`budget` {self.hp['budget']:g} of a retraining by the recipe's {ctx.recipe.epochs} epochs of "
                  f"batch {ctx.recipe.batch_size} paid for {self.total} steps: pass recipe= if the model was trained "
                  "otherwise, or a larger budget")
        self.decision, self.chosen_step = f"budget spent before the target (last check at step {check.step}; " \
                                          f"{bought})", check.step
        if self._use_fallback(ctx, f"budget spent, last check at step {check.step}"):
            return
        if self.initial is not None and not self._progressed(self.checks[0], check):
            ctx.model.load_state_dict(self.initial)
            self.decision, self.chosen_step = (f"budget spent before the target, with no more than noise of progress "
                                               f"toward it ({self._target(check)} at step {check.step}): returned "
                                               f"the model unchanged ({bought})"), 0

    def _progressed(self, start: Check, end: Check) -> bool:
        """Whether a run that ran out of budget moved toward its target by more than the statistic's noise. A
        random forget set the run could not bring to chance is better left as it was than half-changed: every
        step took confidence off D_f (the KL to an oracle grows) without evidence that it forgot."""
        if self.classwise or self.hp["criterion"] not in ("auc", "tail"):
            return True
        if self.hp["criterion"] == "auc":
            return start.auc - end.auc > self.tolerance
        return end.tail - start.tail > self.tail_tolerance

    @property
    def good(self) -> Check:
        """The last check that neither damaged the model nor overshot: where a rewind goes."""
        return self._good if self._good is not None else self.checks[0]

    @good.setter
    def good(self, check: Check) -> None:
        self._good = check

    def recover(self, ctx: Context, step: int, error: Exception) -> bool:
        """A step whose loss went NaN or infinite: with calibration on, the step size was too large for this
        problem, so rewind to the last good check and back off (True); without a back-off left, False (the
        engine then rolls the whole run back and raises)."""
        if not self.hp["calibrate"] or self.stopped:
            return False
        return self._back_off(ctx, f"the loss became non-finite at step {step} ({error})")

    def _back_off(self, ctx: Context, reason: str) -> bool:
        """Rewind to the last good check and halve the step size, if any halving is left; True if it did."""
        if self.backoffs >= self.hp["backoffs"] or self.stepper is None or self.previous is None:
            return False
        self.backoffs += 1
        ctx.model.load_state_dict(self.previous)
        # Halve, or go back to the largest step size that did no damage if that is larger (after a growth).
        self.too_large = self.growth if self.too_large is None else min(self.too_large, self.growth)
        smaller = max(self.growth / 2, self.good_growth) if self.good_growth < self.growth else self.growth / 2
        self.stepper.scale_lr(smaller / self.growth)
        self.growth = smaller
        self.events.append(f"{reason}: rewound to step {self.good.step} and cut the step size to ×{smaller:.3g} of "
                           f"the start ({self.backoffs} of {self.hp['backoffs']})")
        return True

    def _keeps_remain(self, check: Check) -> bool:
        """Whether the remain accuracy is within `max_remain_drop` points of its value at the start."""
        return check.remain_acc >= self.checks[0].remain_acc - self.hp["max_remain_drop"]

    def _keeps_accuracy(self, check: Check) -> bool:
        """Whether the model is undamaged: the remain accuracy within `max_remain_drop` points of its start and the
        held-out accuracy within `max_heldout_drop` (a model can keep fitting D_r while it stops generalising): on
        the whole held-out set where the probe could not tell."""
        drop = (check.heldout_whole_drop if check.heldout_whole_drop is not None
                else self.checks[0].heldout_acc - check.heldout_acc)
        return self._keeps_remain(check) and drop <= self.hp["max_heldout_drop"]

    def _bisect(self, ctx: Context, step: int, beyond) -> tuple[float, float, dict, dict, Check | None]:
        """Bisect (`refine` halvings) the straight line from the last good check's weights (0) to the current ones
        (1) for where `beyond(check)` turns true; returns the bracket (low, high), the two ends and the check at
        `high` (None where it stayed at 1, the current weights)."""
        start, end = self.previous, snapshot(ctx.model)
        low, high, at_high = 0.0, 1.0, None
        for _ in range(self.hp["refine"]):
            middle = (low + high) / 2
            ctx.model.load_state_dict(_between(start, end, middle))
            check = self._measure(ctx, step)
            if beyond(check):
                high, at_high = middle, check
            else:
                low = middle
        return low, high, start, end, at_high

    def _use_fallback(self, ctx: Context, ending: str) -> bool:
        """A run that ends without meeting the target at a safe step size, after a check that met it and damaged
        the model: that stretch, from the last good check before it, is bisected (`refine` halvings, where the
        budget left pays for them) for the point nearest the good end that meets the target without damage, D_r
        still fit as training data (`_remain_still_fit`), and those weights are kept (True). The target may have
        been met on the way, before the damage was done; a run that meets it later, at a smaller step size, never
        pays for the search."""
        if self.damaged is None or self.hp["refine"] == 0:
            return False
        start, end, reached, damage, good_step = self.damaged
        if budget_left(ctx) < self.hp["refine"] * (len(self.forget) + 1.5 * len(self.heldout)) / 3:
            self.events.append(f"the stretch before the damage at step {reached.step} was not searched: the budget "
                               "left does not pay for it")
            return False
        ending_weights = snapshot(ctx.model)
        low, high, found = 0.0, 1.0, None
        for _ in range(self.hp["refine"]):
            middle = (low + high) / 2
            ctx.model.load_state_dict(_between(start, end, middle))
            check = self._measure(ctx, reached.step)
            if not (self._keeps_accuracy(check) and self._remain_still_fit(check)):
                high = middle
            elif check.met:
                found, high = (middle, check), middle
            else:
                low = middle
        if found is None:
            ctx.model.load_state_dict(ending_weights)
            self.events.append(f"no point before the damage at step {reached.step} met the target undamaged, with "
                               "D_r still fit as training data")
            return False
        ctx.model.load_state_dict(_between(start, end, found[0]))
        self.decision, self.chosen_step = (f"the target was met at step {reached.step} ({self._target(found[1])}) "
                                           f"before the damage there ({damage}): kept {found[0]:.3f} of the stretch "
                                           f"from step {good_step}, since the run then ended without it "
                                           f"({ending})"), reached.step
        return True

    def _remain_still_fit(self, check: Check) -> bool:
        """Whether D_r still looks like training data: its mean loss on the probe has risen by at most
        REMAIN_LOSS_SHARE of its distance, at the start, to the held-out mean. A model retrained without D_f still
        fits D_r (its remain loss stays at the original's: at most 0.12 of that distance on the transfer scenarios'
        random splits), so a point where D_r's loss rose with D_f's met the loss target because every loss rose,
        not because D_f was forgotten; accuracy on a probe can still pass there (MNIST 8k random, seed 0: the remain
        probe's loss 0.001 -> 0.058, past the start's held-out mean of 0.054, at 2.3 points of test accuracy under
        the oracle)."""
        start = self.checks[0]
        allowed = REMAIN_LOSS_SHARE * max(0.0, start.heldout_loss - start.remain_loss)
        return check.remain_loss - start.remain_loss <= allowed

    def _refine_before_overshoot(self, ctx: Context) -> float:
        """The point furthest from the last good check, on the line to the current weights, whose membership AUC
        has not yet fallen below chance by more than the tolerance (and keeps the remain accuracy): the most
        forgetting without the overshoot. Returns where it landed (0: the last good check)."""
        low, _, start, end, _ = self._bisect(ctx, self.checks[-1].step, lambda check: not (
            self._keeps_accuracy(check) and check.auc >= 0.5 - self.guard_tolerance))
        ctx.model.load_state_dict(_between(start, end, low))
        return low

    def _refine(self, ctx: Context, reached: Check) -> tuple[float, Check]:
        """The point closest to the last good check, on the line to the weights that met the target, that still
        meets it (and keeps the remain accuracy): the least change that forgets. Returns where on the line it
        landed (1: the weights that first met the target) and its check."""
        if self.previous is None or self.hp["refine"] == 0:
            return 1.0, reached
        _, high, start, end, at_high = self._bisect(ctx, reached.step,
                                                    lambda check: check.met and self._keeps_accuracy(check))
        ctx.model.load_state_dict(_between(start, end, high))
        return high, at_high or reached

    def strength(self, ctx: Context, before: dict, after: dict) -> None:
        """One-shot edits: keep θ_0 + s (θ_edit − θ_0) for the smallest multiple s that meets the target without
        damage. s doubles from 1 (up to max_strength) until a check meets the target or damages the model, then
        the last stretch is bisected (`refine` times): a method's own scale (IU's α, Fisher forgetting's noise,
        SSD's dampening, the single-gradient step) becomes a direction whose length the problem decides."""
        hp = self.hp
        ctx.model.load_state_dict(before)
        if not hp["calibrate"]:
            ctx.model.load_state_dict(after)
            self.decision = "the method's own edit was kept (calibration off)"
            return
        if self(ctx, 0):  # nothing to forget: the weights stay as they were
            return

        def measure(t: float) -> Check:
            ctx.model.load_state_dict(_between(before, after, t))
            check = self._measure(ctx, len(self.checks), on_top=True)
            self.checks.append(check)
            return check

        low, high, damaged, t, reached = 0.0, None, False, 1.0, None
        while t <= hp["max_strength"]:
            check = measure(t)
            if not self._keeps_accuracy(check):
                high, damaged = t, True
                break
            if check.met:
                high, reached = t, check
                break
            low, t = t, 2 * t
        if high is None:
            ctx.model.load_state_dict(_between(before, after, low))
            self.decision = f"strength limit reached before the target: kept {low:g} × the edit"
            self.stopped = True
            return
        for _ in range(hp["refine"]):
            middle = (low + high) / 2
            check = measure(middle)
            safe = self._keeps_accuracy(check)
            if damaged:  # the strongest safe multiple
                low, high = (middle, high) if safe else (low, middle)
            elif check.met and safe:
                high, reached = middle, check
            else:
                low = middle
        chosen = low if damaged else high
        ctx.model.load_state_dict(_between(before, after, chosen))
        if damaged:
            self.decision = f"the edit damages the model before it forgets: kept the strongest safe, {chosen:.3g} × it"
        else:
            self.decision = f"target reached at {chosen:.3g} × the edit ({self._target(reached)})"
        self.stopped = True

    def verify(self, ctx: Context) -> None:
        """The kept weights, asked once more on the sets the verdict will judge them on, where the budget left pays
        for it (so that a run stays within its budget): the whole held-out set first, then D_r (up to the
        verdict's 5,000 samples). A probe of part of a set can keep an edit whose drop it underestimates by more
        than its standard error suggests (few samples flip, so their variance is poorly estimated). Where a set
        lost more than its ceiling (`max_heldout_drop`, `max_remain_drop`), the weights step back along the
        straight line to the start (`refine` halvings) to the furthest point both allow. Off with damage_z 0 (the
        probes decide alone), for a set its probe already covers, and where the run kept its start."""
        if not self.hp["calibrate"] or self.hp["damage_z"] == 0 or self.initial is None:
            return
        kept = snapshot(ctx.model)
        if all(torch.equal(kept[k], self.initial[k]) for k in kept):
            return
        sets, skipped = {}, []
        for name, probe, whole, ceiling in (("held-out", self.heldout, self.heldout_whole, "max_heldout_drop"),
                                            ("remain", self.remain, self.remain_whole, "max_remain_drop")):
            if len(probe) >= len(whole):
                continue  # the probe is the set: the checks read all of it
            if self._affords(ctx, [view for view, _ in sets.values()] + [whole]):
                sets[name] = (whole, self.hp[ceiling])
            else:
                skipped.append(f"{name}: the budget left does not pay for {len(whole)} samples")
        self.verified = {"drops": {}, "samples": {name: len(view) for name, (view, _) in sets.items()},
                         "kept_share": 1.0, "not_verified": skipped}
        if not sets:
            return

        def damage() -> tuple[dict[str, float], dict[str, float]]:
            """The sets past their ceilings at the weights now, and every set's drop."""
            drops = {name: self._drop(ctx, name, view) for name, (view, _) in sets.items()}
            return {name: drop for name, drop in drops.items() if drop > sets[name][1]}, drops

        found, self.verified["drops"] = damage()
        if not found:
            return
        low, high = 0.0, 1.0
        for _ in range(self.hp["refine"]):
            middle = (low + high) / 2
            ctx.model.load_state_dict(_between(self.initial, kept, middle))
            low, high = (low, middle) if damage()[0] else (middle, high)
        ctx.model.load_state_dict(_between(self.initial, kept, low))
        self.verified["kept_share"] = low
        lost = ", ".join(f"{drop:.1f} points on {len(sets[name][0])} {name} samples (> {sets[name][1]:g})"
                         for name, drop in found.items())
        self.decision += f"; then those weights had lost {lost}: stepped back to {low:.3g} of the way from the start"

    def _affords(self, ctx: Context, views: list) -> bool:
        """Whether the budget left pays for the verification's passes over `views` at its most: the start, the
        kept weights and `refine` steps back (forward passes, a third of a sample pass each)."""
        return (2 + self.hp["refine"]) * sum(len(view) for view in views) / 3 <= budget_left(ctx)

    def _rewind(self, ctx: Context, reason: str) -> None:
        ctx.model.load_state_dict(self.previous)
        self.decision, self.chosen_step = reason, self.good.step

    def record(self) -> dict:
        rule = ("class-wise: forget accuracy <= class_target" if self.classwise else f"random: {self.hp['criterion']}")
        return {"rule": rule, "decision": self.decision, "stopped_at_step": self.chosen_step,
                "planned_steps": self.total, "auc_tolerance": self.tolerance, "backoffs": self.events,
                "probe_sizes": {"forget": len(self.forget), "heldout": len(self.heldout), "remain": len(self.remain)},
                "checks": [asdict(c) for c in self.checks], "verified": self.verified}
