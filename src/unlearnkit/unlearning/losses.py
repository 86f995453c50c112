"""Loss helpers shared by parts."""
from __future__ import annotations

import math
from typing import Literal

import torch.nn.functional as F
from torch import Tensor

DECAYS = Literal["cosine", "linear", "none"]


def kd_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(teacher ‖ student) at a temperature, summed over classes, averaged over samples, times T² (Hinton)."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="sum") * temperature**2 / student_logits.shape[0]


def decayed(value: float, progress: float, kind: str) -> float:
    """`value` decayed over the run: cosine (official SFR-on code), linear (the paper's 1 - t/T) or none."""
    if kind == "cosine":
        return value * (1 + math.cos(math.pi * progress)) / 2
    if kind == "linear":
        return value * (1 - progress)
    return value  # "none"


def teacher_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """The bad-teaching distillation loss: KL(teacher ‖ student) averaged over samples *and* classes
    (`F.kl_div`'s 'mean' reduction, as the official code uses it)."""
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    teacher = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_student, teacher, reduction="sum") / student_logits.numel()
