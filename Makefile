# Two commands set everything up on a fresh machine:
#   make demo   -> create .venv, install spurbench, run the offline demo
#   make test   -> create .venv, install spurbench + test tools, run ruff and the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

.PHONY: install demo test test-fast lint bench
install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/spurbench demo

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks scripts

# -X faulthandler: a crash in native code (even at interpreter exit) prints its stack.
test: $(BIN)/.installed lint
	$(BIN)/python -X faulthandler -m pytest -q -p no:cacheprovider

# The edit loop: everything but the slow, Ray, browser and subprocess tests (CI runs `make test`).
test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow and not ray and not browser and not subprocess"

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run_all.py
