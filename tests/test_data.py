import gzip
import pickle
import re

import numpy as np
import pytest
import torch

from unlearnkit.data import DATASETS, Augment, from_torch, load_dataset
from unlearnkit.data.readers import read_idx
from unlearnkit.errors import ConfigError, DataError


def test_digits_is_the_embedded_default_with_a_fixed_split():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.image_shape == (1, 8, 8) and a.num_classes == 10
    assert len(a.train_labels) == 1437 and len(a.test_labels) == 360
    assert torch.equal(a.train_images, b.train_images) and a.fingerprint == b.fingerprint
    assert torch.bincount(a.test_labels).min() >= 35  # stratified


def test_unknown_dataset_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown dataset 'nope'.*digits.*mnist.*cifar10"):
        load_dataset("nope")


def test_unknown_dataset_option_is_rejected():
    with pytest.raises(ConfigError, match="no option"):
        load_dataset("digits", colour=True)


def _write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_reads_idx_files_gz_or_raw(tmp_path, gz):
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 255, (n, 28, 28)), gz)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, gz)
    data = load_dataset("mnist", tmp_path)
    assert data.train_images.shape == (12, 1, 28, 28) and data.train_images.dtype == torch.uint8
    assert data.test_labels.tolist() == [0, 1, 2, 3, 4] and data.num_classes == 10


@pytest.mark.parametrize("options, message", [
    ({"train_size": "8"}, "train_size must be a whole number, got '8'"),
    ({"train_size": 4, "subset_seed": 0.5}, "subset_seed must be a whole number, got 0.5"),
    ({"test_size": 9}, "test_size must be in 1..5"),
])
def test_mnist_subset_options_are_checked(tmp_path, options, message):
    for prefix, n in (("train", 12), ("t10k", 5)):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", np.zeros((n, 28, 28)), False)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, False)
    assert len(load_dataset("mnist", tmp_path, train_size=4).train_labels) == 4
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_dataset("mnist", tmp_path, **options)


def test_mnist_missing_folder_and_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("mnist", tmp_path / "absent")
    with pytest.raises(DataError, match="has no 'train-images-idx3-ubyte'"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(DataError, match="pass its path with --root"):
        load_dataset("mnist")


def test_malformed_idx_files_are_named(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(DataError, match="bad magic"):
        read_idx(bad, 3)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(DataError, match="header says shape"):
        read_idx(truncated, 1)
    wrong_dims = tmp_path / "dims"
    wrong_dims.write_bytes(bytes([0, 0, 8, 1]) + (1).to_bytes(4, "big") + b"\x00")
    with pytest.raises(DataError, match="expected 3 dimension"):
        read_idx(wrong_dims, 3)


def _cifar_batch(n, label_key, rng):
    return {b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), label_key: list(np.arange(n) % 10)}


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_python_batches_with_augmentation(tmp_path, protocol):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        pickle.dump(_cifar_batch(4, b"labels", rng), open(folder / f"data_batch_{i}", "wb"), protocol=protocol)
    pickle.dump(_cifar_batch(3, b"labels", rng), open(folder / "test_batch", "wb"))
    pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, open(folder / "batches.meta", "wb"))
    data = load_dataset("cifar10", tmp_path)
    assert data.train_images.shape == (20, 3, 32, 32) and len(data.test_labels) == 3
    assert data.classes[:2] == ["c0", "c1"] and data.augment == Augment(crop_padding=4, hflip=True)


def test_cifar_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="missing"):
        load_dataset("cifar100", tmp_path)
    for name in ("train", "test", "meta"):
        (tmp_path / name).write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable CIFAR pickle"):
        load_dataset("cifar100", tmp_path)


