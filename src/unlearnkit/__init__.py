"""unlearnkit: machine unlearning for deep models, evaluated against the retrained oracle."""
from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # The public API, imported lazily so that `import unlearnkit` and the CLI start fast.
    if name == "unlearn":
        from .unlearning.engine import unlearn

        return unlearn
    if name in ("load_dataset", "make_split", "from_torch", "Augment"):
        from . import data

        return getattr(data, name)
    if name in ("evaluate", "noise_floor", "verdict", "bench", "tune"):
        from . import api

        return getattr(api, name)
    if name in ("train", "spec_for", "load_checkpoint", "Runtime"):
        from .artifacts import load_checkpoint
        from .models import spec_for
        from .pipeline import train
        from .runtime import Runtime

        return {"train": train, "spec_for": spec_for, "load_checkpoint": load_checkpoint, "Runtime": Runtime}[name]
    raise AttributeError(f"module 'unlearnkit' has no attribute '{name}'")


__all__ = ["unlearn", "load_dataset", "make_split", "from_torch", "Augment", "train", "spec_for", "load_checkpoint",
           "Runtime", "evaluate", "noise_floor", "verdict", "bench", "tune"]
