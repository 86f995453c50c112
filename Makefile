# Two commands set everything up on a fresh machine:  make demo  (the main job)  and  make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU-only machines: ask for this torch first so that nothing pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint expected clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH)" -e ".[generation,text-to-image,nudity,ray,tune,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/unlearnkit bench --quick

test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests

# Refresh the reproduction regression's stored cells (tests/test_reproduction.py) after an intended change.
expected: install
	$(BIN)/python -m unlearnkit.bench.regression tests/expected/quick_bench.json

clean:
	rm -rf $(VENV) unlearnkit-runs
