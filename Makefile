# Two entry points: `make results` re-executes the notebooks (PROFILE=smoke|cpu|paper, default cpu) and ends by
# building the report, `make test` runs the linter and the test suite. Both create .venv from requirements.txt first.
# `make report` (re)builds RESULTS/report.html and RESULTS/report/report.tex from a results folder (default results/).
PROFILE ?= cpu
ONLY ?=
RESULTS ?= results
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: results report test lint clean-cache

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

results: $(VENV)/.installed
	$(PY) -m utils.pipeline --profile $(PROFILE) $(if $(ONLY),--only $(ONLY))

report: $(VENV)/.installed
	$(PY) -m utils.report --results-dir $(RESULTS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

clean-cache:
	rm -rf .cache
