PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first: the local CPU build, so nothing later pulls a multi-GB CUDA wheel.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/compass quickstart

# make test (what CI runs) skips the tests marked slow; make test-all runs them too.
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/sib200_quality.py
	$(BIN)/python benchmarks/embed_throughput.py
	$(BIN)/python benchmarks/select_scale.py
	$(BIN)/python benchmarks/serve_ingest.py --monitor
	$(BIN)/python benchmarks/ray_select.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
