# Quick start: `make run` opens serverscope with its defaults, `make test` runs the whole suite.
# Both create the virtual environment .venv on first use; only Python 3.11+ is needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint setup clean

$(BIN)/serverscope: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,real]'
	touch $@

setup: $(BIN)/serverscope

run: setup
	$(BIN)/serverscope

# the tests that need the cores to themselves first, one at a time; then the others, two at
# a time (JOBS=1 runs them one at a time too; plain `pytest` runs everything in one go)
JOBS ?= 2

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m solo
	$(BIN)/python -m pytest -m "not solo" -n $(JOBS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src
	$(BIN)/mypy --strict src/judging src/values

clean:
	rm -rf $(VENV) build src/*.egg-info
