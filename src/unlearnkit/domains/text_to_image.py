"""The text-to-image domain: concept erasure in a text-conditional diffusion model built from diffusers' Stable
Diffusion components (`text_to_image/`). Trained here on the captioned digits; the oracle never saw the concept's
captions; the methods are ESD-x/-u, SalUn, SFR-on, UCE and FMN on the shared engine; the bench scores each on
the erased concept's prompts (forget_acc) and the others' (retain_acc, also reported as remain_acc)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import Registry
from ..runtime import Runtime
from . import register
from .base import Domain


class TextToImage(Domain):
    name = "text-to-image"
    title = "text-to-image diffusion (SD components): concept erasure through prompts"

    @property
    def methods(self) -> Registry:
        from ..text_to_image.methods import TEXT_TO_IMAGE_METHODS

        return TEXT_TO_IMAGE_METHODS

    def train(self, kind, settings, recipe, runtime, store, force) -> dict:
        from ..text_to_image.data import captioned_digits, concept_split
        from ..text_to_image.training import TextToImageRecipe, stored_record, train_text_to_image

        if settings.get("data", "digits") != "digits" or settings.get("model"):
            raise ConfigError("--task text-to-image trains on the captioned digits with its own model: drop --data "
                              "and --model (a real SD model is a local diffusers folder, used by the Python API)")
        dataset, seed = captioned_digits(), int(settings.get("seed", 0))
        split = None
        if kind == "oracle":
            spec = settings.get("forget") or ""
            if not spec.startswith("concept:"):
                raise ConfigError(f"retrain --task text-to-image needs --forget concept:NAME (a digit word or a "
                                  f"style, e.g. concept:seven), got {spec!r}")
            split = concept_split(dataset, spec.split(":", 1)[1], seed)
        folder = train_text_to_image(dataset, None, TextToImageRecipe().with_overrides(recipe), seed, split,
                                     runtime, store, force)
        record = stored_record(folder)
        return {"checkpoint": str(folder), "kind": kind, "task": self.name, "wall_time_s": record["wall_time_s"],
                **({"split": split.describe()} if split else {})}

    def bench(self, options: dict[str, Any], runtime: Runtime, store: Path | None) -> dict:
        from ..executor import make_executor
        from ..text_to_image.bench import run_text_to_image_bench

        self.refuse(options, "scenarios", "only", "tuned")
        seed = (options.get("seeds") or [0])[0]
        concept, quick = options.get("concept") or "seven", options.get("quick", False)
        out = Path(options.get("out") or store / "bench"
                   / f"text-to-image-{concept}-seed{seed}{'-quick' if quick else ''}")
        with make_executor(**options["executor"], threads=runtime.threads) as jobs:
            result = run_text_to_image_bench(out, runtime, store, seed=seed, quick=quick, concept=concept,
                                             methods=options.get("methods"), executor=jobs)
        files = result["files"]
        keys = ("method", "forget_acc", "remain_acc", "fid", "alignment", "neighbour_acc", "avg_gap", "kl_forget",
                "closing_avg_gap", "closing_kl_forget", "rte_s", "cost_ratio", "updates")
        return {"report": files["report"], "markdown": files["markdown"], "csv": files["csv"], "json": files["json"],
                "grids": result["grids"], "verdicts": {s: v["sentence"] for s, v in result["verdicts"].items()},
                "tables": {s: [{k: row.get(k) for k in keys} for row in rows] for s, rows in result["rows"].items()},
                "timings": result["timings"],
                "text": Path(files["markdown"]).read_text() + f"\nreport: {files['report']}"}


register(TextToImage())
