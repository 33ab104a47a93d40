# The two commands of the README, and what they stand on.
#   make demo   set up, then run the main job on the built-in default data
#   make test   set up, then lint and run every test (what CI runs)

VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

# Mesa's offscreen OpenGL for MuJoCo (OSMesa, and EGL as the alternative), from Debian.
SYSTEM_PACKAGES := libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system demo test lint bench clean

setup: system $(VENV)/.installed

system:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }

# torch is pinned here (the CPU build on this machine's disk); the package itself asks for a range.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job: render the built-in data (once), train the small model for DEMO_STEPS steps
# (about 1 s each on 2 cores; re-running continues from the last checkpoint), plot the curves.
DEMO_STEPS ?= 300
demo: setup
	$(VENV)/bin/gqn data compare $$($(VENV)/bin/gqn data builtin | tail -1) --reference ../shared/reference --out $(OUT)/compare.png
	$(VENV)/bin/gqn train --config small --precision bf16 --workers 1 --max-steps $(DEMO_STEPS) --run-dir $(OUT)/demo \
		--resume auto --log-every 10 --eval-every 100 --checkpoint-every 100 --image-every 100
	$(VENV)/bin/gqn plot $(OUT)/demo --out $(OUT)/curves.png
	@echo "results in $(OUT)/: compare.png (real vs synthetic), curves.png, demo/ (checkpoints, metrics.jsonl, tensorboard/)"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/data_loading.py
	$(PY) benchmarks/synth.py
	$(PY) benchmarks/model_step.py --presets tiny,small

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache
