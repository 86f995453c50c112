"""Concept-erasure methods for text-to-image models, declared as the SFR-on paper's Table 1 reads and run by the
shared engine (parts, masks, geometries) with the text-to-image Task; UCE is a one-shot procedure beside them.

Defaults: the official SD scripts' optimiser and objective; the step sizes and budgets are set for the 16x16
captioned digits (a UNet of 0.36M parameters trained from scratch, not SD's 860M fine-tuned at lr 1e-5), by
the search in docs/text_to_image.md. Every gradient method: Adam (FMN: AdamW) at a constant rate, as the code.
"""
from __future__ import annotations

from dataclasses import replace

from ..registry import Registry
from ..unlearning.geometry import FastSlow, Joint
from ..unlearning.masks import FisherRatioMask, GradientSaliencyMask
from ..unlearning.method import Method
from ..unlearning.remaining import Descent
from .parts import AttentionResteer, NegativeGuidance, RemapPrompt
from .task import TextToImage
from .uce import ClosedFormEdit

TEXT_TO_IMAGE_METHODS: Registry[Method] = Registry("text-to-image method")


def declare(method: Method) -> Method:
    """Register a text-to-image method; the task's settings are among its hyperparameters."""
    method = replace(method, extra=(TextToImage.Params,))
    method.check()  # fail at import time on inconsistent declarations
    return TEXT_TO_IMAGE_METHODS.register(method.name, method)


# The engine's classification calibration reads class predictions: off for a generator.
ADAM = {"optimizer": "adam", "weight_decay": 0.0, "lr_schedule": "constant", "calibrate": False}

ESD = {**ADAM, "batch_size": 4, "epochs": 2, "negative_guidance": 1.0, "start_guidance": 3.0,
       "esd_ddim_steps": 50, "esd_sampler": "model"}
declare(Method(
    "esd-x", "ESD-x (Gandikota et al. 2023), cross-attention only", Joint(), forget=NegativeGuidance(),
    defaults={**ESD, "lr": 5e-4, "train_method": "xattn"},
    notes="Official train-esd.py 'xattn': Adam lr 1e-5, 1000 iterations of batch 1, η 1, start guidance 3, DDIM 50. "
          "Here lr 5e-4 for 2 passes over D_f in batches of 4 (72 steps for a digit): the cross-attention of the "
          "small UNet is 5% of its weights (16.5k of 356k), and at 1e-4 it forgets nothing (docs/text_to_image.md)."))
declare(Method(
    "esd-u", "ESD-u (Gandikota et al. 2023), all but cross-attention", Joint(), forget=NegativeGuidance(),
    defaults={**ESD, "lr": 7e-5, "train_method": "noxattn"},
    notes="Official 'noxattn': every UNet weight but cross-attention, time embedding and output layer; otherwise "
          "as ESD-x, at lr 7e-5 (it trains most of the UNet: 1e-4 costs a tenth of the other prompts' accuracy)."))
declare(Method(
    "salun", "SalUn (Fan et al. 2024), SD", Joint(), GradientSaliencyMask(), RemapPrompt(), Descent(),
    defaults={**ADAM, "lr": 1e-4, "batch_size": 16, "epochs": 1, "forget_weight": 1.0, "remain_weight": 0.5,
              "mask_ratio": 0.5, "train_method": "full"},
    notes="Official SD random_label.py: mask = top 50% of |∇ guided (w 7.5) loss on D_f|; each step MSE(ε(x_t, c), "
          "sg ε(x_t, c')) with c' the next concept's prompt + alpha (0.5) × the LDM loss on D_r; Adam lr 1e-5, "
          "5 epochs over D_f at batch 8. Here lr 1e-4, one pass over D_r at batch 16 (the engine counts epochs over "
          "D_r), the mask applied before the step as the code."))
SFRON = {**ADAM, "lr": 1e-4, "batch_size": 8, "iters": 100, "forget_freq": 1, "forget_clip": 0.0,
         "remain_clip": 0.0, "fisher_samples": 0, "fisher_batch_size": 8, "fisher_clip": 0.0, "gamma": 1.0,
         "train_method": "full"}
declare(Method(
    "sfron", "SFR-on (Huang et al. 2024), SD", FastSlow(), FisherRatioMask(), RemapPrompt(), Descent(),
    defaults=SFRON,
    notes="Official SD nsfw_removal.py: Fisher of the guided (w 7.5) loss over one pass of D_f and D_r, mask "
          "1[F_f/F_r >= γ]; each iteration a forget step MSE(ε(x_t, c), sg ε(x_t, c_safe)) then a remain step (LDM "
          "loss on D_r), one Adam; lr 1e-5, 1000 iterations at batch 2, no clipping, forget and remain alpha 1. "
          "The code's mask test `n in parameters` is never true, so its mask is never applied; here it is (the "
          "paper's S part); `sfron-code` is the run without it. Here lr 1e-4 for 100 iterations at batch 8."))
declare(Method(
    "sfron-code", "SFR-on, SD, as the official script runs it (mask never applied)", FastSlow(), None,
    RemapPrompt(), Descent(), defaults={k: v for k, v in SFRON.items() if not k.startswith(("fisher", "gamma"))},
    notes="nsfw_removal.py as executed: the saliency mask is computed but `n in parameters` (a name in a list of "
          "tensors) is always False, so every weight takes the forget step."))
declare(Method(
    "uce", "UCE (Gandikota et al. 2024), closed-form K/V edit", ClosedFormEdit(),
    defaults={"lamb": 0.5, "erase_scale": 1.0, "preserve_scale": 1.0, "tokens": "last"},
    table={"geometry": "closed form W* = (λW + Σv*cᵀ + ΣWc_pc_pᵀ)(λI + Σccᵀ + Σc_pc_pᵀ)⁻¹"},
    notes="Official uce_sd_erase.py: every attn2.to_k / to_v edited once; erased prompts guided to the empty "
          "prompt (objects), preserved prompts kept; λ 0.5, scales 1, the last word token of each prompt."))
declare(Method(
    "fmn", "FMN (Zhang et al. 2024), attention re-steering", Joint(), forget=AttentionResteer(),
    defaults={"optimizer": "adamw", "weight_decay": 0.01, "lr_schedule": "constant", "calibrate": False,
              "lr": 2e-4, "batch_size": 4, "epochs": 1, "clip": 1.0, "use_pooler": True, "train_method": "full"},
    notes="Official train_attn.py (attn.yaml): AdamW lr 2e-6, weight decay 0.01, 35 steps of batch 1, grad norm "
          "clipped to 1, the whole UNet, pooler (EOS) tokens included, after a textual-inversion stage (skipped: "
          "the concept is a word here). Here lr 2e-4 for one pass over D_f at batch 4 (36 steps for a digit); a "
          "larger rate erases more but costs the other prompts as much (docs/text_to_image.md)."))
