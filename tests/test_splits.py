import numpy as np
import pytest
import torch

from unlearnkit.data import ForgetSplit, load_dataset, make_split
from unlearnkit.errors import SplitError

LABELS = np.repeat(np.arange(4), 25)


def test_random_split_is_seeded_and_covers_the_set():
    a, b, c = (make_split("random:0.1", LABELS, seed) for seed in (0, 0, 1))
    assert len(a.forget) == 10 and len(a.remain) == 90
    assert np.array_equal(a.forget, b.forget) and not np.array_equal(a.forget, c.forget)
    assert np.array_equal(np.sort(np.concatenate([a.forget, a.remain])), np.arange(100))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_class_split_by_index_and_name():
    split = make_split("class:1,3", LABELS)
    assert set(LABELS[split.forget]) == {1, 3} and split.forgotten_classes == (1, 3)
    digits = load_dataset("digits")
    named = make_split("class:7", digits)
    assert (digits.train_labels.numpy()[named.forget] == 7).all() and named.dataset is digits


@pytest.mark.parametrize("spec, message", [
    ("random:0", "must be in \\(0, 1\\), got 0.0"),
    ("random:1.5", "must be in \\(0, 1\\)"),
    ("random:abc", "must be a number"),
    ("class:9", "class 9 does not exist; expected an index in 0..3"),
    ("class:cat", "class 'cat' does not exist"),
    ("class:1,1", "listed twice"),
    ("clusters:3", "malformed"),
    ("random", "malformed"),
    ("random:0.001", "forget set is empty"),
    ("class:0,1,2,3", "remain set is empty"),
])
def test_bad_specs_get_clear_errors(spec, message):
    with pytest.raises(SplitError, match=message):
        make_split(spec, LABELS)


def test_indices_from_txt_and_npy(tmp_path):
    (tmp_path / "f.txt").write_text("5, 2\n9")
    np.save(tmp_path / "f.npy", np.array([7, 1]))
    assert make_split(f"indices:{tmp_path / 'f.txt'}", LABELS).forget.tolist() == [2, 5, 9]
    assert make_split(f"indices:{tmp_path / 'f.npy'}", LABELS).forget.tolist() == [1, 7]
    np.save(tmp_path / "mask.npy", np.isin(np.arange(100), [3, 8]))
    assert make_split(f"indices:{tmp_path / 'mask.npy'}", LABELS).forget.tolist() == [3, 8]


@pytest.mark.parametrize("content, message", [
    ("1 2 100", "out of range 0..99"),
    ("-1", "out of range"),
    ("3 4 3", "duplicated index"),
    ("1 two", "must hold integers"),
    ("", "forget set is empty"),
])
def test_bad_index_files(tmp_path, content, message):
    path = tmp_path / "idx.txt"
    path.write_text(content)
    with pytest.raises(SplitError, match=message):
        make_split(f"indices:{path}", LABELS)


def test_a_csv_of_indices_is_read_as_text(tmp_path):
    (tmp_path / "f.csv").write_text("5,2\n9,")
    assert make_split(f"indices:{tmp_path / 'f.csv'}", LABELS).forget.tolist() == [2, 5, 9]


def _write_npy(path, kind):
    if kind == "2-D":
        np.save(path, np.arange(10).reshape(2, 5))
    elif kind == "2-D mask":
        np.save(path, np.ones((10, 10), dtype=bool))
    elif kind == "text":
        path.write_text("1 2 3")
    elif kind == "pickle":
        import pickle

        path.write_bytes(pickle.dumps([1, 2, 3]))
    elif kind == "objects":
        np.save(path, np.array([1, "a", None], dtype=object), allow_pickle=True)
    elif kind == "truncated":
        np.save(path, np.arange(50))
        path.write_bytes(path.read_bytes()[:-40])


@pytest.mark.parametrize("kind, message", [
    ("2-D", r"holds an array of shape \(2, 5\); expected a 1-D integer array of training indices or a 1-D boolean"),
    ("2-D mask", r"holds an array of shape \(10, 10\)"),
    ("text", r"is not a readable \.npy file of indices \(no NumPy header\)"),
    ("pickle", r"is not a readable \.npy file of indices \(no NumPy header\)"),
    ("objects", r"is not a readable \.npy file of indices \(damaged, or Python objects, which are never unpickled\)"),
    ("truncated", r"is not a readable \.npy file of indices"),
])
def test_a_npy_that_is_not_one_flat_array_of_indices_is_refused(tmp_path, kind, message):
    path = tmp_path / "garbage.npy"
    _write_npy(path, kind)
    with pytest.raises(SplitError, match=message) as raised:
        make_split(f"indices:{path}", LABELS)
    assert "allow_pickle" not in str(raised.value) and "\n" not in str(raised.value)


def test_missing_index_file(tmp_path):
    with pytest.raises(SplitError, match="does not exist"):
        make_split(f"indices:{tmp_path / 'nope.txt'}", LABELS)


def test_the_forget_set_given_as_indices_or_a_mask():
    mask = np.zeros(100, dtype=bool)
    mask[[9, 2, 5]] = True
    for given in ([5, 2, 9], np.array([9, 5, 2]), torch.tensor([2, 9, 5]), mask, (2.0, 5.0, 9.0), {9, 2, 5}):
        split = make_split(given, LABELS)
        assert split.forget.tolist() == [2, 5, 9] and len(split.remain) == 97
        assert split.spec == "indices:<3 given>" and split.kind == "indices"


def test_indices_that_are_whole_classes_are_class_wise_forgetting(tmp_path):
    """A deletion request of every sample of a class, however given, is class-wise forgetting: the methods and
    the calibration then aim at a class the model never predicts, not at a random subset's targets."""
    as_class = make_split("class:1,3", LABELS)
    path = tmp_path / "whole.txt"
    path.write_text(" ".join(map(str, as_class.forget[::-1])))
    for given in (list(as_class.forget), np.isin(LABELS, [1, 3]), f"indices:{path}"):
        split = make_split(given, LABELS)
        assert split == as_class and split.kind == "class" and split.forgotten_classes == (1, 3)
    for given in (list(as_class.forget[1:]), list(as_class.forget) + [0]):  # a class short, or one more sample
        assert make_split(given, LABELS).kind == "indices"


@pytest.mark.parametrize("given, message", [
    ([1, 2, 100], r"the forget indices: 1 index\(es\) out of range 0..99"),
    ([3, 4, 3], "duplicated index"),
    ([1.5], "must hold integers"),
    ([], "forget set is empty"),
    (np.ones(100, dtype=bool), "remain set is empty"),
    (np.ones(7, dtype=bool), r"one entry per training sample \(100\), got 7"),
    (np.zeros((2, 2), dtype=int), r"one flat sequence of integers, got shape \(2, 2\)"),
    (7, "a sequence of training indices, got int"),
    ({1: 2}, "a sequence of training indices, got dict"),
])
def test_bad_given_indices_get_clear_errors(given, message):
    with pytest.raises(SplitError, match=message):
        make_split(given, LABELS)


def test_split_round_trips_through_disk(tmp_path):
    split = make_split("class:2", LABELS, seed=4)
    split.save(tmp_path / "split.npz")
    loaded = ForgetSplit.load(tmp_path / "split.npz")
    assert loaded == split and loaded.fingerprint == split.fingerprint