class _Payload:
    """Unpickled by a plain pickle.load, this runs `touch <path>`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.path}",)


def test_a_crafted_cifar_batch_cannot_run_code(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    witness = tmp_path / "pwned"
    for i in range(1, 6):
        pickle.dump(_cifar_batch(4, b"labels", rng), open(folder / f"data_batch_{i}", "wb"))
    pickle.dump({**_cifar_batch(3, b"labels", rng), b"extra": _Payload(witness)}, open(folder / "test_batch", "wb"))
    pickle.dump({b"label_names": [b"c"] * 10}, open(folder / "batches.meta", "wb"))
    with pytest.raises(DataError, match=r"test_batch' is not a readable CIFAR pickle batch: it asks for "
                                         r"(posix|os)\.system.*refused"):
        load_dataset("cifar10", tmp_path)
    assert not witness.exists()


def test_imagefolder_reads_class_folders(tmp_path):
    from PIL import Image

    for part in ("train", "test"):
        for cls, colour in (("cat", 30), ("dog", 200)):
            (tmp_path / part / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 12), (colour, i, 0)).save(tmp_path / part / cls / f"{i}.png")
    data = load_dataset("imagefolder", tmp_path, image_size=16)
    assert data.classes == ["cat", "dog"] and data.train_images.shape == (6, 3, 16, 16)
    assert data.train_labels.tolist() == [0, 0, 0, 1, 1, 1]
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.png' is not a readable image"):
        load_dataset("imagefolder", tmp_path)


def test_from_torch_materialises_any_dataset():
    class Squares(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.full((1, 4, 4), float(i)), i % 2

    data = from_torch(Squares(), Squares())
    assert data.train_images.shape == (6, 1, 4, 4) and data.num_classes == 2
    x, y = data.test().batch(torch.tensor([3]))
    assert torch.equal(x, torch.full((1, 1, 4, 4), 3.0)) and y.tolist() == [1]


def test_from_torch_scales_each_uint8_image_even_beside_float_ones():
    class Mixed(torch.utils.data.Dataset):  # odd items as floats in [0, 1], even ones as the same uint8 pixels
        def __len__(self):
            return 4

        def __getitem__(self, i):
            pixels = np.full((1, 2, 2), 51 * (i + 1), dtype=np.uint8)
            return (pixels.astype(np.float32) / 255 if i % 2 else pixels), i % 2

    data = from_torch(Mixed(), Mixed())
    expected = torch.tensor([0.2, 0.4, 0.6, 0.8])[:, None, None, None].expand(4, 1, 2, 2)
    assert torch.allclose(data.train_images, expected)


def _pairs(images, labels):
    """A map-style dataset as a list of (image, label) pairs."""
    return list(zip(images, labels))


@pytest.mark.parametrize("augment", [True, "yes", {"crop_padding": 2}])
def test_from_torch_refuses_an_augment_that_is_not_one(augment):
    pairs = _pairs(torch.rand(4, 1, 4, 4), [0, 1, 0, 1])
    with pytest.raises(ConfigError, match=r"augment must be an Augment, e\.g\. uk\.Augment\(crop_padding=4, "
                                          r"hflip=True\), or None; got "):
        from_torch(pairs, pairs, augment=augment)
    data = from_torch(pairs, pairs, augment=None)  # None: no augmentation
    assert data.augment == Augment() and not data.train().augment


@pytest.mark.parametrize("fields, message", [
    ({"crop_padding": -1}, "crop_padding must be a whole number of pixels >= 0, got -1"),
    ({"crop_padding": 1.5}, "crop_padding must be a whole number of pixels >= 0, got 1.5"),
    ({"crop_padding": True}, "crop_padding must be a whole number of pixels >= 0, got True"),
    ({"hflip": "x"}, "hflip must be True or False, got 'x'"),
    ({"hflip": 1}, "hflip must be True or False, got 1"),
])
def test_augment_checks_its_fields_when_built(fields, message):
    with pytest.raises(ConfigError, match=re.escape(f"Augment: {message}")):
        Augment(**fields)
    assert Augment(crop_padding=np.int64(2), hflip=np.bool_(True)) == Augment(crop_padding=2, hflip=True)


@pytest.mark.parametrize("labels, shape", [
    (torch.eye(4)[[0, 1, 2, 3]], "(4,)"),      # one-hot rows
    (np.eye(3)[[0, 1, 2, 0]], "(3,)"),
    (torch.zeros(4, 1, 2), "(1, 2)"),
])
def test_from_torch_refuses_labels_that_are_not_one_index_per_sample(labels, shape):
    pairs = _pairs(torch.rand(4, 1, 4, 4), labels)
    with pytest.raises(DataError, match=re.escape(f"the train dataset yields labels of shape {shape}; labels must be "
                                                  "class indices, one integer per sample (for one-hot labels, take "
                                                  "their argmax)")):
        from_torch(pairs, pairs)
    one_element = _pairs(torch.rand(4, 1, 4, 4), torch.tensor([[0], [1], [0], [1]]))  # one index each: read
    assert from_torch(one_element, one_element).train_labels.tolist() == [0, 1, 0, 1]


def test_from_torch_refuses_float_images_on_0_to_255_unless_normalised():
    g = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (4, 1, 4, 4), generator=g)
    pixels[0, 0, 0, 0], pixels[1, 0, 0, 0] = 0, 255
    labels = [0, 1, 0, 1]
    bytes_as_floats = _pairs(pixels.float(), labels)
    with pytest.raises(DataError, match=r"the train images are floats from 0 to 255, which look like 0-255 pixels, "
                                        r"but float pixels are read on \[0, 1\]: divide them by 255, yield uint8, "
                                        r"or pass normalize=True"):
        from_torch(bytes_as_floats, bytes_as_floats)
    as_uint8 = from_torch(_pairs(pixels.to(torch.uint8), labels), _pairs(pixels.to(torch.uint8), labels))
    scaled = from_torch(_pairs(pixels.float() / 255, labels), _pairs(pixels.float() / 255, labels))
    assert torch.allclose(scaled.train_images, as_uint8.train_images)
    normalised = from_torch(bytes_as_floats, bytes_as_floats, normalize=True)  # standardised here: accepted
    assert normalised.train().eval().batch(torch.arange(4))[0].abs().max() < 5
    standardised = _pairs(3 * torch.randn(4, 1, 4, 4, generator=g), labels)  # the Dataset's own normalisation
    assert from_torch(standardised, standardised).train_images.abs().max() > 2


def test_from_torch_refuses_chw_images_declared_hwc():
    chw = _pairs(torch.rand(4, 3, 8, 8), [0, 1, 0, 1])
    with pytest.raises(DataError, match=re.escape("the train images have shape (3, 8, 8), which looks like (C, H, W), "
                                                  "not the layout='HWC' given: pass layout='CHW'")):
        from_torch(chw, chw, layout="HWC")
    hwc = _pairs(torch.rand(4, 8, 8, 3), [0, 1, 0, 1])
    assert from_torch(hwc, hwc, layout="HWC").image_shape == (3, 8, 8)
    ambiguous = _pairs(torch.rand(4, 3, 8, 3), [0, 1, 0, 1])  # channels first and last: the layout given holds
    assert from_torch(ambiguous, ambiguous, layout="HWC").image_shape == (3, 3, 8)


def test_views_normalise_and_switch_to_test_transforms(tiny_data):
    tiny_data.augment = Augment(crop_padding=2, hflip=True)
    view = tiny_data.train([0, 1, 2])
    assert view.augment and not view.eval().augment
    x, _ = view.eval().batch(torch.arange(3))
    expected = (tiny_data.train_images[:3] - 0.3) / 0.4
    assert torch.allclose(x, expected)


def test_augmentation_crops_and_flips_within_padding():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    out = Augment(crop_padding=1, hflip=True)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    flipped = x.flip(-1)
    # every output is a shift by at most one pixel of the image or of its mirror
    shifts = [torch.nn.functional.pad(img, (1, 1, 1, 1))[..., dy:dy + 4, dx:dx + 4]
              for img in (x[0], flipped[0]) for dy in range(3) for dx in range(3)]
    assert all(any(torch.equal(o, s) for s in shifts) for o in out)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 5


def test_every_registered_dataset_has_a_recipe_and_model():
    from unlearnkit.models import MODELS

    for name, spec in DATASETS.items():
        assert spec.default_model in MODELS and spec.recipe.epochs > 0, name


def test_read_only_indices_select_without_a_warning():
    import warnings

    from unlearnkit.data.images import _as_index

    indices = np.arange(5)
    indices.flags.writeable = False  # as arrays come out of Ray's object store
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _as_index(indices, 10).tolist() == [0, 1, 2, 3, 4]
