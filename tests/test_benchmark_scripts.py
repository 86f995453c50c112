"""The benchmark scripts' command lines: --help prints the script's usage (its docstring) and runs nothing, rather
than taking the flag for an output folder and starting a run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script", ["random_defaults.py", "criterion_swap.py", "per_seed_closing.py"])
def test_help_prints_the_usage_and_runs_nothing(script, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UNLEARNKIT_STORE": str(tmp_path / "store"),
           "PYTHONPATH": str(BENCHMARKS)}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "python benchmarks/" in done.stdout and script in done.stdout
    assert list(tmp_path.iterdir()) == []  # no folder named --help, no store


def test_a_script_without_its_arguments_says_how_to_call_it(tmp_path):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "per_seed_closing.py")], cwd=tmp_path,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "per_seed_closing.py <bench out>/results.csv" in done.stderr
