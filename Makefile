# Two commands do all the set-up on a machine that has only python3 and pip:
#   make demo   run the main job on its built-in default
#   make test   install pnref with its test extras and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: all venv demo test lint bench warmup docs clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m pnref demo

# -n auto: one pytest-xdist worker per core (the suite takes about half the time on 2 cores).
test: $(STAMP)
	$(PY) -m ruff check pnref tests benchmarks
	$(PY) -m pytest -q -n auto

lint: $(STAMP)
	$(PY) -m ruff check pnref tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/bench_ops.py

warmup: $(STAMP)
	$(PY) -m pnref warmup

# MathJax for the site comes from PyPI: jupyter-server-mathjax ships MathJax 2.7.9's files;
# --no-deps because only those files are used (scripts/mkdocs_mathjax_hook.py), not the server.
$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(PY) -m pip install --quiet -e '.[docs]'
	$(PY) -m pip install --quiet --no-deps 'jupyter-server-mathjax==0.2.6'
	touch $(DOCS_STAMP)

# The documentation site (mkdocs.yml): --strict turns a broken page, link or docstring into a
# failure. Output in build/site/.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
