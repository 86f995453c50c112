"""Where and how computation runs: device, thread count, mixed precision, seeding."""
from __future__ import annotations

import contextlib
import functools
import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigError


def default_threads() -> int:
    """The thread count when none is given: $UNLEARNKIT_THREADS, else 1 (fastest for small models on a shared
    machine), read when a runtime is created so that a bad value is one clear error, not a crash at import."""
    raw = os.environ.get("UNLEARNKIT_THREADS", "1")
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"UNLEARNKIT_THREADS must be a whole number of threads, got {raw!r}") from None


@dataclass(frozen=True)
class Runtime:
    """Device and threads for one process. bf16 autocast is used on CUDA only."""

    device: torch.device
    threads: int = 1

    @classmethod
    def create(cls, device: str = "auto", threads: int | None = None) -> "Runtime":
        threads = default_threads() if threads is None else threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' was asked for but CUDA is not available; use --device cpu")
        if not (device == "cpu" or device.startswith("cuda")):
            raise ConfigError(f"unknown device '{device}'; expected auto, cpu, cuda or cuda:N")
        torch.set_num_threads(threads)
        return cls(torch.device(device), threads)

    @classmethod
    def given(cls, runtime, who: str) -> "Runtime":
        """The runtime passed to `who`, or the default one where none was."""
        if runtime is None:
            return cls.create()
        if not isinstance(runtime, cls):
            raise ConfigError(f"{who} takes a Runtime (uk.Runtime.create('cpu', 1)) as the runtime, got "
                              f"{type(runtime).__name__} {runtime!r}")
        return runtime

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def identity(self) -> dict:
        """What of the runtime changes the numbers, for content keys: the device type, and on a CPU the thread
        count (torch's reductions split work by thread, so 1 and 2 threads round differently)."""
        return {"device": self.device.type, **({"threads": self.threads} if self.device.type == "cpu" else {})}

    def autocast(self):
        """bf16 autocast on GPU; a no-op on CPU, where bf16 is slower than fp32."""
        if self.is_cuda:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def check_seed(seed, subject: str, error: type[ConfigError] = ConfigError) -> int:
    """A seed as a Python int (a bool or a string would be hashed or formatted into keys and fail far away), and
    never negative (numpy's generators refuse one). The one rule for every command, function and file that takes
    a seed; `subject` names it in the error line ("unlearn()'s seed", "--seed", "the pool seed")."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise error(f"{subject} must be an integer, got {seed!r}")
    if seed < 0:
        raise error(f"{subject} must be >= 0, got {seed}")
    return int(seed)


def check_seeds(seeds, subject: str) -> list[int]:
    """A list of seeds, each checked as `check_seed`, at least one, and none twice (a repeated seed would count
    one seed's runs twice in every mean and standard deviation)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ConfigError(f"{subject} must be a list of whole numbers, got {seeds!r}")
    checked = [check_seed(seed, subject) for seed in seeds]
    if not checked:
        raise ConfigError(f"{subject} names no seed: give at least one, e.g. 0,1,2")
    if len(set(checked)) != len(checked):
        raise ConfigError(f"a seed is listed twice in {subject}: {checked}")
    return checked


def seed_everything(seed: int) -> torch.Generator:
    """Seed every global RNG and return a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@functools.cache
def warm_up() -> None:
    """Pay torch's one-off lazy imports (the first optimiser step of a process imports torch._dynamo, ~1 s on
    a CPU) before a timer starts, so that wall times measure the work, not which run came first."""
    weight = torch.nn.Parameter(torch.zeros(1))
    weight.grad = torch.zeros(1)
    torch.optim.SGD([weight], lr=0.0, momentum=0.9).step()
