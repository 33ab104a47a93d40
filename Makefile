# The two commands of the README, and what they stand on.
#   make demo   set up, then run the main job on the built-in default data
#   make test   set up, then lint and run every test (what CI runs)

VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

# torch is pinned here (the CPU build on this machine's disk); the package itself asks for a range.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: setup
	$(VENV)/bin/gqn data list
	$(VENV)/bin/gqn data info ../shared/reference
	$(VENV)/bin/gqn data verify ../shared/reference
	$(VENV)/bin/gqn data show ../shared/reference --scene 0 --out $(OUT)/reference_views.png

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/data_loading.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
