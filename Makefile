# The two commands of the README, and what they stand on.
#   make demo   set up, then run the main job on the built-in default data
#   make test   set up (with Chromium for the browser test), then lint and run every test (what CI runs)

VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out

# Mesa's offscreen OpenGL for MuJoCo (OSMesa, and EGL as the alternative), from Debian.
SYSTEM_PACKAGES := libosmesa6 libegl1 libegl-mesa0 libgl1-mesa-dri
# Debian's Chromium and its WebDriver, for the browser test of gqn view (make test only).
TEST_PACKAGES := chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system system-test demo test lint bench clean

setup: system $(VENV)/.installed

system:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES); }

system-test:
	@dpkg -s $(TEST_PACKAGES) >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $(TEST_PACKAGES); }

# torch is pinned here (the CPU build on this machine's disk); the package itself asks for a range.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job (gqn demo): the built-in data (rendered once), the demo model trained for
# DEMO_MINUTES (re-running continues from the last checkpoint), its eval table, a render grid and
# an orbit GIF, and the same grid and orbit from the shipped pretrained weights, all in $(OUT)/.
DEMO_MINUTES ?= 10
demo: setup
	$(VENV)/bin/gqn demo --out $(OUT) --minutes $(DEMO_MINUTES)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint system-test
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/data_loading.py
	$(PY) benchmarks/synth.py
	$(PY) benchmarks/model_step.py --presets tiny,small
	$(PY) benchmarks/view_latency.py
	$(PY) benchmarks/evidence_cost.py

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache .ruff_cache .import_linter_cache
