"""Forget splits: which training samples are to be forgotten, derived deterministically from a spec.

Specs:
  random:0.1        a seeded random 10% of the training set
  class:3 / class:3,5   every training sample of those classes (indices or class names)
  indices:FILE      explicit training indices from a text file (.txt, .csv: whitespace- or comma-separated) or
                    a 1-D .npy array (or a 1-D boolean mask over the training set in a .npy)

In Python the forget set may also be given as the indices themselves (a deletion request's rows) or as a boolean
mask over the training set; its spec then reads `indices:<K given>`.
"""
from __future__ import annotations

import hashlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SplitError
from ..runtime import check_seed

KINDS = ("random", "class", "indices")


@dataclass(frozen=True, eq=False, repr=False)
class ForgetSplit:
    """Forget and remain indices into the training set (sorted, disjoint, covering it)."""

    spec: str
    seed: int
    forget: np.ndarray
    remain: np.ndarray
    forgotten_classes: tuple[int, ...] = ()
    dataset: Any = field(default=None, repr=False, compare=False)  # the ImageDataset it indexes, when known

    def __eq__(self, other) -> bool:
        return (isinstance(other, ForgetSplit) and (self.spec, self.seed) == (other.spec, other.seed)
                and np.array_equal(self.forget, other.forget) and np.array_equal(self.remain, other.remain))

    __hash__ = None  # mutable arrays inside

    def __repr__(self) -> str:  # a summary: the default would print every index
        classes = f", classes {list(self.forgotten_classes)}" if self.forgotten_classes else ""
        return (f"ForgetSplit({self.spec!r}, seed {self.seed}: {len(self.forget)} forget / {len(self.remain)} "
                f"remain{classes})")

    @property
    def kind(self) -> str:
        return self.spec.split(":", 1)[0]

    @property
    def n_train(self) -> int:
        return len(self.forget) + len(self.remain)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(np.ascontiguousarray(self.forget, dtype=np.int64).tobytes())
        digest.update(str(self.n_train).encode())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        return {"spec": self.spec, "seed": self.seed, "fingerprint": self.fingerprint, "n_forget": len(self.forget),
                "n_remain": len(self.remain), "forgotten_classes": list(self.forgotten_classes)}

    def save(self, path: Path) -> None:
        np.savez(path, forget=self.forget, remain=self.remain,
                 meta=np.array(json.dumps({"spec": self.spec, "seed": self.seed,
                                           "forgotten_classes": list(self.forgotten_classes)})))

    @classmethod
    def load(cls, path: Path) -> "ForgetSplit":
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                return cls(meta["spec"], meta["seed"], f["forget"], f["remain"], tuple(meta["forgotten_classes"]))
        except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise SplitError(f"split file '{path}' is damaged ({str(exc) or type(exc).__name__})") from None


def check_split(split, dataset, who: str):
    """The dataset `split` indexes (`dataset`, else the one it was made from), after checking that `split` is a
    ForgetSplit over its training set: a split of other data would index the wrong samples (or run past them)
    without a word. Raises ConfigError."""
    if not isinstance(split, ForgetSplit):
        raise ConfigError(f"{who} takes a ForgetSplit (uk.make_split) as the split, got {type(split).__name__}")
    if dataset is not None and not hasattr(dataset, "train_labels"):
        raise ConfigError(f"{who} takes an ImageDataset (uk.load_dataset, uk.from_torch) as data=, got "
                          f"{type(dataset).__name__}")
    dataset = dataset if dataset is not None else split.dataset
    if dataset is None:
        raise ConfigError(f"{who} needs the dataset the split indexes: pass data=")
    if split.n_train != len(dataset.train_labels):
        raise ConfigError(f"the split covers {split.n_train} training samples but dataset '{dataset.name}' has "
                          f"{len(dataset.train_labels)}: they do not belong together")
    return dataset


