# Two commands do all the set-up: `make run` (an emulated scan end to end) and `make test`.
# Both create the virtual environment .venv on first use and install the project into it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench lint clean firmware

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/petdaq run

# The tests, then the benchmarks (JSON kept in bench-results/) and their same-run ratio check.
test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest --ignore=tests/benchmarks
	mkdir -p bench-results
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest tests/benchmarks -q --benchmark-enable \
		--benchmark-json=bench-results/ci.json
	$(BIN)/python -m daq.perf.benchcheck bench-results/ci.json

# The digitizer board's firmware for an emulated Cortex-M (needs gcc-arm-none-eabi): its size.
firmware:
	$(MAKE) -s -C hw/firmware

bench: $(STAMP)
	$(BIN)/petdaq bench

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
