"""`unlearnkit train/retrain --task generation`: the class-conditional DDPM original and oracle."""
from __future__ import annotations

from typing import Any


def generation_data(settings: dict[str, Any]):
    """The generation dataset named by the settings (data, root, data_options, image_size, layout)."""
    from ..data import load_dataset
    from .data import generation_dataset

    base = load_dataset(settings["data"], settings.get("root"), **settings.get("data_options", {}))
    return generation_dataset(base, int(settings.get("image_size", 16)), str(settings.get("layout", "pad")))


def train_generation(kind: str, settings: dict[str, Any], recipe_overrides: dict[str, Any], device: str,
                     threads: int | None, store, force: bool) -> dict[str, Any]:
    """Train (or find stored) the original DDPM, or with kind='oracle' the DDPM retrained without `forget`."""
    from ..data import oracle_split
    from ..runtime import Runtime
    from .training import DiffusionRecipe, train_denoiser
    from .unet import DENOISERS, DenoiserSpec

    runtime = Runtime.create(device, threads)
    dataset = generation_data(settings)
    name = settings.get("model") or "unet"
    DENOISERS.get(name)  # fail early, listing the denoisers
    channels, size, _ = dataset.image_shape
    spec = DenoiserSpec(name, channels, size, dataset.num_classes, dict(settings.get("model_options", {})))
    recipe = DiffusionRecipe().with_overrides(recipe_overrides)
    seed = int(settings.get("seed", 0))
    split = oracle_split(kind, settings.get("forget"), dataset, seed, "retrain --task generation")
    checkpoint = train_denoiser(dataset, spec, recipe, seed, split, runtime, store, force)
    record = checkpoint.record
    return {"checkpoint": str(checkpoint.path), "kind": kind, "task": "generation", "train_acc": None,
            "test_acc": None, "train_loss": record["metrics"]["train_loss"], "wall_time_s": record["wall_time_s"],
            **({"split": record["split"]} if split else {})}
