# Two commands: `make reproduce` and `make test`. Each does its own set-up (venv, package, kernel, data).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= cpu
# How `make reproduce` computes the cells: local (a process pool on this machine), serial or ray (docs/guide/gpu-cluster.md).
EXECUTOR ?= local
# More options for `qlib grid`, e.g. GRID_ARGS='--workers 2 --timings grid-timings.json'.
GRID_ARGS ?=
TEST_WORKERS ?= 2
NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
INSTALLED := $(VENV)/.installed
# The exact versions the committed reports were made with; `make setup CONSTRAINTS=` installs without them.
CONSTRAINTS ?= constraints.txt

.PHONY: setup data reproduce replicate test test-portability lab lint docs

setup: $(INSTALLED) data

# The venv, the package with its dev extra, and the Jupyter kernel `qlib` that the notebooks name.
$(INSTALLED): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --progress-bar off $(if $(CONSTRAINTS),-c $(CONSTRAINTS)) -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name qlib --display-name "Python (qlib)"
	touch $@

# Fashion-MNIST: Debian's package when apt-get exists and we are root (waiting for a held package lock), else
# qlib falls back to download.
data: $(INSTALLED)
	@if ! $(PY) -c "from qlib.data import locate; locate('fashion-mnist', download=False)" 2>/dev/null \
	    && command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist"; \
	  scripts/apt-install.sh dataset-fashion-mnist \
	    || echo "apt-get could not install dataset-fashion-mnist; qlib will try torchvision's download"; \
	fi
	$(PY) -m qlib data fashion-mnist

# Every cell of every notebook first (one progress bar; cached), then each notebook rendered from the cache.
reproduce: setup
	$(PY) -m qlib grid all --preset $(PRESET) --executor $(EXECUTOR) $(GRID_ARGS)
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb (preset $(PRESET))"; \
	  $(PY) -m qlib run $$nb --preset $(PRESET) || exit 1; \
	done

# Notebook 08's primary comparisons decided again under a second kernel family (torch's portable kernels, oneDNN up
# to SSE4.1: every training trajectory changes as on another CPU), in a cache of its own; the verdicts go to
# reports/$(PRESET)/replication.json and the index shows them beside the first run's.
REPLICATE_CACHE ?= cache-replicate
replicate: setup
	ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 QLIB_CACHE=$(REPLICATE_CACHE) \
	  $(PY) -m qlib replicate --preset $(PRESET) --executor $(EXECUTOR)

# The tests on TEST_WORKERS pytest-xdist workers of one torch thread each (a file's tests stay on one worker for
# nbval, whose cells share a kernel); TEST_WORKERS=0 runs them in this process. Every smoke cell is computed once, by
# tests/test_executors.py into $(SMOKE_CACHE) (emptied first, so each cell is checked as it is made), and nbval's
# notebooks then render from it.
SMOKE_CACHE := $(CURDIR)/.test-cache/smoke
test: setup
	rm -rf $(dir $(SMOKE_CACHE))
	OMP_NUM_THREADS=1 QLIB_SMOKE_CACHE=$(SMOKE_CACHE) $(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15
	QLIB_PRESET=smoke QLIB_CACHE=$(SMOKE_CACHE) OMP_NUM_THREADS=1 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile \
	  --nbval-lax notebooks/

# Every scheme's training step under each kernel family at 1 and 2 threads (no native crash), then the effect tests
# over the kernel matrix, with each statistic's margin (tests/effects.py).
test-portability: setup
	$(PY) -m pytest -q tests/test_kernel_families.py
	$(PY) tests/portability.py

# Root is the usual user in containers: Jupyter refuses root without --allow-root. LAB_ARGS: more options.
lab: setup
	$(VENV)/bin/jupyter lab notebooks/ $$([ "$$(id -u)" = 0 ] && echo --allow-root) $(LAB_ARGS)

# ruff: lint and format check (pyproject.toml [tool.ruff]); `ruff format .` and `ruff check --fix .` repair.
lint: $(INSTALLED)
	$(VENV)/bin/ruff check qlib tests bench scripts notebooks
	$(VENV)/bin/ruff format --check qlib tests bench scripts notebooks

# The documentation site (Jupyter Book, strict: a warning, a broken link or a missing reference fails the build),
# with the reports of $(PRESET) as pages; the reports are made first where reports/$(PRESET) has none.
docs: setup
	@test -n "$$(ls reports/$(PRESET)/*.html 2>/dev/null)" || $(MAKE) reproduce PRESET=$(PRESET)
	$(PY) -c "from qlib.report import book_pages; book_pages('$(PRESET)', 'docs/reports')"
	$(VENV)/bin/jupyter-book build docs --warningiserror --nitpick --keep-going
