"""Every registered method, at its defaults (no tuning, no oracle) on the embedded digits CNN, forgets a class.

The defaults hold each method to a quarter of a retraining's sample passes. Fine-tuning on D_r alone (ft,
l1_sparse) cannot forget a class in that budget: they must keep the remain set and not make forgetting worse.
NegGrad+ and the boundary methods stop where the oracle-free calibration judges the class forgotten, which on
this CNN leaves a minority of it recognised, and SSD's dampening costs more than 5 points of held-out accuracy
before it removes the class (the calibration keeps its strongest edit within that): they must more than halve
the forget accuracy."""
import pytest

from unlearnkit.data import load_dataset, make_split
from unlearnkit.models import spec_for
from unlearnkit.pipeline import train
from unlearnkit.training import accuracy
from unlearnkit.unlearning.engine import unlearn
from unlearnkit.unlearning.methods import METHODS


@pytest.fixture(scope="module")
def digits_setup(tmp_path_factory):
    from unlearnkit.runtime import Runtime

    runtime = Runtime.create("cpu", 1)
    data = load_dataset("digits")
    original = train(data, spec_for("cnn", data), seed=0, runtime=runtime, store=tmp_path_factory.mktemp("store"))
    return data, original, make_split("class:3", data, seed=0), runtime


REMAIN_ONLY = {"ft", "l1_sparse"}
PARTIAL = {"neggrad_plus", "boundary_shrink", "boundary_expand", "ssd"}


@pytest.mark.parametrize("method", METHODS.names())
def test_method_forgets_class_3_of_digits(method, digits_setup, tmp_path):
    data, original, split, runtime = digits_setup
    result = unlearn(original.load_model(), split, method, runtime=runtime, store=tmp_path)
    forget = accuracy(result.model, data.train(split.forget), runtime)
    remain = accuracy(result.model, data.train(split.remain), runtime)
    said = f"{method}: forget {forget:.1f}%, remain {remain:.1f}%"
    assert remain >= 90.0, said
    if method not in REMAIN_ONLY:
        assert forget <= (50.0 if method in PARTIAL else 10.0), said
