"""The DDPM forward process: a linear beta schedule, q(x_t | x_0), and classifier-free guidance."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigError


@dataclass(frozen=True)
class NoiseSchedule:
    """beta_t for t = 0..T-1 (float64 for exact products) and the derived alpha-bar_t = prod_{s<=t} (1 - beta_s)."""

    betas: Tensor

    @classmethod
    def linear(cls, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """The DDPM (Ho et al. 2020) schedule used by the official code: betas evenly spaced from start to end."""
        if timesteps < 2:
            raise ConfigError(f"timesteps must be >= 2, got {timesteps}")
        if not 0 < beta_start < beta_end < 1:
            raise ConfigError(f"need 0 < beta_start < beta_end < 1, got {beta_start} and {beta_end}")
        return cls(torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64))

    @property
    def timesteps(self) -> int:
        return len(self.betas)

    @property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    def alpha_bar(self, t: Tensor, device: torch.device | None = None) -> Tensor:
        """alpha-bar at integer timesteps `t`, float32, shaped (N, 1, 1, 1) to broadcast over images; t = -1 gives 1
        (the clean end of the chain, where the DDIM sampler lands)."""
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])
        return padded[t.cpu() + 1].float().view(-1, 1, 1, 1).to(device or t.device)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """A draw of x_t ~ q(x_t | x_0) = N(sqrt(a_t) x_0, (1 - a_t) I) with a_t = alpha-bar_t, from
        `noise` ~ N(0, I)."""
        a = self.alpha_bar(t, x0.device)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def describe(self) -> dict:
        return {"kind": "linear", "timesteps": self.timesteps, "beta_start": float(self.betas[0]),
                "beta_end": float(self.betas[-1])}


def guided(eps_cond: Tensor, eps_null: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance as the official code mixes it: (1 + w) eps(x, c) - w eps(x, null)."""
    return (1 + scale) * eps_cond - scale * eps_null


def antithetic_timesteps(n: int, timesteps: int, generator: torch.Generator) -> Tensor:
    """n timesteps drawn in antithetic pairs (t, T-1-t), as the official DDPM loops draw them."""
    half = torch.randint(0, timesteps, (n // 2 + 1,), generator=generator)
    return torch.cat([half, timesteps - 1 - half])[:n]
