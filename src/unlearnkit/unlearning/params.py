"""Typed hyperparameter blocks: every part, geometry and task declares the settings it reads beside itself,
each with a type, a range and a one-line description (diffusers' "constructor as config").

A method's settings are the union of its parts' blocks (`combine`), with the method's own defaults over
them. Values are validated as a whole before anything runs: a wrong type, a value out of range or an
unknown name is one ConfigError line.
"""
from __future__ import annotations

import typing
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from ..errors import ConfigError

__all__ = ["Params", "Field", "combine", "describe", "validate"]


class Params(BaseModel):
    """A block of hyperparameters. Subclass it with one `Field(default, description=..., <range>)` per setting."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)
    owner: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, values: Any) -> Any:
        # pydantic reads True as 1; a flag given where a number is expected is a mistake, not a number.
        if isinstance(values, dict):
            for key, value in values.items():
                field = cls.model_fields.get(key)
                if isinstance(value, bool) and field is not None and bool not in _types(field.annotation):
                    raise ValueError(f"{key} must be a number, got {value!r}")
        return values


class NoParams(Params):
    """For a part that reads no setting."""


def _types(annotation) -> set:
    args = typing.get_args(annotation)
    return set(args) if args and typing.get_origin(annotation) is not typing.Literal else {annotation}


def _same(a: FieldInfo, b: FieldInfo) -> bool:
    return a.annotation == b.annotation and a.default == b.default and a.metadata == b.metadata


def combine(name: str, blocks: list[type[Params]], defaults: dict[str, Any] | None = None) -> type[Params]:
    """One block holding every field of `blocks` (two blocks may share a field only if they declare it alike),
    with `defaults` over their defaults. Raises ValueError on an inconsistent declaration (a programming
    error, found at import time)."""
    fields: dict[str, FieldInfo] = {}
    for block in blocks:
        for key, info in block.model_fields.items():
            if key in fields and not _same(fields[key], info):
                raise ValueError(f"{name}: parts declare '{key}' differently")
            fields[key] = info
    unknown = sorted(set(defaults or {}) - set(fields))
    if unknown:
        raise ValueError(f"{name}: defaults for parameters no part reads: {unknown}")
    for key, value in (defaults or {}).items():
        fields[key] = FieldInfo.merge_field_infos(fields[key], default=value)
    combined = create_model(f"{name}_params", __base__=Params, **{k: (f.annotation, f) for k, f in fields.items()})
    combined.owner = name
    try:
        combined()
    except ValidationError as exc:
        raise ValueError(f"{name}: invalid declared default: {one_line(exc)}") from None
    return combined


def one_line(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']} (given {e.get('input')!r})"
                     for e in exc.errors())


def validate(block: type[Params], values: dict[str, Any], what: str) -> dict[str, Any]:
    """The block's defaults with `values` over them, validated: a dict of every setting, or one ConfigError line."""
    unknown = sorted(set(values) - set(block.model_fields))
    if unknown:
        raise ConfigError(f"{what} has no hyperparameter(s) {unknown}; valid: {', '.join(sorted(block.model_fields))}")
    try:
        return block(**values).model_dump()
    except ValidationError as exc:
        raise ConfigError(f"{what}: {one_line(exc)}") from None


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(annotation)))
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if args:  # Optional[X]
        return " or ".join(_type_name(a) for a in args) + " or none"
    return getattr(annotation, "__name__", str(annotation))


def describe(block: type[Params]) -> list[dict[str, Any]]:
    """Each setting's name, type, range, default and description, for `unlearnkit methods NAME`."""
    rows = []
    for key, info in block.model_fields.items():
        bounds = [f"{sign} {getattr(m, attr)}" for m in info.metadata for attr, sign in _BOUNDS
                  if getattr(m, attr, None) is not None]
        rows.append({"name": key, "type": _type_name(info.annotation), "range": ", ".join(bounds),
                     "default": info.default, "description": info.description or ""})
    return rows
