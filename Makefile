# Fresh-machine entry points: `make demo` (offline demo pipeline) and `make test` (the test suite).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test cluster-test bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,slurm]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/snakemake --configfile config/demo.yaml --cores 2

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Real single-node SLURM on this machine (root on Debian; skips elsewhere): the demo's Figure 4-1 through
# `--profile profiles/slurm`, compared with a local run.
cluster-test: $(VENV)/.installed
	bash tests/cluster/run_slurm.sh

bench: $(VENV)/.installed
	$(PY) bench/bench_models.py
