"""A method is a declaration of its parts and defaults; `Method.run` is the one engine that runs any of them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .context import Context
from .geometry import Geometry
from .parts import ForgetPart, MaskPart, Part, RemainPart
from .tuned import tuned


@dataclass(frozen=True)
class Method:
    name: str
    title: str                          # the method and its source, as the table shows it
    geometry: Geometry
    mask: MaskPart | None = None
    forget: ForgetPart | None = None
    remain: RemainPart | None = None
    defaults: dict[str, Any] = field(default_factory=dict)     # over the parts' own defaults
    # Per-dataset defaults over `defaults`, keyed "dataset" or, more specific, "dataset:random" / "dataset:class".
    # (Values chosen by `unlearnkit tune` live in tuned.yaml and come last.)
    by_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Candidate values per hyperparameter for `unlearnkit tune` (a small grid, searched against the oracle).
    search: dict[str, list[Any]] = field(default_factory=dict)
    # Table 1 cells of a method that is not a gradient loop (its procedure has no parts to name them).
    table: dict[str, str] = field(default_factory=dict)
    notes: str = ""

    @property
    def parts(self) -> list[Part]:
        return [p for p in (self.mask, self.forget, self.remain) if p is not None]

    def columns(self) -> dict[str, str]:
        """The method's row of the SFR-on paper's Table 1."""
        return {"mask": self.mask.label if self.mask else "none",
                "forgetting": self.forget.label if self.forget else "none",
                "remaining": self.remain.label if self.remain else "none",
                "geometry": self.geometry.label, **self.table}

    def parameters(self, dataset: str | None = None, spec: str | None = None) -> dict[str, Any]:
        """Every hyperparameter the method reads, with its default for `dataset` and forget `spec`: the
        declared defaults, then `by_dataset`, then the values `unlearnkit tune` chose (tuned.yaml)."""
        merged: dict[str, Any] = dict(self.geometry.params)
        for part in self.parts:
            for key, value in part.params.items():
                if key in merged and merged[key] != value:
                    raise ValueError(f"{self.name}: parts disagree on the default of '{key}'")
                merged[key] = value
        unknown = set(self.defaults).union(*self.by_dataset.values(), self.search) - set(merged)
        if unknown:
            raise ValueError(f"{self.name}: defaults for parameters no part reads: {sorted(unknown)}")
        kind = spec.split(":", 1)[0] if spec else None
        return {**merged, **self.defaults, **self.by_dataset.get(dataset or "", {}),
                **self.by_dataset.get(f"{dataset}:{kind}", {}), **tuned(self.name, dataset, spec)}

    def resolve(self, dataset: str | None, overrides: dict[str, Any], spec: str | None = None) -> dict[str, Any]:
        """Defaults for `dataset` and forget `spec` with the user's overrides, each checked against its
        default's type."""
        params = self.parameters(dataset, spec)
        unknown = sorted(set(overrides) - set(params))
        if unknown:
            raise ConfigError(f"method '{self.name}' has no hyperparameter(s) {unknown}; "
                              f"valid: {', '.join(sorted(params))}")
        for key, value in overrides.items():
            params[key] = _coerce(self.name, key, value, params[key])
        return params

    def run(self, ctx: Context) -> None:
        ctx.snapshot_original()
        for part in self.parts:
            part.prepare(ctx)
        mask = self.mask.compute(ctx) if self.mask is not None else None
        if mask is not None:
            ctx.state["mask_density"] = float(sum(m.sum() for m in mask.values())
                                              / sum(m.numel() for m in mask.values()))
        try:
            self.geometry.run(ctx, self, mask)
        finally:  # undo model surgery even when a run fails, so the caller can restore the weights
            for part in self.parts:
                part.finish(ctx)


def _coerce(method: str, key: str, value: Any, default: Any) -> Any:
    expected = type(default)
    if default is None or isinstance(value, expected) and not (expected is int and isinstance(value, bool)):
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"method '{method}': {key} must be {expected.__name__} (default {default!r}), got {value!r}")
