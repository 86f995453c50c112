"""Unlearning methods for class-conditional DDPMs, declared as the SFR-on paper's Table 1 reads and run by
the same engine (parts, masks, geometries) as the classification methods, with the diffusion Task.

Defaults are the official DDPM configurations (sfron.md §2.3) where they exist. Where the official budget
is far beyond the 16x16 digits scenario (SalUn 1000 iterations, SA 20000), the budget is set to ~150
updates, like SFR-on's, and the step size (and SA's EWC weight) chosen by the search in docs/generation.md.
"""
from __future__ import annotations

from dataclasses import replace

from ..registry import Registry
from ..unlearning.forgetting import AdaptiveAscent, Ascent
from ..unlearning.geometry import FastSlow, Joint
from ..unlearning.masks import FisherRatioMask, GradientSaliencyMask
from ..unlearning.method import Method
from ..unlearning.remaining import Descent
from .parts import RemapCondition, ReplayWithEWC, SurrogateNoise
from .task import Diffusion

GENERATION_METHODS: Registry[Method] = Registry("generation method")


def declare(method: Method) -> Method:
    """Register a generation method; the diffusion task's settings (condition dropout, guidance) are among its
    hyperparameters."""
    method = replace(method, extra=(Diffusion.Params,))
    method.check()  # fail at import time on inconsistent declarations
    return GENERATION_METHODS.register(method.name, method)


# Every official DDPM runner: Adam, no weight decay, constant LR, batch 128, gradient norm clipped to 1. The DDPM's
# training recipe is not a classifier's, so the budgets and rates are the absolute ones of the official configs,
# and the classification calibration (which reads class predictions) is off.
ADAM = {"optimizer": "adam", "weight_decay": 0.0, "lr_schedule": "constant", "batch_size": 128, "calibrate": False}

declare(Method(
    "sfron", "SFR-on (Huang et al. 2024), DDPM", FastSlow(), FisherRatioMask(), AdaptiveAscent(), Descent(),
    defaults={**ADAM, "lr": 1e-4, "iters": 150, "forget_freq": 1, "forget_clip": 1.0, "remain_clip": 1.0,
              "alpha": 10.0, "alpha_decay": "cosine", "lambd": 0.5, "gamma": 1.0, "fisher_clip": 1.0,
              "fisher_samples": 0},
    search={"lr": [3e-5, 1e-4, 3e-4], "alpha": [3.0, 10.0]},
    notes="Official DDPM `sfron_forget --method ron --unlearn_loss adaga`: the Fisher of the guided (w=2) loss, "
          "clipped to norm 1 per batch, mask 1[F_f/F_r >= γ]; each iteration one masked, clipped adaptive-ascent "
          "step (alpha 10, cosine-decayed, λ 0.5) then one clipped remain step."))
declare(Method(
    "salun", "SalUn (Fan et al. 2024), DDPM", Joint(), GradientSaliencyMask(), RemapCondition(), Descent(),
    defaults={**ADAM, "lr": 1e-4, "epochs": 14, "clip": 1.0, "forget_weight": 1.0, "remain_weight": 1e-3,
              "mask_ratio": 0.5},
    search={"lr": [3e-5, 1e-4, 3e-4], "mask_ratio": [0.3, 0.5]},
    notes="Official `saliency_unlearn --unlearn_loss rl`: mask = top 50% of |∇ guided loss on D_f|; each step "
          "MSE(eps(x_t, c), sg eps(x_t, c+1)) on forget images + remain_alpha (1e-3) x the loss on D_r. Official: "
          "lr 1e-5 for 1000 iterations; here lr 1e-4 for 154 (14 passes over D_r). The official code clips then "
          "masks; here the gradient is masked then clipped."))
declare(Method(
    "rl", "RL: remap the class (SalUn without mask), DDPM", Joint(), None, RemapCondition(), Descent(),
    defaults={**ADAM, "lr": 1e-4, "epochs": 14, "clip": 1.0, "forget_weight": 1.0, "remain_weight": 1e-3},
    search={"lr": [3e-5, 1e-4, 3e-4]}))
declare(Method(
    "sa", "SA: Selective Amnesia (Heng & Soh 2023), DDPM", Joint(), None, SurrogateNoise(), ReplayWithEWC(),
    defaults={**ADAM, "lr": 1e-4, "epochs": 14, "clip": 1.0, "forget_weight": 1.0, "remain_weight": 1.0,
              "ewc_lambda": 1e-3, "replay_per_class": 32, "sample_steps": 25, "fim_per_class": 8, "fim_timesteps": 50,
              "cond_drop_prob": 0.0},
    search={"lr": [3e-5, 1e-4, 3e-4], "ewc_lambda": [1e-4, 1e-3, 1e-2]},
    notes="Official `sa_forget`: uniform-noise surrogate for the forgotten class + gamma (1) x generative replay "
          "of the remaining classes + lambda x EWC with the FIM at θ0; condition dropout off. Official: lambda 10 "
          "for 20000 iterations, 500 replay images per class; here lambda 1e-3 (10 freezes this model: its FIM, a "
          "sum over the chain, is ~5e3 on average) for 154 iterations; 32 replay images per class (DDIM 25 steps), "
          "the FIM on 8 per class over 50 stratified timesteps."))
declare(Method(
    "ga", "GA: gradient ascent on the forget class, DDPM", Joint(), forget=Ascent(),
    defaults={**ADAM, "lr": 1e-5, "epochs": 75, "clip": 1.0},
    search={"lr": [3e-6, 1e-5, 3e-5]},
    notes="Plain ascent on the forget class (lr 1e-5 as the DDPM baselines' config), 150 updates: it reaches "
          "FA 0 only after damaging every class."))
