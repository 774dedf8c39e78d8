# Two entry points: `make results` re-executes the notebooks (PROFILE=smoke|cpu|paper, default cpu) and ends by
# building the report, `make test` runs the linter and the test suite. Both create .venv from requirements.txt first.
# BUDGET=<minutes> stops `make results` cleanly at the first unit boundary after that time; finished units stay
# recorded under results/units/ and the next `make results` (any machine) resumes from them.
# `make report` (re)builds RESULTS/report.html, RESULTS/report/report.tex and report.pdf (needs pdflatex) from a results
# folder (default results/).
# EXECUTOR=ray (default: env DD_EXECUTOR, else local) runs the notebooks' independent units on Ray
# (requirements-ray.txt; `make test` installs it for the tests).
PROFILE ?= cpu
EXECUTOR ?=
ONLY ?=
BUDGET ?=
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

$(VENV)/.installed-ray: $(VENV)/.installed requirements-ray.txt
	$(PY) -m pip install --quiet -r requirements-ray.txt
	touch $@

results: $(VENV)/.installed $(if $(filter ray,$(or $(EXECUTOR),$(DD_EXECUTOR))),$(VENV)/.installed-ray)
	$(PY) -m utils.pipeline --profile $(PROFILE) $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(ONLY),--only $(ONLY)) $(if $(BUDGET),--budget-minutes $(BUDGET))

report: $(VENV)/.installed
	$(PY) -m utils.report --results-dir $(RESULTS) --pdf

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint $(VENV)/.installed-ray
	$(PY) -m pytest -q

clean-cache:
	rm -rf .cache
