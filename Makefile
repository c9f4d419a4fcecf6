# The two commands a reader needs are `make book` and `make test`; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NB ?= $(NOTEBOOKS)
SUBMISSIONS ?= submissions
JOBS ?= 2
# Threads per test worker and per notebook kernel; `make test THREADS=2` reruns with two.
THREADS ?= 1
# The book's base seed (transformer.utils.book_seed); every notebook seeds from it.
BOOK_SEED ?= 0
export BOOK_SEED
ROBUST_SEEDS ?= 1 2
THREAD_ENV := OMP_NUM_THREADS=$(THREADS) MKL_NUM_THREADS=$(THREADS)
NBVAL_FLAGS := --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

.PHONY: help install book book-strict test unit lint nbval robust experiments browser lab execute assignments grade bench clean

help:
	@echo "make book         build the HTML book into _build/html (installs into $(VENV) first)"
	@echo "make test         lint, unit tests, nbval over every notebook, strict book build, browser test"
	@echo "make robust       run every notebook under BOOK_SEED=1 and 2; every in-cell assertion must hold"
	@echo "make lab          open the notebooks in JupyterLab"
	@echo "make execute      re-run notebooks in place to refresh their outputs (NB=path for one)"
	@echo "make assignments  write student notebooks and autograders into _build/assignments"
	@echo "make grade        grade every notebook in SUBMISSIONS=dir into one CSV gradebook"
	@echo "make bench        run the benchmarks and write benchmarks/results/*.md"
	@echo "make experiments  rerun the multi-seed comparisons, tables in experiments/results/"

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

book: $(STAMP)
	@start=$$(date +%s); \
	$(PY) tools/fetch_static.py && \
	$(PY) -m tools.flashcards && \
	$(PY) -m tools.exercises assign --out book/_generated/exercises >/dev/null && \
	$(PY) -m tools.api_reference && \
	$(PY) -m tools.benchmarks_page && \
	$(VENV)/bin/jupyter-book build . --builder html -q && \
	echo "Built in $$(( $$(date +%s) - start )) s. Open $(CURDIR)/_build/html/index.html in a browser."

# Warnings (a broken reference, a missing citation, a notebook error) fail this build.
book-strict: $(STAMP)
	$(PY) tools/fetch_static.py
	$(PY) -m tools.flashcards
	$(PY) -m tools.api_reference
	$(PY) -m tools.benchmarks_page
	$(PY) -m tools.exercises assign --out book/_generated/exercises >/dev/null
	$(VENV)/bin/jupyter-book build . --builder html -W -n --keep-going

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

unit: $(STAMP)
	$(THREAD_ENV) $(VENV)/bin/pytest -q -n $(JOBS) --dist loadscope -m "not browser" tests

# Two notebooks run side by side on two cores, so each kernel gets one thread:
# two multi-threaded PyTorch processes on two cores slow each other down many times over.
nbval: $(STAMP)
	$(THREAD_ENV) $(VENV)/bin/pytest -q -n $(JOBS) --dist loadscope $(NBVAL_FLAGS) $(NB)

# Outputs are not compared (another seed gives other numbers), but every cell runs and
# every assertion that backs a conclusion must hold under each seed.
robust: $(STAMP)
	@start=$$(date +%s); \
	for seed in $(ROBUST_SEEDS); do \
	  echo "== BOOK_SEED=$$seed, $(THREADS) thread(s) per worker"; \
	  BOOK_SEED=$$seed $(THREAD_ENV) $(VENV)/bin/pytest -q -n $(JOBS) --dist loadscope \
	    --nbval-lax --nbval-current-env -p no:cacheprovider $(NB) || exit 1; \
	done; \
	echo "make robust: all green in $$(( $$(date +%s) - start )) s"

browser: $(STAMP)
	$(VENV)/bin/pytest -q -m browser -rs tests/browser

test: $(STAMP)
	@echo "make test: BOOK_SEED=$(BOOK_SEED), $(THREADS) thread(s) per worker, $(JOBS) workers"
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory lint && \
	$(MAKE) --no-print-directory unit && \
	$(MAKE) --no-print-directory nbval && \
	$(MAKE) --no-print-directory book-strict && \
	$(MAKE) --no-print-directory browser && \
	echo "make test: all green in $$(( $$(date +%s) - start )) s"

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

execute: $(STAMP)
	@for nb in $(NB); do \
	  start=$$(date +%s); \
	  $(THREAD_ENV) $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=900 --ExecutePreprocessor.kernel_name=python3 $$nb || exit 1; \
	  echo "$$nb executed in $$(( $$(date +%s) - start )) s"; \
	done

assignments: $(STAMP)
	$(PY) -m tools.exercises assign --out _build/assignments

grade: $(STAMP)
	$(PY) -m tools.exercises grade --assignments _build/assignments --submissions $(SUBMISSIONS) --out $(SUBMISSIONS)/gradebook.csv

bench: $(STAMP)
	@mkdir -p benchmarks/results
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

experiments: $(STAMP)
	@for e in experiments/ch*.py; do echo "== $$e"; $(THREAD_ENV) $(PY) $$e || exit 1; done

clean:
	rm -rf _build
