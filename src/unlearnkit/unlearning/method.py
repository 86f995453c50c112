"""A method is a declaration of its parts and defaults; `Method.run` is the one engine that runs any of them."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .context import Context
from .geometry import Geometry
from .params import Params, combine, describe, validate
from .parts import ForgetPart, MaskPart, Part, RemainPart


@dataclass(frozen=True)
class Method:
    name: str
    title: str                          # the method and its source, as the table shows it
    geometry: Geometry
    mask: MaskPart | None = None
    forget: ForgetPart | None = None
    remain: RemainPart | None = None
    defaults: dict[str, Any] = field(default_factory=dict)     # over the parts' own defaults
    # Over `defaults` when whole classes are forgotten, where the papers' settings differ from random forgetting.
    class_defaults: dict[str, Any] = field(default_factory=dict)
    # Candidate values per hyperparameter for `unlearnkit tune` (a small grid, searched against the oracle).
    search: dict[str, list[Any]] = field(default_factory=dict)
    # Table 1 cells of a method that is not a gradient loop (its procedure has no parts to name them).
    table: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    extra: tuple[type[Params], ...] = ()  # settings blocks beyond the parts' (the task's)

    @property
    def parts(self) -> list[Part]:
        return [p for p in (self.mask, self.forget, self.remain) if p is not None]

    @cached_property
    def schema(self) -> type[Params]:
        """Every hyperparameter the method reads: its parts' typed blocks, with the method's defaults over them."""
        blocks = [self.geometry.Params, *(p.Params for p in self.parts), *self.extra]
        return combine(self.name, blocks, self.defaults)

    def check(self) -> None:
        """Fail on an inconsistent declaration (at import time): blocks, defaults, class-wise defaults, grids."""
        if self.geometry.kind == "procedure" and (self.forget or self.remain):
            raise ValueError(f"{self.name}: a procedure ({type(self.geometry).__name__}) takes no forget or remain "
                             "part")
        schema = self.schema
        unknown = sorted((set(self.class_defaults) | set(self.search)) - set(schema.model_fields))
        if unknown:
            raise ValueError(f"{self.name}: values for parameters no part reads: {unknown}")
        validate(schema, self.class_defaults, f"method '{self.name}'")

    def columns(self) -> dict[str, str]:
        """The method's row of the SFR-on paper's Table 1."""
        return {"mask": self.mask.label if self.mask else "none",
                "forgetting": self.forget.label if self.forget else "none",
                "remaining": self.remain.label if self.remain else "none",
                "geometry": self.geometry.label, "kind": self.geometry.kind, **self.table}

    def _layer(self, spec: str | None) -> dict[str, Any]:
        return dict(self.class_defaults) if spec and spec.split(":", 1)[0] == "class" else {}

    def parameters(self, spec: str | None = None) -> dict[str, Any]:
        """Every hyperparameter the method reads, with its default for the kind of forget `spec` (class-wise
        defaults over the declared ones). No dataset selects a default: relative settings scale with the
        problem at run time."""
        return validate(self.schema, self._layer(spec), f"method '{self.name}'")

    def resolve(self, overrides: dict[str, Any], spec: str | None = None) -> dict[str, Any]:
        """The defaults for forget `spec` with the user's overrides, validated as a whole: a wrong type, a value
        out of range or an unknown name is one ConfigError line, before anything runs."""
        return validate(self.schema, {**self._layer(spec), **overrides}, f"method '{self.name}'")

    def describe(self) -> list[dict[str, Any]]:
        """Each hyperparameter's name, type, range, default and description."""
        return describe(self.schema)

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
            if "calibrator" in ctx.state:  # before any part undoes its model surgery: the weights it checked
                ctx.state["calibrator"].verify(ctx)
        finally:  # undo model surgery even when a run fails, so the caller can restore the weights
            for part in self.parts:
                part.finish(ctx)
