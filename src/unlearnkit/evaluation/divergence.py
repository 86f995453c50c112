"""How far the model's output distribution is from the oracle's: KL (SFR-on's D_KL) and JS divergence.

Both take probability rows (N, K), each row summing to 1, and average over the N samples. The protocol
applies them on the forget set with p = the oracle's softmax and q = the model's, as the official
`evaluation/js_div.py:get_js_divergence` does.
"""
from __future__ import annotations

import torch

from ..errors import ConfigError

EPS = 1e-20  # the official code's guard inside each log


def _check(p: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p, q = torch.as_tensor(p, dtype=torch.float64), torch.as_tensor(q, dtype=torch.float64)
    if p.shape != q.shape or p.dim() != 2:
        raise ConfigError(f"divergences need two (N, K) probability arrays of one shape, got {tuple(p.shape)} "
                         f"and {tuple(q.shape)}")
    return p, q


def _kl_rows(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p * (torch.log(p + EPS) - torch.log(q + EPS))).sum(dim=1)


def kl_per_sample(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p_i || q_i) of every row, in nats: `kl_divergence` is its mean (where on D_f the KL lives)."""
    return _kl_rows(*_check(p, q))


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean KL divergence in nats, lower is better (0 = the same outputs as the oracle):

        KL(p || q) = mean_i sum_k p_ik * (log(p_ik + 1e-20) - log(q_ik + 1e-20))

    With p = oracle and q = model on D_f this is SFR-on's D_KL column (direction oracle -> model).
    """
    p, q = _check(p, q)
    return _kl_rows(p, q).mean().item() if len(p) else float("nan")


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean Jensen-Shannon divergence in nats, lower is better; symmetric, and at most log 2:

        JS(p, q) = mean_i [ KL(p_i || m_i) / 2 + KL(q_i || m_i) / 2 ],   m_i = (p_i + q_i) / 2

    with the same 1e-20 guard as `kl_divergence` (logged, not tabled, by the official code).
    """
    p, q = _check(p, q)
    if not len(p):
        return float("nan")
    m = 0.5 * (p + q)
    return (0.5 * _kl_rows(p, m) + 0.5 * _kl_rows(q, m)).mean().item()