def make_split(spec, data, seed: int = 0, classes: list[str] | None = None) -> ForgetSplit:
    """Derive the split for `spec` over an ImageDataset's training set (or an array of training labels);
    the same spec, data and seed always give the same split. `spec` is a string (random:0.1, class:3,
    indices:FILE), or the forget set itself: a sequence of training indices or a boolean mask over them."""
    if hasattr(spec, "train_labels") and isinstance(data, str):
        raise SplitError(f"make_split takes the spec first, then the dataset: make_split({data!r}, data)")
    given = None if isinstance(spec, str) else _given_indices(spec)
    check_seed(seed, "the split's seed", SplitError)
    dataset = data if hasattr(data, "train_labels") else None
    if dataset is None and (data is None or isinstance(data, (str, bytes))):
        raise SplitError(f"make_split needs a dataset (or its training labels), got {data!r}")
    if dataset is not None:
        labels, classes = dataset.train_labels.cpu().numpy(), dataset.classes
    else:
        labels = np.asarray(data).reshape(-1)
    n = len(labels)
    if given is not None:
        forget, forgotten = _checked_indices(given, n, "the forget indices"), ()
        spec = f"indices:<{len(forget)} given>"
    else:
        forget, forgotten = _parse(spec, n, labels, classes, seed)
    forget = np.sort(forget).astype(np.int64)
    whole = () if forgotten or spec.startswith("random:") else _whole_classes(forget, labels)
    if whole:  # every sample of some classes and nothing else: class-wise forgetting, however it was given
        spec, forgotten = f"class:{','.join(map(str, whole))}", whole
    remain = np.setdiff1d(np.arange(n), forget).astype(np.int64)
    if len(forget) == 0:
        raise SplitError(f"forget spec '{spec}' selects no training sample: the forget set is empty")
    if len(remain) == 0:
        raise SplitError(f"forget spec '{spec}' selects all {n} training samples: the remain set is empty")
    return ForgetSplit(spec, seed, forget, remain, forgotten, dataset)


def oracle_split(kind: str, spec: str | None, data, seed: int, command: str) -> ForgetSplit | None:
    """The split an oracle is trained without; None for the original model (trained on everything)."""
    if kind != "oracle":
        return None
    if not spec:
        raise SplitError(f"{command} needs --forget SPEC (e.g. random:0.1 or class:3)")
    return make_split(spec, data, seed)


def _parse(spec: str, n: int, labels: np.ndarray, classes: list[str] | None, seed: int
           ) -> tuple[np.ndarray, tuple[int, ...]]:
    """The forget indices a spec string selects, and the classes it forgets (none unless class-wise)."""
    kind, sep, arg = spec.partition(":")
    if kind not in KINDS or not sep or not arg:
        raise SplitError(f"forget spec '{spec}' is malformed; expected random:FRACTION, class:C[,C...] or indices:FILE")
    if kind == "random":
        return _random(arg, n, seed), ()
    if kind == "class":
        forgotten = _classes(arg, labels, classes)
        return np.flatnonzero(np.isin(labels, forgotten)), forgotten
    return _indices(Path(arg), n), ()


def _whole_classes(forget: np.ndarray, labels: np.ndarray) -> tuple[int, ...]:
    """The classes `forget` holds, where it holds every training sample of them and no other (and they are not
    all the classes); else (). Methods and the calibration treat such a set as class-wise forgetting, with its
    targets: an unseen class is never predicted, which a random-forgetting rule would not ask."""
    held = np.unique(labels[forget])
    if len(held) == len(np.unique(labels)):
        return ()
    return tuple(int(c) for c in held) if np.isin(labels, held).sum() == len(forget) else ()


def _random(arg: str, n: int, seed: int) -> np.ndarray:
    try:
        fraction = float(arg)
    except ValueError:
        raise SplitError(f"random forget fraction must be a number in (0, 1), got '{arg}'") from None
    if not 0 < fraction < 1:
        raise SplitError(f"random forget fraction must be in (0, 1), got {fraction}")
    count = int(round(fraction * n))
    return np.random.default_rng(seed).choice(n, size=count, replace=False)


