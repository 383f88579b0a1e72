# Two entry points (see README): `make demo` and `make test`. Both create the
# virtualenv and install the pinned set first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= artifacts/demo

.PHONY: setup demo test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml infra/requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# setuptools notes every editable install with a banner; the install itself has nothing to say
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install -q -c infra/requirements.lock -e ".[test]"
	$(BIN)/python -m pip check
	sh infra/install-audio.sh
	sh infra/install-browser.sh
	touch $@

demo: setup
	$(BIN)/musicgen demo --workdir $(WORKDIR)

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

test-fast: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -m "not integration"

bench: setup
	$(BIN)/python tests/bench/bench_preprocess.py

clean:
	rm -rf $(VENV) artifacts .pytest_cache .hypothesis
