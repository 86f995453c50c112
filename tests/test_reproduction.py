"""A reproduction regression: a few quick-bench cells against the values stored in tests/expected.

The cells are deterministic on one machine (byte-identical weights); they are compared at a relative 1e-4 so
that another CPU's float rounding does not fail CI while any change to a method's numbers does. When a change
is intended, refresh the values with `make expected` (python -m unlearnkit.bench.regression ...)."""
import json
from pathlib import Path

import pytest

from unlearnkit.bench.regression import CELLS, KEYS, compute

EXPECTED = Path(__file__).parent / "expected" / "quick_bench.json"


def test_quick_bench_cells_reproduce_their_stored_values(tmp_path):
    expected = json.loads(EXPECTED.read_text())
    assert sorted(expected) == sorted(f"{scenario}/{method}" for scenario, method in CELLS)
    found = compute(tmp_path)
    for cell, values in expected.items():
        for key in KEYS:
            assert found[cell][key] == pytest.approx(values[key], rel=1e-4, abs=1e-6), (
                f"{cell} {key} changed from {values[key]} to {found[cell][key]}: if intended, run `make expected`")
