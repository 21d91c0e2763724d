# The two commands of a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: demo test cards lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# (Re)install whenever the project's metadata changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/timm-recipes demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# Regenerate model_cards/ from a fresh demo run (every number in a card is measured by that run).
cards: $(STAMP)
	$(BIN)/timm-recipes demo --cards model_cards

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/stochastic_depth.py
	$(BIN)/python benchmarks/data_pipeline.py
	$(BIN)/python benchmarks/mixing.py
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/shards.py
	$(BIN)/python benchmarks/large_photos.py
	$(BIN)/python benchmarks/seeding.py
	$(BIN)/python benchmarks/gpu.py  # on a CPU-only machine: a smoke run of every part

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