def _classes(arg: str, labels: np.ndarray, names: list[str] | None) -> tuple[int, ...]:
    num_classes = len(names) if names else int(labels.max()) + 1
    chosen = []
    for token in filter(None, (t.strip() for t in arg.split(","))):
        if re.fullmatch(r"-?\d+", token):
            c = int(token)
        elif names and token in names:
            c = names.index(token)
        else:
            raise SplitError(f"class '{token}' does not exist; expected an index in 0..{num_classes - 1}"
                             + (f" or a name in {names}" if names else ""))
        if not 0 <= c < num_classes:
            raise SplitError(f"class {c} does not exist; expected an index in 0..{num_classes - 1}")
        if c in chosen:
            raise SplitError(f"class {c} is listed twice in 'class:{arg}'")
        chosen.append(c)
    if not chosen:
        raise SplitError("class forget spec names no class; expected class:C[,C...]")
    return tuple(chosen)


def _indices(path: Path, n: int) -> np.ndarray:
    if not path.is_file():
        raise SplitError(f"indices file '{path}' does not exist")
    if path.suffix == ".npy":
        return _checked_indices(_npy_indices(path), n, f"indices file '{path}'")
    try:
        values = np.array([t for t in re.split(r"[\s,]+", path.read_text().strip()) if t], dtype=object)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise SplitError(f"indices file '{path}' cannot be read: {exc}") from None
    return _checked_indices(values, n, f"indices file '{path}'")


def _npy_indices(path: Path) -> np.ndarray:
    """A .npy file's 1-D array of indices or boolean mask; anything else (not a .npy at all, an array of Python
    objects, which would need unpickling and is never loaded, or more than one dimension) is one SplitError."""
    expected = "expected a 1-D integer array of training indices or a 1-D boolean mask (np.save)"
    try:
        with open(path, "rb") as f:
            is_npy = f.read(6) == b"\x93NUMPY"
        if not is_npy:
            raise SplitError(f"indices file '{path}' is not a readable .npy file of indices (no NumPy header); "
                             f"{expected}, or a text file of indices")
        values = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise SplitError(f"indices file '{path}' cannot be read: {exc}") from None
    except ValueError:  # an object array (allow_pickle=False refuses it) or a damaged header or body
        raise SplitError(f"indices file '{path}' is not a readable .npy file of indices (damaged, or Python objects, "
                         f"which are never unpickled); {expected}") from None
    if values.ndim != 1:
        raise SplitError(f"indices file '{path}' holds an array of shape {values.shape}; {expected}")
    return values


def _given_indices(spec) -> np.ndarray:
    """The forget set passed as an object: a sequence, set or array of indices, or a boolean mask."""
    if isinstance(spec, (bytes, dict)) or not hasattr(spec, "__len__"):
        raise SplitError(f"a forget spec is a string such as random:0.1 or class:3, or a sequence of training "
                         f"indices, got {type(spec).__name__}")
    if isinstance(spec, (set, frozenset)):
        spec = list(spec)  # the split sorts its indices anyway
    values = np.asarray(spec.detach().cpu() if hasattr(spec, "detach") else spec)
    if values.dtype == object or values.ndim != 1:
        raise SplitError(f"the forget indices must be one flat sequence of integers, got shape {values.shape} "
                         f"of {values.dtype}")
    return values


def _checked_indices(values: np.ndarray, n: int, source: str) -> np.ndarray:
    """Integer training indices in 0..n-1, each once; a boolean mask over the n samples is read as its True ones."""
    if values.dtype == bool:
        if len(values) != n:
            raise SplitError(f"{source}: a boolean mask must have one entry per training sample ({n}), "
                             f"got {len(values)}")
        return np.flatnonzero(values).astype(np.int64)
    try:
        ints = np.array([int(v) for v in values], dtype=np.int64)
        if values.dtype.kind == "f" and not np.all(np.asarray(values) == ints):
            raise ValueError("non-integer value")
    except (ValueError, TypeError, OverflowError) as exc:
        raise SplitError(f"{source} must hold integers: {exc}") from None
    bad = ints[(ints < 0) | (ints >= n)]
    if len(bad):
        raise SplitError(f"{source}: {len(bad)} index(es) out of range 0..{n - 1}, e.g. {bad[:5].tolist()}")
    unique, counts = np.unique(ints, return_counts=True)
    if (counts > 1).any():
        raise SplitError(f"{source}: duplicated index(es) {unique[counts > 1][:5].tolist()}")
    return ints
