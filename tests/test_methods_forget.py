"""Every registered method, with its defaults for the embedded digits CNN, actually forgets a class."""
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


@pytest.mark.parametrize("method", METHODS.names())
def test_method_forgets_class_3_of_digits(method, digits_setup, tmp_path):
    data, original, split, runtime = digits_setup
    result = unlearn(original.load_model(), split, method, runtime=runtime, store=tmp_path)
    forget = accuracy(result.model, data.train(split.forget), runtime)
    remain = accuracy(result.model, data.train(split.remain), runtime)
    assert forget <= 10.0 and remain >= 90.0, f"{method}: forget {forget:.1f}%, remain {remain:.1f}%"
