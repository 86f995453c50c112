"""Readers for dataset files on disk. Each returns uint8 images (N, C, H, W) and int64 labels, or
raises DataError naming the file and what was wrong with it."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def require_folder(root: str | Path | None, dataset: str) -> Path:
    if root is None:
        raise DataError(f"dataset '{dataset}' is read from a local folder: pass its path with --root")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataError(f"dataset '{dataset}': folder '{path}' does not exist")
    return path


# --- CIFAR-10/100: the python pickle batches ------------------------------------------------------

def read_cifar(root: str | Path | None, variant: str) -> tuple[dict, list[str]]:
    """Read cifar10 or cifar100 from `root` (or its `cifar-10-batches-py` / `cifar-100-python` subfolder)."""
    folder = require_folder(root, variant)
    if variant == "cifar10":
        sub, train_files, test_files, meta, label_key, names_key = (
            "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
            "batches.meta", b"labels", b"label_names")
    else:
        sub, train_files, test_files, meta, label_key, names_key = (
            "cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names")
    if not (folder / train_files[0]).exists() and (folder / sub).is_dir():
        folder = folder / sub
    missing = [f for f in [*train_files, *test_files, meta] if not (folder / f).is_file()]
    if missing:
        raise DataError(
            f"{variant}: folder '{folder}' is not the python version of the dataset; missing {missing} "
            f"(expected {train_files + test_files + [meta]})"
        )
    parts = {}
    for part, files in (("train", train_files), ("test", test_files)):
        batches = [_unpickle(folder / f) for f in files]
        try:
            images = np.concatenate([np.asarray(b[b"data"], dtype=np.uint8) for b in batches])
            labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
            images = images.reshape(-1, 3, 32, 32)
        except (KeyError, ValueError) as exc:
            raise DataError(f"{variant}: malformed batch in '{folder}': {exc}") from None
        if len(images) != len(labels):
            raise DataError(f"{variant}: {len(images)} images but {len(labels)} labels in '{folder}'")
        parts[part] = (torch.from_numpy(images), torch.from_numpy(labels))
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in _unpickle(folder / meta).get(names_key, [])]
    return parts, names


# What the CIFAR batches are made of: dicts, lists, bytes, str and numbers (built in by the pickle format itself)
# and numpy arrays, which pickle by naming these reconstructors. Nothing else may be looked up, so a crafted file
# cannot name os.system or any other callable.
_NUMPY_GLOBALS = {(module, name) for core in ("numpy.core", "numpy._core") for module, name in (
    (f"{core}.multiarray", "_reconstruct"), (f"{core}.multiarray", "scalar"), (f"{core}.numeric", "_frombuffer"))}
_NUMPY_GLOBALS |= {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch never holds "
                                         "(refused: a data file must not run code)")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            content = _BatchUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on garbage
        raise DataError(f"'{path}' is not a readable CIFAR pickle batch: {exc}") from None
    if not isinstance(content, dict):
        raise DataError(f"'{path}' is not a CIFAR batch (expected a dict, got {type(content).__name__})")
    return content


# --- MNIST-style IDX files (MNIST, Fashion-MNIST, KMNIST) ---------------------------------------

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx_folder(root: str | Path | None, dataset: str = "mnist") -> dict:
    folder = require_folder(root, dataset)
    parts = {}
    for part, (image_name, label_name) in IDX_FILES.items():
        images = read_idx(_find_idx(folder, image_name, dataset), expected_dims=3)
        labels = read_idx(_find_idx(folder, label_name, dataset), expected_dims=1)
        if len(images) != len(labels):
            raise DataError(f"{dataset}: {part} has {len(images)} images but {len(labels)} labels in '{folder}'")
        parts[part] = (torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64)))
    return parts


def _find_idx(folder: Path, name: str, dataset: str) -> Path:
    for candidate in (folder / name, folder / f"{name}.gz", folder / name.replace("-idx", ".idx")):
        if candidate.is_file():
            return candidate
    raise DataError(f"{dataset}: folder '{folder}' has no '{name}' or '{name}.gz'")


def read_idx(path: Path, expected_dims: int) -> np.ndarray:
    """Parse one IDX file of unsigned bytes (gzip or raw)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"'{path}' cannot be read: {exc}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"'{path}' is not an IDX file (bad magic number)")
    dtype_code, dims = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"'{path}': expected unsigned-byte data (0x08), got type code {dtype_code:#04x}")
    if dims != expected_dims:
        raise DataError(f"'{path}': expected {expected_dims} dimension(s), got {dims}")
    header = 4 + 4 * dims
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if len(raw) != header + int(np.prod(shape)):
        raise DataError(f"'{path}': header says shape {shape} but the file holds {len(raw) - header} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


# --- class-per-folder images ---------------------------------------------------------------------

def read_image_folder(folder: Path, image_size: int, channels: int, classes: list[str] | None = None):
    """Read `folder/<class>/<image>` files, resized to a square `image_size`. Returns images, labels, classes."""
    from PIL import Image, UnidentifiedImageError

    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    classes = classes or found
    if not classes:
        raise DataError(f"imagefolder: '{folder}' has no class subfolders (expected '{folder}/<class>/<image>')")
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataError(f"imagefolder: '{folder}' has classes {unknown} that the training folder lacks")
    mode = {1: "L", 3: "RGB"}[channels]
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in files:
            try:
                with Image.open(path) as img:
                    img = img.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"imagefolder: '{path}' is not a readable image: {exc}") from None
            images.append(array.reshape(image_size, image_size, channels).transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DataError(f"imagefolder: '{folder}' holds no images with suffixes {sorted(IMAGE_SUFFIXES)}")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long), classes
