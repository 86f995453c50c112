"""`unlearn_text_to_image()`: run a text-to-image method on a model and a concept's forget split, on the shared
engine (`unlearning.engine.unlearn`); multi-concept and sequential erasure build on it."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from torch import nn

from ..data.images import ImageDataset
from ..data.splits import ForgetSplit
from ..errors import ConfigError
from ..runtime import Runtime
from ..unlearning.engine import UnlearnResult, unlearn
from .data import concept_split
from .methods import TEXT_TO_IMAGE_METHODS
from .prompts import DIGITS, PROMPTS, STYLES, Concept, parse_concepts, prompt_digit, prompt_style
from .task import TextToImage


def remap_targets(concepts: tuple[Concept, ...], mode: Literal["next", "null"] = "next") -> dict[int, int]:
    """Prompt -> the prompt a remapping method aims it at: the same caption with the next concept of the same kind
    that is not erased (SalUn: class c -> c + 1 mod 10), or the empty prompt (index len(PROMPTS))."""
    erased = {(c.kind, c.index) for c in concepts}
    targets = {}
    for p in range(len(PROMPTS)):
        digit, style = prompt_digit(p), prompt_style(p)
        if ("digit", digit) not in erased and ("style", style) not in erased:
            continue
        if mode == "null":
            targets[p] = len(PROMPTS)
            continue
        for _ in range(len(DIGITS)):
            if ("digit", digit) in erased:
                digit = (digit + 1) % len(DIGITS)
            if ("style", style) in erased:
                style = (style + 1) % len(STYLES)
            if ("digit", digit) not in erased and ("style", style) not in erased:
                break
        targets[p] = digit * len(STYLES) + style
    return targets


def concept_snippets(concepts: tuple[Concept, ...]) -> dict[int, list[str]]:
    """Prompt -> the words in it that name an erased concept (FMN's target tokens)."""
    return {p: [c.snippet for c in concepts if p in c.prompts] for p in range(len(PROMPTS))
            if any(p in c.prompts for c in concepts)}


def unlearn_text_to_image(model: nn.Module, concepts: str | tuple[Concept, ...], method: str = "sfron", *,
                          data: ImageDataset, runtime: Runtime | None = None, seed: int = 0, store: Path | None = None,
                          remap: Literal["next", "null"] | None = None, split: ForgetSplit | None = None,
                          **hyperparameters) -> UnlearnResult:
    """Erase `concepts` ('seven', 'seven+three', ...) from the TextToImageModel `model` (in place) with `method`.

    The forget split is every training sample of the concepts' captions (unless `split` is given); the task
    embeds each sample's caption with the model's frozen text encoder. `remap` is where remapping methods
    (SalUn, SFR-on) and UCE's guides send the erased prompts. Unknown methods, hyperparameters or concepts
    fail in one line before anything runs; a diverging run is rolled back and raises DivergenceError.
    """
    if not hasattr(model, "text"):
        raise ConfigError(f"unlearn_text_to_image takes a TextToImageModel, got {type(model).__name__}")
    concepts = parse_concepts(concepts) if not isinstance(concepts, tuple) else concepts
    split = split or concept_split(data, concepts, seed)
    remap = remap or ("null" if method == "uce" else "next")
    targets, snippets = remap_targets(concepts, remap), concept_snippets(concepts)
    result = unlearn(model, split, method, data=data, runtime=runtime, seed=seed, store=store,
                     methods=TEXT_TO_IMAGE_METHODS,
                     make_task=lambda hp: TextToImage(list(data.classes), hp["cond_drop_prob"], hp["fisher_guidance"],
                                                      seed, targets, snippets), **hyperparameters)
    result.steps = result.hyperparameters.get("iters") or result.details["updates"]
    result.details["concepts"] = [c.name for c in concepts]
    return result


def sequential_erasure(model: nn.Module, concepts: list[str], method: str, *, data: ImageDataset,
                       runtime: Runtime | None = None, seed: int = 0, **hyperparameters) -> list[UnlearnResult]:
    """Erase each concept in turn, each run starting from the previous one's result (the model, in place). The
    remain set of each run is everything but that run's concept (earlier concepts are not re-erased, as a user
    applying one request after another would); what each later run does to the earlier erasures is the bench's
    sequential interference."""
    if len(concepts) < 2:
        raise ConfigError(f"sequential erasure needs at least two concepts, got {concepts}")
    return [unlearn_text_to_image(model, c, method, data=data, runtime=runtime, seed=seed + k, **hyperparameters)
            for k, c in enumerate(concepts)]
