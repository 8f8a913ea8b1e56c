# Two commands do all the set-up: `make run` (an emulated scan end to end) and `make test`.
# Both create the virtual environment .venv on first use and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test soak bench lint clean firmware

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# setuptools' note on every flat-layout editable install is not the product's first words
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/petdaq run

# The tests on a worker per core and one more (a module's tests on one worker: its fixtures are
# made once; the longest modules first, tests/conftest.py), then
# the tests that measure a rate or a CPU split, alone; then the benchmarks (JSON kept in
# bench-results/; each timed for 0.5 s and at least 5 rounds, or its own fixed rounds) and
# their same-run ratio check. Skipped tests say why at the end.
# The workers outnumber the cores, so in phase 1 an idle OpenMP or OpenBLAS thread sleeps
# instead of spinning on a core another worker needs (phase 1 on 2 cores: 379 s against 421 s,
# 699 CPU-s against 782); the phases that measure keep the product's own settings.
PYTEST := QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest
SHARED := OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1
test: $(STAMP)
	$(SHARED) $(PYTEST) --ignore=tests/benchmarks -m "not serial and not soak" -n auto --dist loadfile --no-loadscope-reorder
	$(PYTEST) --ignore=tests/benchmarks -m "serial and not soak"
	mkdir -p bench-results
	$(PYTEST) tests/benchmarks -q --benchmark-enable --benchmark-max-time=0.5 --benchmark-json=bench-results/ci.json
	$(BIN)/python -m daq.perf.benchcheck bench-results/ci.json

# Sustained runs at rate (minutes): CI runs them after the tests.
soak: $(STAMP)
	$(PYTEST) --ignore=tests/benchmarks -m soak

# The digitizer board's firmware for an emulated Cortex-M (needs gcc-arm-none-eabi): its size.
firmware:
	$(MAKE) -s -C hw/firmware

bench: $(STAMP)
	$(BIN)/petdaq bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
