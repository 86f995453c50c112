"""Checkpoints on disk: safetensors weights beside a JSON record of how they were made.

Artefacts live under a store folder and are found again by a content key (config + data fingerprint +
split + seed), never by a path that can go stale. Every write goes to a temporary folder first and is
renamed into place, so an interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import math
import os
import platform
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .data.splits import ForgetSplit
from .errors import CheckpointError, ConfigError, SplitError
from .models import ModelSpec

WEIGHTS, RECORD, SPLIT = "model.safetensors", "record.json", "split.npz"


def default_store() -> Path:
    return Path(os.environ.get("UNLEARNKIT_STORE", "unlearnkit-runs"))


def writable_store(store: str | Path | None = None) -> Path:
    """The store folder (default: `default_store()`), checked before any work starts: it must be a directory
    (or not exist yet, under one) that this process can write to. Nothing is created by the check."""
    path = Path(store or default_store()).expanduser()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f": '{existing}' is a file"
        raise ConfigError(f"store '{path}' must be a folder{where or ', but it is a file'}")
    try:  # os.access says yes to root on read-only mounts; a real write tells the truth
        probe = tempfile.NamedTemporaryFile(dir=existing, prefix=".unlearnkit-probe-")
        probe.close()
    except OSError as exc:
        raise ConfigError(f"store '{path}' is not writable ({exc.strerror or exc}): choose another --store") from None
    return path


def content_key(payload: Any) -> str:
    """A short stable hash of any JSON-able payload."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_key(model: nn.Module | dict) -> str:
    """A short stable hash of a module's weights and buffers, or of a state dict (names, shapes, dtypes, values)."""
    digest = hashlib.sha256()
    state = model.state_dict() if isinstance(model, nn.Module) else model
    for name, tensor in sorted(state.items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.view(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("unlearnkit", "torch", "numpy", "scikit-learn", "safetensors"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def finite_json(value: Any) -> Any:
    """A copy of `value` with NaN and infinities as None, since JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


def atomic_write_file(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary)` into a hidden file beside `path`, then rename it into place: an interrupted write leaves no
    half-written file for the next run to trust. The temporary name keeps `path`'s suffix, for writers that pick the
    format from it (matplotlib)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_file(path, lambda tmp: tmp.write_text(text))


def atomic_write_rows(path: Path, rows: list[dict]) -> None:
    """Rows as CSV, written atomically; the columns are every key of any row, in order of first appearance."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buffer.getvalue())


def warn_damaged(path: Path, problem: str, what: str = "") -> None:
    """The warning of a store lookup that found `path` (a stored `what`) damaged and computes it again instead of
    returning it."""
    warnings.warn(f"the stored {what + ' ' if what else ''}'{path}' is damaged ({problem}): computing it again",
                  stacklevel=3)


@dataclass
class Checkpoint:
    """A saved model folder: weights, record and (when the model depends on one) its forget split.
    `architecture` is the user's own module it was trained as (`uk.train` with an nn.Module): `load_model()`
    rebuilds a copy of it, as it rebuilds a registered model from its spec."""

    path: Path
    record: dict
    architecture: nn.Module | None = field(default=None, repr=False, compare=False)
    reused: bool = field(default=False, compare=False)  # found in the store by its key, not computed by this call
    # What `damage()` read and found sound, so that a store lookup reads neither file twice.
    checked: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def model_spec(self) -> ModelSpec:
        described = self.record.get("model")
        if not isinstance(described, dict):
            raise CheckpointError(f"checkpoint '{self.path}' has no usable model description in {RECORD}: "
                                  f"'model' is {type(described).__name__}, not a mapping")
        if str(described.get("name", "")).startswith("custom:"):
            raise CheckpointError(f"checkpoint '{self.path}' holds a custom model: "
                                  "pass the module to load_model(model)")
        try:
            return ModelSpec(**described)
        except TypeError as exc:
            raise CheckpointError(f"checkpoint '{self.path}' has no usable model description "
                                  f"in {RECORD}: {exc}") from None

    def __getstate__(self) -> dict:  # a checkpoint sent to or from a worker carries its paths, not what was read
        return {**self.__dict__, "checked": {}}

    def load_model(self, model: nn.Module | None = None) -> nn.Module:
        """Rebuild the model (or use `model`) and load the weights, checking they fit it and are the weights the
        record was written for."""
        if model is None:
            model = copy.deepcopy(self.architecture) if self.architecture is not None else self.model_spec.build()
        state = self.checked.pop("weights", None)  # already matched to the record's key by damage()
        load_weights(model, self.path / WEIGHTS, state)
        expected = self.record.get("weights")
        if state is None and expected is not None and weights_key(model) != expected:
            raise CheckpointError(f"checkpoint '{self.path}': its weights are not those its {RECORD} was written for "
                                  "(changed or damaged since it was saved); train or unlearn it again with --force")
        return model

    def damage(self) -> str | None:
        """Why this stored checkpoint cannot be reused (an unreadable or changed weights file, a record without its
        model description, a missing or damaged split), or None: a store lookup that finds it damaged computes it
        again instead of returning it."""
        if not isinstance(self.record.get("model"), dict):
            return f"its {RECORD} has no model description"
        try:
            state = load_file(str(self.path / WEIGHTS))
        except (SafetensorError, OSError, ValueError) as exc:
            return (f"its {WEIGHTS} is corrupt or not safetensors "
                    f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")
        expected = self.record.get("weights")
        if expected is not None and weights_key(state) != expected:
            return f"its weights are not those its {RECORD} was written for"
        if self.record.get("split") and not (self.path / SPLIT).is_file():
            return f"its {SPLIT} is missing"
        split = None
        if (self.path / SPLIT).is_file():
            try:
                split = ForgetSplit.load(self.path / SPLIT)
            except SplitError as exc:
                return str(exc)
        self.checked.update(weights=state, split=split)
        return None

    @property
    def split(self) -> ForgetSplit | None:
        if "split" in self.checked:
            return self.checked["split"]
        path = self.path / SPLIT
        return ForgetSplit.load(path) if path.exists() else None


def save_checkpoint(directory: Path, model: nn.Module, record: dict, split: ForgetSplit | None = None) -> Checkpoint:
    """Write weights, record and split into `directory`, atomically (any older content is replaced)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp / WEIGHTS))
    record = {**record, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "versions": versions(),
              "weights": weights_key(state)}
    (tmp / RECORD).write_text(json.dumps(record, indent=2, default=str))
    if split is not None:
        split.save(tmp / SPLIT)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return Checkpoint(directory, record)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Open a checkpoint folder (or its model.safetensors file)."""
    if not isinstance(path, (str, Path)):
        raise CheckpointError(f"a checkpoint is a folder path, got {type(path).__name__}")
    path = Path(path).expanduser()
    if path.is_file() and path.name == WEIGHTS:
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if not path.is_dir() or not (path / WEIGHTS).is_file():
        raise CheckpointError(f"'{path}' is not a checkpoint: expected a folder holding {WEIGHTS} and {RECORD}")
    try:
        record = json.loads((path / RECORD).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint '{path}' has no {RECORD}") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"checkpoint '{path}': {RECORD} is corrupt ({exc})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"checkpoint '{path}': {RECORD} is corrupt (a JSON {type(record).__name__}, not an "
                              "object)")
    return Checkpoint(path, record)


def load_weights(model: nn.Module, weights: str | Path, state: dict | None = None) -> None:
    """Load safetensors weights into `model` (`state`: the file's tensors, where already read), failing clearly
    on a corrupt file or any mismatch."""
    weights = Path(weights)
    try:
        state = load_file(str(weights)) if state is None else state
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint file '{weights}' is corrupt or not safetensors: {exc}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        details = "; ".join(filter(None, [
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else "",
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}" if unexpected else "",
            f"shape mismatch {shapes[:2]}" if shapes else ""]))
        raise CheckpointError(f"checkpoint '{weights}' does not match the {type(model).__name__} model: {details}")
    model.load_state_dict(state)
