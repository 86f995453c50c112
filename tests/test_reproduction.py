"""A reproduction regression: a few quick-bench cells against the values stored in tests/expected.

The cells are deterministic on one machine (byte-identical weights); on the machine that stored them they are
compared at a relative 1e-4, so that any change to a method's numbers fails; on another CPU, whose float rounding
differs, at the cross-machine tolerances of unlearnkit.bench.regression. When a change is intended, refresh the
values with `make expected` (python -m unlearnkit.bench.regression ...)."""
import json
from pathlib import Path

import pytest

from unlearnkit.bench.regression import CELLS, CROSS_MACHINE, KEYS, SAME_MACHINE, compute, machine

EXPECTED = Path(__file__).parent / "expected" / "quick_bench.json"


def test_quick_bench_cells_reproduce_their_stored_values(tmp_path):
    stored = json.loads(EXPECTED.read_text())
    expected = stored["cells"]
    assert sorted(expected) == sorted(f"{scenario}/{method}" for scenario, method in CELLS)
    same = stored["machine"] == machine()
    found = compute(tmp_path)
    for cell, values in expected.items():
        for key in KEYS:
            rel, abs_ = SAME_MACHINE if same else CROSS_MACHINE[key]
            assert found[cell][key] == pytest.approx(values[key], rel=rel, abs=abs_), (
                f"{cell} {key} changed from {values[key]} to {found[cell][key]} "
                f"({'the machine that stored it' if same else 'another machine: ' + str(machine())}): "
                "if intended, run `make expected`")


def test_cross_machine_tolerance_accepts_rounding_and_rejects_a_changed_method():
    """Figures measured for the same cells on two machines of this project pass; a method that no longer forgets
    (forget accuracy up by 10 points) or a KL that doubled does not."""
    def close(key, a, b):
        rel, abs_ = CROSS_MACHINE[key]
        return b == pytest.approx(a, rel=rel, abs=abs_)

    assert close("kl_forget", 0.8433, 0.7659) and close("test_acc", 88.06, 88.61) and close("remain_acc", 95.12, 95.51)
    assert close("verification_error", 4.7732, 4.7646)
    assert not close("forget_acc", 1.37, 11.37) and not close("kl_forget", 0.8433, 1.69)
